//! Tokenizer benchmarks on Tiny Shakespeare (the test fixture):
//! - `bpe_encode`: GPT-2's vocabulary encoding 64 KiB of text in one call, the whole pipeline
//!   (pre-tokenizer, whole-word table, merge loop). `bench/tokenizer.sh` compares the same
//!   encoder with tiktoken and Hugging Face on whole files.
//! - `bpe_train`: learning a 1024-token vocabulary from the whole corpus (1.1 MB).
//!
//! `cargo bench -p gpt --bench tokenizer`. Throughput is input bytes.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gpt::tokenizer::train::{train_text, TrainConfig};
use gpt::tokenizer::Tokenizer;
use std::path::Path;
use std::time::Duration;

/// The slice encoded per iteration: long enough that per-call setup is noise, short enough that
/// criterion collects many samples.
const SLICE_BYTES: usize = 64 * 1024;

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn corpus() -> String {
    let path = fixture("tinyshakespeare/input.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn bpe_encode(c: &mut Criterion) {
    let tok = Tokenizer::from_gpt2_files(
        &fixture("gpt2-tokenizer/encoder.json"),
        &fixture("gpt2-tokenizer/vocab.bpe"),
    )
    .expect("GPT-2 fixture loads");
    let text = corpus();
    // The corpus is ASCII, so any byte index is a character boundary.
    let slice = &text[..SLICE_BYTES.min(text.len())];
    let mut g = c.benchmark_group("bpe_encode");
    g.throughput(Throughput::Bytes(slice.len() as u64));
    g.bench_function("gpt2_tinyshakespeare_64k", |b| {
        b.iter(|| tok.encode(black_box(slice), false))
    });
    g.finish();
}

fn bpe_train(c: &mut Criterion) {
    let text = corpus();
    let config = TrainConfig::gpt2(1024);
    let mut g = c.benchmark_group("bpe_train");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("tinyshakespeare_vocab_1024", |b| {
        b.iter(|| train_text(black_box(&text), &config).expect("trains"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bpe_encode, bpe_train
}
criterion_main!(benches);
