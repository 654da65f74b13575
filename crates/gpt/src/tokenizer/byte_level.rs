//! GPT-2's byte-to-unicode alphabet. Byte-level BPE works on bytes, but vocabularies are stored
//! as strings, so OpenAI's `encoder.py` gave each of the 256 bytes a printable character: the 188
//! printable bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves and the other 68, in
//! increasing byte order, take U+0100, U+0101, ... (so a space is `Ġ` U+0120, `\n` is `Ċ`).
//! Every byte-level vocabulary (GPT-2, SmolLM2, Llama 3, ...) stores its tokens in this alphabet.

/// Whether byte `b` stands for itself in the alphabet.
const fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character for each byte.
pub const BYTE_TO_CHAR: [char; 256] = {
    let mut t = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0;
    while b < 256 {
        if is_printable(b as u8) {
            t[b] = b as u8 as char;
        } else {
            t[b] = match char::from_u32(next) {
                Some(c) => c,
                None => panic!("unreachable: U+0100..U+0143 are chars"),
            };
            next += 1;
        }
        b += 1;
    }
    t
};

/// The highest code point used by the alphabet: 0x100 + 68 - 1.
const MAX_CHAR: usize = 0x143;

/// The byte for each character of the alphabet, `None` for characters outside it.
const CHAR_TO_BYTE: [Option<u8>; MAX_CHAR + 1] = {
    let mut t = [None; MAX_CHAR + 1];
    let mut b = 0;
    while b < 256 {
        t[BYTE_TO_CHAR[b] as usize] = Some(b as u8);
        b += 1;
    }
    t
};

/// The byte a character of the alphabet stands for.
#[inline]
pub fn char_to_byte(c: char) -> Option<u8> {
    CHAR_TO_BYTE.get(c as usize).copied().flatten()
}

/// The bytes a vocabulary string stands for. A character outside the alphabet (which a
/// well-formed byte-level vocabulary never has in a normal token) is kept as its own UTF-8 bytes,
/// so decoding stays total.
pub fn token_str_to_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// The vocabulary string for bytes (e.g. b" the" -> "Ġthe").
pub fn bytes_to_token_str(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| BYTE_TO_CHAR[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_gpt2_encoder_py() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[0], '\u{100}');
        assert_eq!(BYTE_TO_CHAR[0xAD], '\u{143}');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(BYTE_TO_CHAR[b as usize]), Some(b));
        }
        assert_eq!(token_str_to_bytes("Ġthe"), b" the");
        assert_eq!(bytes_to_token_str(b" the\n"), "ĠtheĊ");
    }
}
