//! A mutation fuzzer for the model-file paths, on the stable toolchain: every GGUF file and
//! Hugging Face folder of tests/fixtures/arch/ is damaged at random (bytes of the GGUF header and
//! metadata flipped, values overwritten with extremes, the file cut short; config.json and
//! tokenizer.json edited) and then opened as gpt-rs opens a model: the tokenizer from metadata
//! alone, the model, a short forward pass. Any outcome but a panic is a pass: a damaged file may
//! load (a flipped weight byte is still a weight) or fail with an error.
//!
//! `GPT_RS_FUZZ_ITERS` sets the mutations per file (default 64, enough for CI; run 20000 by hand).
//! A failure prints the file, the seed and the mutation, so it replays.

use gpt::formats::gguf::GgufFile;
use gpt::model::{Logits, Transformer};
use gpt::tokenizer::Tokenizer;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// splitmix64: a seeded stream, so every failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> usize {
    std::env::var("GPT_RS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    let mut d: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    d.sort();
    d
}

/// Damages `bytes` in [0, end): a few flipped bytes, an extreme little-endian u64 or u32, or a cut.
fn mutate(bytes: &mut Vec<u8>, end: usize, rng: &mut Rng) -> String {
    let end = end.min(bytes.len()).max(1);
    match rng.below(4) {
        0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(end);
                bytes[i] ^= 1 << rng.below(8);
            }
            format!("{n} bit flips below {end}")
        }
        1 | 2 => {
            let i = rng.below(end.saturating_sub(8));
            let v: u64 = [
                0,
                1,
                u32::MAX as u64,
                u64::MAX,
                1 << 40,
                0x7ff8_0000_0000_0000,
            ][rng.below(6)];
            let w = if rng.below(2) == 0 { 8 } else { 4 };
            bytes[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            format!("{w}-byte {v:#x} at {i}")
        }
        _ => {
            let cut = rng.below(bytes.len());
            bytes.truncate(cut);
            format!("cut at {cut}")
        }
    }
}

/// What gpt-rs does with a model file; errors are fine, panics are not.
fn open_gguf(path: &Path) {
    if let Ok(g) = GgufFile::open_metadata(path) {
        if let Ok(t) = Tokenizer::from_gguf(&g) {
            let ids = t.encode("Hello, 세계! <bos> 12345", false);
            let _ = t.decode(&ids);
        }
    }
    if let Ok(g) = GgufFile::open(path) {
        if let Ok(m) = Transformer::from_gguf(&g) {
            let v = m.config.vocab_size as u32;
            let _ = m.forward(
                &[1 % v, 2 % v, 3 % v],
                &mut m.new_cache(),
                Logits::All,
                None,
            );
        }
    }
}

fn open_hf(dir: &Path) {
    if let Ok(m) = Transformer::from_hf_dir(dir) {
        let v = m.config.vocab_size as u32;
        let _ = m.forward(&[1 % v, 2 % v], &mut m.new_cache(), Logits::Last, None);
    }
    if let Ok(t) = Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json")) {
        let _ = t.encode("Hello, 세계!", false);
    }
}

#[test]
fn damaged_gguf_files_never_panic() {
    let tmp = std::env::temp_dir().join(format!("gpt-rs-fuzz-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        files.sort();
        for f in files {
            let orig = std::fs::read(&f).unwrap();
            // The header, metadata and tensor table: where a parser can go wrong.
            let header = GgufFile::open(&f).unwrap().data_offset as usize;
            for seed in 0..iterations() as u64 {
                let mut rng = Rng(seed ^ 0x5eed);
                let mut bytes = orig.clone();
                let what = mutate(&mut bytes, header, &mut rng);
                let path = tmp.join("m.gguf");
                std::fs::write(&path, &bytes).unwrap();
                if catch_unwind(AssertUnwindSafe(|| open_gguf(&path))).is_err() {
                    failures.push(format!("{} seed {seed}: {what}", f.display()));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}

#[test]
fn damaged_hugging_face_folders_never_panic() {
    let mut failures = Vec::new();
    for dir in fixture_dirs()
        .into_iter()
        .map(|d| d.join("hf"))
        .filter(|d| d.exists())
    {
        for name in ["config.json", "tokenizer.json"] {
            let orig = std::fs::read(dir.join(name)).unwrap();
            for seed in 0..iterations() as u64 {
                let mut rng = Rng(seed ^ 0xc0f1);
                let mut bytes = orig.clone();
                let what = mutate(&mut bytes, orig.len(), &mut rng);
                let copy =
                    std::env::temp_dir().join(format!("gpt-rs-fuzz-hf-{}", std::process::id()));
                std::fs::create_dir_all(&copy).unwrap();
                for e in std::fs::read_dir(&dir).unwrap() {
                    let p = e.unwrap().path();
                    std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
                }
                std::fs::write(copy.join(name), &bytes).unwrap();
                if catch_unwind(AssertUnwindSafe(|| open_hf(&copy))).is_err() {
                    failures.push(format!("{}/{name} seed {seed}: {what}", dir.display()));
                }
                let _ = std::fs::remove_dir_all(&copy);
            }
        }
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}
