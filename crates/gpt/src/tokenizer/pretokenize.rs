//! Pre-tokenization: the split of text into pieces ("pre-tokens") that BPE then encodes one by one.
//! No merge ever crosses a piece boundary, so the split decides e.g. that " world" is one word with
//! its leading space and that "2024" becomes four tokens in SmolLM2.
//!
//! The split patterns are regular expressions in the reference implementations (OpenAI's
//! `encoder.py`, tiktoken, Hugging Face `tokenizers`, llama.cpp). They are written out by hand here:
//! each alternative of the pattern is one branch, tried in the pattern's order at the current
//! position, exactly as a backtracking regex engine would (leftmost alternative that matches wins,
//! each `+` greedy). This keeps the crate free of a regex engine with look-ahead support and is
//! several times faster than one. `\s` is Unicode `White_Space` (as in Rust's `char::is_whitespace`
//! and the `regex` crate), `\p{L}` and `\p{N}` are the Unicode general categories L* and N*.

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// The split pattern, named by GGUF's `tokenizer.ggml.pre` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pretokenizer {
    /// GPT-2:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// llama.cpp's `smollm` (also StarCoder, Refact, ...): every `\p{N}` character is a piece of
    /// its own, then the GPT-2 pattern splits each remaining fragment independently. This is what
    /// Hugging Face's `Digits(individual_digits=True)` followed by `ByteLevel` does.
    Smollm,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`. The case-insensitive contractions are
    /// ASCII-only, as in llama.cpp (which rewrites `(?i:'s)` to `'[sS]`).
    Llama3,
    /// Qwen2, Qwen2.5, Qwen3: the Llama 3 pattern with `\p{N}` (one digit per piece) in place
    /// of `\p{N}{1,3}`.
    Qwen2,
}

impl Pretokenizer {
    /// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name. Unknown names fall back to GPT-2
    /// with a warning: every byte-level BPE vocabulary still round-trips, only the split (and so
    /// some ids) may differ from the model's training.
    pub fn from_name(name: &str) -> Pretokenizer {
        match Self::known(name) {
            Some(p) => p,
            None => {
                tracing::warn!(
                    pre = name,
                    "unknown pre-tokenizer name; falling back to the GPT-2 split pattern"
                );
                Pretokenizer::Gpt2
            }
        }
    }

    /// The names [`Self::known`] accepts, for error messages.
    pub const SUPPORTED: &'static str = "gpt2 (gpt-2, phi-2, mpt, olmo, ...), smollm (starcoder, \
         refact, command-r, ...), llama-bpe (llama3, falcon3, pixtral, ...), qwen2 \
         (deepseek-r1-qwen, stablelm2, megrez, ...)";

    /// The pre-tokenizer for a name, if it is one this module implements. The groups follow
    /// llama.cpp's `llama-vocab.cpp`, which maps these names to the same patterns. Llama 3
    /// files say `llama-bpe`, SmolLM2 `smollm`, Qwen2/2.5/3 `qwen2`, Phi-2 `phi-2`; Mistral
    /// Nemo's `tekken` (a case-aware pattern) is not implemented.
    pub fn known(name: &str) -> Option<Pretokenizer> {
        Some(match name {
            "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion" | "jina-es"
            | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
            | "modern-bert" | "exaone4" | "granite-docling" => Pretokenizer::Gpt2,
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" | "minerva-7b" | "mellum2" => Pretokenizer::Smollm,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => Pretokenizer::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2"
            | "hunyuan" | "solar-open" => Pretokenizer::Qwen2,
            _ => return None,
        })
    }

    /// The GGUF `tokenizer.ggml.pre` name of the pattern, one llama.cpp's `llama-vocab.cpp`
    /// recognizes (it knows GPT-2's as `gpt-2`, not `gpt2`).
    pub fn name(&self) -> &'static str {
        match self {
            Pretokenizer::Gpt2 => "gpt-2",
            Pretokenizer::Smollm => "smollm",
            Pretokenizer::Llama3 => "llama-bpe",
            Pretokenizer::Qwen2 => "qwen2",
        }
    }

    /// Calls `f` on each piece of `text`, in order. The pieces concatenate to `text`.
    pub fn split<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) {
        match self {
            Pretokenizer::Gpt2 => split_gpt2(text, &mut f),
            Pretokenizer::Smollm => split_smollm(text, &mut f),
            Pretokenizer::Llama3 => split_llama3(text, LLAMA3_MAX_DIGITS, &mut f),
            Pretokenizer::Qwen2 => split_llama3(text, 1, &mut f),
        }
    }

    /// Splits `text`, a prefix of a longer text, as far as the rest cannot change: calls `f` on
    /// each piece that is also a piece of every longer text, in order, and returns the byte offset
    /// where the undecided rest begins (a piece boundary, so splitting from there on gives the
    /// longer text's remaining pieces; every split here restarts cleanly at a piece boundary, as
    /// it never looks behind).
    ///
    /// Held back: the last piece (a run it ends with may go on) and, if `text` ends in
    /// whitespace, every piece from the one holding the start of that whitespace run. A run that
    /// reaches the end is undecided as a whole: Llama 3's `\s*[\r\n]+` takes a run up to its last
    /// newline so far, so "\n " splits as "\n", " " but "\n \n" is one piece; in GPT-2's
    /// `\s+(?!\S)` the run's last character goes to the next piece only if a non-space follows.
    /// A piece that ends before the trailing run, or at a character that is not whitespace, was
    /// decided by characters that are all in `text`.
    pub fn split_decided<'a>(&self, text: &'a str, mut f: impl FnMut(&'a str)) -> usize {
        let open_from = text.trim_end_matches(|c| class(c) == Class::Space).len();
        // The last piece seen, and where it starts; it is emitted once a later one arrives.
        let mut last: Option<(&'a str, usize)> = None;
        let mut at = 0;
        let mut held_from = None;
        self.split(text, |piece| {
            if let Some((p, start)) = last.take() {
                if held_from.is_none() && start + p.len() <= open_from {
                    f(p);
                } else {
                    held_from.get_or_insert(start);
                }
            }
            last = Some((piece, at));
            at += piece.len();
        });
        match (held_from, last) {
            (Some(h), _) => h,
            (None, Some((_, start))) => start,
            (None, None) => 0,
        }
    }

    /// The pieces of `text` as a vector (for tests and inspection; encoding uses [`Self::split`]).
    pub fn pieces<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut v = Vec::new();
        self.split(text, |p| v.push(p));
        v
    }
}

/// The four character classes every pattern is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s`
    Space,
    /// `[^\s\p{L}\p{N}]`: punctuation, symbols, controls, marks, unassigned.
    Other,
}

/// Classes of the 128 ASCII characters, so the common case is one table load.
const ASCII_CLASS: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Number
        } else if matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
            Class::Space
        } else {
            Class::Other
        };
        i += 1;
    }
    t
};

#[inline]
fn class(c: char) -> Class {
    if c.is_ascii() {
        return ASCII_CLASS[c as usize];
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        Gc::UppercaseLetter
        | Gc::LowercaseLetter
        | Gc::TitlecaseLetter
        | Gc::ModifierLetter
        | Gc::OtherLetter => Class::Letter,
        Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// The character starting at byte `i` of `s` and its length in bytes (`i` is a char boundary).
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    let b = *s.as_bytes().get(i)?;
    if b < 0x80 {
        return Some((b as char, 1));
    }
    let c = s[i..].chars().next()?;
    Some((c, c.len_utf8()))
}

/// The end of the run of characters of class `cls` that starts at byte `i`.
#[inline]
fn run_end(s: &str, mut i: usize, cls: Class) -> usize {
    while let Some((c, l)) = char_at(s, i) {
        if class(c) != cls {
            break;
        }
        i += l;
    }
    i
}

/// A whitespace run starting at `i`: its end and the start of its last character.
#[inline]
fn space_run(s: &str, mut i: usize) -> (usize, usize) {
    let mut last = i;
    while let Some((c, l)) = char_at(s, i) {
        if class(c) != Class::Space {
            break;
        }
        last = i;
        i += l;
    }
    (i, last)
}

/// `\s+(?!\S)|\s+` at `i` (a whitespace character): the whole run if it ends the text; otherwise
/// the look-ahead makes `\s+` give back the run's last character (which then starts the next
/// piece, e.g. as the space of " word"), unless the run is one character long.
#[inline]
fn trailing_space_end(s: &str, i: usize) -> usize {
    let (end, last) = space_run(s, i);
    if end == s.len() || last == i {
        end
    } else {
        last
    }
}

/// Length after the apostrophe of a GPT-2 contraction (`'s|'t|'re|'ve|'m|'ll|'d`), if one starts
/// at `rest` (the bytes after the apostrophe).
#[inline]
fn contraction_len(rest: &[u8], ignore_case: bool) -> Option<usize> {
    let lower = |k: usize| {
        rest.get(k).map(|&b| {
            if ignore_case {
                b.to_ascii_lowercase()
            } else {
                b
            }
        })
    };
    match lower(0)? {
        b's' | b't' | b'm' | b'd' => Some(1),
        b'r' | b'v' if lower(1) == Some(b'e') => Some(2),
        b'l' if lower(1) == Some(b'l') => Some(2),
        _ => None,
    }
}

fn split_gpt2<'a>(text: &'a str, f: &mut impl FnMut(&'a str)) {
    let mut i = 0;
    while let Some((c, l)) = char_at(text, i) {
        let end = gpt2_piece_end(text, i, c, l);
        f(&text[i..end]);
        i = end;
    }
}

/// The end of the GPT-2 piece that starts with `c` (of `l` bytes) at byte `i`.
#[inline]
fn gpt2_piece_end(text: &str, i: usize, c: char, l: usize) -> usize {
    // 's|'t|'re|'ve|'m|'ll|'d
    if c == '\'' {
        if let Some(n) = contraction_len(&text.as_bytes()[i + 1..], false) {
            return i + 1 + n;
        }
    }
    let cls = class(c);
    if cls != Class::Space {
        // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
        return run_end(text, i + l, cls);
    }
    if c == ' ' {
        // " ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+": a space followed by any non-space character.
        if let Some((c2, l2)) = char_at(text, i + 1) {
            let cls2 = class(c2);
            if cls2 != Class::Space {
                return run_end(text, i + 1 + l2, cls2);
            }
        }
    }
    trailing_space_end(text, i)
}

fn split_smollm<'a>(text: &'a str, f: &mut impl FnMut(&'a str)) {
    let mut fragment = 0;
    for (i, c) in text.char_indices() {
        if class(c) == Class::Number {
            if i > fragment {
                split_gpt2(&text[fragment..i], f);
            }
            let end = i + c.len_utf8();
            f(&text[i..end]);
            fragment = end;
        }
    }
    if fragment < text.len() {
        split_gpt2(&text[fragment..], f);
    }
}

/// Llama 3's `\p{N}{1,3}`.
const LLAMA3_MAX_DIGITS: usize = 3;

/// The Llama 3 pattern with `\p{N}{1,max_digits}` (Qwen2 has 1).
fn split_llama3<'a>(text: &'a str, max_digits: usize, f: &mut impl FnMut(&'a str)) {
    let mut i = 0;
    while let Some((c, l)) = char_at(text, i) {
        let end = llama3_piece_end(text, i, c, l, max_digits);
        f(&text[i..end]);
        i = end;
    }
}

#[inline]
fn is_cr_lf(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// The end of the run of `\r` and `\n` starting at `i`.
#[inline]
fn cr_lf_run_end(s: &str, mut i: usize) -> usize {
    while matches!(s.as_bytes().get(i), Some(b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The end of the Llama 3 piece that starts with `c` (of `l` bytes) at byte `i`.
#[inline]
fn llama3_piece_end(text: &str, i: usize, c: char, l: usize, max_digits: usize) -> usize {
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if c == '\'' {
        if let Some(n) = contraction_len(&text.as_bytes()[i + 1..], true) {
            return i + 1 + n;
        }
    }
    let cls = class(c);
    let next = char_at(text, i + l);
    let next_cls = next.map(|(c2, _)| class(c2));
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if cls == Class::Letter {
        return run_end(text, i + l, Class::Letter);
    }
    if cls != Class::Number && !is_cr_lf(c) && next_cls == Some(Class::Letter) {
        return run_end(text, i + l, Class::Letter);
    }
    // \p{N}{1,3} (Qwen2: \p{N})
    if cls == Class::Number {
        let mut end = i + l;
        for _ in 1..max_digits {
            match char_at(text, end) {
                Some((c2, l2)) if class(c2) == Class::Number => end += l2,
                _ => break,
            }
        }
        return end;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if cls == Class::Other {
        return cr_lf_run_end(text, run_end(text, i + l, Class::Other));
    }
    if c == ' ' && next_cls == Some(Class::Other) {
        return cr_lf_run_end(text, run_end(text, i + l, Class::Other));
    }
    // \s*[\r\n]+ : greedy \s* backs off to the run's last \r or \n.
    let (run, _) = space_run(text, i);
    if let Some(k) = text.as_bytes()[i..run]
        .iter()
        .rposition(|&b| b == b'\r' || b == b'\n')
    {
        return i + k + 1;
    }
    // \s+(?!\S)|\s+
    trailing_space_end(text, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_keeps_the_last_space_of_a_run_for_the_next_word() {
        let p = Pretokenizer::Gpt2;
        assert_eq!(p.pieces("a   b"), ["a", "  ", " b"]);
        assert_eq!(p.pieces("a \nb"), ["a", " ", "\n", "b"]);
        assert_eq!(p.pieces("end  "), ["end", "  "]);
        assert_eq!(p.pieces("it's 'x"), ["it", "'s", " '", "x"]);
    }

    #[test]
    fn smollm_isolates_every_digit_before_the_gpt2_split() {
        let p = Pretokenizer::Smollm;
        assert_eq!(p.pieces("x  1"), ["x", "  ", "1"]);
        assert_eq!(p.pieces("  42  "), ["  ", "4", "2", "  "]);
    }

    #[test]
    fn llama3_groups_digits_in_threes_and_newlines_together() {
        let p = Pretokenizer::Llama3;
        assert_eq!(p.pieces("12345"), ["123", "45"]);
        assert_eq!(p.pieces("\n\n  hello"), ["\n\n", " ", " hello"]);
        assert_eq!(p.pieces("I'M (hi"), ["I", "'M", " (", "hi"]);
    }

    #[test]
    fn qwen2_is_llama3_with_one_digit_per_piece() {
        let p = Pretokenizer::Qwen2;
        assert_eq!(p.pieces("12345"), ["1", "2", "3", "4", "5"]);
        assert_eq!(p.pieces("\n\n  hello"), ["\n\n", " ", " hello"]);
        assert_eq!(p.pieces("x=42;"), ["x", "=", "4", "2", ";"]);
    }
}
