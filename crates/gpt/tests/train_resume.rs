//! Training runs end to end on a tiny model: a resumed run continues bit-identically, and an
//! interrupted checkpoint write never damages the previous checkpoint.

use gpt::train::checkpoint;
use gpt::train::trainer::{self, TrainConfig, TrainObserver};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gpt-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 2-layer character-level model on Tiny Shakespeare (the fixture copy), 12 steps.
fn config(out: &Path) -> TrainConfig {
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tinyshakespeare/input.txt");
    let toml = format!(
        r#"
[model]
n_layer = 2
n_head = 2
n_embd = 32
block_size = 16
[data]
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
    let whole = temp_dir("whole");
    let full = trainer::run(&config(&whole), false, &mut StopAfter(usize::MAX)).unwrap();
    assert_eq!(full.train_losses.len(), 12);
    assert!(
        full.train_losses[11].1 < full.train_losses[0].1,
        "the loss went down: {:?}",
        full.train_losses
    );

    let parts = temp_dir("parts");
    let c = config(&parts);
    let first = trainer::run(&c, false, &mut StopAfter(7)).unwrap();
    assert_eq!(first.step, 7);
    // The newest checkpoint is step 5: resuming repeats steps 6 and 7, then goes on to 12.
    let resumed = trainer::run(&c, true, &mut StopAfter(usize::MAX)).unwrap();
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
    trainer::run(&c, false, &mut StopAfter(5)).unwrap();
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
    // And training resumes from it.
    let resumed = trainer::run(&c, true, &mut StopAfter(6)).unwrap();
    assert_eq!(resumed.step, 6);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn checkpoint_loads_as_a_model_folder() {
    let out = temp_dir("folder");
    let c = config(&out);
    trainer::run(&c, false, &mut StopAfter(5)).unwrap();
    let dir = out.join(checkpoint::LATEST);
    let m = gpt::LoadedModel::open(&dir).unwrap();
    // The checkpoint's weights give the same loss through the inference model as in training.
    let ck = checkpoint::load_latest(&out).unwrap().unwrap();
    let mut train = gpt::model::training::Gpt2Training::new(ck.config.clone(), ck.params);
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
        "inference {nll} vs training {loss}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
