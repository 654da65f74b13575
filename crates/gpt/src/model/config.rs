//! Hyperparameters, read from a model file's metadata.

use crate::formats::gguf::GgufFile;
use crate::{Error, Result};

/// The architecture family: what the blocks are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama family (SmolLM2, Llama 2/3, Mistral...): RMSNorm, RoPE, grouped-query attention,
    /// SwiGLU MLP, no biases.
    Llama,
    /// GPT-2: LayerNorm, learned position embeddings, GELU MLP, biases everywhere.
    Gpt2,
}

/// Hyperparameters. Values in the comments are SmolLM2-135M's.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// L: transformer blocks (30).
    pub n_layer: usize,
    /// C: width of the residual stream (576).
    pub d_model: usize,
    /// NH: query heads (9).
    pub n_head: usize,
    /// NKV: key/value heads (3); each serves NH / NKV query heads (grouped-query attention).
    pub n_kv_head: usize,
    /// HS: head size (64).
    pub head_dim: usize,
    /// F: hidden width of the MLP (1536).
    pub d_ff: usize,
    /// V: vocabulary size (49152).
    pub vocab_size: usize,
    /// The context window: the most positions the model was trained for (8192).
    pub context_length: usize,
    /// Epsilon inside the norm's square root (1e-5).
    pub norm_eps: f32,
    /// RoPE base frequency (100000); `None` for learned position embeddings.
    pub rope_theta: Option<f32>,
    /// How many dimensions of each head RoPE rotates (64 = HS).
    pub rope_dim: usize,
}

/// Bounds on hyperparameters, so that a corrupt file cannot make us allocate absurd buffers.
const MAX_DIM: u64 = 1 << 20;
const MAX_LAYERS: u64 = 4096;

impl Config {
    /// Reads `{arch}.*` keys as llama.cpp names them.
    pub fn from_gguf(g: &GgufFile) -> Result<Config> {
        let arch_name = g.architecture()?.to_string();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "gpt2" => Arch::Gpt2,
            other => {
                return Err(Error::Field {
                    file: g.name.clone(),
                    field: "general.architecture".into(),
                    msg: format!("unsupported architecture '{other}' (supported: llama, gpt2)"),
                })
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let field_err = |k: &str, msg: String| Error::Field {
            file: g.name.clone(),
            field: key(k),
            msg,
        };
        let dim = |k: &str, max: u64| -> Result<usize> {
            let v = g.get_u64(&key(k))?;
            if v == 0 || v > max {
                return Err(field_err(k, format!("value {v} is out of range 1..={max}")));
            }
            Ok(v as usize)
        };
        let n_layer = dim("block_count", MAX_LAYERS)?;
        let d_model = dim("embedding_length", MAX_DIM)?;
        let n_head = dim("attention.head_count", MAX_DIM)?;
        let n_kv_head = match g.get(&key("attention.head_count_kv")) {
            Some(_) => dim("attention.head_count_kv", MAX_DIM)?,
            None => n_head,
        };
        let d_ff = dim("feed_forward_length", MAX_DIM * 8)?;
        let context_length = dim("context_length", 1 << 24)?;
        if d_model % n_head != 0 || n_head % n_kv_head != 0 {
            return Err(field_err(
                "attention.head_count",
                format!("{n_head} query heads and {n_kv_head} key/value heads do not divide d_model {d_model} evenly"),
            ));
        }
        let head_dim = d_model / n_head;
        let (norm_key, rope_theta) = match arch {
            Arch::Llama => (
                "attention.layer_norm_rms_epsilon",
                Some(g.get_f64_opt(&key("rope.freq_base"))?.unwrap_or(10000.0) as f32),
            ),
            Arch::Gpt2 => ("attention.layer_norm_epsilon", None),
        };
        let norm_eps = g.get_f64(&key(norm_key))? as f32;
        let rope_dim = match g.get(&key("rope.dimension_count")) {
            Some(_) => dim("rope.dimension_count", head_dim as u64)?,
            None => head_dim,
        };
        if rope_dim % 2 != 0 {
            return Err(field_err(
                "rope.dimension_count",
                format!("{rope_dim} is odd"),
            ));
        }
        // The vocabulary size is the token embedding's row count; the metadata key is optional.
        let vocab_size = match g.tensor_info("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => {
                return Err(Error::Tensor {
                    name: "token_embd.weight".into(),
                    msg: format!("{}: missing or not 2-D", g.name),
                })
            }
        };
        Ok(Config {
            arch,
            n_layer,
            d_model,
            n_head,
            n_kv_head,
            head_dim,
            d_ff,
            vocab_size,
            context_length,
            norm_eps,
            rope_theta,
            rope_dim,
        })
    }

    /// Width of the key and value projections: NKV * HS.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}
