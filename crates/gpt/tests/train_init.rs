//! `gpt train --init`: training that starts from a model file. Data-driven over every fixture
//! folder of `tests/fixtures/arch/` (transformers wrote `hf/`, llama.cpp's converter and
//! llama-quantize the GGUF files) and every GGUF file in it:
//! - the f32 master weights read from a float GGUF file are the folder's own tensors (llama.cpp
//!   permuted Llama's Q/K rows; they must come back in Hugging Face's order);
//! - the training model built from the weights of any GGUF file (quantized ones dequantized)
//!   computes transformers' logits, within the tolerance of that file type;
//! - architectures training does not run are refused with an error naming what is missing.
//!
//! And a run from a model: its first validation loss is the model's own loss on that text, it
//! resumes bit-identically, and its checkpoint loads with the model's tokenizer and end token.

use gpt::formats::gguf::GgufFile;
use gpt::formats::safetensors::SafetensorsModel;
use gpt::model::params::Parameters;
use gpt::model::{Logits, Transformer};
use gpt::train::trainer::{self, Start, TrainConfig, TrainObserver};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// As arch_fixtures.rs: float files hold the reference's own (f16-representable) weights;
/// quantized files moved them (bounds from llama.cpp's runs on these files, with a margin).
fn tolerance(file: &str) -> f32 {
    if file.contains("Q6_K") {
        0.6
    } else if file.contains("Q4_K_M") {
        1.5
    } else if file.contains("f16") || file.contains("f32") {
        1e-4
    } else {
        panic!("{file}: no tolerance named for this file type")
    }
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.json").exists() && p.join("hf/config.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    dirs
}

fn gguf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    files
}

/// Whether training runs this folder's architecture: Llama blocks (Mistral's GGUF files are
/// `llama` too) and GPT-2.
fn trainable(dir: &Path) -> bool {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("hf/config.json")).unwrap())
            .unwrap();
    matches!(
        config["model_type"].as_str(),
        Some("llama" | "mistral" | "gpt2")
    )
}

#[test]
fn float_gguf_files_give_the_folders_own_weights() {
    let mut checked = 0;
    for dir in fixture_dirs() {
        let st = SafetensorsModel::open_dir(&dir.join("hf")).unwrap();
        for file in gguf_files(&dir) {
            let name = format!("{}", file.display());
            let Ok((_, p)) = Parameters::from_gguf(&GgufFile::open(&file).unwrap()) else {
                assert!(!trainable(&dir), "{name}: refused");
                continue;
            };
            assert!(trainable(&dir), "{name}: not refused");
            if !(name.contains("f16") || name.contains("f32")) {
                continue;
            }
            for s in &p.specs {
                let e = st.get(&s.name, &s.hf_shape()).unwrap();
                let want =
                    gpt::tensor::Matrix::vector_f32(&s.name, e.dtype, s.len(), e.data.clone())
                        .unwrap();
                assert_eq!(
                    p.get_hf(&s.name).unwrap(),
                    want,
                    "{name}: {} differs from the folder's",
                    s.name
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} float files checked");
}

#[test]
fn the_training_model_from_any_gguf_file_computes_transformers_logits() {
    let mut report = Vec::new();
    for dir in fixture_dirs().into_iter().filter(|d| trainable(d)) {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        for file in gguf_files(&dir) {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            let (c, p) = Parameters::from_gguf(&GgufFile::open(&file).unwrap()).unwrap();
            let model = Transformer::from_params(&c, &p).unwrap();
            let v = c.vocab_size;
            for case in reference["cases"].as_array().unwrap() {
                let ids: Vec<u32> = case["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                // GGUF files carry no sliding window (see arch_fixtures.rs).
                let key = if case.get("logits_full_attention").is_some() {
                    "logits_full_attention"
                } else {
                    "logits"
                };
                let got = model
                    .forward(&ids, &mut model.new_cache(), Logits::All, None)
                    .unwrap();
                let mut worst = 0f32;
                for (t, row) in case[key].as_array().unwrap().iter().enumerate() {
                    for (i, w) in row.as_array().unwrap().iter().enumerate() {
                        let d = (got[t * v + i] - w.as_f64().unwrap() as f32).abs();
                        worst = if d.is_nan() {
                            f32::INFINITY
                        } else {
                            worst.max(d)
                        };
                    }
                }
                let tol = tolerance(&name);
                let line = format!(
                    "{}/{name}: max |Δ| {worst:.2e} (bound {tol:e})",
                    dir.display()
                );
                assert!(worst <= tol, "{line}");
                report.push(line);
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(!report.is_empty());
}

#[test]
fn untrainable_architectures_are_refused_by_name() {
    for dir in fixture_dirs().into_iter().filter(|d| !trainable(d)) {
        let file = dir.join("model-f16.gguf");
        let e = match Parameters::from_gguf(&GgufFile::open(&file).unwrap()) {
            Ok(_) => panic!("{}: not refused", file.display()),
            Err(e) => e.to_string(),
        };
        // Either the architecture is named, or the tensor training has no place for.
        assert!(
            e.contains("not supported") || e.contains("blk."),
            "{}: {e}",
            file.display()
        );
    }
}

struct Quiet {
    stop_at: usize,
}

impl TrainObserver for Quiet {
    fn should_stop(&mut self, step: usize) -> bool {
        step >= self.stop_at
    }
}

fn config(out: &Path, init: &Path, steps: usize) -> TrainConfig {
    let text =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinyshakespeare/input.txt");
    let path = out.with_extension("toml");
    std::fs::write(
        &path,
        format!(
            "[model]\nblock_size = 32\n[data]\nfiles = [{text:?}]\nval_fraction = 0.1\n\
             [train]\nout_dir = {out:?}\nbatch_size = 4\nmax_steps = {steps}\nlearning_rate = 1e-3\n\
             warmup_steps = 2\neval_every = 2\neval_batches = 2\ncheckpoint_every = 2\n"
        ),
    )
    .unwrap();
    TrainConfig::from_file_init(&path, Some(&init.display().to_string())).unwrap()
}

#[test]
fn a_run_from_a_model_starts_at_its_loss_resumes_exactly_and_loads_as_that_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch/llama");
    let init = dir.join("model-Q6_K.gguf");
    let tmp = std::env::temp_dir().join(format!("gpt-train-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();

    let whole = trainer::run(
        &config(&tmp.join("whole"), &init, 4),
        Start::New,
        &mut Quiet { stop_at: 99 },
    )
    .unwrap();
    // Before the first step: the model's own validation loss.
    assert_eq!(whole.val_losses[0].0, 0);
    assert!(whole.val_losses[0].1.is_finite());

    let part = tmp.join("part");
    trainer::run(
        &config(&part, &init, 4),
        Start::New,
        &mut Quiet { stop_at: 2 },
    )
    .unwrap();
    let resumed = trainer::run(
        &config(&part, &init, 4),
        Start::Resume,
        &mut Quiet { stop_at: 99 },
    )
    .unwrap();
    assert_eq!(resumed.train_losses, whole.train_losses);
    assert_eq!(resumed.val_losses, whole.val_losses);

    // The checkpoint is the model's architecture with the model's tokenizer and end token.
    let original = gpt::LoadedModel::open(&init).unwrap();
    let ck = gpt::LoadedModel::open(&tmp.join("whole/latest")).unwrap();
    let text = "ROMEO: But, soft! what light through yonder window breaks?";
    assert_eq!(
        ck.tokenizer.encode(text, false),
        original.tokenizer.encode(text, false)
    );
    assert_eq!(ck.stop_ids, original.stop_ids);
    assert_eq!(
        ck.transformer.config.n_kv_head,
        original.transformer.config.n_kv_head
    );
    assert_eq!(ck.chat_template.is_some(), original.chat_template.is_some());
    let _ = std::fs::remove_dir_all(&tmp);
}
