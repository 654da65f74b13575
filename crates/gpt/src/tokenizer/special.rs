//! Special tokens in text: `<|im_start|>` typed by the chat template must become one id, while
//! the same characters in user input must not (or a user could forge a turn). So they are matched
//! only on request, before pre-tokenization, and the text between them is encoded as usual.

/// The texts of the special tokens, indexed by their first byte for a cheap scan.
#[derive(Debug, Clone, Default)]
pub struct SpecialMatcher {
    /// For each first byte, the `(text, id)` of the special tokens starting with it, longest first.
    by_first_byte: Vec<Vec<(Box<[u8]>, u32)>>,
    any: bool,
}

/// A part of the text: ordinary text, or one special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Special(u32),
}

impl SpecialMatcher {
    /// `specials` are `(text, id)`; empty texts are ignored (they would match everywhere). If two
    /// ids share a text, the first listed wins.
    pub fn new<'s>(specials: impl IntoIterator<Item = (&'s str, u32)>) -> SpecialMatcher {
        let mut by_first_byte: Vec<Vec<(Box<[u8]>, u32)>> = vec![Vec::new(); 256];
        let mut any = false;
        for (text, id) in specials {
            let bytes = text.as_bytes();
            let Some(&first) = bytes.first() else {
                continue;
            };
            let bucket = &mut by_first_byte[first as usize];
            if bucket.iter().all(|(t, _)| &**t != bytes) {
                bucket.push((bytes.into(), id));
                any = true;
            }
        }
        for bucket in &mut by_first_byte {
            // Stable sort: equal lengths keep their listed order.
            bucket.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        }
        SpecialMatcher { by_first_byte, any }
    }

    pub fn is_empty(&self) -> bool {
        !self.any
    }

    /// Calls `f` on the segments of `text` in order: the leftmost special token, the longest if
    /// several start there (as Hugging Face's and tiktoken's matchers do), and the text between.
    pub fn split<'a>(&self, text: &'a str, mut f: impl FnMut(Segment<'a>)) {
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let found = self.by_first_byte[bytes[i] as usize]
                .iter()
                .find(|(t, _)| bytes[i..].starts_with(t));
            match found {
                Some((t, id)) => {
                    if i > start {
                        f(Segment::Text(&text[start..i]));
                    }
                    f(Segment::Special(*id));
                    i += t.len();
                    start = i;
                }
                None => i += 1,
            }
        }
        if start < bytes.len() {
            f(Segment::Text(&text[start..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_special_wins_at_the_leftmost_position() {
        let m = SpecialMatcher::new([("<|a|>", 1), ("<|a|><|b|>", 2), ("<|b|>", 3)]);
        let mut segs = Vec::new();
        m.split("x<|a|><|b|>y<|b|>", |s| segs.push(s));
        assert_eq!(
            segs,
            [
                Segment::Text("x"),
                Segment::Special(2),
                Segment::Text("y"),
                Segment::Special(3)
            ]
        );
    }
}
