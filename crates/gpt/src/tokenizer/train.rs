//! Training a byte-level BPE: learn merges from a corpus, GPT-2 style.
//!
//! 1. [`WordCounter`] splits the corpus with the pre-tokenizer and counts each distinct piece.
//! 2. Every piece starts as its bytes, as ids of the 256 byte tokens. The byte tokens take ids
//!    0..255 in GPT-2's `encoder.json` order, which is the order of their characters in the
//!    byte-to-unicode alphabet (`!` is 0, `a` is 64, byte 0 `Ā` is 188, space `Ġ` is 220).
//! 3. Repeatedly merge the most frequent adjacent pair of tokens (counted over all pieces, weighted
//!    by piece count, overlapping occurrences included, as minbpe and Hugging Face count) into a
//!    new token with the next id, until the vocabulary has `vocab_size` tokens with the specials.
//! 4. The special tokens (default `<|endoftext|>`) take the last ids.
//!
//! **Ties**: among pairs with the same count, the pair with the smallest `(left id, right id)`
//! wins. This is Hugging Face's `BpeTrainer` rule, and since its byte alphabet gets the same ids
//! (sorted by character), the two learn the same merges on the same pieces.
//!
//! Each step is incremental, so training costs about the number of pair occurrences it changes,
//! not a rescan of all words per merge: pair -> count, pair -> the words it occurs in, and a
//! max-heap of (count, pair) whose stale entries are re-pushed with the current count when popped
//! (lazy invalidation, as Hugging Face does).
//!
//! Two rare cases keep the merge list clean: a merge whose result spells an existing token (the
//! pair `a`+`bc` after `ab`+`c`) gets that token's id, so the vocabulary does not grow; and a pair
//! merged before that reappears (next to such a token) is applied to the words again but not
//! listed twice, so every loader agrees on the ranks.

use super::bpe::FxHashMap;
use super::byte_level::{bytes_to_token_str, BYTE_TO_CHAR};
use super::io::GPT2_END_OF_TEXT;
use super::word_count::WordCounter;
use super::{Pretokenizer, Tokenizer, TokenizerSpec, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL};
use crate::{Error, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

/// The number of byte tokens every byte-level vocabulary starts with.
pub const BYTE_TOKENS: usize = 256;

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The final vocabulary size: 256 byte tokens + merges + special tokens.
    pub vocab_size: usize,
    /// The split pattern; no merge crosses a piece.
    pub pre: Pretokenizer,
    /// Special tokens, appended after the merges in this order. Their text in the corpus is cut
    /// out and not learned from.
    pub special_tokens: Vec<String>,
    /// Pairs seen fewer times than this are never merged (training may then stop short of
    /// `vocab_size`). 1 merges anything that occurs.
    pub min_frequency: u64,
}

impl TrainConfig {
    /// GPT-2's setup: its split pattern and `<|endoftext|>` as the one special token.
    pub fn gpt2(vocab_size: usize) -> TrainConfig {
        TrainConfig {
            vocab_size,
            pre: Pretokenizer::Gpt2,
            special_tokens: vec![GPT2_END_OF_TEXT.to_owned()],
            min_frequency: 1,
        }
    }
}

/// A trained tokenizer: the vocabulary and the merges in learned order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainedBpe {
    /// Token strings indexed by id: byte tokens and merged tokens in GPT-2's byte-to-unicode
    /// alphabet ("Ġthe"), then the special tokens as plain text.
    pub tokens: Vec<String>,
    /// The merges `(left id, right id)`; merge i has rank i.
    pub merges: Vec<(u32, u32)>,
    /// How many of the last tokens are special.
    pub num_special: usize,
    pub pre: Pretokenizer,
}

impl TrainedBpe {
    /// The merges as the files store them: "Ġt he".
    pub fn merge_strings(&self) -> Vec<String> {
        self.merges
            .iter()
            .map(|&(l, r)| format!("{} {}", self.tokens[l as usize], self.tokens[r as usize]))
            .collect()
    }

    /// The spec every loader builds from. `<|endoftext|>`, if among the special tokens, is BOS
    /// and EOS as in GPT-2 (but is not prepended: `add_bos` is false).
    pub fn spec(&self) -> TokenizerSpec {
        let first_special = self.tokens.len() - self.num_special;
        let token_types = (0..self.tokens.len())
            .map(|i| {
                if i >= first_special {
                    TOKEN_TYPE_CONTROL
                } else {
                    TOKEN_TYPE_NORMAL
                }
            })
            .collect();
        let eot = self.tokens[first_special..]
            .iter()
            .position(|t| t == GPT2_END_OF_TEXT)
            .map(|i| (first_special + i) as u32);
        TokenizerSpec {
            tokens: self.tokens.clone(),
            token_types: Some(token_types),
            merges: self.merge_strings(),
            pre: self.pre.name().into(),
            bos_id: eot,
            eos_id: eot,
            unk_id: None,
            pad_id: None,
            add_bos: false,
            ..Default::default()
        }
    }

    /// The tokenizer, ready to encode.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_spec(self.spec())
    }
}

/// Trains on the concatenation of `files` (each must be UTF-8). `progress(stage, done, total)`
/// reports stage "reading" in bytes and then "merging" in merges.
pub fn train(
    files: &[impl AsRef<Path>],
    config: &TrainConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<TrainedBpe> {
    check_config(config)?;
    let mut total = 0;
    for f in files {
        let f = f.as_ref();
        total += std::fs::metadata(f).map_err(|e| cannot_read(f, e))?.len();
    }
    let mut counter = WordCounter::new(config.pre, &config.special_tokens);
    let mut before = 0;
    for f in files {
        let f = f.as_ref();
        let file = std::fs::File::open(f).map_err(|e| cannot_read(f, e))?;
        let mut read = 0;
        counter.add_reader(&f.display().to_string(), file, &mut |n| {
            read = n;
            progress("reading", before + n, total)
        })?;
        before += read;
    }
    tracing::debug!(
        distinct_pieces = counter.len(),
        bytes = before,
        "counted pre-tokens"
    );
    train_from_counts(counter.into_counts(), config, progress)
}

fn cannot_read(path: &Path, e: std::io::Error) -> Error {
    Error::Tokenizer(format!("{}: cannot read: {e}", path.display()))
}

/// Trains on text in memory (tests, small corpora).
pub fn train_text(text: &str, config: &TrainConfig) -> Result<TrainedBpe> {
    check_config(config)?;
    let mut counter = WordCounter::new(config.pre, &config.special_tokens);
    counter.add_text(text);
    train_from_counts(counter.into_counts(), config, &mut |_, _, _| {})
}

fn check_config(config: &TrainConfig) -> Result<()> {
    let err = |m: String| Err(Error::Tokenizer(m));
    let min = BYTE_TOKENS + config.special_tokens.len();
    if config.vocab_size < min {
        return err(format!(
            "vocabulary size {} is too small: the 256 byte tokens and {} special tokens need {min}",
            config.vocab_size,
            config.special_tokens.len()
        ));
    }
    if config.vocab_size >= (u32::MAX / 2) as usize {
        return err(format!(
            "vocabulary size {} is too large",
            config.vocab_size
        ));
    }
    for (i, s) in config.special_tokens.iter().enumerate() {
        if s.is_empty() {
            return err("a special token is empty".into());
        }
        if config.special_tokens[..i].contains(s) {
            return err(format!("special token {s:?} is given twice"));
        }
    }
    Ok(())
}

#[inline]
fn key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

#[inline]
fn unkey(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// Learns the merges from a table of (pre-token, count).
pub fn train_from_counts(
    counts: FxHashMap<String, u64>,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<TrainedBpe> {
    check_config(config)?;
    let target = config.vocab_size - config.special_tokens.len();

    // Byte tokens in GPT-2's order: sorted by their alphabet character.
    let mut order: Vec<u8> = (0..=255).collect();
    order.sort_by_key(|&b| BYTE_TO_CHAR[b as usize]);
    let mut byte_id = [0u32; 256];
    for (id, &b) in order.iter().enumerate() {
        byte_id[b as usize] = id as u32;
    }
    let mut token_bytes: Vec<Vec<u8>> = order.iter().map(|&b| vec![b]).collect();
    let mut id_of: FxHashMap<Vec<u8>, u32> = token_bytes
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), i as u32))
        .collect();

    // Words (distinct pre-tokens) as token ids, with their counts. Order does not matter: the
    // counts are sums and ties are broken by pair ids.
    let mut words: Vec<Vec<u32>> = Vec::with_capacity(counts.len());
    let mut freq: Vec<u64> = Vec::with_capacity(counts.len());
    for (w, c) in counts {
        words.push(w.bytes().map(|b| byte_id[b as usize]).collect());
        freq.push(c);
    }

    let mut pair_count: FxHashMap<u64, u64> = FxHashMap::default();
    // May hold a word twice or a word that lost the pair; both are skipped when used.
    let mut pair_words: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (wi, w) in words.iter().enumerate() {
        for p in w.windows(2) {
            let k = key(p[0], p[1]);
            *pair_count.entry(k).or_default() += freq[wi];
            let list = pair_words.entry(k).or_default();
            if list.last() != Some(&(wi as u32)) {
                list.push(wi as u32);
            }
        }
    }
    // Max-heap on count, then the smallest pair.
    let mut heap: BinaryHeap<(u64, Reverse<u64>)> =
        pair_count.iter().map(|(&k, &c)| (c, Reverse(k))).collect();

    let mut merges: Vec<(u32, u32)> = Vec::new();
    let mut merged_pairs: FxHashMap<u64, u32> = FxHashMap::default();
    let mut delta: FxHashMap<u64, i64> = FxHashMap::default();
    let mut new_word: Vec<u32> = Vec::new();
    let total = (target - BYTE_TOKENS) as u64;
    let min_count = config.min_frequency.max(1);
    progress("merging", 0, total);

    while token_bytes.len() < target {
        let Some((count, Reverse(k))) = heap.pop() else {
            break;
        };
        let current = pair_count.get(&k).copied().unwrap_or(0);
        if current != count {
            if current > 0 {
                heap.push((current, Reverse(k)));
            }
            continue;
        }
        if count < min_count {
            break;
        }
        let (left, right) = unkey(k);
        let new_id = match merged_pairs.get(&k) {
            Some(&id) => id,
            None => {
                let mut bytes = token_bytes[left as usize].clone();
                bytes.extend_from_slice(&token_bytes[right as usize]);
                let id = match id_of.get(&bytes) {
                    Some(&id) => id,
                    None => {
                        let id = token_bytes.len() as u32;
                        id_of.insert(bytes.clone(), id);
                        token_bytes.push(bytes);
                        id
                    }
                };
                merged_pairs.insert(k, id);
                merges.push((left, right));
                id
            }
        };

        // Rewrite every word holding the pair; the pair counts change by (new pairs - old pairs).
        let mut holders = pair_words.remove(&k).unwrap_or_default();
        holders.sort_unstable();
        holders.dedup();
        delta.clear();
        for &wi in &holders {
            let w = &mut words[wi as usize];
            if !w.windows(2).any(|p| p[0] == left && p[1] == right) {
                continue;
            }
            let f = freq[wi as usize] as i64;
            for p in w.windows(2) {
                *delta.entry(key(p[0], p[1])).or_default() -= f;
            }
            new_word.clear();
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == left && w[i + 1] == right {
                    new_word.push(new_id);
                    i += 2;
                } else {
                    new_word.push(w[i]);
                    i += 1;
                }
            }
            std::mem::swap(w, &mut new_word);
            for p in w.windows(2) {
                let pk = key(p[0], p[1]);
                *delta.entry(pk).or_default() += f;
                // Only pairs with the new token are new to this word.
                if p[0] == new_id || p[1] == new_id {
                    pair_words.entry(pk).or_default().push(wi);
                }
            }
        }
        for (&pk, &d) in &delta {
            if d == 0 {
                continue;
            }
            let c = pair_count.entry(pk).or_default();
            *c = (*c as i64 + d).max(0) as u64;
            let c = *c;
            if c == 0 {
                pair_count.remove(&pk);
            } else if d > 0 {
                // Decreases are found when the stale entry is popped.
                heap.push((c, Reverse(pk)));
            }
        }
        let done = (token_bytes.len() - BYTE_TOKENS) as u64;
        if done.is_multiple_of(16) {
            progress("merging", done, total);
        }
    }
    progress("merging", total, total);
    if token_bytes.len() < target {
        tracing::warn!(
            learned = token_bytes.len(),
            wanted = target,
            "the corpus has no more pairs to merge; the vocabulary is smaller than asked"
        );
    }

    let mut tokens: Vec<String> = token_bytes.iter().map(|b| bytes_to_token_str(b)).collect();
    for s in &config.special_tokens {
        if tokens.contains(s) {
            return Err(Error::Tokenizer(format!(
                "special token {s:?} is spelled like a learned token; choose another text"
            )));
        }
        tokens.push(s.clone());
    }
    Ok(TrainedBpe {
        tokens,
        merges,
        num_special: config.special_tokens.len(),
        pre: config.pre,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2 ids of the letters: '!' is 0, so 'a' (0x61) is 0x61 - 0x21 = 64.
    const A: u32 = 64;
    const B: u32 = 65;
    const C: u32 = 66;
    const D: u32 = 67;

    /// minbpe's test of the Wikipedia example: "aaabdaaabac" with 3 merges is "XdXac" with
    /// Z = aa, Y = ab, X = ZY. Hand check: (a,a) occurs 4 times (overlaps count); then in
    /// "ZabdZabac" both (Z,a) and (a,b) occur twice and the tie goes to the smaller pair (a,b)
    /// since a < Z; then (Z,Y) occurs twice. (minbpe itself breaks the tie the other way, merging
    /// Za then (Za)b, and reaches the same ids.)
    #[test]
    fn wikipedia_example_learns_aa_ab_then_aaab() {
        let mut config = TrainConfig::gpt2(256 + 3 + 1);
        let bpe = train_text("aaabdaaabac", &config).expect("trains");
        assert_eq!(bpe.merges, [(A, A), (A, B), (256, 257)]);
        assert_eq!(bpe.merge_strings(), ["a a", "a b", "aa ab"]);
        assert_eq!(bpe.tokens[256..], ["aa", "ab", "aaab", "<|endoftext|>"]);
        let tok = bpe.tokenizer().expect("loads");
        assert_eq!(tok.encode("aaabdaaabac", false), [258, D, 258, A, C]);
        assert_eq!(tok.encode("<|endoftext|>", true), [259]);

        config.special_tokens.clear();
        let bpe = train_text("aaabdaaabac", &config).expect("trains");
        assert_eq!(bpe.tokens.len(), 256 + 4);
        assert_eq!(bpe.merges.len(), 4);
    }

    #[test]
    fn byte_tokens_take_gpt2_encoder_json_ids() {
        let bpe = train_text("", &TrainConfig::gpt2(257)).expect("trains");
        assert_eq!(bpe.tokens[0], "!");
        assert_eq!(bpe.tokens[A as usize], "a");
        assert_eq!(bpe.tokens[188], "Ā");
        assert_eq!(bpe.tokens[220], "Ġ");
        assert_eq!(bpe.tokens[255], "Ń");
        assert_eq!(bpe.tokens[256], "<|endoftext|>");
        assert!(bpe.merges.is_empty());
    }

    #[test]
    fn merges_never_cross_pieces() {
        // " a" and "a" are different pieces; "a a" would need a merge across them.
        let bpe = train_text("a a a a", &TrainConfig::gpt2(300)).expect("trains");
        assert_eq!(bpe.merge_strings(), ["Ġ a"]);
    }

    #[test]
    fn training_is_deterministic_and_round_trips() {
        let text = "the cat sat on the mat; the dog sat on the log. 1234 €€ 😀😀\n\n";
        let config = TrainConfig::gpt2(320);
        let a = train_text(text, &config).expect("trains");
        let b = train_text(text, &config).expect("trains");
        assert_eq!(a, b);
        let tok = a.tokenizer().expect("loads");
        let ids = tok.encode(text, false);
        assert_eq!(tok.decode(&ids), text);
        assert!(ids.len() < text.len() / 2, "{} ids", ids.len());
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(train_text("x", &TrainConfig::gpt2(256)).is_err());
        let mut c = TrainConfig::gpt2(300);
        c.special_tokens.push(String::new());
        assert!(train_text("x", &c).is_err());
        let mut c = TrainConfig::gpt2(300);
        c.special_tokens.push("<|endoftext|>".into());
        assert!(train_text("x", &c).is_err());
    }
}
