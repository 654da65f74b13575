//! BPE training on Tiny Shakespeare (`fixtures/tinyshakespeare`): the trained vocabulary written
//! as `tokenizer.json` and as GPT-2's files loads back through both loaders and encodes held-out
//! text exactly as the trained tokenizer does. (That Hugging Face `tokenizers` reads our
//! `tokenizer.json` to the same ids is checked by `scripts/hf_tokenizers_check.sh`.)

use gpt::tokenizer::io::{write_gpt2_files, write_tokenizer_json};
use gpt::tokenizer::train::{train_text, TrainConfig};
use gpt::tokenizer::{train, Tokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

const VOCAB: usize = 1024;

fn corpus_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinyshakespeare/input.txt")
}

/// The first 90% for training, the rest held out (nanoGPT's split), cut at a line.
fn split_corpus() -> (String, String) {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cut = text[..text.len() * 9 / 10].rfind('\n').map_or(0, |i| i + 1);
    (text[..cut].to_owned(), text[cut..].to_owned())
}

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

#[test]
fn trained_tokenizer_files_load_back_to_the_same_ids() {
    let (train_part, held_out) = split_corpus();
    let dir = out_dir("tokenizer_train_shakespeare");
    let train_file = dir.join("train.txt");
    std::fs::write(&train_file, &train_part).expect("write the training part");

    let config = TrainConfig::gpt2(VOCAB);
    let start = Instant::now();
    let bpe = train(&[&train_file], &config, &mut |_, _, _| {}).expect("trains");
    eprintln!(
        "trained {} tokens ({} merges) on {} bytes in {:.2?}",
        bpe.tokens.len(),
        bpe.merges.len(),
        train_part.len(),
        start.elapsed()
    );
    assert_eq!(bpe.tokens.len(), VOCAB);
    assert_eq!(bpe.tokens[VOCAB - 1], "<|endoftext|>");
    // Streaming the file in chunks learns what the whole text in memory learns.
    assert_eq!(
        bpe,
        train_text(&train_part, &config).expect("trains in memory")
    );

    let spec = bpe.spec();
    write_tokenizer_json(&spec, &dir.join("tokenizer.json")).expect("write tokenizer.json");
    write_gpt2_files(&spec, &dir).expect("write encoder.json + vocab.bpe");
    let vocab_bpe = std::fs::read_to_string(dir.join("vocab.bpe")).expect("read vocab.bpe");
    assert!(vocab_bpe.starts_with("#version: 0.2\n"));

    let trained = bpe.tokenizer().expect("trained tokenizer");
    let from_json = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")).expect("json");
    let from_gpt2 = Tokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))
        .expect("gpt2");
    let samples = [
        held_out.as_str(),
        "<|endoftext|>ROMEO: What, ho!  Apothecary!\n\n\n",
        "Déjà vu: 12345 😀 \t\r\n  end",
    ];
    for text in samples {
        let want = trained.encode(text, true);
        assert_eq!(trained.decode(&want), text);
        assert_eq!(from_json.encode(text, true), want, "tokenizer.json");
        assert_eq!(
            from_gpt2.encode(text, true),
            want,
            "encoder.json + vocab.bpe"
        );
    }
    let ids = trained.encode(&held_out, false);
    let bytes_per_token = held_out.len() as f64 / ids.len() as f64;
    eprintln!("held-out text: {bytes_per_token:.2} bytes per token");
    // Measured 2.26 (GPT-2's 50,257 tokens: 3.3); 1 would mean nothing was learned.
    assert!(bytes_per_token > 2.0, "{bytes_per_token}");
}

#[test]
fn a_non_utf8_corpus_file_is_an_error_naming_it() {
    let dir = out_dir("tokenizer_train_latin1");
    let file = dir.join("latin1.txt");
    std::fs::write(&file, b"caf\xe9 au lait\n").expect("write");
    let err = train(&[&file], &TrainConfig::gpt2(300), &mut |_, _, _| {})
        .expect_err("not UTF-8")
        .to_string();
    assert!(
        err.contains("latin1.txt") && err.contains("byte 3"),
        "{err}"
    );
}
