//! The whole model: embedding, the stack of blocks on the residual stream, the final norm and
//! the unembedding.

use super::attention::Attention;
use super::config::Config;
use super::embedding::Embedding;
use super::mlp::Mlp;
use super::norm::Norm;
use super::unembedding::Unembedding;
use crate::infer::kv_cache::KvCache;
use crate::inspect::capture::Capture;
use crate::kernels::Precision;
use crate::{Error, Result};

/// One transformer block (pre-norm): x += attn(norm1(x)); x += mlp(norm2(x)).
#[derive(Clone, Debug)]
pub struct Block {
    pub attn_norm: Norm,
    pub attn: Attention,
    pub mlp_norm: Norm,
    pub mlp: Mlp,
}

#[derive(Clone, Debug)]
pub struct Transformer {
    pub config: Config,
    /// (V, C)
    pub token_embedding: Embedding,
    /// (n_positions, C) for GPT-2; `None` when positions enter through RoPE.
    pub position_embedding: Option<Embedding>,
    pub blocks: Vec<Block>,
    pub final_norm: Norm,
    pub unembedding: Unembedding,
    /// How matmuls against quantized weights treat activations.
    pub precision: Precision,
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// (V): the last position only, all that generation needs.
    Last,
    /// (T, V): every position, for scoring a text (perplexity) or training.
    All,
}

impl Transformer {
    /// Runs `ids` (T) as the positions following those already in `cache`, appends their keys
    /// and values to it, and returns logits as asked: (V) or (T, V).
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        mut capture: Option<&mut dyn Capture>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let (t, pos0) = (ids.len(), cache.len());
        if t == 0 {
            return Err(Error::Invalid("forward pass over zero tokens".into()));
        }
        if pos0 + t > c.context_length {
            return Err(Error::ContextOverflow {
                needed: pos0 + t,
                context: c.context_length,
            });
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                c.vocab_size
            )));
        }

        let mut x = self.token_embedding.forward(ids); // (T, C): the residual stream
        if let Some(pe) = &self.position_embedding {
            pe.add_positions(&mut x, pos0);
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let h = block.attn_norm.forward(&x);
            let a = block.attn.forward(
                &h,
                pos0,
                &mut cache.layers[l],
                self.precision,
                l,
                capture.as_mut().map(|c| &mut **c as &mut dyn Capture),
            );
            add(&mut x, &a);
            let h = block.mlp_norm.forward(&x);
            let m = block.mlp.forward(&h, t, self.precision);
            add(&mut x, &m);
            if let Some(cap) = capture.as_mut().filter(|c| c.wants_residual()) {
                cap.residual(l, &x);
            }
        }
        cache.advance(t);

        let x = match logits {
            Logits::Last => &x[(t - 1) * c.d_model..],
            Logits::All => &x[..],
        };
        let rows = x.len() / c.d_model;
        let h = self.final_norm.forward(x);
        Ok(self.unembedding.forward(&h, rows, self.precision))
    }

    /// A fresh KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::for_config(&self.config)
    }
}

/// The residual connection: x += y.
fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
