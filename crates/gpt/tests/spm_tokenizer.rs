//! The SentencePiece-style tokenizer on vocabularies built in code: a hand-checkable example,
//! control-token safety, and malformed GGUF metadata as clear errors (never a panic).

use gpt::formats::gguf::{GgufFile, GgufWriter, Value};
use gpt::tensor::Bytes;
use gpt::tokenizer::{Tokenizer, TokenizerModel, TokenizerSpec, TOKEN_TYPE_BYTE};

const FILE: &str = "spm-synthetic.gguf";

/// Ten pieces a reader can run by hand (ids 0-9), then the 256 byte pieces `<0x00>`.. (10-265).
/// Scores: higher merges first.
fn tiny_pieces() -> Vec<(&'static str, i32, f32)> {
    vec![
        ("<unk>", 2, 0.0),
        ("<s>", 3, 0.0),
        ("</s>", 3, 0.0),
        ("▁", 1, -1.0),
        ("a", 1, -2.0),
        ("b", 1, -2.0),
        ("ab", 1, -3.0),
        ("▁ab", 1, -4.0),
        ("ba", 1, -0.5),
        ("<ctl>", 3, 0.0),
    ]
}

fn tiny_spec(add_space_prefix: bool) -> TokenizerSpec {
    let mut tokens: Vec<String> = tiny_pieces().iter().map(|p| p.0.to_string()).collect();
    let mut types: Vec<i32> = tiny_pieces().iter().map(|p| p.1).collect();
    let mut scores: Vec<f32> = tiny_pieces().iter().map(|p| p.2).collect();
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TOKEN_TYPE_BYTE);
        scores.push(0.0);
    }
    TokenizerSpec {
        model: TokenizerModel::SentencePiece,
        tokens,
        token_types: Some(types),
        scores: Some(scores),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
        add_space_prefix,
        ..Default::default()
    }
}

const BYTE0: u32 = 10;

#[test]
fn tiny_vocabulary_merges_by_score_by_hand() {
    let tok = Tokenizer::from_spec(tiny_spec(true)).unwrap();
    // "aba" -> "▁aba": pairs ▁a (no piece), ab (-3), ba (-0.5): ba merges, then nothing pairs
    // with ▁ or a to a piece: ▁ a ba.
    assert_eq!(tok.encode("aba", false), [3, 4, 8]);
    // "ab" -> "▁ab": ab (-3) first, then ▁ + ab = ▁ab (-4).
    assert_eq!(tok.encode("ab", false), [7]);
    assert_eq!(tok.encode_for_model("ab", false), [1, 7]);
    // 'c' is no piece: its byte 0x63.
    assert_eq!(tok.encode("c", false), [3, BYTE0 + 0x63]);
    // "é" is two bytes, each its byte piece; decoding reassembles the character.
    let ids = tok.encode("é", false);
    assert_eq!(ids, [3, BYTE0 + 0xC3, BYTE0 + 0xA9]);
    assert_eq!(tok.decode(&ids), " é");
    assert_eq!(tok.decode_text(&[1, 7], false), "ab");
    let mut stream = gpt::tokenizer::StreamDecoder::new();
    assert_eq!(stream.push(&tok, BYTE0 + 0xC3), "");
    assert_eq!(stream.push(&tok, BYTE0 + 0xA9), "é");
}

#[test]
fn without_space_prefix_the_text_starts_as_typed() {
    let tok = Tokenizer::from_spec(tiny_spec(false)).unwrap();
    assert_eq!(tok.encode("ab", false), [6]);
    assert_eq!(tok.encode("ab ab", false), [6, 7]);
    assert_eq!(tok.decode_text(&[6, 7], false), "ab ab");
}

#[test]
fn control_text_is_text_unless_special_tokens_are_allowed() {
    let tok = Tokenizer::from_spec(tiny_spec(false)).unwrap();
    let plain = tok.encode("<ctl>ab", false);
    assert!(!plain.contains(&9), "{plain:?}");
    assert_eq!(tok.decode(&plain), "<ctl>ab");
    assert_eq!(tok.encode("<ctl>ab", true), [9, 6]);
    // Byte pieces typed as text stay text too.
    assert!(!tok.encode("<0x41>", false).contains(&(BYTE0 + 0x41)));
}

/// A GGUF file with these `tokenizer.ggml.*` keys and no tensors.
fn gguf(keys: Vec<(&str, Value)>) -> gpt::Result<Tokenizer> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in keys {
        w.add_metadata(k, v);
    }
    let g = GgufFile::metadata_from_bytes(FILE, Bytes::from_vec(w.to_bytes().unwrap()))?;
    Tokenizer::from_gguf(&g)
}

fn tiny_keys() -> Vec<(&'static str, Value)> {
    let spec = tiny_spec(true);
    vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(spec.tokens.iter().cloned().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(spec.scores.unwrap().into_iter().map(Value::F32).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(
                spec.token_types
                    .unwrap()
                    .into_iter()
                    .map(Value::I32)
                    .collect(),
            ),
        ),
    ]
}

fn with(key: &str, v: Value) -> Vec<(&'static str, Value)> {
    let mut keys = tiny_keys();
    for kv in &mut keys {
        if kv.0 == key {
            kv.1 = v.clone();
        }
    }
    keys
}

fn err(keys: Vec<(&str, Value)>) -> String {
    match gguf(keys) {
        Ok(t) => panic!("expected an error, got {t:?}"),
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains(FILE), "does not name the file: {m}");
            m
        }
    }
}

#[test]
fn gguf_metadata_builds_the_same_tokenizer_with_llama_cpp_defaults() {
    let tok = gguf(tiny_keys()).unwrap();
    // Absent keys: BOS 1, add_bos_token and add_space_prefix true (llama.cpp's defaults).
    assert_eq!(tok.encode_for_model("ab", false), [1, 7]);
}

#[test]
fn malformed_gguf_tokenizer_metadata_names_the_field_and_file() {
    let short_scores = Value::Array(vec![Value::F32(0.0); 3]);
    let m = err(with("tokenizer.ggml.scores", short_scores));
    assert!(
        m.contains("tokenizer.ggml.scores") && m.contains("3 scores"),
        "{m}"
    );

    let mut types = vec![Value::I32(1); 266];
    types[4] = Value::I32(9);
    let m = err(with("tokenizer.ggml.token_type", Value::Array(types)));
    assert!(
        m.contains("tokenizer.ggml.token_type") && m.contains("element 4"),
        "{m}"
    );

    // Byte fallback without the piece for byte 0x41.
    let mut keys = tiny_keys();
    if let Value::Array(t) = &mut keys[1].1 {
        t[BYTE0 as usize + 0x41] = Value::String("<0x41-gone>".into());
    }
    let m = err(keys);
    assert!(
        m.contains("tokenizer.ggml.tokens") && m.contains("<0x41>"),
        "{m}"
    );

    let m = err(with("tokenizer.ggml.model", Value::String("t5x".into())));
    assert!(
        m.contains("tokenizer.ggml.model") && m.contains("t5x"),
        "{m}"
    );

    let mut keys = with("tokenizer.ggml.model", Value::String("gpt2".into()));
    keys.push(("tokenizer.ggml.pre", Value::String("nonesuch".into())));
    keys.push(("tokenizer.ggml.merges", Value::Array(vec![])));
    let m = err(keys);
    assert!(
        m.contains("tokenizer.ggml.pre") && m.contains("nonesuch"),
        "{m}"
    );

    let mut keys = tiny_keys();
    keys.push(("tokenizer.ggml.bos_token_id", Value::U32(1_000_000)));
    let m = err(keys);
    assert!(m.contains("tokenizer.ggml.bos_token_id"), "{m}");
}

#[test]
fn a_huge_claimed_token_count_is_an_error_not_an_allocation() {
    // A hand-made file: the tokens array claims 2^60 strings in a few bytes.
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    let key = "tokenizer.ggml.tokens";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&9u32.to_le_bytes()); // array
    b.extend_from_slice(&8u32.to_le_bytes()); // of strings
    b.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let e = GgufFile::metadata_from_bytes(FILE, Bytes::from_vec(b)).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(FILE) && m.contains("tokenizer.ggml.tokens"),
        "{m}"
    );
}
