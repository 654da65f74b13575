//! One table per architecture: what its blocks are made of and what its tensors are called.
//!
//! The loader ([`super::load`]) is one builder for every architecture and every source. It asks
//! for tensors by llama.cpp's GGUF names (`token_embd`, `blk.{l}.attn_q`, ...; the names of
//! llama.cpp's `llama-arch.cpp`, the same for every architecture) and reads the block features
//! from the architecture's [`ArchSpec`]. A Hugging Face folder is another source of the same
//! tensors: its names are translated through the architecture's [`HfNames`] table, as
//! llama.cpp's `convert_hf_to_gguf.py` maps them the other way.
//!
//! Adding an architecture is a table entry here, plus any block feature it is the first to need.

use super::rope::RopePairs;

/// The architecture families gpt-rs runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// Llama 2/3, SmolLM2 (and Mistral in GGUF, which llama.cpp files as `llama`): RMSNorm,
    /// RoPE, grouped-query attention, SwiGLU MLP, no biases.
    #[default]
    Llama,
    /// Mistral from Hugging Face folders: Llama's block with a sliding window on every layer.
    Mistral,
    /// GPT-2: LayerNorm, learned position embeddings, GELU MLP, biases everywhere.
    Gpt2,
    /// Gemma 3 (text): GeGLU, QK-norm, norms before and after attention and MLP, embeddings
    /// scaled by sqrt(C), sliding-window attention on five of every six layers with their own
    /// RoPE base.
    Gemma3,
    /// Qwen2 / Qwen2.5: Llama's block with biases on the Q, K and V projections.
    Qwen2,
    /// Qwen3: Llama's block with RMSNorm on each head's queries and keys (QK-norm).
    Qwen3,
    /// Phi-3: Llama's block with fused QKV and gate/up projections.
    Phi3,
}

/// Which normalization the blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// x / rms(x) * w
    Rms,
    /// (x - mean) / std * w + b
    Layer,
}

/// Which MLP the blocks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    /// down(silu(gate(x)) * up(x))
    SwiGlu,
    /// down(gelu(gate(x)) * up(x)), GELU with the tanh approximation
    GeGlu,
    /// proj(gelu(fc(x)))
    Gelu,
}

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// A learned embedding row per position, added to the token's (GPT-2).
    Learned,
    /// Rotary embeddings on queries and keys. GGUF files of llama.cpp's "normal" RoPE
    /// architectures store Q/K rows permuted for adjacent pairs; its "NEOX" architectures keep
    /// Hugging Face's order (rotate halves). Hugging Face folders always rotate halves.
    Rope { gguf_pairs: RopePairs },
}

/// Which layers attend through a sliding window, when the file does not list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingPattern {
    /// Every layer sees the whole context.
    None,
    /// Every layer attends through the window (Mistral v0.1, Phi-3).
    All,
    /// Every n-th layer is global, the others slide (Gemma 3: n = 6, layers 5, 11, 17... global;
    /// llama.cpp's `set_swa_pattern(6)`).
    GlobalEvery(usize),
}

/// An architecture: its names in files and the block features it uses.
#[derive(Debug)]
pub struct ArchSpec {
    pub arch: Arch,
    /// `general.architecture` values of GGUF files with this architecture.
    pub gguf_names: &'static [&'static str],
    /// config.json `model_type` values of Hugging Face folders with this architecture.
    pub hf_model_types: &'static [&'static str],
    pub norm: NormKind,
    pub mlp: MlpKind,
    pub positions: Positions,
    /// RMSNorm on each head's queries and keys before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// Norms after attention and after the MLP, before the residual add
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// The token embedding is scaled by sqrt(C) before the first block.
    pub embed_scale_sqrt_c: bool,
    /// Hugging Face stores RMSNorm gains as w - 1 and computes x / rms(x) * (1 + w) (Gemma);
    /// llama.cpp's converter folds the 1 into GGUF files.
    pub hf_norm_plus_one: bool,
    /// The MLP's gate and up projections are one (2F, C) matrix, gate rows first (Phi-3).
    pub fused_gate_up: bool,
    pub sliding: SlidingPattern,
    /// The RoPE base of sliding layers when it is not the file's (Gemma 3: 10 000, fixed by the
    /// architecture in llama.cpp and `rope_local_base_freq` in transformers).
    pub sliding_rope_theta: Option<f32>,
    pub hf_names: &'static HfNames,
}

/// Hugging Face's tensor names for the GGUF names the loader asks for: `(gguf, hf)` pairs, where
/// `{l}` stands for the layer index. `.weight` / `.bias` suffixes are the same in both.
#[derive(Debug)]
pub struct HfNames {
    /// Prepended to every name but `output` when the folder's names carry it (GPT-2's
    /// `transformer.`); tried with and without.
    pub optional_prefix: &'static str,
    pub names: &'static [(&'static str, &'static str)],
    /// Linear weights are stored (in, out) (GPT-2's Conv1D) instead of nn.Linear's (out, in).
    pub conv1d: bool,
}

impl HfNames {
    /// The Hugging Face name of a GGUF tensor name (`blk.3.attn_q.weight` ->
    /// `model.layers.3.self_attn.q_proj.weight`), without the optional prefix.
    pub fn translate(&self, gguf: &str) -> Option<String> {
        let (stem, suffix) = gguf.rsplit_once('.')?;
        let (layer, role) = match stem.strip_prefix("blk.") {
            Some(rest) => {
                let (l, role) = rest.split_once('.')?;
                (Some(l), role)
            }
            None => (None, stem),
        };
        let (_, hf) = self
            .names
            .iter()
            .find(|(g, hf)| *g == role && (layer.is_some() == hf.contains("{l}")))?;
        let hf = match layer {
            Some(l) => hf.replace("{l}", l),
            None => hf.to_string(),
        };
        Some(format!("{hf}.{suffix}"))
    }
}

const LLAMA_HF: HfNames = HfNames {
    optional_prefix: "",
    conv1d: false,
    names: &[
        ("token_embd", "model.embed_tokens"),
        ("output_norm", "model.norm"),
        ("output", "lm_head"),
        ("attn_norm", "model.layers.{l}.input_layernorm"),
        ("attn_q", "model.layers.{l}.self_attn.q_proj"),
        ("attn_k", "model.layers.{l}.self_attn.k_proj"),
        ("attn_v", "model.layers.{l}.self_attn.v_proj"),
        ("attn_qkv", "model.layers.{l}.self_attn.qkv_proj"),
        ("attn_output", "model.layers.{l}.self_attn.o_proj"),
        ("attn_q_norm", "model.layers.{l}.self_attn.q_norm"),
        ("attn_k_norm", "model.layers.{l}.self_attn.k_norm"),
        ("ffn_norm", "model.layers.{l}.post_attention_layernorm"),
        ("ffn_gate", "model.layers.{l}.mlp.gate_proj"),
        ("ffn_up", "model.layers.{l}.mlp.up_proj"),
        ("ffn_down", "model.layers.{l}.mlp.down_proj"),
    ],
};

/// Phi-3 fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj` (GGUF's `ffn_up`, 2F rows).
const PHI3_HF: HfNames = HfNames {
    optional_prefix: "",
    conv1d: false,
    names: &[
        ("token_embd", "model.embed_tokens"),
        ("output_norm", "model.norm"),
        ("output", "lm_head"),
        ("attn_norm", "model.layers.{l}.input_layernorm"),
        ("attn_qkv", "model.layers.{l}.self_attn.qkv_proj"),
        ("attn_output", "model.layers.{l}.self_attn.o_proj"),
        ("ffn_norm", "model.layers.{l}.post_attention_layernorm"),
        ("ffn_up", "model.layers.{l}.mlp.gate_up_proj"),
        ("ffn_down", "model.layers.{l}.mlp.down_proj"),
    ],
};

/// Gemma 3's `post_attention_layernorm` is the norm *after* attention; the MLP's pre-norm is
/// `pre_feedforward_layernorm` (in Llama, `post_attention_layernorm` is the MLP's pre-norm).
const GEMMA3_HF: HfNames = HfNames {
    optional_prefix: "",
    conv1d: false,
    names: &[
        ("token_embd", "model.embed_tokens"),
        ("output_norm", "model.norm"),
        ("output", "lm_head"),
        ("attn_norm", "model.layers.{l}.input_layernorm"),
        ("attn_q", "model.layers.{l}.self_attn.q_proj"),
        ("attn_k", "model.layers.{l}.self_attn.k_proj"),
        ("attn_v", "model.layers.{l}.self_attn.v_proj"),
        ("attn_output", "model.layers.{l}.self_attn.o_proj"),
        ("attn_q_norm", "model.layers.{l}.self_attn.q_norm"),
        ("attn_k_norm", "model.layers.{l}.self_attn.k_norm"),
        (
            "post_attention_norm",
            "model.layers.{l}.post_attention_layernorm",
        ),
        ("ffn_norm", "model.layers.{l}.pre_feedforward_layernorm"),
        ("ffn_gate", "model.layers.{l}.mlp.gate_proj"),
        ("ffn_up", "model.layers.{l}.mlp.up_proj"),
        ("ffn_down", "model.layers.{l}.mlp.down_proj"),
        (
            "post_ffw_norm",
            "model.layers.{l}.post_feedforward_layernorm",
        ),
    ],
};

const GPT2_HF: HfNames = HfNames {
    optional_prefix: "transformer.",
    conv1d: true,
    names: &[
        ("token_embd", "wte"),
        ("position_embd", "wpe"),
        ("output_norm", "ln_f"),
        ("output", "lm_head"),
        ("attn_norm", "h.{l}.ln_1"),
        ("attn_qkv", "h.{l}.attn.c_attn"),
        ("attn_output", "h.{l}.attn.c_proj"),
        ("ffn_norm", "h.{l}.ln_2"),
        ("ffn_up", "h.{l}.mlp.c_fc"),
        ("ffn_down", "h.{l}.mlp.c_proj"),
    ],
};

const NEOX: Positions = Positions::Rope {
    gguf_pairs: RopePairs::Halves,
};

/// A Llama-style block; the other entries say only how they differ.
const LLAMA: ArchSpec = ArchSpec {
    arch: Arch::Llama,
    gguf_names: &["llama"],
    hf_model_types: &["llama"],
    norm: NormKind::Rms,
    mlp: MlpKind::SwiGlu,
    // llama.cpp's converter permutes Llama's Q/K rows for its adjacent-pair ("normal") RoPE.
    positions: Positions::Rope {
        gguf_pairs: RopePairs::Adjacent,
    },
    qk_norm: false,
    post_norms: false,
    embed_scale_sqrt_c: false,
    hf_norm_plus_one: false,
    fused_gate_up: false,
    sliding: SlidingPattern::None,
    sliding_rope_theta: None,
    hf_names: &LLAMA_HF,
};

pub const ARCHITECTURES: &[ArchSpec] = &[
    LLAMA,
    ArchSpec {
        arch: Arch::Mistral,
        gguf_names: &[],
        hf_model_types: &["mistral"],
        sliding: SlidingPattern::All,
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Gpt2,
        gguf_names: &["gpt2"],
        hf_model_types: &["gpt2"],
        norm: NormKind::Layer,
        mlp: MlpKind::Gelu,
        positions: Positions::Learned,
        hf_names: &GPT2_HF,
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Gemma3,
        gguf_names: &["gemma3"],
        hf_model_types: &["gemma3_text", "gemma3"],
        mlp: MlpKind::GeGlu,
        positions: NEOX,
        qk_norm: true,
        post_norms: true,
        embed_scale_sqrt_c: true,
        hf_norm_plus_one: true,
        sliding: SlidingPattern::GlobalEvery(6),
        sliding_rope_theta: Some(10_000.0),
        hf_names: &GEMMA3_HF,
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Qwen2,
        gguf_names: &["qwen2"],
        hf_model_types: &["qwen2"],
        positions: NEOX,
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Qwen3,
        gguf_names: &["qwen3"],
        hf_model_types: &["qwen3"],
        positions: NEOX,
        qk_norm: true,
        ..LLAMA
    },
    ArchSpec {
        arch: Arch::Phi3,
        gguf_names: &["phi3"],
        hf_model_types: &["phi3"],
        positions: NEOX,
        fused_gate_up: true,
        sliding: SlidingPattern::All,
        hf_names: &PHI3_HF,
        ..LLAMA
    },
];

impl Arch {
    /// This architecture's table entry.
    pub fn spec(self) -> &'static ArchSpec {
        ARCHITECTURES
            .iter()
            .find(|s| s.arch == self)
            .expect("every Arch has an ArchSpec")
    }

    /// The architecture of a GGUF file's `general.architecture`.
    pub fn from_gguf_name(name: &str) -> Option<Arch> {
        ARCHITECTURES
            .iter()
            .find(|s| s.gguf_names.contains(&name))
            .map(|s| s.arch)
    }

    /// The architecture of a config.json `model_type`.
    pub fn from_hf_model_type(name: &str) -> Option<Arch> {
        ARCHITECTURES
            .iter()
            .find(|s| s.hf_model_types.contains(&name))
            .map(|s| s.arch)
    }

    /// Every GGUF architecture name gpt-rs runs, for error messages.
    pub fn gguf_names() -> String {
        let names: Vec<&str> = ARCHITECTURES
            .iter()
            .flat_map(|s| s.gguf_names)
            .copied()
            .collect();
        names.join(", ")
    }

    /// Every config.json model_type gpt-rs runs, for error messages.
    pub fn hf_model_types() -> String {
        let names: Vec<&str> = ARCHITECTURES
            .iter()
            .flat_map(|s| s.hf_model_types)
            .copied()
            .collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arch_has_one_entry() {
        for a in [
            Arch::Llama,
            Arch::Mistral,
            Arch::Gpt2,
            Arch::Gemma3,
            Arch::Qwen2,
            Arch::Qwen3,
            Arch::Phi3,
        ] {
            assert_eq!(ARCHITECTURES.iter().filter(|s| s.arch == a).count(), 1);
        }
    }

    #[test]
    fn names_translate_to_hugging_face() {
        let t = |a: Arch, n: &str| a.spec().hf_names.translate(n);
        assert_eq!(
            t(Arch::Llama, "blk.3.attn_q.weight").as_deref(),
            Some("model.layers.3.self_attn.q_proj.weight")
        );
        assert_eq!(
            t(Arch::Gemma3, "blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            t(Arch::Gpt2, "blk.1.attn_qkv.bias").as_deref(),
            Some("h.1.attn.c_attn.bias")
        );
        assert_eq!(
            t(Arch::Gpt2, "output.weight").as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(t(Arch::Llama, "blk.0.post_ffw_norm.weight"), None);
    }
}
