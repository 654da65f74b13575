//! What the CLI tests share: running the binary, the reference files, and the model they name.
#![allow(dead_code)] // each test binary uses its own subset

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `gpt` binary built for these tests.
pub fn gpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .output()
        .expect("running gpt")
}

/// The stdout of a successful run (panics with its stderr otherwise).
pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "gpt failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Every reference*.json of the library's smollm2 fixtures, parsed.
pub fn references() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt/tests/fixtures/smollm2");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("reference") && n.ends_with(".json")
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// The known model whose sha256 a reference file names (the default model for `Null`),
/// fetched through `gpt pull` itself.
pub fn model_path(r: &Value) -> String {
    let name = match r["model_sha256"].as_str() {
        Some(sha) => {
            gpt::hub::KNOWN_MODELS
                .iter()
                .find(|m| m.sha256 == sha)
                .expect("a known model")
                .name
        }
        None => gpt::hub::DEFAULT_MODEL,
    };
    stdout(&gpt(&["pull", name])).trim().to_string()
}
