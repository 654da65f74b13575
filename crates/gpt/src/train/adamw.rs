//! AdamW (Loshchilov & Hutter): Adam with weight decay applied to the weights directly
//! ("decoupled"), not through the gradient. The moments mirror the parameter buffer, so a step
//! is one loop over it.

use crate::model::params::Parameters;
use rayon::prelude::*;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Decay every tensor (PyTorch's default with one parameter group); otherwise only those
    /// whose spec says so (matrices and embeddings, not biases or norm gains: GPT-2 practice).
    pub decay_all: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_all: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// First and second moments, in the parameters' layout.
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Steps taken.
    pub t: u64,
}

impl AdamW {
    pub fn new(config: AdamWConfig, n: usize) -> AdamW {
        AdamW {
            config,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One update with learning rate `lr`, as torch.optim.AdamW computes it:
    /// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    /// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    pub fn step(&mut self, params: &mut Parameters, grads: &Parameters, lr: f32) {
        self.t += 1;
        let c = &self.config;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.t as i32);
        let step_size = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        for s in &params.specs {
            let range = s.offset..s.offset + s.len();
            let decay = if c.decay_all || s.decay {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            params.data[range.clone()]
                .par_iter_mut()
                .zip(&grads.data[range.clone()])
                .zip(self.m[range.clone()].par_iter_mut())
                .zip(self.v[range].par_iter_mut())
                .for_each(|(((p, &g), m), v)| {
                    *p *= decay;
                    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                    *p -= step_size * *m / (v.sqrt() / bc2_sqrt + c.eps);
                });
        }
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grads: &mut Parameters, max_norm: f32) -> f32 {
    let norm = grads
        .data
        .par_iter()
        .map(|&g| g as f64 * g as f64)
        .sum::<f64>()
        .sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / (norm + 1e-6);
        grads.data.par_iter_mut().for_each(|g| *g *= s);
    }
    norm
}
