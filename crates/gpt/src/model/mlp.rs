//! The MLP of each block: widen each position's vector to F, apply a nonlinearity, project back.

use super::linear::Linear;
use crate::kernels::Precision;

#[derive(Clone, Debug)]
pub enum Mlp {
    /// Llama: down(silu(gate(x)) * up(x)); gate and up (F, C), down (C, F).
    SwiGlu {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// GPT-2: proj(gelu(fc(x))); fc (F, C), proj (C, F).
    Gelu { fc: Linear, proj: Linear },
}

/// silu(x) = x * sigmoid(x)
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
}

impl Mlp {
    /// x: (T, C) -> (T, C)
    pub fn forward(&self, x: &[f32], t: usize, precision: Precision) -> Vec<f32> {
        match self {
            Mlp::SwiGlu { gate, up, down } => {
                let mut h = gate.forward(x, t, precision); // (T, F)
                let u = up.forward(x, t, precision); // (T, F)
                for (hi, ui) in h.iter_mut().zip(&u) {
                    *hi = silu(*hi) * ui;
                }
                down.forward(&h, t, precision)
            }
            Mlp::Gelu { fc, proj } => {
                let mut h = fc.forward(x, t, precision); // (T, F)
                h.iter_mut().for_each(|v| *v = gelu(*v));
                proj.forward(&h, t, precision)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_by_hand() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6); // 1 / (1 + e^-1)
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5); // PyTorch gelu(1.0, approximate='tanh')
        assert!((gelu(-3.0) - -0.003_637_4).abs() < 1e-6);
    }
}
