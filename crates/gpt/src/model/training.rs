//! GPT-2 training: the forward pass over a batch, keeping every activation the backward pass
//! needs, the loss, and the backward pass, which calls each op's backward in the reverse order
//! of the forward (llm.c's gpt2_forward / gpt2_backward). The ops are the ones inference uses.

use super::attention::{attention_backward, attention_forward};
use super::config::Config;
use super::embedding::{embedding_backward, embedding_forward};
use super::linear::{linear_backward, linear_forward};
use super::loss::{cross_entropy_backward, cross_entropy_forward};
use super::mlp::{gelu_backward, gelu_forward};
use super::norm::{layer_norm_backward, layer_norm_forward};
use super::params::Parameters;
use crate::{Error, Result};

/// What the forward pass keeps for the backward pass, for a batch of B sequences of T tokens.
/// Per-layer tensors are (L, ...) with each layer's slice contiguous.
#[derive(Debug, Default, Clone)]
struct Activations {
    /// (B, T, C): token + position embeddings.
    encoded: Vec<f32>,
    /// (L, B, T, C), with (L, B, T) means and rstds.
    ln1: Vec<f32>,
    ln1_mean: Vec<f32>,
    ln1_rstd: Vec<f32>,
    /// (L, B, T, 3C)
    qkv: Vec<f32>,
    /// (L, B, T, C): attention outputs before the projection.
    atty: Vec<f32>,
    /// (L, B, NH, T, T)
    att: Vec<f32>,
    /// (L, B, T, C): the residual stream after attention.
    residual2: Vec<f32>,
    ln2: Vec<f32>,
    ln2_mean: Vec<f32>,
    ln2_rstd: Vec<f32>,
    /// (L, B, T, F) before and after GELU.
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    /// (L, B, T, C): the residual stream after the block.
    residual3: Vec<f32>,
    /// (B, T, C) and (B, T)
    lnf: Vec<f32>,
    lnf_mean: Vec<f32>,
    lnf_rstd: Vec<f32>,
    /// (B, T, V)
    probs: Vec<f32>,
    /// (B, T)
    losses: Vec<f32>,
}

/// A GPT-2 being trained: parameters, their gradients, and the activations of the last batch.
pub struct Gpt2Training {
    pub config: Config,
    pub params: Parameters,
    /// Same layout as `params`.
    pub grads: Parameters,
    acts: Activations,
    /// The batch of the last forward pass.
    inputs: Vec<u32>,
    targets: Vec<u32>,
    bt: (usize, usize),
}

impl Gpt2Training {
    pub fn new(config: Config, params: Parameters) -> Gpt2Training {
        let grads = Parameters::zeros(&config);
        Gpt2Training {
            config,
            params,
            grads,
            acts: Activations::default(),
            inputs: Vec::new(),
            targets: Vec::new(),
            bt: (0, 0),
        }
    }

    fn size(&mut self, b: usize, t: usize) {
        if self.bt == (b, t) {
            return;
        }
        let c = &self.config;
        let (l, n, d, f, v, nh) = (c.n_layer, b * t, c.d_model, c.d_ff, c.vocab_size, c.n_head);
        self.acts = Activations {
            encoded: vec![0.0; n * d],
            ln1: vec![0.0; l * n * d],
            ln1_mean: vec![0.0; l * n],
            ln1_rstd: vec![0.0; l * n],
            qkv: vec![0.0; l * n * 3 * d],
            atty: vec![0.0; l * n * d],
            att: vec![0.0; l * n * nh * t],
            residual2: vec![0.0; l * n * d],
            ln2: vec![0.0; l * n * d],
            ln2_mean: vec![0.0; l * n],
            ln2_rstd: vec![0.0; l * n],
            fch: vec![0.0; l * n * f],
            fch_gelu: vec![0.0; l * n * f],
            residual3: vec![0.0; l * n * d],
            lnf: vec![0.0; n * d],
            lnf_mean: vec![0.0; n],
            lnf_rstd: vec![0.0; n],
            probs: vec![0.0; n * v],
            losses: vec![0.0; n],
        };
        self.bt = (b, t);
    }

    /// Forward pass over inputs (B, T) with next-token targets (B, T); returns the mean loss.
    pub fn forward(&mut self, inputs: &[u32], targets: &[u32], b: usize, t: usize) -> Result<f32> {
        let c = self.config.clone();
        if inputs.len() != b * t || targets.len() != b * t {
            return Err(Error::Invalid(format!(
                "a batch of {b} x {t} needs {} inputs and targets",
                b * t
            )));
        }
        if t > c.context_length {
            return Err(Error::ContextOverflow {
                needed: t,
                context: c.context_length,
            });
        }
        if let Some(bad) = inputs
            .iter()
            .chain(targets)
            .find(|&&x| x as usize >= c.vocab_size)
        {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary (size {})",
                c.vocab_size
            )));
        }
        self.size(b, t);
        self.inputs = inputs.to_vec();
        self.targets = targets.to_vec();
        let (n, d, f, nh, eps) = (b * t, c.d_model, c.d_ff, c.n_head, c.norm_eps);
        let p = self.params.views();
        let a = &mut self.acts;
        embedding_forward(inputs, t, p.wte, p.wpe, &mut a.encoded);
        for (l, w) in p.layers.iter().enumerate() {
            let (cd, cf) = (l * n * d..(l + 1) * n * d, l * n * f..(l + 1) * n * f);
            let (cn, c3) = (l * n..(l + 1) * n, l * n * 3 * d..(l + 1) * n * 3 * d);
            let residual = if l == 0 {
                &a.encoded[..]
            } else {
                &a.residual3[(l - 1) * n * d..l * n * d]
            };
            layer_norm_forward(
                residual,
                w.ln_1_w,
                w.ln_1_b,
                eps,
                &mut a.ln1[cd.clone()],
                &mut a.ln1_mean[cn.clone()],
                &mut a.ln1_rstd[cn.clone()],
            );
            linear_forward(
                &mut a.qkv[c3.clone()],
                &a.ln1[cd.clone()],
                w.c_attn_w,
                Some(w.c_attn_b),
                3 * d,
            );
            attention_forward(
                &a.qkv[c3],
                b,
                t,
                nh,
                &mut a.atty[cd.clone()],
                &mut a.att[l * n * nh * t..(l + 1) * n * nh * t],
            );
            let mut attproj = vec![0f32; n * d];
            linear_forward(
                &mut attproj,
                &a.atty[cd.clone()],
                w.c_proj_w,
                Some(w.c_proj_b),
                d,
            );
            let residual = if l == 0 {
                &a.encoded[..]
            } else {
                &a.residual3[(l - 1) * n * d..l * n * d]
            };
            let r2: Vec<f32> = residual.iter().zip(&attproj).map(|(x, y)| x + y).collect();
            a.residual2[cd.clone()].copy_from_slice(&r2);
            layer_norm_forward(
                &r2,
                w.ln_2_w,
                w.ln_2_b,
                eps,
                &mut a.ln2[cd.clone()],
                &mut a.ln2_mean[cn.clone()],
                &mut a.ln2_rstd[cn],
            );
            linear_forward(
                &mut a.fch[cf.clone()],
                &a.ln2[cd.clone()],
                w.c_fc_w,
                Some(w.c_fc_b),
                f,
            );
            gelu_forward(&a.fch[cf.clone()], &mut a.fch_gelu[cf.clone()]);
            let mut fcproj = vec![0f32; n * d];
            linear_forward(
                &mut fcproj,
                &a.fch_gelu[cf],
                w.mlp_proj_w,
                Some(w.mlp_proj_b),
                d,
            );
            for ((o, x), y) in a.residual3[cd].iter_mut().zip(&r2).zip(&fcproj) {
                *o = x + y;
            }
        }
        let last = &a.residual3[(c.n_layer - 1) * n * d..];
        layer_norm_forward(
            last,
            p.ln_f_w,
            p.ln_f_b,
            eps,
            &mut a.lnf,
            &mut a.lnf_mean,
            &mut a.lnf_rstd,
        );
        let mut logits = vec![0f32; n * c.vocab_size];
        linear_forward(&mut logits, &a.lnf, p.wte, None, c.vocab_size);
        Ok(cross_entropy_forward(
            &logits,
            targets,
            &mut a.probs,
            &mut a.losses,
        ))
    }

    /// Per-position losses (B, T) of the last forward pass.
    pub fn losses(&self) -> &[f32] {
        &self.acts.losses
    }

    pub fn zero_grad(&mut self) {
        self.grads.data.fill(0.0);
    }

    /// Accumulates the gradient of the last forward pass's mean loss into `grads`.
    pub fn backward(&mut self) {
        let c = self.config.clone();
        let (b, t) = self.bt;
        let (n, d, f, nh, v) = (b * t, c.d_model, c.d_ff, c.n_head, c.vocab_size);
        let p = self.params.views();
        let mut g = self.grads.views_mut();
        let a = &self.acts;

        let mut dlogits = vec![0f32; n * v];
        cross_entropy_backward(&a.probs, &self.targets, &mut dlogits);
        let mut dlnf = vec![0f32; n * d];
        linear_backward(&dlogits, &a.lnf, p.wte, v, &mut dlnf, g.wte, None);
        drop(dlogits);
        // dres: the gradient of the residual stream, carried down through the blocks.
        let mut dres = vec![0f32; n * d];
        let last = &a.residual3[(c.n_layer - 1) * n * d..];
        layer_norm_backward(
            &dlnf,
            last,
            p.ln_f_w,
            &a.lnf_mean,
            &a.lnf_rstd,
            &mut dres,
            g.ln_f_w,
            g.ln_f_b,
        );

        let mut dfch_gelu = vec![0f32; n * f];
        let mut dfch = vec![0f32; n * f];
        let mut dln = vec![0f32; n * d];
        let mut datty = vec![0f32; n * d];
        let mut dqkv = vec![0f32; n * 3 * d];
        for l in (0..c.n_layer).rev() {
            let (w, gw) = (&p.layers[l], &mut g.layers[l]);
            let (cd, cf) = (l * n * d..(l + 1) * n * d, l * n * f..(l + 1) * n * f);
            let (cn, c3) = (l * n..(l + 1) * n, l * n * 3 * d..(l + 1) * n * 3 * d);
            let residual = if l == 0 {
                &a.encoded[..]
            } else {
                &a.residual3[(l - 1) * n * d..l * n * d]
            };
            // residual3 = residual2 + mlp(ln2(residual2)): the MLP branch, then the norm.
            dfch_gelu.fill(0.0);
            linear_backward(
                &dres,
                &a.fch_gelu[cf.clone()],
                w.mlp_proj_w,
                d,
                &mut dfch_gelu,
                gw.mlp_proj_w,
                Some(&mut *gw.mlp_proj_b),
            );
            dfch.fill(0.0);
            gelu_backward(&dfch_gelu, &a.fch[cf], &mut dfch);
            dln.fill(0.0);
            linear_backward(
                &dfch,
                &a.ln2[cd.clone()],
                w.c_fc_w,
                f,
                &mut dln,
                gw.c_fc_w,
                Some(&mut *gw.c_fc_b),
            );
            layer_norm_backward(
                &dln,
                &a.residual2[cd.clone()],
                w.ln_2_w,
                &a.ln2_mean[cn.clone()],
                &a.ln2_rstd[cn.clone()],
                &mut dres,
                gw.ln_2_w,
                gw.ln_2_b,
            );
            // residual2 = residual + attn(ln1(residual)): the attention branch, then the norm.
            datty.fill(0.0);
            linear_backward(
                &dres,
                &a.atty[cd.clone()],
                w.c_proj_w,
                d,
                &mut datty,
                gw.c_proj_w,
                Some(&mut *gw.c_proj_b),
            );
            dqkv.fill(0.0);
            attention_backward(
                &datty,
                &a.qkv[c3.clone()],
                &a.att[l * n * nh * t..(l + 1) * n * nh * t],
                b,
                t,
                nh,
                &mut dqkv,
            );
            dln.fill(0.0);
            linear_backward(
                &dqkv,
                &a.ln1[cd],
                w.c_attn_w,
                3 * d,
                &mut dln,
                gw.c_attn_w,
                Some(&mut *gw.c_attn_b),
            );
            layer_norm_backward(
                &dln,
                residual,
                w.ln_1_w,
                &a.ln1_mean[cn.clone()],
                &a.ln1_rstd[cn],
                &mut dres,
                gw.ln_1_w,
                gw.ln_1_b,
            );
        }
        embedding_backward(&dres, &self.inputs, t, g.wte, g.wpe);
    }
}
