//! Training runs end to end on a tiny model: a resumed run continues bit-identically, and an
//! interrupted checkpoint write never damages the previous checkpoint.

use gpt::train::checkpoint;
use gpt::train::trainer::{self, Start, TrainConfig, TrainObserver};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpt-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 2-layer character-level model on Tiny Shakespeare (the fixture copy), 12 steps.
fn config(out: &Path) -> TrainConfig {
    config_with(out, "")
}

/// The architectures `gpt train` knows, as lines of the [model] table: GPT-2's block, and
/// Llama's with grouped-query attention.
const ARCHS: [(&str, &str); 2] = [
    ("gpt2", ""),
    ("llama", "arch = \"llama\"\nn_kv_head = 1\nd_ff = 48\n"),
];

/// [`config`] with more lines in its [model] table.
fn config_with(out: &Path, model: &str) -> TrainConfig {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinyshakespeare/input.txt");
    let toml = format!(
        r#"
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 16
{}[data]
files = ["{}"]
tokenizer = "char"
[train]
out_dir = "{}"
batch_size = 4
grad_accum = 2
max_steps = 12
learning_rate = 3e-3
min_lr = 3e-4
warmup_steps = 3
eval_every = 4
eval_batches = 2
checkpoint_every = 5
seed = 7
"#,
        model,
        corpus.display(),
        out.display()
    );
    let path = out.join("config.toml");
    std::fs::write(&path, toml).unwrap();
    TrainConfig::from_file(&path).unwrap()
}

/// Stops the run after a given step.
struct StopAfter(usize);

impl TrainObserver for StopAfter {
    fn should_stop(&mut self, step: usize) -> bool {
        step >= self.0
    }
}

#[test]
fn resumed_run_gives_bit_identical_losses() {
    for (arch, model) in ARCHS {
        resumed_run_case(arch, model);
    }
}

fn resumed_run_case(arch: &str, model: &str) {
    let whole = temp_dir(&format!("whole-{arch}"));
    let full = trainer::run(
        &config_with(&whole, model),
        Start::New,
        &mut StopAfter(usize::MAX),
    )
    .unwrap();
    assert_eq!(full.train_losses.len(), 12);
    assert!(
        full.train_losses[11].1 < full.train_losses[0].1,
        "the loss went down: {:?}",
        full.train_losses
    );

    let parts = temp_dir(&format!("parts-{arch}"));
    let c = config_with(&parts, model);
    let first = trainer::run(&c, Start::New, &mut StopAfter(7)).unwrap();
    assert_eq!(first.step, 7);
    // The newest checkpoint is step 5: resuming repeats steps 6 and 7, then goes on to 12.
    let resumed = trainer::run(&c, Start::Resume, &mut StopAfter(usize::MAX)).unwrap();
    let bits = |v: &[(usize, f32)]| v.iter().map(|(s, l)| (*s, l.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.train_losses), bits(&full.train_losses));
    assert_eq!(bits(&resumed.val_losses), bits(&full.val_losses));
    let _ = std::fs::remove_dir_all(&whole);
    let _ = std::fs::remove_dir_all(&parts);
}

#[test]
fn interrupted_checkpoint_write_leaves_the_previous_one_intact() {
    let out = temp_dir("interrupted");
    let c = config(&out);
    trainer::run(&c, Start::New, &mut StopAfter(5)).unwrap();
    let before = checkpoint::load_latest(&out)
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(before.state.step, 5);
    // What a process killed while writing step 10 leaves behind: a half-written folder and a
    // link not yet renamed into place.
    let tmp = out.join("checkpoints").join(".tmp-step-000010-999");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.safetensors"), b"partial").unwrap();
    std::os::unix::fs::symlink("checkpoints/.tmp-step-000010-999", out.join(".latest.tmp"))
        .unwrap();
    let after = checkpoint::load_latest(&out)
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(after.state, before.state);
    assert_eq!(after.params.data, before.params.data);
    // And training resumes from it; its next checkpoint clears what the killed write left.
    let resumed = trainer::run(&c, Start::Resume, &mut StopAfter(10)).unwrap();
    assert_eq!(resumed.step, 10);
    assert!(
        !tmp.exists(),
        "the .tmp folder of the killed write is still there"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn checkpoint_loads_as_a_model_folder() {
    for (arch, model) in ARCHS {
        checkpoint_folder_case(arch, model);
    }
}

fn checkpoint_folder_case(arch: &str, model: &str) {
    let out = temp_dir(&format!("folder-{arch}"));
    let c = config_with(&out, model);
    trainer::run(&c, Start::New, &mut StopAfter(5)).unwrap();
    let dir = out.join(checkpoint::LATEST);
    let m = gpt::LoadedModel::open(&dir).unwrap();
    // The checkpoint's weights give the same loss through the inference model as in training.
    let ck = checkpoint::load_latest(&out).unwrap().unwrap();
    let mut train = gpt::model::training::Training::new(ck.config.clone(), ck.params);
    let ids = m.tokenizer.encode("ROMEO:\nWhat say", false);
    let (x, y) = (&ids[..ids.len() - 1], &ids[1..]);
    let loss = train.forward(x, y, 1, x.len()).unwrap();
    let mut cache = m.transformer.new_cache();
    let logits = m
        .transformer
        .forward(x, &mut cache, gpt::model::Logits::All, None)
        .unwrap();
    let v = ck.config.vocab_size;
    let nll: f32 = y
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let row = &logits[i * v..(i + 1) * v];
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let lse = max + row.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
            lse - row[t as usize]
        })
        .sum::<f32>()
        / y.len() as f32;
    assert!(
        (nll - loss).abs() < 1e-4,
        "{arch}: inference {nll} vs training {loss}"
    );
    assert_eq!(
        format!("{:?}", m.transformer.config.arch).to_lowercase(),
        arch
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_new_run_never_mixes_with_an_earlier_runs_checkpoints() {
    let out = temp_dir("two-runs");
    let c = config(&out);
    // Run A to the end: checkpoints 10 and 12 kept.
    let full = trainer::run(&c, Start::New, &mut StopAfter(usize::MAX)).unwrap();
    // A new run into the same folder is refused, naming the ways on.
    let e = trainer::run(&c, Start::New, &mut StopAfter(usize::MAX))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume") && e.contains("--force"), "{e}");
    // Run B with --force, stopped after step 7: its checkpoint at step 5 is older by name than
    // A's, and must survive pruning (pruning by name once removed it and left `latest`
    // dangling, so --resume silently started over).
    trainer::run(&c, Start::Force, &mut StopAfter(7)).unwrap();
    let latest = checkpoint::load_latest(&out)
        .unwrap()
        .expect("latest loads");
    assert_eq!(latest.state.step, 5);
    let steps = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(steps(&out), ["step-000005", "step-000010", "step-000012"]);
    // Resuming continues run B (the same config, so the same losses as run A).
    let resumed = trainer::run(&c, Start::Resume, &mut StopAfter(usize::MAX)).unwrap();
    let bits = |v: &[(usize, f32)]| v.iter().map(|(s, l)| (*s, l.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.train_losses), bits(&full.train_losses));
    // B's checkpoints 10 and 12 replaced A's of the same steps; B's 5 went by recency.
    assert_eq!(steps(&out), ["step-000010", "step-000012"]);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_with_a_dangling_latest_fails_loudly() {
    let out = temp_dir("dangling");
    let c = config(&out);
    trainer::run(&c, Start::New, &mut StopAfter(5)).unwrap();
    std::fs::remove_dir_all(out.join("checkpoints/step-000005")).unwrap();
    let e = trainer::run(&c, Start::Resume, &mut StopAfter(6))
        .unwrap_err()
        .to_string();
    assert!(e.contains("latest") && e.contains("step-000005"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_checkpoint_with_nan_weights_is_refused_on_resume() {
    let out = temp_dir("nan-weights");
    let c = config(&out);
    trainer::run(&c, Start::New, &mut StopAfter(5)).unwrap();
    let mut ck = checkpoint::load_latest(&out).unwrap().unwrap();
    let name = ck.params.specs[3].name.clone();
    let off = ck.params.specs[3].offset;
    ck.params.data[off + 1] = f32::NAN;
    let adamw = gpt::train::adamw::AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        decay_all: false,
    };
    let mut opt = gpt::train::adamw::AdamW::new(adamw, ck.params.len());
    (opt.m, opt.v, opt.t) = (ck.m.clone(), ck.v.clone(), ck.t);
    let tok_copy = out.join("tokenizer-copy");
    std::fs::create_dir_all(&tok_copy).unwrap();
    std::fs::copy(
        ck.dir.join("tokenizer.json"),
        tok_copy.join("tokenizer.json"),
    )
    .unwrap();
    let files = checkpoint::TokenizerFiles {
        dir: tok_copy,
        special_ids: Default::default(),
    };
    checkpoint::save(&out, &ck.config, &ck.params, &opt, &ck.state, &files, 2).unwrap();
    let e = trainer::run(&c, Start::Resume, &mut StopAfter(6))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&name) && e.contains("NaN"), "{e}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_diverging_run_stops_before_writing_nan() {
    let out = temp_dir("diverge");
    let mut c = config(&out);
    c.train.learning_rate = 1e12;
    c.train.min_lr = 0.0;
    c.train.grad_clip = 0.0;
    c.train.checkpoint_every = 1;
    let e = trainer::run(&c, Start::New, &mut StopAfter(usize::MAX))
        .unwrap_err()
        .to_string();
    assert!(e.contains("diverged"), "{e}");
    // Every checkpoint written before it holds finite weights.
    let ck = checkpoint::load_latest(&out)
        .unwrap()
        .expect("a checkpoint before the NaN");
    assert_eq!(ck.params.first_non_finite(), None);
    let _ = std::fs::remove_dir_all(&out);
}
