//! Training against PyTorch, for every architecture gpt-rs trains: each fixture folder holding a
//! fixture.json (gpt2-tiny; llama-* from scripts/make_training_fixtures.sh) has a Hugging Face
//! model, a batch, and what PyTorch computed with them: the loss, every parameter's gradient,
//! the losses of 10 AdamW steps and the greedy continuation of the trained weights. New folders
//! need no code here.

use gpt::formats::hf_config::HfConfig;
use gpt::formats::safetensors::SafetensorsModel;
use gpt::model::params::Parameters;
use gpt::model::training::Training;
use gpt::model::{Logits, Transformer};
use gpt::train::adamw::{AdamW, AdamWConfig};
use std::path::{Path, PathBuf};

mod common;
use common::Expected;

/// Loss against PyTorch's (float32 vs float64 differ by 2e-7 on these fixtures).
const LOSS_ATOL: f32 = 1e-5;
/// Each gradient's max difference, relative to the tensor's largest magnitude.
const GRAD_RTOL: f32 = 1e-4;
/// The losses of the AdamW steps.
const STEP_LOSSES_ATOL: f32 = 1e-4;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("fixture.json").exists() && p.join("expected.safetensors").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 2, "training fixtures: {dirs:?}");
    dirs
}

fn training_model(dir: &Path) -> (Training, Expected, serde_json::Value) {
    let hf = HfConfig::from_file(&dir.join("config.json")).unwrap();
    let mut st = SafetensorsModel::default();
    st.add_file(&dir.join("model.safetensors")).unwrap();
    let params = Parameters::from_hf_model(&hf, &st).unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fixture.json")).unwrap()).unwrap();
    (
        Training::new(hf.config, params),
        Expected::open(dir),
        fixture,
    )
}

fn batch(e: &Expected, fixture: &serde_json::Value) -> (Vec<u32>, Vec<u32>, usize, usize) {
    let (xs, x) = e.ids(fixture["batch_tensors"]["inputs"].as_str().unwrap());
    let (_, y) = e.ids(fixture["batch_tensors"]["targets"].as_str().unwrap());
    (x, y, xs[0], xs[1])
}

#[test]
fn loss_and_every_gradient_match_pytorch() {
    for dir in fixture_dirs() {
        let (mut m, e, fixture) = training_model(&dir);
        let (x, y, b, t) = batch(&e, &fixture);
        let loss = m.forward(&x, &y, b, t).unwrap();
        let (_, want) = e.f32s("loss");
        assert!(
            (loss - want[0]).abs() < LOSS_ATOL,
            "{}: loss {loss} vs PyTorch {}",
            dir.display(),
            want[0]
        );
        m.zero_grad();
        m.backward().unwrap();
        let mut checked = 0;
        for spec in m.grads.specs.clone() {
            let (shape, want) = e.f32s(&format!("grad.{}", spec.name));
            assert_eq!(shape, spec.hf_shape(), "{}", spec.name);
            let got = m.grads.get_hf(&spec.name).unwrap();
            let scale = want
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()))
                .max(f32::MIN_POSITIVE);
            let diff = got
                .iter()
                .zip(&want)
                .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
            assert!(
                diff <= GRAD_RTOL * scale,
                "{}: grad.{}: max diff {diff} > {GRAD_RTOL} x {scale}; first ours {:?}, PyTorch {:?}",
                dir.display(),
                spec.name,
                &got[..4.min(got.len())],
                &want[..4.min(want.len())]
            );
            checked += 1;
        }
        let in_file = e
            .floats
            .tensors
            .keys()
            .filter(|k| k.starts_with("grad."))
            .count();
        assert_eq!(checked, in_file, "{}: gradients checked", dir.display());
    }
}

/// 10 AdamW steps follow PyTorch's losses, and the trained weights continue the prompt as
/// PyTorch's trained weights do.
#[test]
fn adamw_steps_follow_pytorchs_losses_and_greedy_continuation() {
    for dir in fixture_dirs() {
        let (mut m, e, fx) = training_model(&dir);
        assert_eq!(fx["optimizer"], "adamw");
        let (x, y, b, t) = batch(&e, &fx);
        let f = |k: &str| fx[k].as_f64().unwrap() as f32;
        let config = AdamWConfig {
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
            decay_all: fx["weight_decay_applies_to"] == "all_parameters",
        };
        let mut opt = AdamW::new(config, m.params.len());
        let (_, want) = e.f32s("losses");
        for (step, &w) in want.iter().enumerate() {
            let loss = m.forward(&x, &y, b, t).unwrap();
            assert!(
                (loss - w).abs() < STEP_LOSSES_ATOL,
                "{}: step {step}: loss {loss} vs PyTorch {w}",
                dir.display()
            );
            m.zero_grad();
            m.backward().unwrap();
            opt.step(&mut m.params, &m.grads, f("lr"));
        }
        let (_, after) = e.f32s("loss_after_steps");
        let loss = m.forward(&x, &y, b, t).unwrap();
        assert!(
            (loss - after[0]).abs() < STEP_LOSSES_ATOL,
            "{}: loss after the steps {loss} vs {}",
            dir.display(),
            after[0]
        );
        // The model the trainer samples from: the same parameters, no copy of the blocks' code.
        let trained = Transformer::from_params(&m.config, &m.params).unwrap();
        let (_, want) = e.ids("greedy_trained");
        let mut cache = trained.new_cache();
        let mut logits = trained
            .forward(&[1, 2, 3], &mut cache, Logits::Last, None)
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..want.len() {
            let id = gpt::infer::sampling::argmax(&logits);
            ids.push(id);
            logits = trained
                .forward(&[id], &mut cache, Logits::Last, None)
                .unwrap();
        }
        assert_eq!(
            ids,
            want,
            "{}: greedy continuation after training",
            dir.display()
        );
    }
}

/// Evaluation and samples during training copy nothing: every matrix of the model built from
/// the parameters lies inside the parameter buffer, and once the model is dropped the optimizer
/// writes the same buffer in place.
#[test]
fn the_model_of_training_borrows_its_parameters() {
    for dir in fixture_dirs() {
        let (mut m, _, _) = training_model(&dir);
        let buf = m.params.data.as_ptr_range();
        let (lo, hi) = (buf.start as usize, buf.end as usize);
        let model = Transformer::from_params(&m.config, &m.params).unwrap();
        for l in model.linears() {
            let w = l.weight.data.as_ptr_range();
            assert!(
                lo <= w.start as usize && w.end as usize <= hi,
                "{}: {} is a copy",
                dir.display(),
                l.weight.name
            );
        }
        drop(model);
        m.params.data[0] += 1.0;
        assert_eq!(
            m.params.data.as_ptr() as usize,
            lo,
            "{}: written in place",
            dir.display()
        );
    }
}
