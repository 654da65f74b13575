//! SentencePiece-style `tokenizer.json` files against Hugging Face `tokenizers`: every
//! `fixtures/spm-hf/*.json` names a tokenizer and lists, for each test string, the ids
//! `tokenizers` gives without and with its post-processor's special tokens, and its decodings
//! (made by `scripts/make_spm_hf_fixtures.sh`). Hugging Face always matches added tokens in text,
//! so ours are compared with `allow_special`.
//!
//! Where a file also names the GGUF that llama.cpp's converter made from the same folder, the
//! GGUF's tokenizer must give the same ids for plain text (see [`gguf_agrees`]).

use gpt::formats::gguf::GgufFile;
use gpt::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Case {
    text: String,
    ids: Vec<u32>,
    ids_with_special: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids are a list")
        .iter()
        .map(|i| i.as_u64().expect("an id") as u32)
        .collect()
}

fn cases(doc: &Value) -> Vec<Case> {
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_owned(),
            ids: ids(&c["ids"]),
            ids_with_special: ids(&c["ids_with_special"]),
            decoded: c["decoded"].as_str().expect("decoded").to_owned(),
            decoded_skip_special: c["decoded_skip_special"]
                .as_str()
                .expect("decoded_skip_special")
                .to_owned(),
        })
        .collect()
}

/// Every case file, sorted by name.
fn case_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("spm-hf"))
        .expect("fixtures/spm-hf exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in fixtures/spm-hf");
    files
}

fn short(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    format!("{t:?}")
}

/// Compares one value per case and collects the differences, so one run shows every failure.
fn check<T: PartialEq + std::fmt::Debug>(
    failures: &mut Vec<String>,
    file: &str,
    what: &str,
    text: &str,
    ours: T,
    want: T,
) {
    if ours != want {
        failures.push(format!(
            "{file} {}: {what}\n    ours: {ours:?}\n    want: {want:?}",
            short(text)
        ));
    }
}

fn report(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} checks differ; the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(12)].join("\n")
    );
}

#[test]
fn tokenizer_json_ids_and_decoding_match_hugging_face() {
    let mut failures = Vec::new();
    let mut total = 0;
    for path in case_files() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("JSON");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let tok_path = fixtures().join(doc["tokenizer"].as_str().expect("tokenizer"));
        let tok =
            Tokenizer::from_tokenizer_json(&tok_path).unwrap_or_else(|e| panic!("{file}: {e}"));
        for c in cases(&doc) {
            total += 4;
            let f = &mut failures;
            check(
                f,
                &file,
                "ids",
                &c.text,
                tok.encode(&c.text, true),
                c.ids.clone(),
            );
            check(
                f,
                &file,
                "ids with special tokens",
                &c.text,
                tok.encode_for_model(&c.text, true),
                c.ids_with_special,
            );
            check(
                f,
                &file,
                "decoded",
                &c.text,
                tok.decode_text(&c.ids, true),
                c.decoded,
            );
            check(
                f,
                &file,
                "decoded, special tokens skipped",
                &c.text,
                tok.decode_text(&c.ids, false),
                c.decoded_skip_special,
            );
        }
    }
    report(&failures, total);
}

/// Whether llama.cpp's SentencePiece tokenizer (what a GGUF gives) and Hugging Face's
/// tokenizer.json are meant to agree on a text: when Hugging Face's decoding, special tokens
/// skipped, gives the text back. That leaves out what the two treat differently by design: text
/// starting with a space (llama.cpp always adds its `▁`, `Metaspace` adds none there), special
/// tokens typed in text (user-defined ones too: llama.cpp puts its `▁` after every one), and
/// characters a vocabulary cannot spell (llama.cpp has no unknown-token fallback for them; these
/// tiny vocabularies have no byte pieces).
fn gguf_agrees(c: &Case, gguf: &Tokenizer) -> bool {
    !c.text.is_empty()
        && c.decoded_skip_special == c.text
        && !c.ids.iter().any(|&id| gguf.is_special(id))
}

#[test]
fn gguf_from_the_same_folder_gives_the_same_ids_on_plain_text() {
    let mut failures = Vec::new();
    let mut total = 0;
    for path in case_files() {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("JSON");
        let Some(gguf) = doc["gguf"].as_str() else {
            continue;
        };
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let g = GgufFile::open_metadata(&fixtures().join(gguf)).expect("GGUF opens");
        let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{gguf}: {e}"));
        for c in cases(&doc) {
            if !gguf_agrees(&c, &tok) {
                continue;
            }
            total += 1;
            check(
                &mut failures,
                &file,
                "GGUF ids",
                &c.text,
                tok.encode(&c.text, false),
                c.ids,
            );
        }
    }
    assert!(total >= 20, "only {total} cases compared with a GGUF");
    report(&failures, total);
}
