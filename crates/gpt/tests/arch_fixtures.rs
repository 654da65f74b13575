//! Every architecture of the table against Hugging Face transformers, on tiny random models.
//!
//! Data-driven: runs over every folder in `tests/fixtures/arch/` (made by
//! `scripts/make_arch_fixtures.sh`: transformers writes the folder `hf/` and the logits, llama.cpp's
//! converter and `llama-quantize` the GGUF files) and every model file in it. Each case's ids go
//! through the model twice: as one prompt (every position's logits), and one token at a time
//! through the KV cache (the last position's logits at each step), which exercises the cache and,
//! where a layer slides, the window's eviction.

use gpt::formats::gguf::GgufFile;
use gpt::kernels::Precision;
use gpt::model::{Logits, Transformer};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Float weights that hold exactly the reference's values (f16-representable, see the fixtures'
/// README), f32 math: only the order of float sums differs from PyTorch's.
const FLOAT_TOL: f32 = 1e-4;
/// Quantized files: the weights themselves moved. Bounds from llama.cpp's own runs on these files
/// (each fixture's README: llama's real K-quants Q6_K 0.15-0.35, Q4_K_M 0.45-0.56 max |Δ| against
/// transformers; the 64-wide archs' Q8_0 / Q5_0 fallbacks 0.02-0.08 and 0.07-0.32; logits of
/// standard deviation ~0.9), with a margin: a wrong block layout or scale gives errors of the
/// logits' own size on every position, far beyond these.
const Q6_K_TOL: f32 = 0.6;
const Q4_K_M_TOL: f32 = 1.5;
/// The default fast path against f32 math on the same quantized file: the two-plane activation
/// quantization keeps ~16-bit precision.
const FAST_VS_F32_TOL: f32 = 0.02;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.json").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures in {}", root.display());
    dirs
}

/// Every model of a fixture folder with its tolerance against the reference.
fn models(dir: &Path) -> Vec<(String, Transformer, f32)> {
    let mut out = Vec::new();
    if dir.join("hf/config.json").exists() {
        let t = Transformer::from_hf_dir(&dir.join("hf"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        out.push(("hf".to_string(), t, FLOAT_TOL));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let tol = if name.contains("Q6_K") {
            Q6_K_TOL
        } else if name.contains("Q4_K_M") {
            Q4_K_M_TOL
        } else if name.contains("f16") || name.contains("f32") {
            FLOAT_TOL
        } else {
            panic!("{name}: no tolerance named for this file type")
        };
        let g = GgufFile::open(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = Transformer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, t, tol));
    }
    out
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// (max |a - b|, index of the first element where it occurs).
fn max_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0f32, 0),
            |(m, i), (j, d)| if d > m || d.is_nan() { (d, j) } else { (m, i) },
        )
}

#[test]
fn every_architecture_matches_transformers() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for dir in fixture_dirs() {
        let arch = dir.file_name().unwrap().to_string_lossy().to_string();
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        for (name, mut model, tol) in models(&dir) {
            let v = model.config.vocab_size;
            for precision in [Precision::Fast, Precision::F32] {
                model.precision = precision;
                for case in reference["cases"].as_array().unwrap() {
                    let ids: Vec<u32> = case["input_ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap() as u32)
                        .collect();
                    // GGUF files of Mistral carry no sliding window (llama.cpp's converter
                    // drops it): they compute full attention, which the fixture records apart.
                    let key = if name != "hf" && case.get("logits_full_attention").is_some() {
                        "logits_full_attention"
                    } else {
                        "logits"
                    };
                    let want = rows(&case[key]);
                    let mut cache = model.new_cache();
                    let all = model.forward(&ids, &mut cache, Logits::All, None).unwrap();
                    let mut worst = (0f32, 0usize, 0usize);
                    for (t, w) in want.iter().enumerate() {
                        let (d, i) = max_diff(&all[t * v..(t + 1) * v], w);
                        if d > worst.0 || d.is_nan() {
                            worst = (d, t, i);
                        }
                    }
                    let mut cache = model.new_cache();
                    for (t, &id) in ids.iter().enumerate() {
                        let step = model
                            .forward(&[id], &mut cache, Logits::Last, None)
                            .unwrap();
                        let (d, i) = max_diff(&step, &want[t]);
                        if d > worst.0 || d.is_nan() {
                            worst = (d, t, i);
                        }
                    }
                    let line = format!(
                        "{arch}/{name} {precision:?} {}: max |Δ| {:.2e} at position {} logit {} (bound {tol:e})",
                        case["name"].as_str().unwrap_or("?"),
                        worst.0,
                        worst.1,
                        worst.2
                    );
                    if worst.0.is_nan() || worst.0 > tol {
                        failures.push(line.clone());
                    }
                    report.push(line);
                }
            }
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

#[test]
fn fast_path_agrees_with_f32_math_on_quantized_files() {
    for dir in fixture_dirs() {
        for (name, mut model, _) in models(&dir).into_iter().filter(|(n, ..)| n.contains("_K")) {
            let ids: Vec<u32> = (0..24u32)
                .map(|i| (i * 37 + 5) % model.config.vocab_size as u32)
                .collect();
            let mut run = |p: Precision| {
                model.precision = p;
                model
                    .forward(&ids, &mut model.new_cache(), Logits::All, None)
                    .unwrap()
            };
            let (fast, f32) = (run(Precision::Fast), run(Precision::F32));
            let (d, i) = max_diff(&fast, &f32);
            assert!(
                d <= FAST_VS_F32_TOL,
                "{}/{name}: fast vs f32 max |Δ| {d} at {i} (bound {FAST_VS_F32_TOL})",
                dir.display()
            );
        }
    }
}

/// `gpt bench`'s bandwidth share counts the bytes one decode step reads: by the file's own tensor
/// table, every block's projection and MLP matrices plus the unembedding (`output.weight`, or the
/// token embedding when tied). Fused files (Phi-3's qkv and gate/up) count their fused tensors.
#[test]
fn weight_bytes_per_token_are_the_files_matrices() {
    for dir in fixture_dirs() {
        for name in ["model-f16.gguf", "model-Q4_K_M.gguf"] {
            let path = dir.join(name);
            let g = gpt::formats::gguf::GgufFile::open(&path).unwrap();
            let t = Transformer::from_gguf(&g).unwrap();
            let matrix = |n: &str| {
                n.starts_with("blk.")
                    && [
                        "attn_q",
                        "attn_k",
                        "attn_v",
                        "attn_qkv",
                        "attn_output",
                        "ffn_gate",
                        "ffn_up",
                        "ffn_down",
                    ]
                    .iter()
                    .any(|m| n.ends_with(&format!(".{m}.weight")))
            };
            let bytes = |n: &str| {
                g.tensors
                    .iter()
                    .find(|t| t.name == n)
                    .map(|t| g.tensor_data(t).len() as u64)
            };
            let blocks: u64 = g
                .tensors
                .iter()
                .filter(|t| matrix(&t.name))
                .map(|t| g.tensor_data(t).len() as u64)
                .sum();
            let unembed = bytes("output.weight")
                .or_else(|| bytes("token_embd.weight"))
                .unwrap();
            assert_eq!(t.weight_bytes_per_token(), blocks + unembed, "{path:?}");
        }
    }
}

/// Loading repacks every quantized matrix (on a CPU with the panel kernels); a precision that
/// never reads the panels drops them, so the model is not held twice: F32 drops all, Q8 those of
/// the K-quants (whose Q8_K activations run in the row kernels), Fast keeps all. What generation
/// reads follows: the panels where kept, the file's rows elsewhere.
#[test]
fn precisions_keep_only_the_packed_forms_they_read() {
    use gpt::tensor::DType;
    for dir in fixture_dirs() {
        let path = dir.join("model-Q4_K_M.gguf");
        let g = gpt::formats::gguf::GgufFile::open(&path).unwrap();
        let mut t = Transformer::from_gguf(&g).unwrap();
        let packed = |t: &Transformer| {
            t.linears()
                .iter()
                .filter(|l| l.weight.packed.is_some())
                .count()
        };
        let quantized = t
            .linears()
            .iter()
            .filter(|l| l.weight.dtype.block_size() > 1)
            .count();
        if packed(&t) == 0 {
            continue; // no panel kernels on this CPU
        }
        assert_eq!(
            packed(&t),
            quantized,
            "{path:?}: every quantized matrix repacked at load"
        );
        t.set_precision(Precision::Q8);
        let k_quants = t
            .linears()
            .iter()
            .filter(|l| {
                matches!(
                    l.weight.dtype,
                    DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q3_K
                )
            })
            .count();
        assert_eq!(
            packed(&t),
            quantized - k_quants,
            "{path:?}: Q8 keeps the non-K panels"
        );
        t.set_precision(Precision::F32);
        assert_eq!(packed(&t), 0, "{path:?}: F32 reads the rows only");
        assert_eq!(t.packed_weight_bytes(), 0);
        assert_eq!(
            t.bytes_read_per_token(),
            t.weight_bytes_per_token(),
            "{path:?}"
        );
    }
}
