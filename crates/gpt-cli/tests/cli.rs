//! The `gpt` binary end to end on the default model, against the Hugging Face reference outputs
//! (data-driven over every reference*.json of the library's smollm2 fixtures).

mod common;

use common::{gpt, model_path, references, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn generate_json_greedy_matches_reference_until_eos() {
    for r in references() {
        let model = model_path(&r);
        let p = &r["prompts"][0];
        let want = ids(&p["greedy_ids"]);
        let n = 12.min(want.len());
        let o = gpt(&[
            "generate",
            p["text"].as_str().unwrap(),
            "--model",
            &model,
            "--temperature",
            "0",
            "--max-tokens",
            &n.to_string(),
            "--precision",
            "f32",
            "--json",
        ]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(ids(&v["prompt_ids"]), ids(&p["token_ids"]));
        let got = ids(&v["ids"]);
        // Generation stops at EOS (2) or <|endoftext|> (0) and keeps that id.
        let until = want[..n].iter().position(|&t| t == 2).map_or(n, |i| i + 1);
        assert_eq!(got, want[..until].to_vec());
    }
}

#[test]
fn chat_one_shot_answers_like_reference() {
    for r in references() {
        let model = model_path(&r);
        let chat = &r["chat"];
        let msg = chat["messages"][0]["content"].as_str().unwrap();
        let o = gpt(&[
            "chat",
            "--model",
            &model,
            "--message",
            msg,
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--precision",
            "f32",
        ]);
        let reply = stdout(&o);
        let greedy_text = chat["greedy_text"].as_str().unwrap();
        let expected = greedy_text.split("<|im_end|>").next().unwrap();
        assert_eq!(reply.trim_end_matches('\n'), expected);
    }
}

#[test]
fn tokenize_json_matches_reference() {
    for r in references() {
        let model = model_path(&r);
        for p in r["prompts"].as_array().unwrap() {
            let o = gpt(&[
                "tokenize",
                p["text"].as_str().unwrap(),
                "--model",
                &model,
                "--json",
            ]);
            let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
            assert_eq!(ids(&v["ids"]), ids(&p["token_ids"]));
            assert_eq!(v["tokens"], p["tokens"]);
        }
    }
}

#[test]
fn inspect_logits_json_matches_reference() {
    for r in references() {
        let model = model_path(&r);
        let p = &r["prompts"][2];
        let o = gpt(&[
            "inspect",
            "logits",
            p["text"].as_str().unwrap(),
            "--model",
            &model,
            "--top",
            "5",
            "--json",
            "--precision",
            "f32",
        ]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let want_top: Vec<u64> = p["top20_last"].as_array().unwrap()[..5]
            .iter()
            .map(|x| x[0].as_u64().unwrap())
            .collect();
        let got_top: Vec<u64> = v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got_top, want_top);
        let lse = v["logsumexp"].as_f64().unwrap();
        assert!(
            (lse - p["logsumexp_last"].as_f64().unwrap()).abs() < 1e-2,
            "logsumexp {lse}"
        );
        let probs: f64 = v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["prob"].as_f64().unwrap())
            .sum();
        assert!(probs > 0.0 && probs <= 1.0);
    }
}

#[test]
fn prompt_beyond_context_window_is_a_clear_error() {
    let model = model_path(&Value::Null); // the default model
    let o = gpt(&[
        "generate",
        "Hello",
        "--model",
        &model,
        "--max-tokens",
        "100000",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("context window is 8192"), "{err}");
}

#[test]
fn corrupt_model_file_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("gpt-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = model_path(&Value::Null); // the default model
    let bytes = std::fs::read(&model).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad-magic.gguf",
            b"NOPE0000000000000000000000".to_vec(),
            "magic",
        ),
        (
            "truncated.gguf",
            bytes[..bytes.len() / 2].to_vec(),
            "truncated.gguf",
        ),
        (
            "header-only.gguf",
            bytes[..4096].to_vec(),
            "header-only.gguf",
        ),
    ];
    for (name, data, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        let o = gpt(&[
            "generate",
            "Hi",
            "--model",
            path.to_str().unwrap(),
            "--max-tokens",
            "1",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Hugging Face folder: the gpt2-tiny fixture (vocabulary 96) with a tokenizer.json whose 96
/// tokens are the printable ASCII characters (in GPT-2's byte alphabet, so ' ' is 'Ġ') and
/// <|endoftext|>, and no merges.
fn tiny_hf_folder() -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt/tests/fixtures/gpt2-tiny");
    let dir = std::env::temp_dir().join(format!("gpt-cli-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    for b in 0x20u8..0x7f {
        let c = if b == b' ' { 'Ġ' } else { b as char };
        vocab.insert(c.to_string(), Value::from(b - 0x20));
    }
    vocab.insert("<|endoftext|>".into(), Value::from(95));
    let tj = serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": 95, "content": "<|endoftext|>", "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
    });
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    dir
}

#[test]
fn hugging_face_folder_generates_pytorchs_greedy_continuation() {
    let dir = tiny_hf_folder();
    // Ids 1, 2, 3 are the characters '!', '"', '#'; PyTorch's greedy continuation of [1, 2, 3]
    // with the fixture's initial weights is twenty 3s (its README).
    let o = gpt(&[
        "generate",
        "!\"#",
        "--model",
        dir.to_str().unwrap(),
        "--temperature",
        "0",
        "--max-tokens",
        "20",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(ids(&v["prompt_ids"]), vec![1, 2, 3]);
    assert_eq!(ids(&v["ids"]), vec![3; 20]);
    assert_eq!(v["text"], "#".repeat(20));
    let _ = std::fs::remove_dir_all(&dir);
}
