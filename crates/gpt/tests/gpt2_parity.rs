//! GPT-2 against PyTorch: every fixture folder named `gpt2-*` in tests/fixtures holds a Hugging
//! Face GPT-2 (config.json + model.safetensors) and the tensors PyTorch computed with it
//! (expected.safetensors; see each folder's README).

use gpt::formats::hf_config::HfConfig;
use gpt::formats::safetensors::SafetensorsModel;
use gpt::kernels::Precision;
use gpt::model::{Logits, Transformer};
use std::path::{Path, PathBuf};

/// f32 forward against PyTorch's f32 forward (f32 vs f64 differ by 1.6e-7 on these fixtures).
const LOGITS_ATOL: f32 = 1e-4;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("gpt2-")
                && p.join("config.json").exists()
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no gpt2-* fixture folders");
    dirs
}

/// The fixture's expected tensors: floats through our reader, int64 ids through the crate's.
struct Expected {
    floats: SafetensorsModel,
    raw: Vec<u8>,
}

impl Expected {
    fn open(dir: &Path) -> Expected {
        let path = dir.join("expected.safetensors");
        let mut floats = SafetensorsModel::default();
        floats.add_file(&path).unwrap();
        Expected {
            floats,
            raw: std::fs::read(&path).unwrap(),
        }
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let e = &self.floats.tensors[name];
        (
            e.shape.clone(),
            e.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }

    fn ids(&self, name: &str) -> (Vec<usize>, Vec<u32>) {
        let st = safetensors::SafeTensors::deserialize(&self.raw).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I64);
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        (t.shape().to_vec(), v)
    }
}

fn assert_close(label: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let (i, d) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    if d > atol {
        panic!(
            "{label}: max |diff| {d} at {i} (ours {}, PyTorch {}); first ours {:?}, PyTorch {:?}",
            got[i],
            want[i],
            &got[..4.min(got.len())],
            &want[..4.min(want.len())]
        );
    }
}

fn load(dir: &Path) -> Transformer {
    let mut t = Transformer::from_hf_dir(dir).unwrap();
    t.precision = Precision::F32;
    t
}

#[test]
fn logits_match_pytorch() {
    for dir in fixture_dirs() {
        let t = load(&dir);
        let e = Expected::open(&dir);
        let (xs, x) = e.ids("x");
        let (_, logits) = e.f32s("logits");
        let (b, tt) = (xs[0], xs[1]);
        let v = t.config.vocab_size;
        for row in 0..b {
            let mut cache = t.new_cache();
            let got = t
                .forward(&x[row * tt..(row + 1) * tt], &mut cache, Logits::All, None)
                .unwrap();
            assert_close(
                &format!("{} logits[{row}]", dir.display()),
                &got,
                &logits[row * tt * v..(row + 1) * tt * v],
                LOGITS_ATOL,
            );
        }
    }
}

/// Greedy decoding with the KV cache from `prompt`, returning the ids and each step's logits.
fn greedy(t: &Transformer, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut cache = t.new_cache();
    let mut logits = t.forward(prompt, &mut cache, Logits::Last, None).unwrap();
    let (mut ids, mut all) = (Vec::new(), Vec::new());
    for _ in 0..n {
        all.extend_from_slice(&logits);
        let id = gpt::infer::sampling::argmax(&logits);
        ids.push(id);
        logits = t.forward(&[id], &mut cache, Logits::Last, None).unwrap();
    }
    (ids, all)
}

/// The prompt of the fixtures' greedy task (README: "greedy continuation of prompt ids [1, 2, 3]").
const GREEDY_PROMPT: [u32; 3] = [1, 2, 3];

#[test]
fn greedy_continuation_matches_pytorch() {
    for dir in fixture_dirs() {
        let t = load(&dir);
        let e = Expected::open(&dir);
        let (_, want) = e.ids("greedy");
        let (ids, step_logits) = greedy(&t, &GREEDY_PROMPT, want.len());
        assert_eq!(ids, want, "{}", dir.display());
        let (_, want_logits) = e.f32s("greedy_step_logits");
        assert_close(
            &format!("{} greedy_step_logits", dir.display()),
            &step_logits,
            &want_logits,
            LOGITS_ATOL,
        );
    }
}

#[test]
fn trained_weights_give_pytorchs_greedy_continuation() {
    for dir in fixture_dirs() {
        let hf = HfConfig::from_file(&dir.join("config.json")).unwrap();
        let e = Expected::open(&dir);
        let mut t = Transformer::from_hf_tensors(&hf, &e.floats, "final.transformer.").unwrap();
        t.precision = Precision::F32;
        let (_, want) = e.ids("greedy_trained");
        let (ids, _) = greedy(&t, &GREEDY_PROMPT, want.len());
        assert_eq!(ids, want, "{}", dir.display());
    }
}

#[test]
fn missing_or_misshapen_tensor_is_named_with_both_shapes() {
    let dir = &fixture_dirs()[0];
    let hf = HfConfig::from_file(&dir.join("config.json")).unwrap();
    let e = Expected::open(dir);
    // The gradients have the weights' names and shapes under "grad.", so a config with a
    // different width finds every tensor misshapen.
    let mut wrong = hf.clone();
    wrong.config.d_model += 4;
    let err = Transformer::from_hf_tensors(&wrong, &e.floats, "grad.transformer.")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wte.weight") && err.contains("[96, 52]") && err.contains("[96, 48]"),
        "{err}"
    );
    let err = Transformer::from_hf_tensors(&hf, &e.floats, "nothing.")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nothing.wte.weight") && err.contains("missing"),
        "{err}"
    );
}
