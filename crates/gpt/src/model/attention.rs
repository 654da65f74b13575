//! Multi-head causal self-attention.
//!
//! For each head: queries, keys and values are linear projections of the normalized residual
//! stream; the score of query position i for key position j is q_i·k_j / sqrt(HS); the causal mask
//! sets the score of every future position (j > i) to -inf; softmax turns each row of scores into
//! probabilities; the head's output is the probability-weighted sum of the values. The heads'
//! outputs are concatenated and projected back to C by the output matrix.
//! Under grouped-query attention (NKV < NH) each key/value head serves NH / NKV query heads.
//! Some architectures add: RMSNorm on each head's query and key before RoPE (QK-norm: Qwen3,
//! Gemma 3), another query scale than 1/sqrt(HS), and a sliding window on some layers (each
//! query sees only the last `window` positions, itself included).

use super::linear::Linear;
use super::norm::Norm;
use super::rope::Rope;
use super::training::LayerTape;
use crate::infer::kv_cache::LayerCache;
use crate::inspect::capture::Capture;
use crate::kernels::{self, Activations, Precision};
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
    /// RMSNorm over each query head's HS values, before RoPE (QK-norm); weight (HS).
    pub q_norm: Option<Norm>,
    /// RMSNorm over each key head's HS values, before RoPE; weight (HS).
    pub k_norm: Option<Norm>,
    /// The factor on q·k (1 / sqrt(HS) for most architectures).
    pub scale: f32,
    /// A sliding layer's window: query i sees keys i - window + 1 ..= i. `None`: all of them.
    pub window: Option<usize>,
}

/// One sequence's share of a stacked forward pass: its `t` new positions, starting at position
/// `pos0` (the length of its cache), whose keys and values go to `cache`.
pub struct SeqRows<'c> {
    pub t: usize,
    pub pos0: usize,
    pub cache: &'c mut LayerCache,
}

impl Attention {
    /// x: (N, C), the normalized residual stream of the new positions of one or more sequences,
    /// stacked in the order of `seqs` (N = the sum of their `t`). The projections run once on
    /// all N rows (the weights are read once however many sequences there are); each row
    /// attends only to its own sequence's cache. Appends the keys and values; returns (N, C).
    ///
    /// `capture` sees the attention pattern only of a single-sequence pass, where (NH, T, P)
    /// has one meaning.
    pub fn forward(
        &self,
        x: &[f32],
        seqs: &mut [SeqRows],
        precision: Precision,
        layer: usize,
        capture: Option<&mut dyn Capture>,
        tape: Option<&mut LayerTape>,
    ) -> Vec<f32> {
        let (nh, hs) = (self.n_head, self.head_dim);
        let kw = self.n_kv_head * hs;
        let n = x.len() / self.wq.in_features();
        let xa = Activations::new(x, n);
        // q (N, NH * HS), k and v (N, NKV * HS)
        let [mut q, mut k, v] =
            Linear::forward_group([&self.wq, &self.wk, &self.wv], &xa, precision);
        if let Some(qn) = &self.q_norm {
            q = qn.forward(&q); // each HS-wide head of each row
        }
        if let Some(kn) = &self.k_norm {
            k = kn.forward(&k);
        }
        // Each row's sequence and position.
        let rows: Vec<(usize, usize)> = seqs
            .iter()
            .enumerate()
            .flat_map(|(s, seq)| (seq.pos0..seq.pos0 + seq.t).map(move |pos| (s, pos)))
            .collect();
        if let Some(rope) = &self.rope {
            for (r, &(_, pos)) in rows.iter().enumerate() {
                let (cos, sin) = rope.angles(pos);
                rope.rotate(&mut q[r * nh * hs..(r + 1) * nh * hs], hs, &cos, &sin);
                rope.rotate(&mut k[r * kw..(r + 1) * kw], hs, &cos, &sin);
            }
        }
        let mut r0 = 0;
        for seq in seqs.iter_mut() {
            let span = r0 * kw..(r0 + seq.t) * kw;
            seq.cache.append(&k[span.clone()], &v[span], hs);
            r0 += seq.t;
        }
        let group = nh / self.n_kv_head;
        let (scale, window) = (self.scale, self.window);
        let record = seqs.len() == 1 && capture.as_ref().is_some_and(|c| c.wants_attention(layer));
        // Key positions visible to the last query of a single sequence: the width of a pattern.
        let p = seqs.first().map_or(0, |s| s.pos0 + s.t);
        // One task per (sequence, key/value head, block of its positions): the queries of the
        // `group` heads that share a key/value head run as one block, so each key and value is
        // read once for all of them. Blocks late in a prompt see more keys, and tasks are
        // claimed one at a time, so both threads stay busy. Each task is (sequence, key/value
        // head, first row in the stack, first position in the sequence, positions).
        let mut tasks = Vec::new();
        let mut r0 = 0;
        for (s, seq) in seqs.iter().enumerate() {
            for kv in 0..self.n_kv_head {
                for i0 in (0..seq.t).step_by(QUERY_BLOCK) {
                    tasks.push((s, kv, r0 + i0, i0, QUERY_BLOCK.min(seq.t - i0)));
                }
            }
            r0 += seq.t;
        }
        let views: Vec<(&LayerCache, usize)> = seqs.iter().map(|s| (&*s.cache, s.pos0)).collect();
        let first_visible = |pos: usize| window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let parts = kernels::team::parallel_map(tasks.len(), |task| {
            let (s, kv, row0, i0, m) = tasks[task];
            let (cache, pos0) = views[s];
            let (b0, b1) = (pos0 + i0, pos0 + i0 + m); // the block's positions
            debug_assert!(
                first_visible(b0) >= cache.start,
                "a visible key left the cache"
            );
            // Keys lo..b1: every position some query of the block sees.
            let lo = first_visible(b0).max(cache.start);
            // Rows (position, head of the group), position-major: (m * group, HS).
            let mut queries = Vec::with_capacity(m * group * hs);
            let mut visible = Vec::with_capacity(m * group);
            for (i, pos) in (b0..b1).enumerate() {
                let at = (row0 + i) * nh * hs + kv * group * hs;
                queries.extend_from_slice(&q[at..at + group * hs]);
                let vis = first_visible(pos).max(lo) - lo..pos + 1 - lo;
                visible.extend(std::iter::repeat_n(vis, group));
            }
            let span = (lo - cache.start) * hs..(b1 - cache.start) * hs;
            let mut probs = vec![0f32; m * group * (b1 - lo)]; // (m * group, b1 - lo)
            let mut o = vec![0f32; m * group * hs]; // (m * group, HS)
            kernels::attend_block(
                &queries,
                hs,
                &cache.k[kv][span.clone()],
                &cache.v[kv][span],
                &visible,
                scale,
                &mut probs,
                &mut o,
            );
            (o, record.then_some((probs, lo)))
        });
        let mut out = vec![0f32; n * nh * hs]; // (N, NH * HS)
        let mut pattern = vec![0f32; if record { nh * n * p } else { 0 }]; // (NH, T, P)
        for (&(_, kv, row0, i0, m), (o, probs)) in tasks.iter().zip(&parts) {
            // Row i * group + g of the block is position i0 + i of head kv * group + g.
            let dst_rows = out.chunks_exact_mut(nh * hs).skip(row0);
            for (dst, src) in dst_rows.zip(o.chunks_exact(group * hs)) {
                dst[kv * group * hs..(kv + 1) * group * hs].copy_from_slice(src);
            }
            if let Some((probs, lo)) = probs {
                // Row r covers key positions lo..; the pattern's rows cover 0..P.
                for (r, row) in probs.chunks_exact(probs.len() / (m * group)).enumerate() {
                    let (i, h) = (r / group, kv * group + r % group);
                    let at = (h * n + i0 + i) * p + lo;
                    pattern[at..at + row.len()].copy_from_slice(row);
                }
            }
        }
        if let Some(c) = capture.filter(|_| record) {
            c.attention(layer, nh, n, p, &pattern);
        }
        for seq in seqs.iter_mut() {
            seq.cache.slide(hs);
        }
        let y = self.wo.forward(&out, n, precision);
        if let Some(t) = tape {
            t.q = q;
            t.heads = out;
        }
        y
    }
}

/// Positions per task: the scores held at once are (block x group, P), so memory stays bounded
/// however long the prompt (the full (T, T) matrix is never built), and a prompt gives
/// key/value heads x blocks tasks to share among the threads.
const QUERY_BLOCK: usize = 32;

/// The backward pass of causal attention over one sequence of T positions from position 0 (a
/// training sequence), in the layout inference uses: q (T, NH * HS) after RoPE, keys and values
/// per key/value head (NKV of (T, HS), as [`LayerCache`] holds them); query head h reads
/// key/value head h / (NH / NKV). From dout (T, NH * HS), the gradient of the heads'
/// concatenated outputs, accumulates dq (T, NH * HS) and dk, dv (NKV of (T, HS)).
///
/// The probabilities are recomputed rather than kept (T x T per head would dominate training
/// memory): S = q_h K^T * scale under the causal mask, P = softmax(S); then dV += P^T dO,
/// dP = dO V^T, dS = P ⊙ (dP - rowsum(P ⊙ dP)) * scale, dQ += dS K, dK += dS^T Q.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &[f32],
    keys: &[Vec<f32>],
    values: &[Vec<f32>],
    n_head: usize,
    head_dim: usize,
    scale: f32,
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [Vec<f32>],
    dv: &mut [Vec<f32>],
) {
    use kernels::gemm::{sgemm, sgemm_into, Operand};
    let (nh, hs, nkv) = (n_head, head_dim, keys.len());
    let t = q.len() / (nh * hs);
    let group = nh / nkv;
    let qw = nh * hs;
    // One task per key/value head: it owns dk[kv], dv[kv] and its group's columns of dq.
    let parts: Vec<Vec<f32>> = dk
        .par_iter_mut()
        .zip(dv.par_iter_mut())
        .enumerate()
        .map(|(kv, (dk, dv))| {
            let (k, v) = (&keys[kv], &values[kv]);
            let mut dq_group = vec![0f32; t * group * hs]; // (T, group * HS)
            let (mut p, mut ds) = (vec![0f32; t * t], vec![0f32; t * t]);
            for g in 0..group {
                let h = kv * group + g;
                let q_h = Operand::strided(&q[h * hs..], qw, 1); // (T, HS)
                let d_o = Operand::strided(&dout[h * hs..], qw, 1); // (T, HS)
                sgemm(t, t, hs, q_h, Operand::t(k), &mut p, false);
                for (i, row) in p.chunks_exact_mut(t).enumerate() {
                    for (j, s) in row.iter_mut().enumerate() {
                        *s = if j <= i {
                            *s * scale
                        } else {
                            f32::NEG_INFINITY
                        };
                    }
                    kernels::softmax(row);
                }
                sgemm(t, hs, t, Operand::t(&p), d_o, dv, true); // dV += P^T dO
                sgemm(t, t, hs, d_o, Operand::t(v), &mut ds, false); // dP = dO V^T
                for (pr, dr) in p.chunks_exact(t).zip(ds.chunks_exact_mut(t)) {
                    let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
                    for (d, &pv) in dr.iter_mut().zip(pr) {
                        *d = pv * (*d - dot) * scale;
                    }
                }
                let dst = &mut dq_group[g * hs..];
                sgemm_into(
                    t,
                    hs,
                    t,
                    Operand::new(&ds),
                    Operand::new(k),
                    dst,
                    group * hs,
                    true,
                );
                sgemm(t, hs, t, Operand::t(&ds), q_h, dk, true); // dK += dS^T Q
            }
            dq_group
        })
        .collect();
    for (kv, part) in parts.iter().enumerate() {
        for (dst, src) in dq.chunks_exact_mut(qw).zip(part.chunks_exact(group * hs)) {
            for (d, s) in dst[kv * group * hs..(kv + 1) * group * hs]
                .iter_mut()
                .zip(src)
            {
                *d += s;
            }
        }
    }
}
