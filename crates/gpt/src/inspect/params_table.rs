//! Where a model's parameters are: a table by part (embeddings, query, key, value, output, MLP,
//! norms, unembedding), per layer and in total, with each part's share.
//!
//! Two sources:
//! - a loaded [`Transformer`]: the sizes of its actual tensors (tied matrices counted once);
//! - [`Hyperparameters`] (the presets GPT-3 175B, GPT-2 small and XL, SmolLM2-135M): the counts
//!   computed from n_layer, d_model, heads, d_ff, vocabulary and context, in one of two
//!   [`Accounting`]s.
//!
//! The seed's accounting (3Blue1Brown's GPT-3 table, [`Accounting::WeightMatrices`]) counts
//! weight matrices only and splits each head's value map into value-down (C -> HS, the usual
//! value matrix) and value-up (HS -> C, that head's columns of the usual output matrix), so its
//! "value-up" is what [`Accounting::Full`] calls "output". For GPT-3 175B it totals
//! 175,181,291,520, attention (query, key, value-down, value-up) about a third.

use crate::model::config::Arch;
use crate::model::linear::Linear;
use crate::model::mlp::Mlp;
use crate::model::norm::Norm;
use crate::model::Transformer;
use crate::{Error, Result};

/// A part of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    TokenEmbedding,
    PositionEmbedding,
    Query,
    Key,
    Value,
    /// The seed's value-down: C -> HS per head (the usual value matrix).
    ValueDown,
    /// The seed's value-up: HS -> C per head (the usual output matrix).
    ValueUp,
    Output,
    MlpUp,
    MlpGate,
    MlpDown,
    /// The two norms of each block.
    Norms,
    FinalNorm,
    Unembedding,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::TokenEmbedding => "token embedding",
            Part::PositionEmbedding => "position embedding",
            Part::Query => "query",
            Part::Key => "key",
            Part::Value => "value",
            Part::ValueDown => "value-down",
            Part::ValueUp => "value-up",
            Part::Output => "output",
            Part::MlpUp => "MLP up",
            Part::MlpGate => "MLP gate",
            Part::MlpDown => "MLP down",
            Part::Norms => "norms",
            Part::FinalNorm => "final norm",
            Part::Unembedding => "unembedding",
        }
    }

    /// Query, key, value and output (or value-down and value-up): the attention's matrices.
    pub fn is_attention(self) -> bool {
        matches!(
            self,
            Part::Query | Part::Key | Part::Value | Part::ValueDown | Part::ValueUp | Part::Output
        )
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// The seed's: weight matrices only (no position embedding, biases or norms), value split
    /// into value-down and value-up.
    WeightMatrices,
    /// Every parameter: biases inside their part, norms, position embeddings.
    Full,
}

impl Accounting {
    pub fn name(self) -> &'static str {
        match self {
            Accounting::WeightMatrices => "weight matrices only (the seed's accounting)",
            Accounting::Full => "every parameter (biases, norms, position embeddings)",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct PartCount {
    pub part: Part,
    /// The shape(s) counted, e.g. "(576, 576)" or "(768, 2304) + (2304)".
    pub shape: String,
    /// The count in one block (`None` for parts outside the blocks, or blocks that differ).
    pub per_layer: Option<u64>,
    /// The count over the whole model (0 for a tied matrix, counted in its twin).
    pub total: u64,
    /// True for a matrix shared with another part (counted once, there).
    pub tied: bool,
}

/// A parameter breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamTable {
    pub title: String,
    pub accounting: Accounting,
    /// L
    pub n_layer: usize,
    pub parts: Vec<PartCount>,
}

impl ParamTable {
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.total).sum()
    }

    /// A part's share of the total, in 0..=1.
    pub fn share(&self, p: &PartCount) -> f64 {
        p.total as f64 / self.total().max(1) as f64
    }

    /// The attention's share of the total.
    pub fn attention_share(&self) -> f64 {
        let a: u64 = self
            .parts
            .iter()
            .filter(|p| p.part.is_attention())
            .map(|p| p.total)
            .sum();
        a as f64 / self.total().max(1) as f64
    }

    /// The total of one part (0 if absent).
    pub fn part_total(&self, part: Part) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.part == part)
            .map(|p| p.total)
            .sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let parts: Vec<_> = self
            .parts
            .iter()
            .map(|p| {
                serde_json::json!({
                    "part": p.part.name(),
                    "shape": p.shape,
                    "per_layer": p.per_layer,
                    "total": p.total,
                    "share": self.share(p),
                    "tied": p.tied,
                })
            })
            .collect();
        serde_json::json!({
            "title": self.title,
            "accounting": self.accounting.name(),
            "n_layer": self.n_layer,
            "parts": parts,
            "total": self.total(),
            "attention_share": self.attention_share(),
        })
    }

    /// Counts a loaded model's tensors: each part's weights and biases, the norms' weights (and
    /// biases for LayerNorm); a tied unembedding is listed with 0 and marked tied.
    pub fn from_model(t: &Transformer, title: &str) -> ParamTable {
        let c = &t.config;
        let linear = |l: &Linear| {
            l.weight.n_elements() as u64 + l.bias.as_ref().map_or(0, |b| b.len() as u64)
        };
        let lshape = |l: &Linear| {
            let w = format!("({}, {})", l.weight.rows, l.weight.cols);
            match &l.bias {
                Some(b) => format!("{w} + ({})", b.len()),
                None => w,
            }
        };
        let norm = |n: &Norm| match n {
            Norm::Rms { weight, .. } => (weight.len() as u64, format!("({})", weight.len())),
            Norm::Layer { weight, bias, .. } => (
                (weight.len() + bias.len()) as u64,
                format!("({}) + ({})", weight.len(), bias.len()),
            ),
        };
        let mut parts = Vec::new();
        let emb = &t.token_embedding.table;
        parts.push(PartCount {
            part: Part::TokenEmbedding,
            shape: format!("({}, {})", emb.rows, emb.cols),
            per_layer: None,
            total: emb.n_elements() as u64,
            tied: t.unembedding.tied,
        });
        if let Some(pe) = &t.position_embedding {
            parts.push(PartCount {
                part: Part::PositionEmbedding,
                shape: format!("({}, {})", pe.table.rows, pe.table.cols),
                per_layer: None,
                total: pe.table.n_elements() as u64,
                tied: false,
            });
        }
        // One entry per block and part: (count, shape).
        type PerBlock = Vec<(Part, Vec<(u64, String)>)>;
        let mut per_block: PerBlock = Vec::new();
        let mut add = |part: Part, count: u64, shape: String| match per_block
            .iter_mut()
            .find(|(p, _)| *p == part)
        {
            Some((_, v)) => v.push((count, shape)),
            None => per_block.push((part, vec![(count, shape)])),
        };
        for b in &t.blocks {
            let a = &b.attn;
            add(Part::Query, linear(&a.wq), lshape(&a.wq));
            add(Part::Key, linear(&a.wk), lshape(&a.wk));
            add(Part::Value, linear(&a.wv), lshape(&a.wv));
            add(Part::Output, linear(&a.wo), lshape(&a.wo));
            match &b.mlp {
                Mlp::SwiGlu { gate, up, down } | Mlp::GeGlu { gate, up, down } => {
                    add(Part::MlpUp, linear(up), lshape(up));
                    add(Part::MlpGate, linear(gate), lshape(gate));
                    add(Part::MlpDown, linear(down), lshape(down));
                }
                Mlp::Gelu { fc, proj } => {
                    add(Part::MlpUp, linear(fc), lshape(fc));
                    add(Part::MlpDown, linear(proj), lshape(proj));
                }
            }
            // Every norm of the block: before attention and MLP, and where the architecture
            // has them, after each (Gemma) and on each head's queries and keys (QK-norm).
            let norms: Vec<(u64, String)> = [
                Some(&b.attn_norm),
                b.attn.q_norm.as_ref(),
                b.attn.k_norm.as_ref(),
                b.post_attn_norm.as_ref(),
                Some(&b.mlp_norm),
                b.post_mlp_norm.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(norm)
            .collect();
            let shapes: Vec<&str> = norms.iter().map(|(_, s)| s.as_str()).collect();
            let shape = if shapes.iter().all(|s| *s == shapes[0]) {
                let s1 = shapes[0];
                if s1.contains('+') {
                    format!("{} x [{s1}]", shapes.len())
                } else {
                    format!("{} x {s1}", shapes.len())
                }
            } else {
                shapes.join(" + ")
            };
            add(Part::Norms, norms.iter().map(|(n, _)| n).sum(), shape);
        }
        for (part, v) in per_block {
            let first = v[0].0;
            parts.push(PartCount {
                part,
                shape: v[0].1.clone(),
                per_layer: v.iter().all(|e| e.0 == first).then_some(first),
                total: v.iter().map(|e| e.0).sum(),
                tied: false,
            });
        }
        let (nf, sf) = norm(&t.final_norm);
        parts.push(PartCount {
            part: Part::FinalNorm,
            shape: sf,
            per_layer: None,
            total: nf,
            tied: false,
        });
        let u = &t.unembedding.linear;
        parts.push(PartCount {
            part: Part::Unembedding,
            shape: lshape(u),
            per_layer: None,
            total: if t.unembedding.tied { 0 } else { linear(u) },
            tied: t.unembedding.tied,
        });
        ParamTable {
            title: title.to_string(),
            accounting: Accounting::Full,
            n_layer: c.n_layer,
            parts,
        }
    }
}

/// A model described by its hyperparameters alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyperparameters {
    pub name: &'static str,
    pub description: &'static str,
    /// GPT-2 style: LayerNorm (weight and bias), learned positions, biases, GELU MLP (up, down).
    /// Llama style: RMSNorm (weight), RoPE, no biases, SwiGLU MLP (gate, up, down).
    pub arch: Arch,
    /// L
    pub n_layer: usize,
    /// C
    pub d_model: usize,
    /// NH
    pub n_head: usize,
    /// NKV
    pub n_kv_head: usize,
    /// F
    pub d_ff: usize,
    /// V
    pub vocab_size: usize,
    /// Positions of the learned position embedding (GPT-2 style).
    pub context_length: usize,
    /// The unembedding is the token embedding matrix.
    pub tied_embeddings: bool,
}

/// The known presets. Hyperparameters from each model's paper or config.json.
pub const PRESETS: &[Hyperparameters] = &[
    Hyperparameters {
        name: "gpt3-175b",
        description: "GPT-3 175B (Brown et al. 2020, table 2.1); unembedding counted separately, as the seed does",
        arch: Arch::Gpt2,
        n_layer: 96,
        d_model: 12288,
        n_head: 96,
        n_kv_head: 96,
        d_ff: 4 * 12288,
        vocab_size: 50257,
        context_length: 2048,
        tied_embeddings: false,
    },
    Hyperparameters {
        name: "gpt2-124m",
        description: "GPT-2 small (Hugging Face gpt2 config.json)",
        arch: Arch::Gpt2,
        n_layer: 12,
        d_model: 768,
        n_head: 12,
        n_kv_head: 12,
        d_ff: 4 * 768,
        vocab_size: 50257,
        context_length: 1024,
        tied_embeddings: true,
    },
    Hyperparameters {
        name: "gpt2-xl",
        description: "GPT-2 XL, 1.5B (Hugging Face gpt2-xl config.json)",
        arch: Arch::Gpt2,
        n_layer: 48,
        d_model: 1600,
        n_head: 25,
        n_kv_head: 25,
        d_ff: 4 * 1600,
        vocab_size: 50257,
        context_length: 1024,
        tied_embeddings: true,
    },
    Hyperparameters {
        name: "smollm2-135m",
        description: "SmolLM2-135M (Hugging Face config.json), grouped-query attention",
        arch: Arch::Llama,
        n_layer: 30,
        d_model: 576,
        n_head: 9,
        n_kv_head: 3,
        d_ff: 1536,
        vocab_size: 49152,
        context_length: 8192,
        tied_embeddings: true,
    },
];

/// A preset by name, or an error listing the known ones.
pub fn preset(name: &str) -> Result<&'static Hyperparameters> {
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        Error::Invalid(format!(
            "unknown preset '{name}' (known: {})",
            names.join(", ")
        ))
    })
}

impl Hyperparameters {
    /// HS
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// The parameter table computed from the hyperparameters.
    pub fn table(&self, accounting: Accounting) -> ParamTable {
        let (l, c, v, f) = (
            self.n_layer as u64,
            self.d_model as u64,
            self.vocab_size as u64,
            self.d_ff as u64,
        );
        let hs = self.head_dim() as u64;
        let (q, kv) = (self.n_head as u64 * hs, self.n_kv_head as u64 * hs);
        let full = accounting == Accounting::Full;
        let biases = full && self.arch == Arch::Gpt2;
        let mut parts = Vec::new();
        let global = |part, shape: String, total, tied| PartCount {
            part,
            shape,
            per_layer: None,
            total,
            tied,
        };
        // (out, in) weight, plus an (out) bias when the architecture has biases.
        let layer = |part, out: u64, inp: u64| {
            let b = if biases { out } else { 0 };
            let shape = if biases {
                format!("({out}, {inp}) + ({out})")
            } else {
                format!("({out}, {inp})")
            };
            PartCount {
                part,
                shape,
                per_layer: Some(out * inp + b),
                total: l * (out * inp + b),
                tied: false,
            }
        };
        parts.push(global(
            Part::TokenEmbedding,
            format!("({v}, {c})"),
            v * c,
            self.tied_embeddings,
        ));
        if full && self.arch == Arch::Gpt2 {
            let n = self.context_length as u64;
            parts.push(global(
                Part::PositionEmbedding,
                format!("({n}, {c})"),
                n * c,
                false,
            ));
        }
        parts.push(layer(Part::Query, q, c));
        parts.push(layer(Part::Key, kv, c));
        if full {
            parts.push(layer(Part::Value, kv, c));
            parts.push(layer(Part::Output, c, q));
        } else {
            let mut down = layer(Part::ValueDown, kv, c);
            down.shape = format!("{} heads x ({hs}, {c})", self.n_kv_head);
            parts.push(down);
            let mut up = layer(Part::ValueUp, c, q);
            up.shape = format!("{} heads x ({c}, {hs})", self.n_head);
            parts.push(up);
        }
        parts.push(layer(Part::MlpUp, f, c));
        if self.arch != Arch::Gpt2 {
            parts.push(layer(Part::MlpGate, f, c));
        }
        parts.push(layer(Part::MlpDown, c, f));
        if full {
            let (n, shape) = match self.arch {
                Arch::Gpt2 => (2 * c, format!("({c}) + ({c})")),
                _ => (c, format!("({c})")),
            };
            parts.push(PartCount {
                part: Part::Norms,
                shape: match self.arch {
                    Arch::Gpt2 => format!("2 x [{shape}]"),
                    _ => format!("2 x {shape}"),
                },
                per_layer: Some(2 * n),
                total: l * 2 * n,
                tied: false,
            });
            parts.push(global(Part::FinalNorm, shape, n, false));
        }
        let tied = self.tied_embeddings;
        parts.push(global(
            Part::Unembedding,
            format!("({v}, {c})"),
            if tied { 0 } else { v * c },
            tied,
        ));
        ParamTable {
            title: format!("{}: {}", self.name, self.description),
            accounting,
            n_layer: self.n_layer,
            parts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt3_in_the_seeds_accounting() {
        let t = preset("gpt3-175b")
            .unwrap()
            .table(Accounting::WeightMatrices);
        assert_eq!(t.total(), 175_181_291_520);
        assert_eq!(t.part_total(Part::TokenEmbedding), 617_558_016);
        assert_eq!(t.part_total(Part::Query), 14_495_514_624);
        assert_eq!(t.part_total(Part::ValueUp), 14_495_514_624);
        assert_eq!(t.part_total(Part::MlpUp), 57_982_058_496);
        assert!((t.attention_share() - 1.0 / 3.0).abs() < 0.01);
    }

    #[test]
    fn full_counts_match_hugging_face() {
        let full = |n| preset(n).unwrap().table(Accounting::Full).total();
        assert_eq!(full("gpt2-124m"), 124_439_808);
        assert_eq!(full("gpt2-xl"), 1_557_611_200);
        assert_eq!(full("smollm2-135m"), 134_515_008);
        // GPT-3 in full: the seed's count + positions + biases + norms.
        let (l, c) = (96u64, 12288u64);
        let extra = 2048 * c + l * (3 * c + c + 4 * c + c) + l * 4 * c + 2 * c;
        assert_eq!(full("gpt3-175b"), 175_181_291_520 + extra);
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = preset("gpt5").unwrap_err().to_string();
        assert!(e.contains("gpt2-124m") && e.contains("gpt3-175b"), "{e}");
    }
}
