//! Incremental decoding for generation. One token is often part of a character (an emoji or a
//! CJK character can take two or three byte-level tokens), so printing each token's bytes as soon
//! as it arrives would show broken characters.

use super::Tokenizer;

/// The replacement character, emitted for bytes that can never become valid UTF-8.
const REPLACEMENT: char = '\u{FFFD}';

/// Turns a stream of ids into text without ever emitting a broken UTF-8 character: bytes of an
/// incomplete character are held back until the tokens that complete it arrive.
///
/// Invalid bytes become U+FFFD at once, by the same rule as [`String::from_utf8_lossy`] (one
/// U+FFFD per maximal invalid subsequence), so the concatenated output of `push`es and `finish`
/// equals [`Tokenizer::decode`] of all the ids, for any ids.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the text that is complete after `id`.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        if let Some(b) = tok.token_bytes(id) {
            self.pending.extend_from_slice(b);
        }
        self.drain(false)
    }

    /// Flushes what is left (invalid bytes as U+FFFD).
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Emits the longest prefix of the pending bytes that is complete: valid characters, and
    /// U+FFFD for invalid sequences. An incomplete character at the end is kept, unless
    /// `finish`ing.
    fn drain(&mut self, finish: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(REPLACEMENT);
                            rest = &after[bad..];
                        }
                        None if finish => {
                            out.push(REPLACEMENT);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let emitted = self.pending.len() - keep;
        self.pending.drain(..emitted);
        out
    }
}
