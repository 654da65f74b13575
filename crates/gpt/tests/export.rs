//! `gpt export` against llama.cpp's own converter.
//!
//! Data-driven: every folder of `tests/fixtures/arch/` holds `hf/` (made by transformers) and
//! `model-f16.gguf`, which llama.cpp's `convert_hf_to_gguf.py --outtype f16` wrote from it (see
//! that folder's README). Exporting `hf/` as F16 must give the same file in every way llama.cpp
//! reads: the same tensors (names, shapes, types, bytes) and every metadata key the converter
//! wrote with the same value, but for the display-only ones listed below. Folders whose
//! vocabulary export does not write yet (SentencePiece-style) must say so.

use gpt::formats::gguf::{GgufFile, Value};
use gpt::tensor::DType;
use std::path::{Path, PathBuf};

/// Keys of the converter's files that are labels for people, not read by llama.cpp's loader:
/// the name (ours is the folder's), the size label ("476K") and the model type ("model").
const DISPLAY_ONLY: &[&str] = &["general.name", "general.size_label"];

fn arch_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("hf").is_dir() && p.join("model-f16.gguf").exists())
        .collect();
    dirs.sort();
    dirs
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn exported_folders_equal_llama_cpps_conversion() {
    let tmp = std::env::temp_dir().join(format!("gpt-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut exported = 0;
    let mut failures = Vec::new();
    for dir in arch_dirs() {
        let arch = dir.file_name().unwrap().to_string_lossy().into_owned();
        let out = tmp.join(format!("{arch}.gguf"));
        if let Err(e) = gpt::export::export(&dir.join("hf"), &out, DType::F16) {
            let msg = e.to_string();
            assert!(
                msg.contains("SentencePiece"),
                "{arch}: export failed: {msg}"
            );
            println!("{arch}: not exported ({msg})");
            continue;
        }
        exported += 1;
        let ours = GgufFile::open(&out).unwrap();
        let theirs = GgufFile::open(&dir.join("model-f16.gguf")).unwrap();
        let mut fail = |m: String| failures.push(format!("{arch}: {m}"));
        for (k, v) in &theirs.metadata {
            if DISPLAY_ONLY.contains(&k.as_str()) {
                continue;
            }
            match ours.get(k) {
                None => fail(format!("missing key {k}")),
                Some(o) if !same_value(o, v) => fail(format!(
                    "{k}: {} vs llama.cpp's {}",
                    o.summary(),
                    v.summary()
                )),
                _ => {}
            }
        }
        let names = |g: &GgufFile| {
            let mut n: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
            n.sort();
            n
        };
        if names(&ours) != names(&theirs) {
            fail(format!(
                "tensors {:?} vs llama.cpp's {:?}",
                names(&ours),
                names(&theirs)
            ));
            continue;
        }
        for t in &theirs.tensors {
            let o = ours.tensor_info(&t.name).unwrap();
            if (o.dtype, &o.dims) != (t.dtype, &t.dims) {
                fail(format!(
                    "{}: {} {:?} vs llama.cpp's {} {:?}",
                    t.name, o.dtype, o.dims, t.dtype, t.dims
                ));
            } else if ours.tensor_data(o)[..] != theirs.tensor_data(t)[..] {
                fail(format!("{}: bytes differ", t.name));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        exported >= 4,
        "expected the byte-level BPE fixtures to export"
    );
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}
