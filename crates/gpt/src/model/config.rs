//! Hyperparameters, read from a model file's metadata.

use super::arch::{Positions, SlidingPattern};
use crate::formats::gguf::{GgufFile, Value};
use crate::{Error, Result};

pub use super::arch::Arch;

/// Hyperparameters. Values in the comments are SmolLM2-135M's (Gemma 3 270M's where it has a
/// feature SmolLM2 lacks).
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// HS: head size (64). Usually C / NH, but not always (Gemma 3 270M: 4 heads of 256, C = 640).
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
    /// Positions are divided by this before RoPE on global layers (linear RoPE scaling; 1).
    pub rope_scale: f32,
    /// (rope_dim / 2) Divisors of RoPE's frequencies (Llama 3.1's scaling, from config.json);
    /// GGUF files store them as the tensor `rope_freqs.weight` instead.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// The RoPE base of sliding-window layers when it differs from `rope_theta` (Gemma 3: 10000).
    pub rope_theta_sliding: Option<f32>,
    /// Each query of a sliding layer sees the last `sliding_window` positions, itself included
    /// (Gemma 3 270M: 512); `None`: no layer slides.
    pub sliding_window: Option<usize>,
    /// (L) Which layers attend through the sliding window (Gemma 3: all but every sixth);
    /// empty when none does.
    pub sliding_layers: Vec<bool>,
    /// The factor on q·k; `None` for 1 / sqrt(HS).
    pub attn_scale: Option<f32>,
}

/// Bounds on hyperparameters, so that a corrupt file cannot make us allocate absurd buffers.
const MAX_DIM: u64 = 1 << 20;
/// Layers a config may declare: far above any real model, low enough that nothing sized by
/// it can exhaust memory before the tensors are checked.
pub(crate) const MAX_LAYERS: u64 = 4096;

impl Config {
    /// The `{arch}.*` keys [`Self::from_gguf`] reads, as llama.cpp's `convert_hf_to_gguf.py`
    /// writes them (what llama.cpp fixes by architecture, such as Gemma 3's sliding pattern, is
    /// left out as the converter leaves it out).
    pub fn gguf_metadata(&self, arch_name: &str) -> Vec<(String, Value)> {
        let key = |k: &str| format!("{arch_name}.{k}");
        let n = |x: usize| Value::U32(x as u32);
        let mut m = vec![
            (key("block_count"), n(self.n_layer)),
            (key("context_length"), n(self.context_length)),
            (key("embedding_length"), n(self.d_model)),
            (key("feed_forward_length"), n(self.d_ff)),
            (key("attention.head_count"), n(self.n_head)),
        ];
        match self.rope_theta {
            None => m.push((
                key("attention.layer_norm_epsilon"),
                Value::F32(self.norm_eps),
            )),
            Some(theta) => {
                m.extend([
                    (key("attention.head_count_kv"), n(self.n_kv_head)),
                    (key("rope.freq_base"), Value::F32(theta)),
                    (
                        key("attention.layer_norm_rms_epsilon"),
                        Value::F32(self.norm_eps),
                    ),
                    (key("attention.key_length"), n(self.head_dim)),
                    (key("attention.value_length"), n(self.head_dim)),
                    (key("vocab_size"), n(self.vocab_size)),
                    (key("rope.dimension_count"), n(self.rope_dim)),
                ]);
                if self.rope_scale != 1.0 {
                    m.push((key("rope.scaling.type"), Value::String("linear".into())));
                    m.push((key("rope.scaling.factor"), Value::F32(self.rope_scale)));
                }
            }
        }
        m
    }

    /// Reads `{arch}.*` keys as llama.cpp names them; what GGUF does not store (Gemma 3's
    /// sliding pattern and local RoPE base) comes from the architecture's table.
    pub fn from_gguf(g: &GgufFile) -> Result<Config> {
        let arch_name = g.architecture()?.to_string();
        let arch = Arch::from_gguf_name(&arch_name).ok_or_else(|| Error::Field {
            file: g.name.clone(),
            field: "general.architecture".into(),
            msg: format!(
                "unsupported architecture '{arch_name}' (supported: {})",
                Arch::gguf_names()
            ),
        })?;
        let spec = arch.spec();
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
        let opt_dim = |k: &str, max: u64| -> Result<Option<usize>> {
            match g.get(&key(k)) {
                Some(_) => dim(k, max).map(Some),
                None => Ok(None),
            }
        };
        let n_layer = dim("block_count", MAX_LAYERS)?;
        let d_model = dim("embedding_length", MAX_DIM)?;
        let n_head = dim("attention.head_count", MAX_DIM)?;
        let n_kv_head = opt_dim("attention.head_count_kv", MAX_DIM)?.unwrap_or(n_head);
        let d_ff = dim("feed_forward_length", MAX_DIM * 8)?;
        let context_length = dim("context_length", 1 << 24)?;
        if n_head % n_kv_head != 0 {
            return Err(field_err(
                "attention.head_count_kv",
                format!("{n_kv_head} key/value heads do not divide {n_head} query heads"),
            ));
        }
        // The head size is C / NH unless the file says otherwise (key_length).
        let head_dim = match opt_dim("attention.key_length", MAX_DIM)? {
            Some(hs) => {
                if opt_dim("attention.value_length", MAX_DIM)?.is_some_and(|v| v != hs) {
                    return Err(field_err(
                        "attention.value_length",
                        "differs from attention.key_length (not supported)".into(),
                    ));
                }
                hs
            }
            None if d_model % n_head == 0 => d_model / n_head,
            None => {
                return Err(field_err(
                    "attention.head_count",
                    format!("{n_head} heads do not divide embedding_length {d_model}"),
                ))
            }
        };
        let (norm_key, rope_theta) = match spec.positions {
            Positions::Rope { .. } => (
                "attention.layer_norm_rms_epsilon",
                Some(g.get_f64_opt(&key("rope.freq_base"))?.unwrap_or(10000.0) as f32),
            ),
            Positions::Learned => ("attention.layer_norm_epsilon", None),
        };
        let norm_eps = g.get_f64(&key(norm_key))? as f32;
        let rope_dim = opt_dim("rope.dimension_count", head_dim as u64)?.unwrap_or(head_dim);
        if rope_dim % 2 != 0 {
            return Err(field_err(
                "rope.dimension_count",
                format!("{rope_dim} is odd"),
            ));
        }
        let rope_scale = match g.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => {
                let f = g.get_f64_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                if !(f.is_finite() && f > 0.0) {
                    return Err(field_err(
                        "rope.scaling.factor",
                        format!("{f} is not positive"),
                    ));
                }
                f as f32
            }
            Some(other) => {
                return Err(field_err(
                    "rope.scaling.type",
                    format!("RoPE scaling '{other}' is not supported (linear is)"),
                ))
            }
        };
        // 0 means no window (llama.cpp's phi3 converter writes 0 for models without one).
        let sliding_window = match g.get_u64_opt(&key("attention.sliding_window"))? {
            Some(0) | None => None,
            Some(_) => opt_dim("attention.sliding_window", 1 << 24)?,
        };
        let sliding_layers = match g.get(&key("attention.sliding_window_pattern")) {
            // Newer llama.cpp files list the pattern per layer (true = sliding).
            Some(v) if v.as_array().is_some() => {
                let a = v.as_array().unwrap_or_default();
                if a.len() != n_layer {
                    return Err(field_err(
                        "attention.sliding_window_pattern",
                        format!("{} entries for {n_layer} layers", a.len()),
                    ));
                }
                a.iter()
                    .map(|x| x.as_bool().or(x.as_u64().map(|n| n != 0)).unwrap_or(false))
                    .collect()
            }
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= MAX_LAYERS => {
                    sliding_pattern(SlidingPattern::GlobalEvery(n as usize), n_layer)
                }
                _ => {
                    return Err(field_err(
                        "attention.sliding_window_pattern",
                        "neither a layer count nor a list of layers".into(),
                    ))
                }
            },
            None => sliding_pattern(spec.sliding, n_layer),
        };
        let sliding_layers = if sliding_window.is_some() {
            sliding_layers
        } else {
            Vec::new()
        };
        // Newer converters store the sliding layers' RoPE base; older Gemma 3 files rely on
        // llama.cpp's fixed 10 000.
        let rope_theta_sliding = match g.get_f64_opt(&key("rope.freq_base_swa"))? {
            Some(t) if t.is_finite() && t > 0.0 => Some(t as f32),
            Some(t) => {
                return Err(field_err(
                    "rope.freq_base_swa",
                    format!("{t} is not positive"),
                ))
            }
            None => spec.sliding_rope_theta,
        };
        // llama.cpp's gemma3: queries are scaled by 1/sqrt(HS), except in the 27B model (62
        // layers), whose query_pre_attn_scalar is C / NH.
        let attn_scale = match arch {
            Arch::Gemma3 if n_layer == 62 => Some(1.0 / ((d_model / n_head) as f32).sqrt()),
            _ => None,
        };
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
            rope_scale,
            rope_freq_factors: None,
            rope_theta_sliding: rope_theta_sliding.filter(|_| sliding_window.is_some()),
            sliding_window,
            sliding_layers,
            attn_scale,
        })
    }

    /// Whether layer `l` attends through the sliding window.
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(l).copied().unwrap_or(false)
    }

    /// The query scale: 1 / sqrt(HS) unless the architecture sets another.
    pub fn attention_scale(&self) -> f32 {
        self.attn_scale
            .unwrap_or_else(|| 1.0 / (self.head_dim as f32).sqrt())
    }

    /// Width of the key and value projections: NKV * HS.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

/// (L) Which layers slide under `pattern`.
pub fn sliding_pattern(pattern: SlidingPattern, n_layer: usize) -> Vec<bool> {
    match pattern {
        SlidingPattern::None => Vec::new(),
        SlidingPattern::All => vec![true; n_layer],
        SlidingPattern::GlobalEvery(n) => (0..n_layer).map(|l| (l + 1) % n != 0).collect(),
    }
}
