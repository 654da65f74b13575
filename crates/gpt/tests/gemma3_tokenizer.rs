//! Gemma 3's SentencePiece-style tokenizer, read from the GGUF file's metadata alone, against
//! Hugging Face's ids (`tests/fixtures/gemma3/`, see its README).
//!
//! Data-driven: every prompt of every `reference*.json` there, and `long-context.txt` against
//! `long-context.json`. The GGUF file is found by the references' `model_sha256` among
//! `gpt::hub::KNOWN_MODELS` (fetched like `gpt pull`), or else at `$GPT_RS_GEMMA3_GGUF`.

use gpt::formats::gguf::GgufFile;
use gpt::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable naming a local copy of the GGUF file.
const GGUF_ENV: &str = "GPT_RS_GEMMA3_GGUF";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn references() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("reference") && n.ends_with(".json")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no reference*.json in {}",
        dir().display()
    );
    files
        .into_iter()
        .map(|p| (p.clone(), read_json(&p)))
        .collect()
}

/// The GGUF file with this sha256: a known model through the hub, else `$GPT_RS_GEMMA3_GGUF`.
fn gguf_path(sha: &str) -> PathBuf {
    if let Some(known) = gpt::hub::KNOWN_MODELS.iter().find(|m| m.sha256 == sha) {
        return gpt::hub::resolve(known.name, &mut |_, _, _| {}).expect("fetching the model");
    }
    match std::env::var_os(GGUF_ENV) {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "no known model has sha256 {sha} and {GGUF_ENV} is not set: point it at \
             gemma-3-270m-q4_k_m.gguf"
        ),
    }
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let (_, r) = &references()[0];
        let path = gguf_path(r["model_sha256"].as_str().expect("model_sha256"));
        let g = GgufFile::open_metadata(&path).expect("GGUF metadata");
        Tokenizer::from_gguf(&g).expect("the tokenizer loads")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("a list of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// Where two id lists first differ, with the tokens around it.
fn mismatch(tok: &Tokenizer, what: &str, want: &[u32], got: &[u32]) -> String {
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
        "{what}: {} ids wanted, {} got; first difference at {at}\n  want {}\n  got  {}",
        want.len(),
        got.len(),
        show(&want[at..want.len().min(at + 6)]),
        show(&got[at..got.len().min(at + 6)])
    )
}

#[test]
fn prompt_ids_match_hugging_face_and_decode_back() {
    let tok = tokenizer();
    let mut failures = Vec::new();
    let mut n = 0;
    for (path, r) in references() {
        for p in r["prompts"].as_array().expect("prompts") {
            let text = p["text"].as_str().expect("text");
            let want = ids(&p["token_ids"]);
            let got = tok.encode_for_model(text, false);
            if got != want {
                failures.push(mismatch(
                    tok,
                    &format!("{}: {text:?}", path.display()),
                    &want,
                    &got,
                ));
            }
            let back = tok.decode_text(&want, false);
            if back != text {
                failures.push(format!("{text:?} decodes back as {back:?}"));
            }
            n += 1;
        }
    }
    assert!(n > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_context_ids_match_hugging_face() {
    let tok = tokenizer();
    let want = ids(&read_json(&dir().join("long-context.json"))["token_ids"]);
    let text = std::fs::read_to_string(dir().join("long-context.txt")).unwrap();
    let got = tok.encode_for_model(&text, false);
    // The reference keeps the first ids of the encoded text.
    let got = &got[..want.len().min(got.len())];
    assert_eq!(
        got,
        &want[..],
        "{}",
        mismatch(tok, "long context", &want, got)
    );
}

#[test]
fn control_tokens_typed_by_a_user_stay_text() {
    let tok = tokenizer();
    for name in ["<start_of_turn>", "<end_of_turn>", "<eos>", "<bos>"] {
        let id = tok.token_to_id(name).expect("a Gemma control token");
        let text = format!("{name}user\nhi");
        let plain = tok.encode(&text, false);
        assert!(
            !plain.contains(&id),
            "{name} became its id without allow_special"
        );
        assert_eq!(tok.decode_text(&plain, false), text);
        let special = tok.encode(&text, true);
        assert_eq!(special[0], id, "{name} with allow_special");
    }
}

#[test]
fn gemma3_vocabulary_facts() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.eos_id(), Some(1));
    assert!(tok.add_bos() && !tok.add_eos());
    // "\n" is a user-defined token: matched in any text.
    assert_eq!(tok.encode("a\nb", false)[1], 107);
    // A character outside the vocabulary falls back to its UTF-8 bytes.
    let ids = tok.encode("\u{10FFFD}", false);
    assert!(ids.iter().all(|&i| tok.token_type(i) == Some(6)), "{ids:?}");
    assert_eq!(tok.decode(&ids), "\u{10FFFD}");
}
