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

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044715;

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)).tanh())
}

/// d gelu(x) / dx
pub fn gelu_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    let th = u.tanh();
    let sech2 = 1.0 - th * th;
    0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x)
}

/// out (N) = gelu(x) elementwise.
pub fn gelu_forward(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu(v);
    }
}

/// dx (N) += gelu'(x) * dout.
pub fn gelu_backward(dout: &[f32], x: &[f32], dx: &mut [f32]) {
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dout) {
        *d += gelu_grad(v) * g;
    }
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
                let h = fc.forward(x, t, precision); // (T, F)
                let mut g = vec![0f32; h.len()];
                gelu_forward(&h, &mut g);
                proj.forward(&g, t, precision)
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

    #[test]
    fn gelu_grad_is_the_derivative() {
        for x in [-3.0f32, -1.0, -0.1, 0.0, 0.3, 1.0, 2.5] {
            let h = 1e-2f64;
            let g = |v: f64| 0.5 * v * (1.0 + (0.7978845608 * (v + 0.044715 * v * v * v)).tanh());
            let fd = (g(x as f64 + h) - g(x as f64 - h)) / (2.0 * h);
            assert!(
                (gelu_grad(x) as f64 - fd).abs() < 1e-4,
                "x = {x}: {} vs {fd}",
                gelu_grad(x)
            );
        }
    }
}
