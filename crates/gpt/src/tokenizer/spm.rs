//! SentencePiece-style BPE (Llama 2, Mistral v0.1, Phi-3, Gemma): the text, with every space
//! written as `▁` (U+2581), starts as one symbol per character; the adjacent pair whose
//! concatenation is the vocabulary piece with the highest score is merged (the leftmost on a
//! tie), until no adjacent pair forms a piece. A symbol left that is not a piece becomes its
//! UTF-8 bytes as `<0xNN>` tokens (byte fallback).
//!
//! This is llama.cpp's `llm_tokenizer_spm` (`src/llama-vocab.cpp`): a linked list of symbols
//! and a priority queue of candidate bigrams, stale entries skipped when popped (a bigram is
//! stale when either side was merged since; its recorded byte length no longer matches). Pieces
//! are looked up by their bytes in a hash map built once, so encoding is O(n log n) in the
//! characters of a fragment. Unlike llama.cpp, control, unknown and byte tokens never take part
//! in merges: typed text must not turn into `<start_of_turn>` or into a byte token whose
//! decoding differs from what was typed.
//!
//! A Hugging Face `tokenizer.json` of this kind stores merges, not scores, and `tokenizers` runs
//! them as its BPE model does ([`Spm::with_merges`]): each character is its vocabulary token (or
//! its byte-fallback tokens, or one unknown token for a run of unknown characters with
//! `fuse_unk`), then the adjacent pair of *tokens* with the lowest merge rank merges, the
//! leftmost on a tie. That is not score-greedy on pieces: a merge "a bc" does not fire for the
//! symbols "ab" "c", though both spell the piece "abc".

use super::bpe::FxHashMap;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// SentencePiece's whitespace marker, U+2581 LOWER ONE EIGHTH BLOCK.
pub const SPACE_MARK: &str = "\u{2581}";

/// The merge table and byte fallback of a SentencePiece-style vocabulary.
#[derive(Debug, Clone)]
pub struct Spm {
    /// Piece bytes (with `▁` for spaces) -> (id, score). Only pieces merges may produce.
    pieces: FxHashMap<Box<[u8]>, (u32, f32)>,
    /// The token of each byte for byte fallback, or `None` when the vocabulary has no byte
    /// pieces (then a character that is not a piece becomes `unk_id`).
    byte_ids: Option<Box<[u32; 256]>>,
    unk_id: Option<u32>,
    /// Hugging Face's merges by token pair: (left id, right id) -> (rank, merged id). When set,
    /// merges go by rank over token pairs instead of by piece score.
    merges: Option<Box<PairMerges>>,
}

/// Hugging Face BPE's merge table and its unknown-token rule.
#[derive(Debug, Clone)]
struct PairMerges {
    table: FxHashMap<(u32, u32), (u32, u32)>,
    /// A run of characters without a token becomes one unknown token (`fuse_unk`).
    fuse_unk: bool,
}

/// Where a space (`▁`) is put before a text fragment: the conventions of llama.cpp and of Hugging
/// Face's normalizers and pre-tokenizers. A fragment is the text before, between or after the
/// special tokens matched in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpacePrefix {
    /// No space is added.
    Never,
    /// llama.cpp's `add_space_prefix`: before the first fragment and before every fragment that
    /// follows a special token, even if it starts with a space.
    AfterSpecial,
    /// Hugging Face's `Prepend("▁")` normalizer, which runs on every fragment: before every
    /// non-empty fragment.
    EveryFragment,
    /// Hugging Face's `Metaspace` with `prepend_scheme` "always": before every fragment that does
    /// not already start with a space.
    UnlessSpace,
    /// `Metaspace` with `prepend_scheme` "first": only before a fragment at the very start of
    /// the text (not after a special token), and only if it does not start with a space.
    FirstUnlessSpace,
}

impl SpacePrefix {
    /// Whether a fragment gets the space: `first` if it starts the text, `after_special` if a
    /// special token (or nothing) came before it.
    pub fn applies(self, text: &str, first: bool, after_special: bool) -> bool {
        match self {
            SpacePrefix::Never => false,
            SpacePrefix::AfterSpecial => after_special,
            SpacePrefix::EveryFragment => !text.is_empty(),
            SpacePrefix::UnlessSpace => !text.starts_with(' '),
            SpacePrefix::FirstUnlessSpace => first && !text.starts_with(' '),
        }
    }
}

/// One symbol: a byte range of the normalized text, linked to its neighbours.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    prev: i32,
    next: i32,
    /// Its token, when merging by token pairs ([`Spm::with_merges`]).
    id: u32,
    start: u32,
    /// Byte length; 0 once merged into its left neighbour.
    len: u32,
}

/// A candidate merge of the symbols `left` and `right`, whose texts totalled `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: i32,
    right: i32,
    size: u32,
}

/// The max-heap order: the higher score first, on a tie the leftmost (llama.cpp's comparator).
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

/// Buffers reused across the fragments of one encode call.
#[derive(Debug, Default)]
pub struct SpmScratch {
    text: Vec<u8>,
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

impl Spm {
    /// `pieces` are `(bytes, id, score)` of the tokens merges may produce (the first of equal
    /// texts wins); `byte_ids` the byte-fallback tokens, if the vocabulary has them.
    pub fn new<'a>(
        pieces: impl IntoIterator<Item = (&'a [u8], u32, f32)>,
        byte_ids: Option<[u32; 256]>,
        unk_id: Option<u32>,
    ) -> Spm {
        let iter = pieces.into_iter();
        let mut map = FxHashMap::default();
        map.reserve(iter.size_hint().0);
        for (bytes, id, score) in iter {
            if !bytes.is_empty() {
                map.entry(bytes.into()).or_insert((id, score));
            }
        }
        Spm {
            pieces: map,
            byte_ids: byte_ids.map(Box::new),
            unk_id,
            merges: None,
        }
    }

    /// Hugging Face BPE semantics: `merges` are `((left id, right id), merged id)` in rank order
    /// (the first of equal pairs wins); the pieces' scores are then unused.
    pub fn with_merges(
        mut self,
        merges: impl IntoIterator<Item = ((u32, u32), u32)>,
        fuse_unk: bool,
    ) -> Spm {
        let mut table = FxHashMap::default();
        for (rank, (pair, id)) in merges.into_iter().enumerate() {
            table.entry(pair).or_insert((rank as u32, id));
        }
        self.merges = Some(Box::new(PairMerges { table, fuse_unk }));
        self
    }

    fn piece(&self, bytes: &[u8]) -> Option<(u32, f32)> {
        self.pieces.get(bytes).copied()
    }

    /// Appends the ids of one text fragment to `out`; with `prefix_space`, a space is put in
    /// front first (SentencePiece's `add_dummy_prefix`).
    pub fn encode(&self, text: &str, prefix_space: bool, out: &mut Vec<u32>, s: &mut SpmScratch) {
        s.text.clear();
        if prefix_space {
            s.text.extend_from_slice(SPACE_MARK.as_bytes());
        }
        for (i, part) in text.split(' ').enumerate() {
            if i > 0 {
                s.text.extend_from_slice(SPACE_MARK.as_bytes());
            }
            s.text.extend_from_slice(part.as_bytes());
        }
        if s.text.is_empty() {
            return;
        }
        // The normalized text is valid UTF-8 (a str with spaces replaced by a character).
        let norm = std::str::from_utf8(&s.text).unwrap_or_default();
        s.symbols.clear();
        if self.merges.is_some() {
            self.token_symbols(norm, &mut s.symbols);
        } else {
            for (start, c) in norm.char_indices() {
                s.symbols.push(Symbol {
                    prev: 0,
                    next: 0,
                    id: 0,
                    start: start as u32,
                    len: c.len_utf8() as u32,
                });
            }
        }
        if s.symbols.is_empty() {
            return;
        }
        let n = s.symbols.len();
        for (i, sym) in s.symbols.iter_mut().enumerate() {
            sym.prev = i as i32 - 1;
            sym.next = if i + 1 == n { -1 } else { i as i32 + 1 };
        }
        s.queue.clear();
        for i in 1..s.symbols.len() as i32 {
            self.try_add(i - 1, i, s);
        }
        while let Some(b) = s.queue.pop() {
            let (l, r) = (b.left as usize, b.right as usize);
            let (ll, rl) = (s.symbols[l].len, s.symbols[r].len);
            if ll == 0 || rl == 0 || ll + rl != b.size {
                continue;
            }
            s.symbols[l].len += rl;
            s.symbols[r].len = 0;
            if let Some(m) = &self.merges {
                let pair = (s.symbols[l].id, s.symbols[r].id);
                s.symbols[l].id = m.table.get(&pair).map_or(s.symbols[l].id, |&(_, id)| id);
            }
            let next = s.symbols[r].next;
            s.symbols[l].next = next;
            if next >= 0 {
                s.symbols[next as usize].prev = b.left;
            }
            let prev = s.symbols[l].prev;
            self.try_add(prev, b.left, s);
            self.try_add(b.left, next, s);
        }
        let mut i = 0i32;
        while i >= 0 {
            let sym = s.symbols[i as usize];
            if self.merges.is_some() {
                out.push(sym.id);
            } else {
                let bytes = &s.text[sym.start as usize..(sym.start + sym.len) as usize];
                self.emit(bytes, out);
            }
            i = sym.next;
        }
    }

    /// Hugging Face BPE's first symbols (its `merge_word`): each character as its token, else
    /// its bytes' fallback tokens (if the vocabulary has them), else the unknown token, one per
    /// run of such characters with `fuse_unk`; dropped if there is no unknown token.
    fn token_symbols(&self, norm: &str, symbols: &mut Vec<Symbol>) {
        let fuse_unk = self.merges.as_ref().is_some_and(|m| m.fuse_unk);
        let mut unk_open = false;
        let symbol = |id: u32, start: usize, len: usize| Symbol {
            prev: 0,
            next: 0,
            id,
            start: start as u32,
            len: len as u32,
        };
        for (start, c) in norm.char_indices() {
            let len = c.len_utf8();
            let bytes = &norm.as_bytes()[start..start + len];
            if let Some((id, _)) = self.piece(bytes) {
                symbols.push(symbol(id, start, len));
                unk_open = false;
            } else if let Some(ids) = &self.byte_ids {
                for (k, &b) in bytes.iter().enumerate() {
                    symbols.push(symbol(ids[b as usize], start + k, 1));
                }
                unk_open = false;
            } else if let Some(unk) = self.unk_id {
                match symbols.last_mut() {
                    Some(last) if unk_open && fuse_unk => last.len += len as u32,
                    _ => symbols.push(symbol(unk, start, len)),
                }
                unk_open = true;
            }
        }
    }

    #[inline]
    fn try_add(&self, left: i32, right: i32, s: &mut SpmScratch) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (s.symbols[left as usize], s.symbols[right as usize]);
        let size = l.len + r.len;
        if let Some(m) = &self.merges {
            if let Some(&(rank, _)) = m.table.get(&(l.id, r.id)) {
                // Ranks are below 2^24 (the vocabulary bounds them), so exact as f32.
                s.queue.push(Bigram {
                    score: -(rank as f32),
                    left,
                    right,
                    size,
                });
            }
            return;
        }
        let text = &s.text[l.start as usize..(l.start + size) as usize];
        if let Some((_, score)) = self.piece(text) {
            s.queue.push(Bigram {
                score,
                left,
                right,
                size,
            });
        }
    }

    /// The token of a final symbol, or its bytes' fallback tokens.
    #[inline]
    fn emit(&self, bytes: &[u8], out: &mut Vec<u32>) {
        if let Some((id, _)) = self.piece(bytes) {
            out.push(id);
            return;
        }
        match (&self.byte_ids, self.unk_id) {
            (Some(ids), _) => out.extend(bytes.iter().map(|&b| ids[b as usize])),
            (None, Some(unk)) => out.push(unk),
            (None, None) => {}
        }
    }
}

/// The byte of a byte-fallback piece `<0xNN>` (two hex digits, either case).
pub fn parse_byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The byte-fallback piece of a byte, as SentencePiece writes it (upper-case hex).
pub fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seven pieces with their scores, and byte fallback to ids 1000 + byte.
    fn tiny() -> Spm {
        let pieces: [(&str, u32, f32); 7] = [
            ("▁", 3, -1.0),
            ("a", 4, -2.0),
            ("b", 5, -2.0),
            ("ab", 6, -3.0),
            ("▁ab", 7, -4.0),
            ("ba", 8, -0.5),
            ("▁a", 9, -5.0),
        ];
        let bytes: [u32; 256] = std::array::from_fn(|b| 1000 + b as u32);
        Spm::new(
            pieces.iter().map(|(t, id, s)| (t.as_bytes(), *id, *s)),
            Some(bytes),
            None,
        )
    }

    fn enc(spm: &Spm, text: &str, prefix: bool) -> Vec<u32> {
        let mut out = Vec::new();
        spm.encode(text, prefix, &mut out, &mut SpmScratch::default());
        out
    }

    #[test]
    fn highest_scoring_bigram_merges_first() {
        let spm = tiny();
        // "▁aba": candidates ▁a (-5), ab (-3), ba (-0.5). "ba" wins: ▁ a ba; then ▁a (-5) is
        // the only pair left that forms a piece: ▁a ba.
        assert_eq!(enc(&spm, "aba", true), [9, 8]);
        // "ab" alone: ab (-3) merges; nothing more.
        assert_eq!(enc(&spm, "ab", false), [6]);
        // "▁ab": ▁a (-5) and ab (-3): ab first, then ▁ + ab = ▁ab (-4).
        assert_eq!(enc(&spm, " ab", false), [7]);
    }

    #[test]
    fn ties_merge_the_leftmost_pair() {
        let spm = Spm::new(
            [("x", 0, 0.0), ("xx", 1, -1.0)]
                .iter()
                .map(|(t, id, s)| (t.as_bytes(), *id, *s)),
            None,
            None,
        );
        // "xxx": both pairs score -1; the left one merges, leaving xx x.
        assert_eq!(enc(&spm, "xxx", false), [1, 0]);
    }

    #[test]
    fn characters_without_a_piece_fall_back_to_bytes_or_unk() {
        // "→" (E2 86 92) is no piece: its three bytes.
        assert_eq!(
            enc(&tiny(), "a→", false),
            [4, 1000 + 0xE2, 1000 + 0x86, 1000 + 0x92]
        );
        let no_bytes = Spm::new([("a".as_bytes(), 0, 0.0)], None, Some(7));
        assert_eq!(enc(&no_bytes, "ac", false), [0, 7]);
    }

    #[test]
    fn byte_pieces_parse_in_both_cases() {
        assert_eq!(parse_byte_piece("<0x0A>"), Some(10));
        assert_eq!(parse_byte_piece("<0xff>"), Some(255));
        assert_eq!(parse_byte_piece("<0x1>"), None);
        assert_eq!(parse_byte_piece("0x41"), None);
        assert_eq!(byte_piece(10), "<0x0A>");
    }
}
