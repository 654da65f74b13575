//! The MLP of each block: widen each position's vector to F, apply a nonlinearity, project back.

use super::linear::Linear;
use super::training::LayerTape;
use crate::kernels::elementwise::combine;
use crate::kernels::{Activations, Precision};

#[derive(Clone, Debug)]
pub enum Mlp {
    /// Llama: down(silu(gate(x)) * up(x)); gate and up (F, C), down (C, F).
    SwiGlu {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// Gemma: down(gelu(gate(x)) * up(x)), GELU with the tanh approximation; shapes as SwiGlu.
    GeGlu {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// GPT-2: proj(gelu(fc(x))); fc (F, C), proj (C, F).
    Gelu { fc: Linear, proj: Linear },
}

/// silu(x) = x * sigmoid(x), with sigmoid(x) = (1 + tanh(x / 2)) / 2 through the libm-free
/// [`tanh`], so that loops over it vectorize (within 1e-7 of x * sigmoid(x) relative to |x|).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh(0.5 * x))
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044715;

/// GELU with the tanh approximation (GPT-2's `gelu_new`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)))
}

/// tanh(x) = 1 - 2 / (e^(2x) + 1), with e^y from Cephes' expf polynomial: within 2e-7 of the
/// true value (absolute), which is what GELU needs (it uses 1 + tanh), and free of libm calls,
/// so loops over it vectorize. libm's tanhf was a quarter of training time.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let y = (2.0 * x).clamp(-88.0, 88.0);
    // e^y = 2^n e^r with n = round(y / ln 2) and |r| <= ln 2 / 2.
    // Round to nearest by adding and removing 1.5 * 2^23 (exact for |y| < 2^22): no libm call.
    // The sum's low mantissa bits then hold n itself, which builds 2^n without a float-to-int
    // conversion (Rust's saturating `as` would keep the loop from vectorizing).
    const ROUND: f32 = 12_582_912.0;
    let shifted = y * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = y - n * 0.693_359_4 + n * 2.121_944_4e-4; // ln 2 split in two for an exact product
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_66)
        * r
        + 0.5;
    let er = p * r * r + r + 1.0;
    let e = er
        * f32::from_bits(
            shifted
                .to_bits()
                .wrapping_sub(ROUND.to_bits())
                .wrapping_add(127)
                << 23,
        );
    1.0 - 2.0 / (e + 1.0)
}

/// d gelu(x) / dx
#[inline(always)]
pub fn gelu_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    let th = tanh(u);
    let sech2 = 1.0 - th * th;
    0.5 * (1.0 + th) + 0.5 * x * sech2 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x)
}

/// out (N) = gelu(x) elementwise.
pub fn gelu_forward(x: &[f32], out: &mut [f32]) {
    crate::kernels::elementwise::map(x, out, gelu);
}

/// dx (N) += gelu'(x) * dout.
pub fn gelu_backward(dout: &[f32], x: &[f32], dx: &mut [f32]) {
    crate::kernels::elementwise::chain(dout, x, dx, gelu_grad);
}

/// d silu(x) / dx = s(x) (1 + x (1 - s(x))), s the sigmoid (as [`silu`] computes it).
#[inline(always)]
pub fn silu_grad(x: f32) -> f32 {
    let s = 0.5 * (1.0 + tanh(0.5 * x));
    s * (1.0 + x * (1.0 - s))
}

/// The backward pass of SwiGLU's h = silu(gate) * up (all (N, F)): accumulates dgate and dup
/// from dh.
pub fn swiglu_backward(dh: &[f32], gate: &[f32], up: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    for ((((d, &g), &u), dg), du) in dh.iter().zip(gate).zip(up).zip(dgate).zip(dup) {
        *dg += d * u * silu_grad(g);
        *du += d * silu(g);
    }
}

impl Mlp {
    /// x: (T, C) -> (T, C). With a `tape`, keeps the hidden activations (T, F) the backward
    /// pass needs.
    pub fn forward(
        &self,
        x: &[f32],
        t: usize,
        precision: Precision,
        tape: Option<&mut LayerTape>,
    ) -> Vec<f32> {
        let keep = tape.is_some();
        let (pre, up, h, out) = match self {
            Mlp::SwiGlu { gate, up, down } => {
                let xa = Activations::new(x, t);
                let [mut g, u] = Linear::forward_group([gate, up], &xa, precision); // (T, F) each
                                                                                    // The gate's values are kept for the backward pass only when it will run.
                let mut h = if keep {
                    g.clone()
                } else {
                    std::mem::take(&mut g)
                };
                combine(&mut h, &u, |g, u| silu(g) * u);
                let out = down.forward(&h, t, precision);
                (g, u, h, out)
            }
            Mlp::GeGlu { gate, up, down } => {
                let xa = Activations::new(x, t);
                let [g, mut h] = Linear::forward_group([gate, up], &xa, precision); // (T, F) each
                combine(&mut h, &g, |u, g| gelu(g) * u);
                let out = down.forward(&h, t, precision);
                (g, Vec::new(), h, out)
            }
            Mlp::Gelu { fc, proj } => {
                let pre = fc.forward(x, t, precision); // (T, F)
                let mut h = vec![0f32; pre.len()];
                gelu_forward(&pre, &mut h);
                let out = proj.forward(&h, t, precision);
                (pre, Vec::new(), h, out)
            }
        };
        if let Some(tape) = tape {
            (tape.mlp_pre, tape.mlp_up, tape.mlp_h) = (pre, up, h);
        }
        out
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
    fn tanh_is_within_2e7_of_libm() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        for x in [-1e6f32, -100.0, 44.0, 1e6] {
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 2e-7, "worst {worst}");
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
