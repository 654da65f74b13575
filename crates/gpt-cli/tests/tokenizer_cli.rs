//! `gpt tokenizer train` end to end: the folder it writes is what `gpt tokenize --tokenizer`
//! reads, and bad input is a one-line error with a non-zero exit, not a panic.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpt"))
        .args(args)
        .output()
        .expect("running gpt")
}

fn work_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a work folder");
    d
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gpt/tests/fixtures/tinyshakespeare/input.txt")
}

#[test]
fn trained_folder_tokenizes_and_detokenizes() {
    let dir = work_dir("cli_tokenizer_train");
    let out = dir.join("tok");
    let o = gpt(&[
        "tokenizer",
        "train",
        "--vocab-size",
        "600",
        "--out",
        out.to_str().unwrap(),
        corpus().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["tokenizer.json", "encoder.json", "vocab.bpe"] {
        assert!(out.join(f).exists(), "{f} written");
    }

    let text = "To be, or not to be<|endoftext|>";
    let o = gpt(&[
        "tokenize",
        text,
        "--tokenizer",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let ids: Vec<String> = v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(
        ids.last().map(String::as_str),
        Some("599"),
        "<|endoftext|> is the last id"
    );

    let mut args = vec!["detokenize"];
    args.extend(ids.iter().map(String::as_str));
    args.extend(["--tokenizer", out.to_str().unwrap()]);
    let o = gpt(&args);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim_end(), text);
}

#[test]
fn bad_training_input_is_a_one_line_error() {
    let dir = work_dir("cli_tokenizer_train_errors");
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").expect("write");
    let out = dir.join("tok");
    for args in [
        vec!["--vocab-size", "300", latin1.to_str().unwrap()],
        vec!["--vocab-size", "100", corpus().to_str().unwrap()],
        vec!["--vocab-size", "300", "no-such-file.txt"],
    ] {
        let mut all = vec!["tokenizer", "train", "--out", out.to_str().unwrap()];
        all.extend(args);
        let o = gpt(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{all:?} should fail");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
