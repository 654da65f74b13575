//! Hugging Face's `config.json`: the hyperparameters of a model folder.

use crate::model::config::{Arch, Config};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// A parsed config.json with what loading needs beyond [`Config`].
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub config: Config,
    /// `tie_word_embeddings`: the unembedding is the token embedding matrix.
    pub tied: bool,
    /// The `architectures[0]` name, e.g. "GPT2LMHeadModel".
    pub architecture: String,
}

const MAX_DIM: u64 = 1 << 20;

impl HfConfig {
    pub fn from_file(path: &Path) -> Result<HfConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::Format {
            file: path.display().to_string(),
            msg: format!("invalid JSON: {e}"),
        })?;
        Self::from_json(&v, &path.display().to_string())
    }

    pub fn from_json(v: &Value, file: &str) -> Result<HfConfig> {
        let field = |k: &str, msg: String| Error::Field {
            file: file.into(),
            field: k.into(),
            msg,
        };
        let int = |k: &str| -> Result<usize> {
            let x = v
                .get(k)
                .and_then(|x| x.as_u64())
                .ok_or_else(|| field(k, "missing or not a positive integer".into()))?;
            if x == 0 || x > MAX_DIM * 8 {
                return Err(field(k, format!("{x} is out of range")));
            }
            Ok(x as usize)
        };
        let float = |k: &str, default: f64| v.get(k).and_then(|x| x.as_f64()).unwrap_or(default);
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        let architecture = v
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .unwrap_or(model_type)
            .to_string();
        let tied = v
            .get("tie_word_embeddings")
            .and_then(|x| x.as_bool())
            .unwrap_or(true);
        let config = match model_type {
            "gpt2" => {
                let act = v
                    .get("activation_function")
                    .and_then(|x| x.as_str())
                    .unwrap_or("gelu_new");
                if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
                    return Err(field(
                        "activation_function",
                        format!("'{act}' is not supported (gelu_new, the tanh approximation, is)"),
                    ));
                }
                for flag in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
                    if v.get(flag).and_then(|x| x.as_bool()).unwrap_or(false) {
                        return Err(field(flag, "true is not supported".into()));
                    }
                }
                let d_model = int("n_embd")?;
                let n_head = int("n_head")?;
                if d_model % n_head != 0 {
                    return Err(field(
                        "n_head",
                        format!("{n_head} heads do not divide n_embd {d_model}"),
                    ));
                }
                let d_ff = match v.get("n_inner") {
                    Some(Value::Null) | None => 4 * d_model,
                    Some(_) => int("n_inner")?,
                };
                Config {
                    arch: Arch::Gpt2,
                    n_layer: int("n_layer")?,
                    d_model,
                    n_head,
                    n_kv_head: n_head,
                    head_dim: d_model / n_head,
                    d_ff,
                    vocab_size: int("vocab_size")?,
                    context_length: int("n_positions")?,
                    norm_eps: float("layer_norm_epsilon", 1e-5) as f32,
                    rope_theta: None,
                    rope_dim: 0,
                }
            }
            "llama" => {
                let act = v
                    .get("hidden_act")
                    .and_then(|x| x.as_str())
                    .unwrap_or("silu");
                if act != "silu" {
                    return Err(field(
                        "hidden_act",
                        format!("'{act}' is not supported (silu is)"),
                    ));
                }
                let d_model = int("hidden_size")?;
                let n_head = int("num_attention_heads")?;
                let n_kv_head = match v.get("num_key_value_heads") {
                    Some(Value::Null) | None => n_head,
                    Some(_) => int("num_key_value_heads")?,
                };
                let head_dim = match v.get("head_dim") {
                    Some(Value::Null) | None => d_model / n_head,
                    Some(_) => int("head_dim")?,
                };
                if n_head % n_kv_head != 0 || head_dim % 2 != 0 || head_dim * n_head != d_model {
                    return Err(field(
                        "num_attention_heads",
                        format!("{n_head} heads of {head_dim} with {n_kv_head} key/value heads do not fit hidden_size {d_model}"),
                    ));
                }
                // transformers 5 nests rope_theta in rope_parameters; earlier versions keep it on top.
                let theta = v
                    .get("rope_parameters")
                    .and_then(|r| r.get("rope_theta"))
                    .or_else(|| v.get("rope_theta"))
                    .and_then(|x| x.as_f64())
                    .unwrap_or(10000.0);
                let rope_type = v
                    .get("rope_parameters")
                    .and_then(|r| r.get("rope_type"))
                    .and_then(|x| x.as_str());
                if v.get("rope_scaling").is_some_and(|r| !r.is_null())
                    || rope_type.is_some_and(|t| t != "default")
                {
                    return Err(field("rope_scaling", "scaled RoPE is not supported".into()));
                }
                Config {
                    arch: Arch::Llama,
                    n_layer: int("num_hidden_layers")?,
                    d_model,
                    n_head,
                    n_kv_head,
                    head_dim,
                    d_ff: int("intermediate_size")?,
                    vocab_size: int("vocab_size")?,
                    context_length: int("max_position_embeddings")?,
                    norm_eps: float("rms_norm_eps", 1e-6) as f32,
                    rope_theta: Some(theta as f32),
                    rope_dim: head_dim,
                }
            }
            other => {
                return Err(field(
                    "model_type",
                    format!("'{other}' is not supported from safetensors (supported: gpt2, llama)"),
                ))
            }
        };
        Ok(HfConfig {
            config,
            tied,
            architecture,
        })
    }
}
