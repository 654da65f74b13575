//! Multi-head causal self-attention.
//!
//! For each head: queries, keys and values are linear projections of the normalized residual
//! stream; the score of query position i for key position j is q_i·k_j / sqrt(HS); the causal mask
//! sets the score of every future position (j > i) to -inf; softmax turns each row of scores into
//! probabilities; the head's output is the probability-weighted sum of the values. The heads'
//! outputs are concatenated and projected back to C by the output matrix.
//! Under grouped-query attention (NKV < NH) each key/value head serves NH / NKV query heads.

use super::linear::Linear;
use super::rope::Rope;
use crate::infer::kv_cache::LayerCache;
use crate::inspect::capture::Capture;
use crate::kernels::{self, Precision};
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct Attention {
    /// (NH * HS, C)
    pub wq: Linear,
    /// (NKV * HS, C)
    pub wk: Linear,
    /// (NKV * HS, C)
    pub wv: Linear,
    /// (C, NH * HS)
    pub wo: Linear,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// `None` for models with learned position embeddings (GPT-2).
    pub rope: Option<Rope>,
}

impl Attention {
    /// x: (T, C), the normalized residual stream of T new positions starting at `cache`'s length
    /// `pos0`. Appends their keys and values to `cache`; returns (T, C).
    pub fn forward(
        &self,
        x: &[f32],
        pos0: usize,
        cache: &mut LayerCache,
        precision: Precision,
        layer: usize,
        capture: Option<&mut dyn Capture>,
    ) -> Vec<f32> {
        let (nh, hs) = (self.n_head, self.head_dim);
        let t = x.len() / self.wq.in_features();
        let mut q = self.wq.forward(x, t, precision); // (T, NH * HS)
        let mut k = self.wk.forward(x, t, precision); // (T, NKV * HS)
        let v = self.wv.forward(x, t, precision); // (T, NKV * HS)
        if let Some(rope) = &self.rope {
            for ti in 0..t {
                let (cos, sin) = rope.angles(pos0 + ti);
                rope.rotate(&mut q[ti * nh * hs..(ti + 1) * nh * hs], hs, &cos, &sin);
                let kw = self.n_kv_head * hs;
                rope.rotate(&mut k[ti * kw..(ti + 1) * kw], hs, &cos, &sin);
            }
        }
        cache.append(&k, &v, hs);

        let p = pos0 + t; // key positions visible to the last query
        let group = nh / self.n_kv_head;
        let scale = 1.0 / (hs as f32).sqrt();
        let record = capture.as_ref().is_some_and(|c| c.wants_attention(layer));
        let mut probs_all = if record {
            vec![0f32; nh * t * p]
        } else {
            Vec::new()
        };
        let mut out = vec![0f32; t * nh * hs]; // (T, NH * HS)

        // One task per (query position, head): row i of the scores, its softmax, its weighted sum.
        let rows: Vec<(usize, Vec<f32>)> = out
            .par_chunks_mut(hs)
            .enumerate()
            .map(|(idx, o)| {
                let (ti, h) = (idx / nh, idx % nh);
                let kv = h / group;
                let (keys, values) = (&cache.k[kv], &cache.v[kv]);
                let qh = &q[(ti * nh + h) * hs..(ti * nh + h + 1) * hs];
                let i = pos0 + ti; // this query's position
                let mut scores = vec![f32::NEG_INFINITY; p]; // causal mask: j > i stays -inf
                for (j, s) in scores.iter_mut().enumerate().take(i + 1) {
                    *s = kernels::dot_f32(qh, &keys[j * hs..(j + 1) * hs]) * scale;
                }
                kernels::softmax(&mut scores);
                for (j, &pj) in scores.iter().enumerate().take(i + 1) {
                    kernels::axpy(pj, &values[j * hs..(j + 1) * hs], o);
                }
                (idx, if record { scores } else { Vec::new() })
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if let Some(c) = capture.filter(|_| record) {
            for (idx, scores) in rows {
                let (ti, h) = (idx / nh, idx % nh);
                probs_all[(h * t + ti) * p..(h * t + ti + 1) * p].copy_from_slice(&scores);
            }
            c.attention(layer, nh, t, p, &probs_all);
        }
        self.wo.forward(&out, t, precision)
    }
}
