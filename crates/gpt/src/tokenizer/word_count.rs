//! The first step of BPE training: a corpus -> a table of distinct pre-tokens ("words") and how
//! often each occurs. Training then works on this table only, so its memory is bounded by the
//! number of distinct pre-tokens, never by the size of the corpus.
//!
//! Files are streamed in chunks. A chunk boundary must not change the split, so after splitting
//! a chunk the pieces more text could still change are held back and re-split with the next
//! chunk: the last piece, and all of a whitespace run that reaches the chunk's end
//! ([`Pretokenizer::split_decided`]; in Llama 3's `\s*[\r\n]+` "\n " is two pieces but "\n \n"
//! one, so holding back only the last piece is not enough). Cutting at newlines would not be
//! exact: in GPT-2's pattern a run of whitespace such as " \n\n" crosses lines. A special token
//! cut by the boundary is held back the same way. The test `chunked_counts_equal_whole_text_counts`
//! checks all this against counting the whole text at once.
//!
//! The corpus must be UTF-8: the pre-tokenizer's classes (`\p{L}`, `\s`, ...) are defined on
//! characters, and [`super::Tokenizer::encode`] only takes text. An invalid byte is an error naming
//! the file and the byte offset, rather than a silent U+FFFD that would train tokens for bytes the
//! corpus does not contain.

use super::bpe::FxHashMap;
use super::special::{Segment, SpecialMatcher};
use super::Pretokenizer;
use crate::{Error, Result};
use std::io::Read;

/// Bytes read per step. Large enough that the held-back piece is a negligible re-scan.
const CHUNK_BYTES: usize = 1 << 20;

/// Counts pre-tokens over any number of texts and files.
pub struct WordCounter {
    pre: Pretokenizer,
    /// Special-token texts: cut out of the corpus before splitting and not counted (a corpus of
    /// documents joined by `<|endoftext|>` must not learn merges inside the separator).
    specials: SpecialMatcher,
    special_texts: Vec<String>,
    counts: FxHashMap<String, u64>,
}

impl WordCounter {
    pub fn new(pre: Pretokenizer, special_tokens: &[String]) -> WordCounter {
        WordCounter {
            pre,
            specials: SpecialMatcher::new(special_tokens.iter().map(|s| (s.as_str(), 0))),
            special_texts: special_tokens
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            counts: FxHashMap::default(),
        }
    }

    /// Counts the pre-tokens of a whole text.
    pub fn add_text(&mut self, text: &str) {
        let Self {
            pre,
            specials,
            counts,
            ..
        } = self;
        specials.split(text, |seg| {
            if let Segment::Text(t) = seg {
                pre.split(t, |piece| count(counts, piece));
            }
        });
    }

    /// Counts the pre-tokens of everything `reader` yields, in chunks. `name` names the source in
    /// errors; `progress` is called with the number of bytes read so far from this reader.
    pub fn add_reader(
        &mut self,
        name: &str,
        reader: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        self.add_reader_chunked(name, reader, CHUNK_BYTES, progress)
    }

    fn add_reader_chunked(
        &mut self,
        name: &str,
        mut reader: impl Read,
        chunk: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let chunk = chunk.max(1);
        // Bytes read but not yet counted: the held-back tail, then the new chunk.
        let mut pending: Vec<u8> = Vec::new();
        // Offset in the source of pending[0], for error messages.
        let mut pending_at: u64 = 0;
        let mut read_total: u64 = 0;
        loop {
            // Read at least as much as is pending, so a huge held-back piece (a file without
            // any split point) is re-scanned a logarithmic number of times, not once per chunk.
            let want = chunk.max(pending.len());
            let start = pending.len();
            pending.resize(start + want, 0);
            let n = read_full(&mut reader, &mut pending[start..])
                .map_err(|e| Error::Tokenizer(format!("{name}: cannot read: {e}")))?;
            pending.truncate(start + n);
            read_total += n as u64;
            let eof = n == 0;
            let valid = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                // A character cut by the chunk boundary: complete it with the next read.
                Err(e) if e.error_len().is_none() && !eof => e.valid_up_to(),
                Err(e) => {
                    return Err(Error::Tokenizer(format!(
                        "{name}: not UTF-8 at byte {}: BPE training reads text \
                         (convert the file to UTF-8 first)",
                        pending_at + e.valid_up_to() as u64
                    )))
                }
            };
            let text = std::str::from_utf8(&pending[..valid])
                .map_err(|e| Error::Tokenizer(format!("{name}: not UTF-8: {e}")))?;
            if eof {
                self.add_text(text);
                progress(read_total);
                return Ok(());
            }
            let done = self.add_all_but_tail(text);
            pending.drain(..done);
            pending_at += done as u64;
            progress(read_total);
        }
    }

    /// Counts the pieces of `text` that more text could not change, and returns where the rest
    /// (to be re-split with what follows) begins.
    fn add_all_but_tail(&mut self, text: &str) -> usize {
        let bytes = text.as_bytes();
        // A special token may begin in the last few bytes and end in the next chunk.
        let guard = self
            .special_texts
            .iter()
            .filter_map(|s| {
                (1..s.len().min(bytes.len() + 1))
                    .rev()
                    .find(|&k| bytes[bytes.len() - k..] == s.as_bytes()[..k])
                    .map(|k| bytes.len() - k)
            })
            .min()
            .unwrap_or(bytes.len());
        // `guard` is where a special token's first character would start, so a character
        // boundary; stepping back to one only guards the slice below.
        let guard = (0..=guard)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        let region = &text[..guard];
        let base = text.as_ptr() as usize;
        let Self {
            pre,
            specials,
            counts,
            ..
        } = self;
        let mut segments = Vec::new();
        specials.split(region, |seg| segments.push(seg));
        let mut tail = guard;
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.into_iter().enumerate() {
            let Segment::Text(t) = seg else { continue };
            if i < last {
                pre.split(t, |piece| count(counts, piece));
                continue;
            }
            // The last text: the pieces more text cannot change.
            let rest = pre.split_decided(t, |piece| count(counts, piece));
            tail = t.as_ptr() as usize - base + rest;
        }
        tail
    }

    /// The number of distinct pre-tokens so far.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The table: each distinct pre-token with its count.
    pub fn into_counts(self) -> FxHashMap<String, u64> {
        self.counts
    }
}

#[inline]
fn count(counts: &mut FxHashMap<String, u64>, piece: &str) {
    match counts.get_mut(piece) {
        Some(c) => *c += 1,
        None => {
            counts.insert(piece.to_owned(), 1);
        }
    }
}

/// Reads until `buf` is full or the reader is exhausted; retries interrupted reads.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(pre: Pretokenizer, specials: &[String], text: &str) -> FxHashMap<String, u64> {
        let mut c = WordCounter::new(pre, specials);
        c.add_text(text);
        c.into_counts()
    }

    fn chunked(
        pre: Pretokenizer,
        specials: &[String],
        text: &str,
        chunk: usize,
    ) -> FxHashMap<String, u64> {
        let mut c = WordCounter::new(pre, specials);
        c.add_reader_chunked("test", text.as_bytes(), chunk, &mut |_| {})
            .expect("valid UTF-8");
        c.into_counts()
    }

    #[test]
    fn whitespace_runs_across_lines_are_one_piece() {
        // GPT-2 splits "a \n\n b" as "a", " \n\n", " b": a cut at a newline would differ.
        let specials = [];
        let want = whole(Pretokenizer::Gpt2, &specials, "a \n\n b");
        assert_eq!(want.get(" \n\n"), Some(&1));
        for chunk in 1..8 {
            assert_eq!(
                chunked(Pretokenizer::Gpt2, &specials, "a \n\n b", chunk),
                want
            );
        }
    }

    #[test]
    fn special_tokens_are_not_counted_even_when_cut_by_a_chunk() {
        let specials = ["<|endoftext|>".to_string()];
        let text = "one<|endoftext|>two<|endoftext|><|endof";
        let want = whole(Pretokenizer::Gpt2, &specials, text);
        assert!(!want.contains_key("endoftext"));
        assert_eq!(want.get("<|"), Some(&1)); // the unfinished one is text
        for chunk in 1..20 {
            assert_eq!(chunked(Pretokenizer::Gpt2, &specials, text, chunk), want);
        }
    }

    #[test]
    fn invalid_utf8_names_the_source_and_offset() {
        let mut c = WordCounter::new(Pretokenizer::Gpt2, &[]);
        let err = c
            .add_reader_chunked("corpus.txt", &b"hello \xff world"[..], 4, &mut |_| {})
            .expect_err("invalid UTF-8");
        let msg = err.to_string();
        assert!(
            msg.contains("corpus.txt") && msg.contains("byte 6"),
            "{msg}"
        );
    }

    #[test]
    fn a_whitespace_run_cut_by_a_chunk_is_split_as_a_whole() {
        // Llama 3's `\s*[\r\n]+` makes "\n \n" one piece, though "\n " alone is "\n", " ".
        let specials = [];
        for pre in [Pretokenizer::Llama3, Pretokenizer::Qwen2] {
            let text = "a\n \n\t b";
            let want = whole(pre, &specials, text);
            assert_eq!(want.get("\n \n"), Some(&1), "{pre:?}");
            for chunk in 1..text.len() + 1 {
                assert_eq!(
                    chunked(pre, &specials, text, chunk),
                    want,
                    "{pre:?} {chunk}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn chunked_counts_equal_whole_text_counts(
            text in "([a-c1-3 \n\t'.,é€😀]|<\\|x\\|>|'s){0,120}",
            chunk in 1usize..16,
        ) {
            let specials = ["<|x|>".to_string()];
            for pre in [
                Pretokenizer::Gpt2,
                Pretokenizer::Smollm,
                Pretokenizer::Llama3,
                Pretokenizer::Qwen2,
            ] {
                prop_assert_eq!(
                    chunked(pre, &specials, &text, chunk),
                    whole(pre, &specials, &text)
                );
            }
        }
    }
}
