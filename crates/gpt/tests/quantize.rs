//! `gpt quantize` against llama.cpp's `llama-quantize` (`--pure` for single types; its mixes
//! Q4_K_M and Q5_K_M as they are) on the same float GGUF files: every tensor's type and bytes
//! (sha256) equal, and the file type llama.cpp records. Data-driven: runs over every case of
//! tests/fixtures/quantize/cases.json (made by scripts/make_quantize_fixtures.sh).

use gpt::formats::gguf::GgufFile;
use gpt::quantize::Scheme;
use gpt::tensor::DType;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scheme(name: &str) -> Scheme {
    Scheme::parse(name).unwrap_or_else(|| panic!("type {name}"))
}

#[test]
fn tensors_equal_llama_quantize_pure() {
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("quantize/cases.json")).unwrap(),
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gpt-quantize-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let (input, ty) = (
            case["input"].as_str().unwrap(),
            case["type"].as_str().unwrap(),
        );
        let out = dir.join(format!("{}-{ty}.gguf", input.replace('/', "_")));
        let mut calls = 0;
        gpt::quantize::quantize_file(&fixtures().join(input), &out, scheme(ty), false, |_, _| {
            calls += 1
        })
        .unwrap();
        let g = GgufFile::open(&out).unwrap();
        let want = case["tensors"].as_object().unwrap();
        assert_eq!(g.tensors.len(), want.len(), "{input} {ty}: tensor count");
        assert_eq!(calls, want.len(), "{input} {ty}: progress per tensor");
        for t in &g.tensors {
            let w = &want[&t.name];
            assert_eq!(
                t.dtype.to_string(),
                w["type"].as_str().unwrap(),
                "{input} {ty} {}",
                t.name
            );
            let sha = format!("{:x}", Sha256::digest(&*g.tensor_data(t)));
            assert_eq!(
                sha,
                w["sha256"].as_str().unwrap(),
                "{input} {ty} {}: bytes",
                t.name
            );
        }
        // Metadata carried over, with llama.cpp's file type.
        let src = GgufFile::open(&fixtures().join(input)).unwrap();
        for (k, v) in &src.metadata {
            if k != "general.file_type" && k != "general.quantization_version" {
                assert_eq!(g.get(k), Some(v), "{input} {ty}: metadata {k}");
            }
        }
        let ftype = case["file_type"].as_u64();
        assert_eq!(
            g.get("general.file_type").and_then(|v| v.as_u64()),
            ftype,
            "{input} {ty}"
        );
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quantized_input_needs_allow_requantize_and_bad_types_are_refused() {
    let dir = std::env::temp_dir().join(format!("gpt-requantize-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let q = fixtures().join("arch/llama/model-Q4_K_M.gguf");
    let out = dir.join("out.gguf");
    let e = gpt::quantize::quantize_file(&q, &out, Scheme::Pure(DType::Q8_0), false, |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("--allow-requantize"), "{e}");
    assert!(!out.exists(), "no output after an error");
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "no temporary file left"
    );
    gpt::quantize::quantize_file(&q, &out, Scheme::Pure(DType::Q8_0), true, |_, _| {}).unwrap();
    let g = GgufFile::open(&out).unwrap();
    let t = g
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    assert_eq!(t.dtype, DType::Q8_0);
    // The requantized file still runs.
    let m = gpt::model::Transformer::from_gguf(&g).unwrap();
    let logits = m
        .forward(
            &[1, 2, 3],
            &mut m.new_cache(),
            gpt::model::Logits::Last,
            None,
        )
        .unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    let e = gpt::quantize::quantize_file(&q, &out, Scheme::Pure(DType::Q2_K), true, |_, _| {})
        .unwrap_err();
    assert!(
        e.to_string().contains("not a type gpt quantize writes"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
