//! Training runs the inference model: the forward pass over a batch is
//! [`Transformer::forward_stacked`] with an activation [`Tape`], then the loss, then the backward
//! pass, which calls each op's backward (beside its forward, in the op's own file) in the
//! reverse order of the forward (llm.c's gpt2_forward / gpt2_backward). What exists only for
//! training is the tape and this walk back through the blocks.

use super::config::Config;
use super::embedding::embedding_backward;
use super::linear::{linear_backward, Linear};
use super::loss::{cross_entropy_backward, cross_entropy_forward};
use super::mlp::{gelu_backward, swiglu_backward, Mlp};
use super::norm::{layer_norm_backward, layer_norm_forward, rms_norm_backward, Norm};
use super::params::Parameters;
use super::transformer::{Logits, Transformer};
use crate::infer::kv_cache::KvCache;
use crate::{Error, Result};

/// What one block's forward pass keeps for the backward pass; rows are the N = B * T positions
/// of the batch.
#[derive(Debug, Default, Clone)]
pub struct LayerTape {
    /// (N, C): the residual stream entering the block.
    pub x: Vec<f32>,
    /// (N, C): the attention norm's output, the input of Q, K and V.
    pub h1: Vec<f32>,
    /// (N, NH * HS): the queries after RoPE (keys and values are in the tape's caches).
    pub q: Vec<f32>,
    /// (N, NH * HS): the heads' outputs, the input of the output projection.
    pub heads: Vec<f32>,
    /// (N, C): the residual stream after attention.
    pub x_mid: Vec<f32>,
    /// (N, C): the MLP norm's output.
    pub h2: Vec<f32>,
    /// (N, F): the MLP's first product before its nonlinearity (GPT-2's fc, Llama's gate).
    pub mlp_pre: Vec<f32>,
    /// (N, F): Llama's up product (empty for GPT-2).
    pub mlp_up: Vec<f32>,
    /// (N, F): the input of the MLP's last product.
    pub mlp_h: Vec<f32>,
}

/// The activations of a training forward pass.
#[derive(Debug, Default, Clone)]
pub struct Tape {
    pub layers: Vec<LayerTape>,
    /// (N, C): the residual stream after the last block, and the final norm's output.
    pub x_final: Vec<f32>,
    pub h_final: Vec<f32>,
    /// One per sequence: the keys (after RoPE) and values of every layer.
    pub caches: Vec<KvCache>,
}

impl Tape {
    /// Starts the tape of the next block, whose input is `x` (N, C).
    pub(crate) fn push_layer(&mut self, x: &[f32]) -> &mut LayerTape {
        self.layers.push(LayerTape {
            x: x.to_vec(),
            ..LayerTape::default()
        });
        self.layers.last_mut().expect("just pushed")
    }
}

/// The gradient buffer seen by the name the model's tensor has (its GGUF name:
/// `blk.0.attn_q.weight`): each op's backward accumulates into its parameter's place directly.
struct Grads<'a> {
    config: &'a Config,
    params: &'a Parameters,
    buf: &'a mut [f32],
}

impl Grads<'_> {
    fn entry(&mut self, name: &str, len: usize) -> Result<&mut [f32]> {
        let range = self.params.locate(self.config, name, len)?;
        Ok(&mut self.buf[range])
    }

    fn add(&mut self, name: &str, g: &[f32]) -> Result<()> {
        for (a, b) in self.entry(name, g.len())?.iter_mut().zip(g) {
            *a += b;
        }
        Ok(())
    }
}

/// A model being trained: parameters, their gradients, and the tape of the last batch.
pub struct Training {
    pub config: Config,
    pub params: Parameters,
    /// Same layout as `params`.
    pub grads: Parameters,
    last: Option<LastBatch>,
}

/// The last forward pass: its tape, inputs, targets, probabilities (N, V) and per-position
/// losses (N). (The model is not kept: it borrows the parameters, which the optimizer writes.)
struct LastBatch {
    tape: Tape,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    t: usize,
    probs: Vec<f32>,
    losses: Vec<f32>,
}

impl Training {
    pub fn new(config: Config, params: Parameters) -> Training {
        let grads = Parameters::zeros_like(&params);
        Training {
            config,
            params,
            grads,
            last: None,
        }
    }

    /// Forward pass over inputs (B, T) with next-token targets (B, T); returns the mean loss.
    pub fn forward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32> {
        let c = &self.config;
        if inputs.len() != b * t || targets.len() != b * t || b == 0 || t == 0 {
            return Err(Error::Invalid(format!(
                "a batch of {b} x {t} needs {} inputs and targets",
                b * t
            )));
        }
        if let Some(bad) = targets.iter().find(|&&x| x as usize >= c.vocab_size) {
            return Err(Error::Invalid(format!(
                "target token id {bad} is outside the vocabulary (size {})",
                c.vocab_size
            )));
        }
        // The last batch's tape goes first, so that its memory serves this one's.
        self.last = None;
        let model = Transformer::from_params(c, &self.params)?;
        trainable(&model)?;
        let mut caches: Vec<KvCache> = (0..b).map(|_| model.new_cache()).collect();
        let mut tape = Tape::default();
        let logits = {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            model.forward_stacked(
                inputs,
                &vec![t; b],
                &mut refs,
                Logits::All,
                None,
                Some(&mut tape),
            )?
        };
        tape.caches = caches;
        let (mut probs, mut losses) = (vec![0f32; logits.len()], vec![0f32; b * t]);
        let loss = cross_entropy_forward(&logits, targets, &mut probs, &mut losses);
        drop(model);
        self.last = Some(LastBatch {
            tape,
            inputs: inputs.to_vec(),
            targets: targets.to_vec(),
            t,
            probs,
            losses,
        });
        Ok(loss)
    }

    /// Per-position losses (B, T) of the last forward pass.
    pub fn losses(&self) -> &[f32] {
        self.last.as_ref().map_or(&[], |l| &l.losses)
    }

    pub fn zero_grad(&mut self) {
        self.grads.data.fill(0.0);
    }

    /// Accumulates the gradient of the last forward pass's mean loss into `grads`.
    pub fn backward(&mut self) -> Result<()> {
        let last = self.last.as_ref().ok_or_else(|| {
            Error::Invalid("backward pass without a forward pass before it".into())
        })?;
        let mut dlogits = vec![0f32; last.probs.len()];
        cross_entropy_backward(&last.probs, &last.targets, &mut dlogits);
        // The same model as the forward pass's, over the same (unchanged) parameters.
        let model = Transformer::from_params(&self.config, &self.params)?;
        let mut g = Grads {
            config: &self.config,
            params: &self.params,
            buf: &mut self.grads.data,
        };
        backward(&model, &last.tape, &dlogits, &last.inputs, last.t, &mut g)
    }
}

/// The architectures whose backward pass exists: GPT-2's block and Llama's (RMSNorm, RoPE,
/// grouped-query attention, SwiGLU). Gemma's post-norms, QK-norm, GeGLU, sliding windows and
/// embedding scale are inference-only for now.
fn trainable(m: &Transformer) -> Result<()> {
    let unsupported = |what: &str| {
        Err(Error::Invalid(format!(
            "training {:?} models is not supported: they have {what}",
            m.config.arch
        )))
    };
    if m.token_embedding.scale.is_some() {
        return unsupported("a scaled embedding");
    }
    for b in &m.blocks {
        if b.post_attn_norm.is_some() || b.post_mlp_norm.is_some() {
            return unsupported("post-norms");
        }
        if b.attn.q_norm.is_some() || b.attn.window.is_some() {
            return unsupported("QK-norm or a sliding window");
        }
        if matches!(b.mlp, Mlp::GeGlu { .. }) {
            return unsupported("a GeGLU MLP");
        }
    }
    Ok(())
}

/// An f32 matrix's values (training models hold f32 weights).
fn f32s(l: &Linear) -> Result<&[f32]> {
    bytemuck::try_cast_slice(&l.weight.data).map_err(|_| Error::Tensor {
        name: l.weight.name.clone(),
        msg: "training needs f32 weights".into(),
    })
}

/// y = x W^T + b backward: dx (N, in) += dy W; dW, db into `g` under the weight's name.
fn linear_grad(l: &Linear, dy: &[f32], x: &[f32], dx: &mut [f32], g: &mut Grads) -> Result<()> {
    let w = f32s(l)?;
    let name = &l.weight.name;
    let mut db = l.bias.as_ref().map(|b| vec![0f32; b.len()]);
    let dw = g.entry(name, w.len())?;
    linear_backward(dy, x, w, l.out_features(), dx, dw, db.as_deref_mut());
    if let Some(db) = db {
        g.add(&name.replace(".weight", ".bias"), &db)?;
    }
    Ok(())
}

/// A norm's backward: dx (N, C) += d norm(x) / dx · dy; the gain (and bias) gradients into `g`
/// as `{name}.weight` (and `.bias`).
fn norm_grad(
    norm: &Norm,
    name: &str,
    dy: &[f32],
    x: &[f32],
    dx: &mut [f32],
    g: &mut Grads,
) -> Result<()> {
    match norm {
        Norm::Rms { weight, eps } => {
            let dw = g.entry(&format!("{name}.weight"), weight.len())?;
            rms_norm_backward(dy, x, weight, *eps, dx, dw);
        }
        Norm::Layer { weight, bias, eps } => {
            let c = weight.len();
            let rows = x.len() / c;
            let (mut y, mut mean, mut rstd) =
                (vec![0f32; x.len()], vec![0f32; rows], vec![0f32; rows]);
            layer_norm_forward(x, weight, bias, *eps, &mut y, &mut mean, &mut rstd);
            let (mut dw, mut db) = (vec![0f32; c], vec![0f32; c]);
            layer_norm_backward(dy, x, weight, &mean, &rstd, dx, &mut dw, &mut db);
            g.add(&format!("{name}.weight"), &dw)?;
            g.add(&format!("{name}.bias"), &db)?;
        }
    }
    Ok(())
}

/// The backward pass of a training forward pass over B sequences of `t` tokens (`ids`, N),
/// from dlogits (N, V) to the gradient of every parameter, into `g`.
fn backward(
    m: &Transformer,
    tape: &Tape,
    dlogits: &[f32],
    ids: &[u32],
    t: usize,
    g: &mut Grads,
) -> Result<()> {
    let c = &m.config;
    let (n, d) = (ids.len(), c.d_model);
    let mut dh = vec![0f32; n * d];
    linear_grad(&m.unembedding.linear, dlogits, &tape.h_final, &mut dh, g)?;
    // dres: the gradient of the residual stream, carried down through the blocks.
    let mut dres = vec![0f32; n * d];
    norm_grad(
        &m.final_norm,
        "output_norm",
        &dh,
        &tape.x_final,
        &mut dres,
        g,
    )?;
    for (l, (block, lt)) in m.blocks.iter().zip(&tape.layers).enumerate().rev() {
        // x_out = x_mid + mlp(norm2(x_mid)): the MLP branch, then its norm.
        let mut dh2 = vec![0f32; n * d];
        let mut dhidden = vec![0f32; lt.mlp_h.len()];
        match &block.mlp {
            Mlp::Gelu { fc, proj } => {
                linear_grad(proj, &dres, &lt.mlp_h, &mut dhidden, g)?;
                let mut dpre = vec![0f32; dhidden.len()];
                gelu_backward(&dhidden, &lt.mlp_pre, &mut dpre);
                linear_grad(fc, &dpre, &lt.h2, &mut dh2, g)?;
            }
            Mlp::SwiGlu { gate, up, down } => {
                linear_grad(down, &dres, &lt.mlp_h, &mut dhidden, g)?;
                let (mut dgate, mut dup) = (vec![0f32; dhidden.len()], vec![0f32; dhidden.len()]);
                swiglu_backward(&dhidden, &lt.mlp_pre, &lt.mlp_up, &mut dgate, &mut dup);
                linear_grad(gate, &dgate, &lt.h2, &mut dh2, g)?;
                linear_grad(up, &dup, &lt.h2, &mut dh2, g)?;
            }
            Mlp::GeGlu { .. } => unreachable!("refused by trainable()"),
        }
        norm_grad(
            &block.mlp_norm,
            &format!("blk.{l}.ffn_norm"),
            &dh2,
            &lt.x_mid,
            &mut dres,
            g,
        )?;

        // x_mid = x + attn(norm1(x)): the attention branch, then its norm.
        let a = &block.attn;
        let (nh, nkv, hs) = (a.n_head, a.n_kv_head, a.head_dim);
        let (qd, kvd) = (nh * hs, nkv * hs);
        let mut dheads = vec![0f32; n * qd];
        linear_grad(&a.wo, &dres, &lt.heads, &mut dheads, g)?;
        let (mut dq, mut dk, mut dv) =
            (vec![0f32; n * qd], vec![0f32; n * kvd], vec![0f32; n * kvd]);
        for (s, cache) in tape.caches.iter().enumerate() {
            let rows = s * t..(s + 1) * t;
            let layer = &cache.layers[l];
            let (mut dk_s, mut dv_s) =
                (vec![vec![0f32; t * hs]; nkv], vec![vec![0f32; t * hs]; nkv]);
            super::attention::causal_attention_backward(
                &lt.q[rows.start * qd..rows.end * qd],
                &layer.k,
                &layer.v,
                nh,
                hs,
                a.scale,
                &dheads[rows.start * qd..rows.end * qd],
                &mut dq[rows.start * qd..rows.end * qd],
                &mut dk_s,
                &mut dv_s,
            );
            // Per-head (T, HS) back to rows (T, NKV * HS), as the projections produced them.
            for kv in 0..nkv {
                for i in 0..t {
                    let at = (rows.start + i) * kvd + kv * hs;
                    dk[at..at + hs].copy_from_slice(&dk_s[kv][i * hs..(i + 1) * hs]);
                    dv[at..at + hs].copy_from_slice(&dv_s[kv][i * hs..(i + 1) * hs]);
                }
            }
        }
        if let Some(rope) = &a.rope {
            for (r, (q_row, k_row)) in dq
                .chunks_exact_mut(qd)
                .zip(dk.chunks_exact_mut(kvd))
                .enumerate()
            {
                let (cos, sin) = rope.angles(r % t);
                rope.rotate_back(q_row, hs, &cos, &sin);
                rope.rotate_back(k_row, hs, &cos, &sin);
            }
        }
        let mut dh1 = vec![0f32; n * d];
        linear_grad(&a.wq, &dq, &lt.h1, &mut dh1, g)?;
        linear_grad(&a.wk, &dk, &lt.h1, &mut dh1, g)?;
        linear_grad(&a.wv, &dv, &lt.h1, &mut dh1, g)?;
        norm_grad(
            &block.attn_norm,
            &format!("blk.{l}.attn_norm"),
            &dh1,
            &lt.x,
            &mut dres,
            g,
        )?;
    }
    // Each position's gradient flows into its token's row (and its position's).
    let emb = &m.token_embedding.table;
    let rows: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
    embedding_backward(&dres, &rows, g.entry(&emb.name, emb.rows * d)?);
    if let Some(pe) = &m.position_embedding {
        let positions: Vec<usize> = (0..n).map(|r| r % t).collect();
        embedding_backward(
            &dres,
            &positions,
            g.entry(&pe.table.name, pe.table.rows * d)?,
        );
    }
    Ok(())
}
