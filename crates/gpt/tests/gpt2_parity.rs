//! GPT-2 against PyTorch: every fixture folder named `gpt2-*` in tests/fixtures holds a Hugging
//! Face GPT-2 (config.json + model.safetensors) and the tensors PyTorch computed with it
//! (expected.safetensors; see each folder's README).

use gpt::formats::hf_config::HfConfig;
use gpt::formats::safetensors::SafetensorsModel;
use gpt::kernels::Precision;
use gpt::model::{Logits, Transformer};
use std::path::{Path, PathBuf};

mod common;
use common::{assert_close, Expected};

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

/// The same GPT-2 written as GGUF (`general.architecture = gpt2`, llama.cpp's tensor names and
/// layout: Conv1D weights as (out, in) rows, fused attn_qkv) gives PyTorch's logits too.
#[test]
fn gpt2_from_gguf_matches_pytorch() {
    use gpt::formats::gguf::{GgufFile, GgufWriter, Value};
    use gpt::tensor::{Bytes, DType};
    for dir in fixture_dirs() {
        let hf = HfConfig::from_file(&dir.join("config.json")).unwrap();
        let c = &hf.config;
        let mut st = SafetensorsModel::default();
        st.add_file(&dir.join("model.safetensors")).unwrap();
        let raw = |name: &str| -> (Vec<usize>, Vec<f32>) {
            let e = &st.tensors[&format!("transformer.{name}")];
            (
                e.shape.clone(),
                e.data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            )
        };
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let mut w = GgufWriter::new();
        let arch = "gpt2";
        w.add_metadata("general.architecture", Value::String(arch.into()));
        for (k, v) in [
            ("block_count", c.n_layer),
            ("context_length", c.context_length),
            ("embedding_length", c.d_model),
            ("feed_forward_length", c.d_ff),
            ("attention.head_count", c.n_head),
        ] {
            w.add_metadata(format!("{arch}.{k}"), Value::U32(v as u32));
        }
        w.add_metadata(
            format!("{arch}.attention.layer_norm_epsilon"),
            Value::F32(c.norm_eps),
        );
        // GGUF dims are innermost first: a (rows, cols) matrix is [cols, rows].
        let mut put = |name: &str, shape: &[usize], v: &[f32]| {
            let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            w.add_tensor(name, &dims, DType::F32, bytes(v));
        };
        let transpose = |shape: &[usize], v: &[f32]| -> Vec<f32> {
            let (r, k) = (shape[0], shape[1]);
            (0..k * r).map(|i| v[(i % r) * k + i / r]).collect()
        };
        let (s, v) = raw("wte.weight");
        put("token_embd.weight", &s, &v);
        let (s, v) = raw("wpe.weight");
        put("position_embd.weight", &s, &v);
        for l in 0..c.n_layer {
            for (hf_name, gg) in [("ln_1", "attn_norm"), ("ln_2", "ffn_norm")] {
                for p in ["weight", "bias"] {
                    let (s, v) = raw(&format!("h.{l}.{hf_name}.{p}"));
                    put(&format!("blk.{l}.{gg}.{p}"), &s, &v);
                }
            }
            for (hf_name, gg) in [
                ("attn.c_attn", "attn_qkv"),
                ("attn.c_proj", "attn_output"),
                ("mlp.c_fc", "ffn_up"),
                ("mlp.c_proj", "ffn_down"),
            ] {
                let (s, v) = raw(&format!("h.{l}.{hf_name}.weight"));
                put(
                    &format!("blk.{l}.{gg}.weight"),
                    &[s[1], s[0]],
                    &transpose(&s, &v),
                );
                let (s, v) = raw(&format!("h.{l}.{hf_name}.bias"));
                put(&format!("blk.{l}.{gg}.bias"), &s, &v);
            }
        }
        for p in ["weight", "bias"] {
            let (s, v) = raw(&format!("ln_f.{p}"));
            put(&format!("output_norm.{p}"), &s, &v);
        }
        let file =
            GgufFile::from_bytes("gpt2-tiny.gguf", Bytes::from_vec(w.to_bytes().unwrap())).unwrap();
        let mut t = Transformer::from_gguf(&file).unwrap();
        t.precision = Precision::F32;
        let e = Expected::open(&dir);
        let (xs, x) = e.ids("x");
        let (_, logits) = e.f32s("logits");
        let (tt, v) = (xs[1], c.vocab_size);
        let mut cache = t.new_cache();
        let got = t.forward(&x[..tt], &mut cache, Logits::All, None).unwrap();
        assert_close(
            &format!("{} via GGUF", dir.display()),
            &got,
            &logits[..tt * v],
            LOGITS_ATOL,
        );
    }
}

/// The fixture re-saved the way large Hugging Face checkpoints are: in half precision and split
/// into shards named by model.safetensors.index.json. f16 keeps about 3 significant digits.
#[test]
fn sharded_half_precision_folder_loads() {
    const F16_LOGITS_ATOL: f32 = 2e-2;
    for dir in fixture_dirs() {
        let mut st = SafetensorsModel::default();
        st.add_file(&dir.join("model.safetensors")).unwrap();
        let out = std::env::temp_dir().join(format!("gpt2-sharded-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(dir.join("config.json"), out.join("config.json")).unwrap();
        let mut names: Vec<&String> = st.tensors.keys().collect();
        names.sort();
        let mut weight_map = serde_json::Map::new();
        for (shard, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
            let file = format!("model-{:05}-of-00002.safetensors", shard + 1);
            let data: Vec<(String, Vec<usize>, Vec<u8>)> = chunk
                .iter()
                .map(|n| {
                    let e = &st.tensors[*n];
                    let halves = e
                        .data
                        .chunks_exact(4)
                        .flat_map(|c| {
                            half::f16::from_f32(f32::from_le_bytes(c.try_into().unwrap()))
                                .to_le_bytes()
                        })
                        .collect();
                    weight_map.insert(n.to_string(), serde_json::Value::from(file.clone()));
                    (n.to_string(), e.shape.clone(), halves)
                })
                .collect();
            let views: Vec<(String, safetensors::tensor::TensorView)> = data
                .iter()
                .map(|(n, s, b)| {
                    (
                        n.clone(),
                        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                            .unwrap(),
                    )
                })
                .collect();
            std::fs::write(
                out.join(&file),
                safetensors::serialize(views, None).unwrap(),
            )
            .unwrap();
        }
        std::fs::write(
            out.join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
        )
        .unwrap();
        let t = load(&out);
        assert_eq!(t.token_embedding.table.dtype, gpt::tensor::DType::F16);
        let e = Expected::open(&dir);
        let (xs, x) = e.ids("x");
        let (_, logits) = e.f32s("logits");
        let (tt, v) = (xs[1], t.config.vocab_size);
        let mut cache = t.new_cache();
        let got = t.forward(&x[..tt], &mut cache, Logits::All, None).unwrap();
        assert_close(
            &format!("{} as sharded f16", dir.display()),
            &got,
            &logits[..tt * v],
            F16_LOGITS_ATOL,
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// A generation longer than the context window: refused by default, and with `slide` it goes on
/// past the window, its first steps still PyTorch's greedy continuation.
#[test]
fn generation_past_the_window_slides_only_when_asked() {
    use gpt::infer::{GenerateOptions, Generator, SamplingParams};
    let dir = &fixture_dirs()[0];
    let t = load(dir);
    let ctx = t.config.context_length;
    let e = Expected::open(dir);
    let (_, want) = e.ids("greedy");
    // A tokenizer is needed for text; its vocabulary must cover the model's ids.
    let vocab: Vec<String> = (0..t.config.vocab_size)
        .map(|i| ((b'!' + (i % 90) as u8) as char).to_string() + &"x".repeat(i / 90))
        .collect();
    let tok = gpt::tokenizer::Tokenizer::from_spec(gpt::tokenizer::TokenizerSpec {
        tokens: vocab,
        pre: "gpt2".into(),
        ..Default::default()
    })
    .unwrap();
    let mut g = Generator::new(&t, &tok);
    let mut opts = GenerateOptions {
        max_tokens: ctx + 8,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let err = g
        .generate(&GREEDY_PROMPT, &opts, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context window"), "{err}");
    // The largest count a user can type overflows the window too; it does not wrap around it.
    let all = GenerateOptions {
        max_tokens: usize::MAX,
        ..opts.clone()
    };
    let err = g.generate(&GREEDY_PROMPT, &all, &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("context window"), "{err}");
    opts.slide = true;
    let r = g.generate(&GREEDY_PROMPT, &opts, &mut |_| true).unwrap();
    assert_eq!(r.ids.len(), ctx + 8);
    assert_eq!(&r.ids[..want.len()], &want[..]);
}
