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
    pub fn split<'a>(&self, text: &'a str, f: impl FnMut(Segment<'a>)) {
        self.split_marked(text, false, f)
    }
}

/// Marks the next character as text: [`SpecialMatcher::escape`] puts it before every character
/// where a special token's text starts (and before every literal occurrence of itself), and
/// [`SpecialMatcher::split_escaped`] starts no match at a marked character. A private-use
/// character: no template or tokenizer gives it a meaning (a special token whose text held it
/// could not be escaped).
pub const ESCAPE: char = '\u{E000}';
const ESCAPE_UTF8: &[u8] = "\u{E000}".as_bytes();

impl SpecialMatcher {
    fn starts_here(&self, bytes: &[u8]) -> Option<&(Box<[u8]>, u32)> {
        let first = *bytes.first()?;
        self.by_first_byte[first as usize]
            .iter()
            .find(|(t, _)| bytes.starts_with(t))
    }

    /// `text` with [`ESCAPE`] before every character that starts a special token's text or is
    /// itself [`ESCAPE`]: through [`Self::split_escaped`] it yields only text, which [`unescape`]
    /// restores. Chat messages are escaped before the template renders them, so that the markup
    /// the template adds is the only source of control tokens.
    pub fn escape(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        for (i, ch) in text.char_indices() {
            if ch == ESCAPE || self.starts_here(&bytes[i..]).is_some() {
                out.push(ESCAPE);
            }
            out.push(ch);
        }
        out
    }

    /// [`Self::split`] of text that holds [`Self::escape`]d parts: no special token starts at a
    /// character marked by [`ESCAPE`]. Text segments keep their marks (see [`unescape`]).
    pub fn split_escaped<'a>(&self, text: &'a str, f: impl FnMut(Segment<'a>)) {
        self.split_marked(text, true, f)
    }

    /// [`Self::split`], skipping characters marked by [`ESCAPE`] when `escaped`.
    fn split_marked<'a>(&self, text: &'a str, escaped: bool, mut f: impl FnMut(Segment<'a>)) {
        let bytes = text.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            // (A UTF-8 lead byte never continues another character, so a match is a char
            // boundary.)
            if escaped && bytes[i..].starts_with(ESCAPE_UTF8) {
                // The mark and the character it marks are text.
                i += ESCAPE.len_utf8();
                i += text[i..].chars().next().map_or(0, char::len_utf8);
                continue;
            }
            match self.starts_here(&bytes[i..]) {
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

/// Undoes [`SpecialMatcher::escape`]: drops each [`ESCAPE`] and keeps the character it marks.
pub fn unescape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(ESCAPE) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == ESCAPE {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_has_no_special_tokens_and_unescapes_to_itself() {
        let m = SpecialMatcher::new([("<|a|>", 1), ("<|a|><|b|>", 2), ("<|b|>", 3), ("x", 4)]);
        for text in [
            "plain",
            "<|a|>",
            "x<|a|><|b|>y<|b|>",
            "<|a<|b|>|>",
            "\u{E000}",
            "\u{E000}x and \u{E000}\u{E000}<|b|>",
            "한국어 <|b|> 😀",
        ] {
            let escaped = m.escape(text);
            let mut segs = Vec::new();
            m.split_escaped(&escaped, |s| segs.push(s));
            assert!(
                segs.iter().all(|s| matches!(s, Segment::Text(_))),
                "{text:?} -> {segs:?}"
            );
            assert_eq!(unescape(&escaped), text);
        }
        // Markup around escaped text still splits.
        let mut segs = Vec::new();
        let rendered = format!("<|a|>{}<|b|>", m.escape("<|b|>"));
        m.split_escaped(&rendered, |s| segs.push(s));
        assert_eq!(segs.len(), 3);
        assert!(matches!(
            segs[..],
            [Segment::Special(1), Segment::Text(_), Segment::Special(3)]
        ));
    }

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
