//! The tokenizer against reference ids and splits. Data-driven: every case in the fixture files
//! is run, so a new case is a new JSON entry, not new code.
//!
//! - `fixtures/gpt2-tokenizer/vectors.json`: ids agreed by Hugging Face `tokenizers`, tiktoken and
//!   OpenAI's `encoder.py` (see SOURCE.md there).
//! - `fixtures/smollm2/tokenizer_edge_cases.json`: llama.cpp's tokens for the `smollm` split.
//! - `fixtures/pretokenize/splits.json`: pieces from Python's `regex` module for each pattern.

use gpt::tokenizer::special::{Segment, SpecialMatcher};
use gpt::tokenizer::{Pretokenizer, StreamDecoder, Tokenizer, TokenizerSpec};
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read_json(rel: &str) -> Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn gpt2() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_gpt2_files(
            &fixture("gpt2-tokenizer/encoder.json"),
            &fixture("gpt2-tokenizer/vocab.bpe"),
        )
        .expect("GPT-2 fixture loads")
    })
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("a list of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// The report for one mismatching case: where the ids first differ, with tokens shown.
fn describe_mismatch(tok: &Tokenizer, text: &str, want: &[u32], got: &[u32]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let show = |ids: &[u32]| {
        ids.iter()
            .map(|&i| format!("{i}:{:?}", tok.token_str(i).unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "{text:?}\n  first difference at index {at}\n  want {}\n  got  {}",
        show(&want[at..want.len().min(at + 6)]),
        show(&got[at..got.len().min(at + 6)])
    )
}

#[test]
fn gpt2_vectors_match_reference_ids_and_round_trip() {
    let tok = gpt2();
    let cases = read_json("gpt2-tokenizer/vectors.json");
    let cases = cases.as_array().expect("a list of cases");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let want = ids_of(&case["ids"]);
        // The vectors are plain text: no special tokens unless a case says so.
        let allow_special = case["allow_special"].as_bool().unwrap_or(false);
        let got = tok.encode(text, allow_special);
        if got != want {
            failures.push(describe_mismatch(tok, text, &want, &got));
        }
        assert_eq!(tok.decode(&got), text, "decode(encode(x)) != x");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn gpt2_end_of_text_is_one_token_only_when_special_tokens_are_allowed() {
    let tok = gpt2();
    let text = "Hello<|endoftext|>World";
    assert_eq!(tok.token_to_id("<|endoftext|>"), Some(50256));
    assert!(tok.is_special(50256));
    assert_eq!(tok.eos_id(), Some(50256));
    let plain = tok.encode(text, false);
    assert!(!plain.contains(&50256));
    let special = tok.encode(text, true);
    let mut want = tok.encode("Hello", false);
    want.push(50256);
    want.extend(tok.encode("World", false));
    assert_eq!(special, want);
    assert_eq!(tok.decode(&special), text);
    assert_eq!(tok.decode(&plain), text);
}

#[test]
fn gpt2_tokens_and_bytes_agree_with_the_vocabulary() {
    let tok = gpt2();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.token_str(262), Some("Ġthe"));
    assert_eq!(tok.token_bytes(262), Some(&b" the"[..]));
    assert_eq!(tok.token_to_id("Ġthe"), Some(262));
    assert_eq!(tok.token_bytes(50256), Some(&b"<|endoftext|>"[..]));
    assert_eq!(tok.token_bytes(50257), None);
    assert!(!tok.add_bos());
}

/// The split of `text` by llama.cpp's `smollm` rule, with SmolLM2's control tokens cut out first
/// (as `encode(.., true)` does).
fn smollm_pieces(text: &str) -> Vec<&str> {
    let specials =
        SpecialMatcher::new([("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)]);
    let mut pieces = Vec::new();
    let mut at = 0;
    specials.split(text, |seg| match seg {
        Segment::Text(t) => {
            at += t.len();
            pieces.extend(Pretokenizer::Smollm.pieces(t));
        }
        Segment::Special(_) => {
            let len = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
                .iter()
                .find(|s| text[at..].starts_with(*s))
                .expect("a special token")
                .len();
            pieces.push(&text[at..at + len]);
            at += len;
        }
    });
    pieces
}

/// What is certain without SmolLM2's vocabulary: BPE never merges across a piece boundary, so
/// every boundary of our split must be a boundary between llama.cpp's tokens, and the tokens
/// must spell the text.
#[test]
fn smollm_split_boundaries_are_llama_cpp_token_boundaries() {
    let cases = read_json("smollm2/tokenizer_edge_cases.json");
    let cases = cases.as_array().expect("a list of cases");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let tokens: Vec<Vec<u8>> = case["tokens_llamacpp_smollm"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| {
                let t = t.as_str().expect("a token string");
                if t.starts_with("<|") {
                    t.as_bytes().to_vec()
                } else {
                    gpt::tokenizer::byte_level::token_str_to_bytes(t)
                }
            })
            .collect();
        assert_eq!(
            tokens.concat(),
            text.as_bytes(),
            "{text:?}: tokens do not spell the text"
        );
        let mut token_ends = std::collections::BTreeSet::new();
        let mut end = 0;
        for t in &tokens {
            end += t.len();
            token_ends.insert(end);
        }
        let pieces = smollm_pieces(text);
        let mut end = 0;
        for p in &pieces {
            end += p.len();
            assert!(
                token_ends.contains(&end),
                "{text:?}: our pieces {pieces:?} end at byte {end}, inside a llama.cpp token {:?}",
                case["tokens_llamacpp_smollm"]
            );
        }
        assert_eq!(end, text.len());
    }
}

/// Splits of random and hand-picked strings by Python's `regex` module (see the fixture README).
#[test]
fn pretokenizer_splits_match_python_regex() {
    let cases = read_json("pretokenize/splits.json");
    let cases = cases.as_array().expect("a list of cases");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        for (name, pre) in [
            ("gpt2", Pretokenizer::Gpt2),
            ("smollm", Pretokenizer::Smollm),
            ("llama3", Pretokenizer::Llama3),
        ] {
            let Some(want) = case.get(name) else { continue };
            let want: Vec<&str> = want
                .as_array()
                .expect("pieces")
                .iter()
                .map(|p| p.as_str().expect("a piece"))
                .collect();
            let got = pre.pieces(text);
            if got != want {
                failures.push(format!("{name} {text:?}\n  want {want:?}\n  got  {got:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} splits differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// minbpe's hand-checkable example: with merges aa->Z, ab->Y, ZY->X, "aaabdaaabac" becomes
/// "XdXac".
#[test]
fn minbpe_aaabdaaabac_merges_to_xdxac() {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|b| gpt::tokenizer::byte_level::bytes_to_token_str(&[b]))
        .collect();
    tokens.extend(["aa", "ab", "aaab"].map(String::from)); // Z = 256, Y = 257, X = 258
    let tok = Tokenizer::from_spec(TokenizerSpec {
        tokens,
        merges: vec!["a a".into(), "a b".into(), "aa ab".into()],
        pre: "gpt2".into(),
        ..Default::default()
    })
    .expect("valid spec");
    let ids = tok.encode("aaabdaaabac", false);
    assert_eq!(ids, [258, b'd' as u32, 258, b'a' as u32, b'c' as u32]);
    assert_eq!(tok.decode(&ids), "aaabdaaabac");
}

fn spec_error(spec: TokenizerSpec) -> String {
    match Tokenizer::from_spec(spec) {
        Ok(_) => panic!("the spec should be rejected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_specs_are_clear_errors() {
    let base = || TokenizerSpec {
        tokens: vec!["a".into(), "b".into(), "ab".into()],
        merges: vec!["a b".into()],
        pre: "gpt2".into(),
        ..Default::default()
    };
    assert!(Tokenizer::from_spec(base()).is_ok());
    assert!(spec_error(TokenizerSpec::default()).contains("empty"));
    let e = spec_error(TokenizerSpec {
        merges: vec!["a c".into()],
        ..base()
    });
    assert!(
        e.contains("\"c\"") && e.contains("not in the vocabulary"),
        "{e}"
    );
    let e = spec_error(TokenizerSpec {
        merges: vec!["b a".into()],
        ..base()
    });
    assert!(e.contains("\"ba\""), "{e}");
    let e = spec_error(TokenizerSpec {
        merges: vec!["ab".into()],
        ..base()
    });
    assert!(e.contains("merge 0"), "{e}");
    let e = spec_error(TokenizerSpec {
        token_types: Some(vec![1]),
        ..base()
    });
    assert!(e.contains("token types"), "{e}");
    let e = spec_error(TokenizerSpec {
        eos_id: Some(3),
        ..base()
    });
    assert!(e.contains("EOS"), "{e}");
}

#[test]
fn a_vocabulary_without_byte_tokens_still_encodes_without_panicking() {
    let tok = Tokenizer::from_spec(TokenizerSpec {
        tokens: vec!["<unk>".into(), "a".into(), "b".into(), "ab".into()],
        token_types: Some(vec![2, 1, 1, 1]),
        merges: vec!["a b".into()],
        pre: "gpt2".into(),
        unk_id: Some(0),
        ..Default::default()
    })
    .expect("valid spec");
    assert_eq!(tok.encode("abc", false), [3, 0]);
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("gpt-rs-tok-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

#[test]
fn bad_gpt2_files_are_errors_naming_the_file() {
    let enc = fixture("gpt2-tokenizer/encoder.json");
    let bpe = fixture("gpt2-tokenizer/vocab.bpe");
    let missing = fixture("gpt2-tokenizer/no-such-file.json");
    let e = Tokenizer::from_gpt2_files(&missing, &bpe).expect_err("error");
    assert!(e.to_string().contains("no-such-file.json"), "{e}");

    let bad_json = temp_file("bad-encoder.json", "{\"a\": ");
    let e = Tokenizer::from_gpt2_files(&bad_json, &bpe).expect_err("error");
    assert!(e.to_string().contains("bad-encoder.json"), "{e}");

    let holes = temp_file("holes-encoder.json", "{\"a\": 0, \"b\": 2}");
    let e = Tokenizer::from_gpt2_files(&holes, &bpe).expect_err("error");
    // 2 tokens must hold ids 0 and 1: id 2 leaves a hole.
    assert!(
        e.to_string().contains("holes-encoder.json") && e.to_string().contains("id 2"),
        "{e}"
    );

    let bad_merges = temp_file("bad-vocab.bpe", "#version: 0.2\nĠ t\nthree parts here\n");
    let e = Tokenizer::from_gpt2_files(&enc, &bad_merges).expect_err("error");
    assert!(
        e.to_string().contains("bad-vocab.bpe") && e.to_string().contains("line 3"),
        "{e}"
    );

    let unknown = temp_file("unknown-vocab.bpe", "#version: 0.2\nĠ t\nzzzz qqqq\n");
    let e = Tokenizer::from_gpt2_files(&enc, &unknown).expect_err("error");
    assert!(e.to_string().contains("zzzz"), "{e}");
    for p in [bad_json, holes, bad_merges, unknown] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn tokenizer_json_with_another_model_type_is_unsupported() {
    let path = temp_file(
        "wordpiece-tokenizer.json",
        r#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#,
    );
    let e = Tokenizer::from_tokenizer_json(&path).expect_err("error");
    assert!(
        e.to_string()
            .contains("unsupported tokenizer.json model type WordPiece"),
        "{e}"
    );
    let _ = std::fs::remove_file(path);
}

/// GPT-2's files rewritten as a Hugging Face tokenizer.json give the same ids.
#[test]
fn tokenizer_json_of_gpt2_matches_the_original_files() {
    let vocab: Value = read_json("gpt2-tokenizer/encoder.json");
    let merges: Vec<String> = std::fs::read_to_string(fixture("gpt2-tokenizer/vocab.bpe"))
        .expect("vocab.bpe")
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    let json = serde_json::json!({
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "model": {"type": "BPE", "vocab": vocab, "merges": merges},
    });
    let path = temp_file("gpt2-tokenizer.json", &json.to_string());
    let tok = Tokenizer::from_tokenizer_json(&path).expect("loads");
    let _ = std::fs::remove_file(path);
    let text = "Hello world<|endoftext|> it's 2024!\n\n  x";
    assert_eq!(tok.encode(text, true), gpt2().encode(text, true));
    assert!(tok.is_special(50256));
}

#[test]
fn pathological_inputs_encode_and_round_trip() {
    let tok = gpt2();
    // One 1 MB piece: letters only, no whitespace, varied so many merges apply.
    let words = ["token", "izer", "quick", "brown", "fox", "zebra", "qu", "x"];
    let mut long = String::with_capacity(1 << 20);
    let mut i = 0usize;
    while long.len() < (1 << 20) {
        long.push_str(words[i % words.len()]);
        i = i.wrapping_mul(31).wrapping_add(7) % 1009;
    }
    let ids = tok.encode(&long, false);
    assert!(ids.len() < long.len() / 2);
    assert_eq!(tok.decode_bytes(&ids), long.as_bytes());

    for unit in ["a", " ", "1", "é", "🍕", "\n"] {
        let text = unit.repeat(100_000);
        let ids = tok.encode(&text, false);
        assert_eq!(
            tok.decode_bytes(&ids),
            text.as_bytes(),
            "{unit:?} x 100,000"
        );
    }
}

#[test]
fn stream_decoder_holds_back_incomplete_characters() {
    let tok = gpt2();
    // "🍕" is 4 bytes; GPT-2 spells it with byte tokens, so the first pushes emit nothing.
    let text = "a🍕b";
    let ids = tok.encode(text, false);
    let mut stream = StreamDecoder::new();
    let parts: Vec<String> = ids.iter().map(|&id| stream.push(tok, id)).collect();
    assert!(parts.iter().all(|p| !p.contains('\u{FFFD}')), "{parts:?}");
    assert_eq!(parts.concat() + &stream.finish(), text);

    // A lone lead byte followed by an ASCII token can never be completed: U+FFFD, then go on.
    let lead = tok.token_to_id("ð").expect("byte 0xF0"); // 0xF0: lead byte of a 4-byte char
    let a = tok.token_to_id("a").expect("a");
    let mut stream = StreamDecoder::new();
    assert_eq!(stream.push(tok, lead), "");
    assert_eq!(stream.push(tok, a), "\u{FFFD}a");
    assert_eq!(stream.push(tok, lead), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
}

/// Strings built from fragments that stress the splitter and the special-token matcher.
fn tricky_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ]{0,12}",
        Just("<|endoftext|>".to_string()),
        Just("<|".to_string()),
        Just("endoftext".to_string()),
        Just("|>".to_string()),
        Just("'s".to_string()),
        Just("  ".to_string()),
        Just("\r\n".to_string()),
        Just("\u{a0}".to_string()),
        Just("의미".to_string()),
        Just("🍕".to_string()),
    ];
    prop::collection::vec(fragment, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_inverts_encode(text in tricky_text(), allow_special: bool) {
        let tok = gpt2();
        let ids = tok.encode(&text, allow_special);
        prop_assert_eq!(tok.decode_bytes(&ids), text.as_bytes());
        if !allow_special {
            prop_assert!(!ids.contains(&50256));
        }
    }

    #[test]
    fn every_pretokenizer_covers_the_text(text in tricky_text()) {
        for pre in [Pretokenizer::Gpt2, Pretokenizer::Smollm, Pretokenizer::Llama3] {
            let pieces = pre.pieces(&text);
            prop_assert!(pieces.iter().all(|p| !p.is_empty()));
            prop_assert_eq!(pieces.concat(), text.clone());
        }
    }

    #[test]
    fn decoding_arbitrary_ids_never_panics(ids in prop::collection::vec(0u32..60_000, 0..64)) {
        let tok = gpt2();
        let text = tok.decode(&ids);
        // The stream gives the same text, token by token.
        let mut stream = StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.push(tok, id));
        }
        streamed.push_str(&stream.finish());
        prop_assert_eq!(streamed, text);
    }

    #[test]
    fn stream_of_valid_text_never_emits_a_replacement(text in tricky_text()) {
        let tok = gpt2();
        let ids = tok.encode(&text, true);
        let mut stream = StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            let part = stream.push(tok, id);
            let replacements = |s: &str| s.matches(char::REPLACEMENT_CHARACTER).count();
            prop_assert!(replacements(&part) <= replacements(&text));
            streamed.push_str(&part);
        }
        prop_assert_eq!(stream.finish(), "");
        prop_assert_eq!(streamed, text);
    }
}
