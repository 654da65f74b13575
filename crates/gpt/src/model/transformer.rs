//! The whole model: embedding, the stack of blocks on the residual stream, the final norm and
//! the unembedding.

use super::attention::{Attention, SeqRows};
use super::config::Config;
use super::embedding::Embedding;
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::Norm;
use super::training::Tape;
use super::unembedding::Unembedding;
use crate::infer::kv_cache::KvCache;
use crate::inspect::capture::Capture;
use crate::kernels::Precision;
use crate::{Error, Result};

/// One transformer block (pre-norm): x += attn(norm1(x)); x += mlp(norm2(x)). Gemma also
/// normalizes each branch's output before the add: x += post1(attn(norm1(x))), and so on.
#[derive(Clone, Debug)]
pub struct Block {
    pub attn_norm: Norm,
    pub attn: Attention,
    /// Gemma's norm on attention's output, before the residual add.
    pub post_attn_norm: Option<Norm>,
    pub mlp_norm: Norm,
    pub mlp: Mlp,
    /// Gemma's norm on the MLP's output, before the residual add.
    pub post_mlp_norm: Option<Norm>,
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
    /// (T - p, V): positions p.. of one sequence (scoring part of a window: perplexity).
    From(usize),
}

impl Transformer {
    /// Runs `ids` (T) as the positions following those already in `cache`, appends their keys
    /// and values to it, and returns logits as asked: (V) or (T, V).
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        logits: Logits,
        capture: Option<&mut dyn Capture>,
    ) -> Result<Vec<f32>> {
        self.forward_stacked(ids, &[ids.len()], &mut [cache], logits, capture, None)
    }

    /// One decode step of B sequences at once: `ids` (B) holds one new token per sequence, each
    /// following the positions already in its own cache (`caches`, B). Every matmul runs on the
    /// (B, C) stack of the sequences' vectors, so the weights are read from memory once per step
    /// for all B sequences; on a CPU, where generating one token is bound by memory bandwidth,
    /// B tokens cost little more than one. Attention runs per sequence against its own cache.
    /// Returns each sequence's logits (V), in the order of `ids`.
    ///
    /// Equal to B separate [`forward`](Self::forward) calls up to the order of float sums.
    pub fn forward_batch(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Vec<Vec<f32>>> {
        let segments: Vec<&[u32]> = ids.iter().map(std::slice::from_ref).collect();
        self.forward_segments(&segments, caches)
    }

    /// [`forward_batch`](Self::forward_batch) with any number of new tokens per sequence:
    /// `segments[s]` (T_s) follows the positions in `caches[s]`. A server runs the prompts of
    /// newly arrived requests in the same pass as the decode step of the running ones, so the
    /// weights are read once for both. Returns the logits (V) of each sequence's last position.
    pub fn forward_segments(
        &self,
        segments: &[&[u32]],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Vec<f32>>> {
        if segments.len() != caches.len() {
            return Err(Error::Invalid(format!(
                "batched forward pass: {} sequences for {} caches",
                segments.len(),
                caches.len()
            )));
        }
        let ids: Vec<u32> = segments.concat();
        let lens: Vec<usize> = segments.iter().map(|s| s.len()).collect();
        let logits = self.forward_stacked(&ids, &lens, caches, Logits::Last, None, None)?;
        Ok(logits
            .chunks_exact(self.config.vocab_size)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// The forward pass over S sequences stacked row-wise: sequence s contributes `lens[s]`
    /// consecutive ids of `ids` (N = the sum of `lens`), at the positions following those in
    /// `caches[s]`. Embedding, norms, MLP and every projection run on all N rows at once;
    /// attention keeps each sequence to its own cache. Returns the logits of each sequence's
    /// last position (S, V) for [`Logits::Last`], of every row (N, V) for [`Logits::All`].
    /// With a `tape`, keeps what the backward pass needs (training; see [`Tape`]).
    pub(crate) fn forward_stacked(
        &self,
        ids: &[u32],
        lens: &[usize],
        caches: &mut [&mut KvCache],
        logits: Logits,
        mut capture: Option<&mut dyn Capture>,
        mut tape: Option<&mut Tape>,
    ) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = ids.len();
        if n == 0 || lens.is_empty() || lens.contains(&0) {
            return Err(Error::Invalid("forward pass over zero tokens".into()));
        }
        if let Logits::From(p) = logits {
            if lens.len() != 1 || p >= n {
                return Err(Error::Invalid(format!(
                    "logits from position {p} of {n} positions in {} sequences",
                    lens.len()
                )));
            }
        }
        if lens.iter().sum::<usize>() != n || lens.len() != caches.len() {
            return Err(Error::Invalid(
                "forward pass: sequence lengths do not add up to the tokens".into(),
            ));
        }
        for (cache, &t) in caches.iter().zip(lens) {
            if cache.len() + t > c.context_length {
                return Err(Error::ContextOverflow {
                    needed: cache.len() + t,
                    context: c.context_length,
                });
            }
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                c.vocab_size
            )));
        }
        let pos0: Vec<usize> = caches.iter().map(|k| k.len()).collect();

        let mut x = self.token_embedding.forward(ids); // (N, C): the residual stream
        if let Some(pe) = &self.position_embedding {
            let mut r0 = 0;
            for (&t, &p) in lens.iter().zip(&pos0) {
                pe.add_positions(&mut x[r0 * c.d_model..(r0 + t) * c.d_model], p);
                r0 += t;
            }
        }
        for (l, block) in self.blocks.iter().enumerate() {
            let mut seqs: Vec<SeqRows> = caches
                .iter_mut()
                .zip(lens.iter().zip(&pos0))
                .map(|(cache, (&t, &pos0))| SeqRows {
                    t,
                    pos0,
                    cache: &mut cache.layers[l],
                })
                .collect();
            let mut layer_tape = tape.as_mut().map(|t| t.push_layer(&x));
            let h = block.attn_norm.forward(&x);
            let a = block.attn.forward(
                &h,
                &mut seqs,
                self.precision,
                l,
                capture.as_mut().map(|c| &mut **c as &mut dyn Capture),
                layer_tape.as_deref_mut(),
            );
            if let Some(lt) = layer_tape.as_deref_mut() {
                lt.h1 = h;
            }
            let a = match &block.post_attn_norm {
                Some(post) => post.forward(&a),
                None => a,
            };
            add(&mut x, &a);
            let h = block.mlp_norm.forward(&x);
            let m = block
                .mlp
                .forward(&h, n, self.precision, layer_tape.as_deref_mut());
            if let Some(lt) = layer_tape {
                lt.x_mid = x.clone();
                lt.h2 = h;
            }
            let m = match &block.post_mlp_norm {
                Some(post) => post.forward(&m),
                None => m,
            };
            add(&mut x, &m);
            if let Some(cap) = capture.as_mut().filter(|c| c.wants_residual()) {
                cap.residual(l, &x);
            }
        }
        for (cache, &t) in caches.iter_mut().zip(lens) {
            cache.advance(t);
        }

        let x = match logits {
            Logits::Last if lens.len() == 1 => x[(n - 1) * c.d_model..].to_vec(),
            Logits::Last => {
                let mut last = Vec::with_capacity(lens.len() * c.d_model);
                let mut end = 0;
                for &t in lens {
                    end += t;
                    last.extend_from_slice(&x[(end - 1) * c.d_model..end * c.d_model]);
                }
                last
            }
            Logits::All => x,
            // Checked above: one sequence, p < n.
            Logits::From(p) => x[p * c.d_model..].to_vec(),
        };
        let rows = x.len() / c.d_model;
        let h = self.final_norm.forward(&x);
        let out = self.unembedding.forward(&h, rows, self.precision);
        let training = tape.is_some();
        if let Some(t) = tape {
            t.x_final = x;
            t.h_final = h;
        }
        // A NaN would be sampled like any logit (it sorts first) and the text would be garbage
        // with no word why: a model file with NaN or infinite weights is an error. (Training
        // sees a NaN loss and says the run diverged.)
        if !training && !out.iter().all(|v| v.is_finite()) {
            return Err(Error::Invalid(match self.first_non_finite_tensor() {
                Some(name) => format!(
                    "the model's logits are not finite: tensor {name} holds NaN or infinite values"
                ),
                None => "the model's logits are not finite (NaN or infinity): its activations \
                         overflowed"
                    .into(),
            }));
        }
        Ok(out)
    }

    /// The name of the first weight (in file order: embeddings, blocks, final norm, unembedding)
    /// holding a NaN or infinity, dequantized as the kernels read it. Scans every weight: for
    /// the error path only.
    pub fn first_non_finite_tensor(&self) -> Option<String> {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let matrix = |m: &crate::tensor::Matrix| {
            let mut row = vec![0f32; m.cols];
            (0..m.rows).any(|r| {
                m.row_f32(r, &mut row);
                !finite(&row)
            })
        };
        let norm = |n: &Norm| match n {
            Norm::Rms { weight, .. } => !finite(weight),
            Norm::Layer { weight, bias, .. } => !finite(weight) || !finite(bias),
        };
        let linear =
            |l: &Linear| matrix(&l.weight) || l.bias.as_deref().is_some_and(|b| !finite(b));
        if matrix(&self.token_embedding.table) {
            return Some(self.token_embedding.table.name.clone());
        }
        if let Some(pe) = self
            .position_embedding
            .as_ref()
            .filter(|pe| matrix(&pe.table))
        {
            return Some(pe.table.name.clone());
        }
        for (l, b) in self.blocks.iter().enumerate() {
            let norms = [
                ("attention's input norm", Some(&b.attn_norm)),
                ("attention's output norm", b.post_attn_norm.as_ref()),
                ("query norm", b.attn.q_norm.as_ref()),
                ("key norm", b.attn.k_norm.as_ref()),
                ("MLP's input norm", Some(&b.mlp_norm)),
                ("MLP's output norm", b.post_mlp_norm.as_ref()),
            ];
            if let Some((what, _)) = norms.iter().find(|(_, n)| n.is_some_and(norm)) {
                return Some(format!("the {what} of block {l}"));
            }
        }
        if let Some(bad) = self.linears().into_iter().find(|l| linear(l)) {
            return Some(bad.weight.name.clone());
        }
        norm(&self.final_norm).then(|| "the final norm".to_string())
    }

    /// Every matrix a forward pass multiplies by: each block's projections and MLP, then the
    /// unembedding.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut ls = Vec::new();
        for b in &self.blocks {
            let a = &b.attn;
            ls.extend([&a.wq, &a.wk, &a.wv, &a.wo]);
            match &b.mlp {
                Mlp::SwiGlu { gate, up, down } | Mlp::GeGlu { gate, up, down } => {
                    ls.extend([gate, up, down])
                }
                Mlp::Gelu { fc, proj } => ls.extend([fc, proj]),
            }
        }
        ls.push(&self.unembedding.linear);
        ls
    }

    /// The weights of [`linears`](Self::linears), to repack them.
    fn matrices_mut(&mut self) -> Vec<&mut crate::tensor::Matrix> {
        let mut ws: Vec<&mut crate::tensor::Matrix> = Vec::new();
        for b in &mut self.blocks {
            let a = &mut b.attn;
            ws.extend([
                &mut a.wq.weight,
                &mut a.wk.weight,
                &mut a.wv.weight,
                &mut a.wo.weight,
            ]);
            match &mut b.mlp {
                Mlp::SwiGlu { gate, up, down } | Mlp::GeGlu { gate, up, down } => {
                    ws.extend([&mut gate.weight, &mut up.weight, &mut down.weight])
                }
                Mlp::Gelu { fc, proj } => ws.extend([&mut fc.weight, &mut proj.weight]),
            }
        }
        ws.push(&mut self.unembedding.linear.weight);
        ws
    }

    /// Repacks every matrix of [`linears`](Self::linears) for the matmul kernels
    /// ([`crate::tensor::Matrix::pack`]); returns the bytes the packed forms hold.
    pub fn pack_weights(&mut self) -> usize {
        self.matrices_mut()
            .into_iter()
            .map(|w| {
                w.pack();
                w.packed.as_ref().map_or(0, |p| p.bytes())
            })
            .sum()
    }

    /// Bytes of the file's weights that one decode step multiplies by: every projection and MLP
    /// matrix of every block and the unembedding (the embedding row, norms and biases are
    /// noise beside them).
    pub fn weight_bytes_per_token(&self) -> u64 {
        self.linears()
            .iter()
            .map(|l| l.weight.data.len() as u64)
            .sum()
    }

    /// Bytes the repacked forms of [`linears`](Self::linears) hold (0 where none was packed).
    pub fn packed_weight_bytes(&self) -> u64 {
        let packed = |l: &&Linear| l.weight.packed.as_ref().map_or(0, |p| p.bytes() as u64);
        self.linears().iter().map(packed).sum()
    }

    /// Sets the precision of every matmul, and drops the repacked forms it would not read (so
    /// that, at F32 precision, the model is not held both repacked and as the file's rows).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        for w in self.matrices_mut() {
            if w.packed.as_ref().is_some_and(|p| !p.read_at(precision)) {
                w.packed = None;
            }
        }
    }

    /// Bytes one decode step reads from memory: [`weight_bytes_per_token`]'s matrices, each in
    /// the form the kernels read at this precision (repacked, where it was). Against the
    /// machine's memory bandwidth, this bounds generation speed from above.
    ///
    /// [`weight_bytes_per_token`]: Self::weight_bytes_per_token
    pub fn bytes_read_per_token(&self) -> u64 {
        let read = |l: &&Linear| match &l.weight.packed {
            Some(p) if p.read_at(self.precision) => p.bytes() as u64,
            _ => l.weight.data.len() as u64,
        };
        self.linears().iter().map(read).sum()
    }

    /// A fresh KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::for_config(&self.config)
    }
}

/// The residual connection: x += y.
fn add(x: &mut [f32], y: &[f32]) {
    crate::kernels::elementwise::combine(x, y, |a, b| a + b);
}
