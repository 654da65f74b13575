//! A Llama-family model from a Hugging Face folder gives the same logits as the same weights in
//! GGUF, whose Llama path is checked against Hugging Face's outputs on the real SmolLM2
//! (hf_reference.rs). The two files differ as the real ones do: GGUF stores the Q and K
//! rows permuted for llama.cpp's adjacent-pair RoPE; Hugging Face rotates halves.

use gpt::formats::gguf::{GgufFile, GgufWriter, Value};
use gpt::infer::sampling::Rng;
use gpt::model::{Logits, Transformer};
use gpt::tensor::{Bytes, DType};

const V: usize = 64;
const C: usize = 32;
const NH: usize = 4;
const NKV: usize = 2;
const HD: usize = C / NH;
const F: usize = 48;
const L: usize = 2;
const CTX: usize = 64;

fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// llama.cpp's converter: within each head, rows (half, i) move to (i, half).
fn permute_for_gguf(w: &[f32], heads: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..HD / 2 {
            for j in 0..2 {
                let (dst, src) = (h * HD + i * 2 + j, h * HD + j * (HD / 2) + i);
                out[dst * C..(dst + 1) * C].copy_from_slice(&w[src * C..(src + 1) * C]);
            }
        }
    }
    out
}

#[test]
fn hugging_face_llama_folder_matches_the_same_weights_in_gguf() {
    let mut rng = Rng::new(11);
    let mut hf: Vec<(String, Vec<usize>, Vec<f32>)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![V, C],
        random(&mut rng, V * C, 0.5),
    )];
    let mut gg = GgufWriter::new();
    let put = |gg: &mut GgufWriter, name: &str, shape: &[usize], v: &[f32]| {
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        gg.add_tensor(name, &dims, DType::F32, bytes(v));
    };
    put(&mut gg, "token_embd.weight", &[V, C], &hf[0].2);
    for l in 0..L {
        let mats = [
            ("self_attn.q_proj", "attn_q", NH * HD, C),
            ("self_attn.k_proj", "attn_k", NKV * HD, C),
            ("self_attn.v_proj", "attn_v", NKV * HD, C),
            ("self_attn.o_proj", "attn_output", C, NH * HD),
            ("mlp.gate_proj", "ffn_gate", F, C),
            ("mlp.up_proj", "ffn_up", F, C),
            ("mlp.down_proj", "ffn_down", C, F),
        ];
        for (h, g, r, k) in mats {
            let w = random(&mut rng, r * k, 0.3);
            let gw = match g {
                "attn_q" => permute_for_gguf(&w, NH),
                "attn_k" => permute_for_gguf(&w, NKV),
                _ => w.clone(),
            };
            put(&mut gg, &format!("blk.{l}.{g}.weight"), &[r, k], &gw);
            hf.push((format!("model.layers.{l}.{h}.weight"), vec![r, k], w));
        }
        for (h, g) in [
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            let w: Vec<f32> = random(&mut rng, C, 0.2).iter().map(|x| 1.0 + x).collect();
            put(&mut gg, &format!("blk.{l}.{g}.weight"), &[C], &w);
            hf.push((format!("model.layers.{l}.{h}.weight"), vec![C], w));
        }
    }
    let w: Vec<f32> = random(&mut rng, C, 0.2).iter().map(|x| 1.0 + x).collect();
    put(&mut gg, "output_norm.weight", &[C], &w);
    hf.push(("model.norm.weight".into(), vec![C], w));

    gg.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in [
        ("block_count", L),
        ("context_length", CTX),
        ("embedding_length", C),
        ("feed_forward_length", F),
        ("attention.head_count", NH),
        ("attention.head_count_kv", NKV),
        ("rope.dimension_count", HD),
    ] {
        gg.add_metadata(format!("llama.{k}"), Value::U32(v as u32));
    }
    gg.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    gg.add_metadata("llama.rope.freq_base", Value::F32(10000.0));
    let gguf =
        GgufFile::from_bytes("tiny-llama.gguf", Bytes::from_vec(gg.to_bytes().unwrap())).unwrap();

    let dir = std::env::temp_dir().join(format!("tiny-llama-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = hf
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), bytes(v)))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
        "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": NH,
        "num_key_value_heads": NKV, "rms_norm_eps": 1e-5, "max_position_embeddings": CTX,
        "vocab_size": V, "tie_word_embeddings": true, "hidden_act": "silu",
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let mut a = Transformer::from_gguf(&gguf).unwrap();
    let mut b = Transformer::from_hf_dir(&dir).unwrap();
    a.precision = gpt::kernels::Precision::F32;
    b.precision = gpt::kernels::Precision::F32;
    let ids: Vec<u32> = (0..20).map(|i| (i * 7 % V) as u32).collect();
    let la = a
        .forward(&ids, &mut a.new_cache(), Logits::All, None)
        .unwrap();
    let lb = b
        .forward(&ids, &mut b.new_cache(), Logits::All, None)
        .unwrap();
    let diff = la
        .iter()
        .zip(&lb)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let spread = la.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(spread > 0.1, "degenerate logits");
    assert!(
        diff < 1e-4,
        "GGUF and Hugging Face layouts differ by {diff}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
