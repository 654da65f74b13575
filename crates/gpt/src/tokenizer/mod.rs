//! Tokenization: text -> token ids and back. Byte-level BPE (GPT-2 style), exactly as GPT-2's
//! `encoder.py`, Hugging Face `tokenizers`, tiktoken and llama.cpp do it.
//!
//! The pipeline, one file per step:
//! 1. [`special`]: with `allow_special`, special-token texts (`<|im_start|>`) are cut out first.
//! 2. [`pretokenize`]: the rest is split into pieces by the model's pattern (`gpt2`, `smollm`,
//!    `llama3`); no merge crosses a piece boundary.
//! 3. [`bpe`]: each piece's bytes are merged by rank into tokens. A piece that is itself a token
//!    (most words) is found by one hash lookup; a piece seen before in the same call is copied.
//!
//! Decoding maps ids back to bytes through [`byte_level`]'s alphabet; [`StreamDecoder`] does it
//! incrementally for generation. Files are read by [`io`] (GPT-2's `encoder.json` + `vocab.bpe`,
//! Hugging Face's `tokenizer.json`); GGUF vocabularies arrive as a [`TokenizerSpec`].
//!
//! Training ([`train`]) learns a new vocabulary from a corpus: [`word_count`] counts the
//! pre-tokens, [`train`] learns merges from the counts, and [`io`] writes `tokenizer.json` and
//! GPT-2's files that the loaders above read back.

pub mod bpe;
pub mod byte_level;
pub mod io;
pub mod pretokenize;
pub mod special;
mod stream;
pub mod train;
pub mod word_count;

pub use pretokenize::Pretokenizer;
pub use stream::StreamDecoder;
pub use train::{train, TrainConfig, TrainedBpe};

use crate::{Error, Result};
use bpe::{Bpe, FxHashMap, Merge, Scratch, NO_TOKEN};
use special::{Segment, SpecialMatcher};
use std::collections::HashMap;
use std::path::Path;

/// GGUF token type of control tokens (`<|im_start|>`): matched as special tokens.
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined (added) tokens: matched as special tokens too.
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Everything a byte-level BPE tokenizer is built from, whatever file it came from
/// (GGUF metadata, GPT-2's encoder.json + vocab.bpe, a tokenizer.json).
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    /// Token strings in GPT-2's byte-to-unicode alphabet (e.g. "Ġthe"), indexed by id.
    pub tokens: Vec<String>,
    /// GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte),
    /// if known. Control and user-defined tokens are matched as special tokens.
    pub token_types: Option<Vec<i32>>,
    /// Merge rules "a b" in priority order (rank 0 first).
    pub merges: Vec<String>,
    /// Pre-tokenizer name as in GGUF's `tokenizer.ggml.pre` ("gpt2", "smollm", "llama-bpe", ...).
    pub pre: String,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Whether a BOS id is prepended when encoding a prompt.
    pub add_bos: bool,
}

/// A byte-level BPE tokenizer. Immutable once built, so one instance can be shared by threads.
#[derive(Clone)]
pub struct Tokenizer {
    /// Vocabulary strings as stored, indexed by id.
    tokens: Vec<String>,
    /// The bytes of every token, concatenated: token i is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    token_to_id: HashMap<String, u32>,
    /// Per id: control or user-defined.
    special: Vec<bool>,
    specials: SpecialMatcher,
    bpe: Bpe,
    /// Pieces that BPE turns into exactly one token, with that token: the fast path for the
    /// common case (a whole word is a token), exact because it stores BPE's own result.
    whole: FxHashMap<Box<[u8]>, u32>,
    /// Some of the 256 byte tokens are missing: pieces may need [`NO_TOKEN`] fixed up.
    missing_bytes: bool,
    pre: Pretokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: bool,
}

/// Choices a file format makes beyond what [`TokenizerSpec`] says. Kept private: the builders
/// below are the public way in.
struct BuildOptions {
    /// Hugging Face's `ignore_merges` (llama.cpp sets it for Llama 3): a piece that is in the
    /// vocabulary becomes that token without running the merges, even where the merges would
    /// split it differently.
    ignore_merges: bool,
}

impl Tokenizer {
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer> {
        let pre = Pretokenizer::from_name(&spec.pre);
        let ignore_merges = pre == Pretokenizer::Llama3;
        Self::build(spec, pre, BuildOptions { ignore_merges })
    }

    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer> {
        Self::from_spec(io::gpt2_spec(encoder_json, vocab_bpe)?)
    }

    /// A Hugging Face `tokenizer.json` whose model is byte-level BPE (GPT-2, SmolLM2, Llama 3,
    /// Qwen-style files). Other model types (WordPiece, Unigram, ...) are an error.
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer> {
        let parsed = io::tokenizer_json_spec(path)?;
        Self::build(
            parsed.spec,
            parsed.pre,
            BuildOptions {
                ignore_merges: parsed.ignore_merges,
            },
        )
    }

    fn build(spec: TokenizerSpec, pre: Pretokenizer, opts: BuildOptions) -> Result<Tokenizer> {
        let err = |msg: String| Error::Tokenizer(msg);
        let n = spec.tokens.len();
        if n == 0 {
            return Err(err("the vocabulary is empty".into()));
        }
        // Two ids near u32::MAX are sentinels of the merge loop.
        if n >= (u32::MAX - 2) as usize {
            return Err(err(format!("the vocabulary has {n} tokens, too many")));
        }
        if let Some(types) = &spec.token_types {
            if types.len() != n {
                return Err(err(format!(
                    "{} token types for {n} tokens: the two lists must have the same length",
                    types.len()
                )));
            }
        }
        for (name, id) in [
            ("BOS", spec.bos_id),
            ("EOS", spec.eos_id),
            ("unknown", spec.unk_id),
            ("padding", spec.pad_id),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(err(format!(
                        "the {name} token id {id} is outside the vocabulary of {n} tokens"
                    )));
                }
            }
        }
        if spec.add_bos && spec.bos_id.is_none() {
            return Err(err("add_bos is set but there is no BOS token id".into()));
        }

        let special: Vec<bool> = match &spec.token_types {
            Some(types) => types
                .iter()
                .map(|&t| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
                .collect(),
            None => vec![false; n],
        };

        let mut token_to_id = HashMap::with_capacity(n);
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (id, t) in spec.tokens.iter().enumerate() {
            token_to_id.entry(t.clone()).or_insert(id as u32);
            if special[id] {
                // Special tokens are stored as plain text, not in the byte alphabet.
                bytes.extend_from_slice(t.as_bytes());
            } else {
                bytes.extend_from_slice(&byte_level::token_str_to_bytes(t));
            }
            offsets.push(bytes.len());
        }

        // Merges and the byte tokens only ever name ordinary tokens: a special token that
        // happens to be spelled like one must not take part in BPE.
        let mut normal_ids: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (id, t) in spec.tokens.iter().enumerate() {
            if !special[id] {
                normal_ids.entry(t.as_str()).or_insert(id as u32);
            }
        }
        let normal_id = |s: &str| normal_ids.get(s).copied();

        let mut byte_ids = [NO_TOKEN; 256];
        let mut missing = 0;
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            match normal_id(byte_level::BYTE_TO_CHAR[b].encode_utf8(&mut [0; 4])) {
                Some(id) => *slot = id,
                None => missing += 1,
            }
        }
        if missing > 0 {
            tracing::debug!(
                missing,
                "the vocabulary lacks some of the 256 byte tokens; such bytes encode as the \
                 unknown token, or are dropped if there is none"
            );
        }

        let mut merges = Vec::with_capacity(spec.merges.len());
        for (rank, line) in spec.merges.iter().enumerate() {
            let Some((l, r)) = line.split_once(' ') else {
                return Err(err(format!(
                    "merge {rank} {line:?}: expected two tokens separated by one space"
                )));
            };
            let find = |s: &str| {
                normal_id(s).ok_or_else(|| {
                    err(format!(
                        "merge {rank} {line:?}: token {s:?} is not in the vocabulary"
                    ))
                })
            };
            let left = find(l)?;
            let right = find(r)?;
            let merged = find(&format!("{l}{r}"))?;
            merges.push((
                (left, right),
                Merge {
                    rank: rank as u32,
                    id: merged,
                },
            ));
        }
        let bpe = Bpe::new(byte_ids, merges);

        let specials = SpecialMatcher::new(
            spec.tokens
                .iter()
                .enumerate()
                .filter(|(id, _)| special[*id])
                .map(|(id, t)| (t.as_str(), id as u32)),
        );

        let mut tok = Tokenizer {
            tokens: spec.tokens,
            bytes,
            offsets,
            token_to_id,
            special,
            specials,
            bpe,
            whole: FxHashMap::default(),
            missing_bytes: missing > 0,
            pre,
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            unk_id: spec.unk_id,
            add_bos: spec.add_bos,
        };
        tok.whole = tok.whole_token_pieces(opts.ignore_merges);
        Ok(tok)
    }

    /// The fast-path table: byte strings that encode to one token. With `ignore_merges` every
    /// ordinary token's bytes map to it (Hugging Face and llama.cpp semantics); otherwise only
    /// those whose merges actually produce the token, so the table never changes a result.
    fn whole_token_pieces(&self, ignore_merges: bool) -> FxHashMap<Box<[u8]>, u32> {
        let mut whole = FxHashMap::default();
        whole.reserve(self.tokens.len());
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for id in 0..self.tokens.len() as u32 {
            if self.special[id as usize] {
                continue;
            }
            let b = self.token_bytes(id).unwrap_or_default();
            if b.is_empty() || whole.contains_key(b) {
                continue;
            }
            if ignore_merges {
                whole.insert(b.into(), id);
                continue;
            }
            out.clear();
            self.bpe.encode_piece(b, &mut out, &mut scratch);
            if let [single] = out[..] {
                if single != NO_TOKEN {
                    whole.insert(b.into(), single);
                }
            }
        }
        whole
    }

    /// Encodes `text`. With `allow_special`, the text of a special token (e.g. `<|im_start|>`)
    /// becomes its id; without, it is encoded as ordinary text. Never adds BOS.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut enc = Encoder::new(self, text.len());
        if allow_special && !self.specials.is_empty() {
            self.specials.split(text, |seg| match seg {
                Segment::Text(t) => enc.text(t),
                Segment::Special(id) => enc.out.push(id),
            });
        } else {
            enc.text(text);
        }
        enc.out
    }

    /// The pre-tokenizer in use.
    pub fn pretokenizer(&self) -> Pretokenizer {
        self.pre
    }

    /// The exact bytes of a sequence of ids (special tokens as their text). Unknown ids are skipped.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(b) = self.token_bytes(id) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// [`Self::decode_bytes`] as a string, invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// The bytes one token stands for.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (start, end) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        Some(&self.bytes[start..end])
    }

    /// The vocabulary string of a token as stored (e.g. "Ġthe").
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }
}

/// A summary: the full vocabulary would print tens of thousands of entries.
impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field(
                "special_tokens",
                &self.special.iter().filter(|&&s| s).count(),
            )
            .field("pre", &self.pre)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// The state of one [`Tokenizer::encode`] call: the output, the merge loop's buffers and a cache
/// of the pieces already encoded in this text. The cache maps a piece (borrowed from the text, so
/// nothing is copied) to where its tokens already are in the output; repeated words in a long
/// text then cost one hash lookup. It lives for one call, so no lock is taken and memory is
/// returned when the call ends.
struct Encoder<'t, 'a> {
    tok: &'t Tokenizer,
    out: Vec<u32>,
    cache: FxHashMap<&'a [u8], (usize, usize)>,
    scratch: Scratch,
}

impl<'t, 'a> Encoder<'t, 'a> {
    fn new(tok: &'t Tokenizer, text_len: usize) -> Self {
        Encoder {
            tok,
            // GPT-2 averages ~4 bytes per token on English text.
            out: Vec::with_capacity(text_len / 4 + 1),
            cache: FxHashMap::default(),
            scratch: Scratch::default(),
        }
    }

    fn text(&mut self, text: &'a str) {
        let tok = self.tok;
        tok.pre.split(text, |piece| self.piece(piece.as_bytes()));
    }

    #[inline]
    fn piece(&mut self, piece: &'a [u8]) {
        if let Some(&id) = self.tok.whole.get(piece) {
            self.out.push(id);
            return;
        }
        if let Some(&(start, len)) = self.cache.get(piece) {
            self.out.extend_from_within(start..start + len);
            return;
        }
        let start = self.out.len();
        self.tok
            .bpe
            .encode_piece(piece, &mut self.out, &mut self.scratch);
        if self.tok.missing_bytes {
            self.fix_missing(start);
        }
        self.cache.insert(piece, (start, self.out.len() - start));
    }

    /// Bytes without a byte token become the unknown token, or vanish if there is none.
    #[cold]
    fn fix_missing(&mut self, start: usize) {
        let unk = self.tok.unk_id;
        let mut i = start;
        while i < self.out.len() {
            if self.out[i] == NO_TOKEN {
                match unk {
                    Some(u) => self.out[i] = u,
                    None => {
                        self.out.remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn gpt2() -> &'static Tokenizer {
        static TOK: OnceLock<Tokenizer> = OnceLock::new();
        TOK.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tokenizer");
            Tokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))
                .expect("GPT-2 fixture loads")
        })
    }

    fn both_loops(tok: &Tokenizer, piece: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let mut s = Scratch::default();
        let (mut simple, mut heap) = (Vec::new(), Vec::new());
        tok.bpe.merge_simple(piece, &mut simple, &mut s);
        tok.bpe.merge_heap(piece, &mut heap, &mut s);
        (simple, heap)
    }

    #[test]
    fn heap_loop_agrees_with_simple_loop_on_long_pathological_pieces() {
        let tok = gpt2();
        for piece in [
            "a".repeat(5000),
            " ".repeat(3000),
            "ab".repeat(2000),
            "tokenizerquickbrownfox".repeat(200),
            "🍕é".repeat(500),
        ] {
            let (simple, heap) = both_loops(tok, piece.as_bytes());
            assert_eq!(simple, heap, "{:?}...", &piece[..20]);
        }
    }

    proptest! {
        #[test]
        fn heap_loop_agrees_with_simple_loop(piece in "[a-e ]{0,200}|\\PC{0,80}") {
            let (simple, heap) = both_loops(gpt2(), piece.as_bytes());
            prop_assert_eq!(simple, heap);
        }

        /// The whole-token table and the per-call cache are shortcuts: they must give what the
        /// merge loop gives for every piece.
        #[test]
        fn shortcuts_agree_with_the_merge_loop(text in "[a-z A-Z0-9'.\n]{0,300}") {
            let tok = gpt2();
            let mut want = Vec::new();
            let mut s = Scratch::default();
            tok.pre.split(&text, |p| tok.bpe.merge_simple(p.as_bytes(), &mut want, &mut s));
            prop_assert_eq!(tok.encode(&text, false), want);
        }
    }
}
