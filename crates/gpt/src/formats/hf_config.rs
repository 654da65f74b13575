//! Hugging Face's `config.json`: the hyperparameters of a model folder.

use crate::model::arch::{MlpKind, SlidingPattern};
use crate::model::config::{sliding_pattern, Arch, Config};
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
use crate::model::config::MAX_LAYERS;

/// Reads config.json's keys, with errors that name the file and the key.
struct Keys<'a> {
    v: &'a Value,
    file: &'a str,
}

impl Keys<'_> {
    fn field(&self, k: &str, msg: String) -> Error {
        Error::Field {
            file: self.file.into(),
            field: k.into(),
            msg,
        }
    }

    /// A positive integer within the bound on dimensions.
    fn int(&self, k: &str) -> Result<usize> {
        self.int_within(k, MAX_DIM * 8)
    }

    /// A positive integer of at most `max`.
    fn int_within(&self, k: &str, max: u64) -> Result<usize> {
        let x = self
            .v
            .get(k)
            .and_then(|x| x.as_u64())
            .ok_or_else(|| self.field(k, "missing or not a positive integer".into()))?;
        if x == 0 || x > max {
            return Err(self.field(k, format!("{x} is out of range (1..={max})")));
        }
        Ok(x as usize)
    }

    fn float(&self, k: &str, default: f64) -> f64 {
        self.v.get(k).and_then(|x| x.as_f64()).unwrap_or(default)
    }
}

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
        let keys = Keys { v, file };
        let (field, int, float) = (
            |k: &str, m: String| keys.field(k, m),
            |k: &str| keys.int(k),
            |k: &str, d: f64| keys.float(k, d),
        );
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
                    n_layer: keys.int_within("n_layer", MAX_LAYERS)?,
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
                    ..Config::default()
                }
            }
            other => match Arch::from_hf_model_type(other) {
                Some(arch) => llama_like(v, arch, file)?,
                None => {
                    return Err(field(
                        "model_type",
                        format!(
                            "'{other}' is not supported from safetensors (supported: {})",
                            Arch::hf_model_types()
                        ),
                    ))
                }
            },
        };
        Ok(HfConfig {
            config,
            tied,
            architecture,
        })
    }
}

/// The hyperparameters of a RoPE architecture (Llama and the families built on its block), by
/// transformers' key names.
fn llama_like(v: &Value, arch: Arch, file: &str) -> Result<Config> {
    let spec = arch.spec();
    let keys = Keys { v, file };
    let (field, int, float) = (
        |k: &str, m: String| keys.field(k, m),
        |k: &str| keys.int(k),
        |k: &str, d: f64| keys.float(k, d),
    );
    let present = |k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let (act_key, act) = ["hidden_act", "hidden_activation"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(|a| (*k, a)))
        .unwrap_or(("hidden_act", "silu"));
    let act_ok = match spec.mlp {
        MlpKind::SwiGlu => act == "silu",
        MlpKind::GeGlu => matches!(act, "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast"),
        MlpKind::Gelu => false,
    };
    if !act_ok {
        return Err(field(
            act_key,
            format!("'{act}' is not supported for {:?} models", arch),
        ));
    }
    for k in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if present(k) {
            return Err(field(k, "logit soft-capping is not supported".into()));
        }
    }
    let d_model = int("hidden_size")?;
    let n_head = int("num_attention_heads")?;
    let n_kv_head = if present("num_key_value_heads") {
        int("num_key_value_heads")?
    } else {
        n_head
    };
    let head_dim = if present("head_dim") {
        int("head_dim")?
    } else {
        d_model / n_head
    };
    if n_head % n_kv_head != 0 || head_dim % 2 != 0 || head_dim == 0 {
        return Err(field(
            "num_attention_heads",
            format!(
                "{n_head} heads of {head_dim} with {n_kv_head} key/value heads do not fit together"
            ),
        ));
    }
    let n_layer = keys.int_within("num_hidden_layers", MAX_LAYERS)?;
    // transformers 5 nests the RoPE settings in rope_parameters, per layer type where the layer
    // types differ (Gemma 3); earlier versions keep rope_theta and rope_scaling on top.
    let rope_params = |layer_type: &str| -> Option<&Value> {
        let rp = v.get("rope_parameters").filter(|r| !r.is_null())?;
        Some(rp.get(layer_type).unwrap_or(rp))
    };
    let theta_of = |layer_type: &str, top: &str, default: f64| -> f64 {
        rope_params(layer_type)
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| v.get(top))
            .and_then(|x| x.as_f64())
            .unwrap_or(default)
    };
    let theta = theta_of("full_attention", "rope_theta", 10000.0);
    let scaling = rope_params("full_attention")
        .filter(|r| r.get("rope_type").is_some())
        .or_else(|| v.get("rope_scaling").filter(|r| !r.is_null()));
    let mut rope_freq_factors = None;
    let rope_scale = match scaling {
        None => 1.0,
        Some(r) => match r
            .get("rope_type")
            .or_else(|| r.get("type"))
            .and_then(|t| t.as_str())
        {
            Some("default") | None => 1.0,
            Some("linear") => {
                let f = r.get("factor").and_then(|x| x.as_f64()).unwrap_or(1.0);
                if !(f.is_finite() && f > 0.0) {
                    return Err(field("rope_scaling", format!("factor {f} is not positive")));
                }
                f as f32
            }
            Some("llama3") => {
                let rope_dim = head_dim; // Llama 3 rotates whole heads
                rope_freq_factors = Some(llama3_freq_factors(r, theta, rope_dim).ok_or_else(|| {
                    field(
                        "rope_scaling",
                        "llama3 scaling needs positive factor, low_freq_factor < high_freq_factor and original_max_position_embeddings".into(),
                    )
                })?);
                1.0
            }
            Some(other) => {
                return Err(field(
                    "rope_scaling",
                    format!("RoPE scaling '{other}' is not supported (linear is)"),
                ))
            }
        },
    };
    let rope_dim = match v.get("partial_rotary_factor").and_then(|x| x.as_f64()) {
        Some(f) if f > 0.0 && f <= 1.0 => ((head_dim as f64 * f) as usize) & !1,
        Some(f) => {
            return Err(field(
                "partial_rotary_factor",
                format!("{f} is out of (0, 1]"),
            ))
        }
        None => head_dim,
    };
    // Which layers slide: transformers' explicit layer_types where given, else the family's rule.
    let mut sliding_window = if present("sliding_window") {
        Some(int("sliding_window")?)
    } else {
        None
    };
    if arch == Arch::Qwen2
        && !v
            .get("use_sliding_window")
            .and_then(|x| x.as_bool())
            .unwrap_or(false)
    {
        sliding_window = None;
    }
    let sliding_layers = if let Some(types) = v.get("layer_types").and_then(|x| x.as_array()) {
        if types.len() != n_layer {
            return Err(field(
                "layer_types",
                format!("{} entries for {n_layer} layers", types.len()),
            ));
        }
        types
            .iter()
            .map(|t| t.as_str() == Some("sliding_attention"))
            .collect()
    } else {
        match arch {
            Arch::Gemma3 => {
                let n = v
                    .get("sliding_window_pattern")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(6);
                sliding_pattern(SlidingPattern::GlobalEvery(n.max(1) as usize), n_layer)
            }
            Arch::Qwen2 => {
                let from = v
                    .get("max_window_layers")
                    .and_then(|x| x.as_u64())
                    .unwrap_or(0);
                (0..n_layer).map(|l| l as u64 >= from).collect()
            }
            _ => sliding_pattern(spec.sliding, n_layer),
        }
    };
    let (sliding_window, sliding_layers) = if sliding_layers.iter().any(|&s| s) {
        (sliding_window, sliding_layers)
    } else {
        (None, Vec::new())
    };
    let sliding_window = sliding_window.filter(|_| !sliding_layers.is_empty());
    let rope_theta_sliding = spec
        .sliding_rope_theta
        .filter(|_| sliding_window.is_some())
        .map(|d| theta_of("sliding_attention", "rope_local_base_freq", d as f64) as f32);
    let attn_scale = if present("query_pre_attn_scalar") {
        let s = float("query_pre_attn_scalar", 0.0);
        if !(s.is_finite() && s > 0.0) {
            return Err(field(
                "query_pre_attn_scalar",
                format!("{s} is not positive"),
            ));
        }
        Some((1.0 / s.sqrt()) as f32)
    } else {
        None
    };
    Ok(Config {
        arch,
        n_layer,
        d_model,
        n_head,
        n_kv_head,
        head_dim,
        d_ff: int("intermediate_size")?,
        vocab_size: int("vocab_size")?,
        context_length: int("max_position_embeddings")?,
        norm_eps: float("rms_norm_eps", 1e-6) as f32,
        rope_theta: Some(theta as f32),
        rope_dim,
        rope_scale,
        rope_freq_factors,
        rope_theta_sliding,
        sliding_window,
        sliding_layers,
        attn_scale,
    })
}

/// transformers' `_compute_llama3_parameters` as divisors of the plain frequencies (rope_dim / 2):
/// wavelengths longer than original_max_position_embeddings / low_freq_factor are slowed by
/// `factor`, shorter than .. / high_freq_factor kept, and those between blended smoothly.
fn llama3_freq_factors(r: &Value, theta: f64, rope_dim: usize) -> Option<Vec<f32>> {
    let get = |k: &str| r.get(k).and_then(|x| x.as_f64());
    let factor = get("factor")?;
    let low = get("low_freq_factor").unwrap_or(1.0);
    let high = get("high_freq_factor").unwrap_or(4.0);
    let old = get("original_max_position_embeddings")?;
    if !(factor > 0.0 && low > 0.0 && high > low && old > 0.0) {
        return None;
    }
    // In f32 step by step, as llama.cpp's converter computes `rope_freqs` (torch float32), so
    // that an exported file holds the converter's factors; transformers' inv_freq agrees to
    // about 1e-7.
    let (factor, low, high, old) = (factor as f32, low as f32, high as f32, old as f32);
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    Some(
        (0..rope_dim / 2)
            .map(|i| {
                let freq = 1.0 / (theta as f32).powf((2 * i) as f32 / rope_dim as f32);
                let wavelen = two_pi / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect(),
    )
}
