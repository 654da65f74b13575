//! A linear layer `y = x W^T + b`, the workhorse of the model: Q, K, V and output projections,
//! the MLP's matrices and the unembedding are all linear layers.

use crate::kernels::{self, Activations, Precision};
use crate::tensor::Matrix;

#[derive(Clone, Debug)]
pub struct Linear {
    /// (out, in), in any storage type.
    pub weight: Matrix,
    /// (out)
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn new(weight: Matrix, bias: Option<Vec<f32>>) -> Linear {
        Linear { weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.weight.cols
    }

    pub fn out_features(&self) -> usize {
        self.weight.rows
    }

    /// x: (T, in) -> (T, out)
    pub fn forward(&self, x: &[f32], t: usize, precision: Precision) -> Vec<f32> {
        self.forward_acts(&Activations::new(x, t), precision)
    }

    /// [`forward`](Self::forward) of an input that several layers read (Q, K and V; gate and
    /// up), quantized once for all of them: x (T, in) -> (T, out).
    pub fn forward_acts(&self, x: &Activations, precision: Precision) -> Vec<f32> {
        let [y] = Linear::forward_group([self], x, precision);
        y
    }

    /// The layers that read the same input (Q, K and V; gate and up), their products in one
    /// parallel loop: x (T, in) -> each layer's (T, out).
    pub fn forward_group<const M: usize>(
        layers: [&Linear; M],
        x: &Activations,
        precision: Precision,
    ) -> [Vec<f32>; M] {
        let mut ys = layers.map(|l| vec![0f32; x.tokens() * l.out_features()]);
        let ws = layers.map(|l| l.weight.as_ref());
        let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
        kernels::matmuls_acts(&ws, x, &mut outs, precision);
        for (y, l) in ys.iter_mut().zip(layers) {
            if let Some(b) = &l.bias {
                for row in y.chunks_exact_mut(b.len()) {
                    for (yi, bi) in row.iter_mut().zip(b) {
                        *yi += bi;
                    }
                }
            }
        }
        ys
    }
}

/// The backward pass of [`Linear::forward`] for f32 weights w (OC, C): accumulates dinp (N, C) += dout @ w,
/// dw (OC, C) += dout^T @ inp and db (OC) += the column sums of dout (N, OC).
pub fn linear_backward(
    dout: &[f32],
    inp: &[f32],
    w: &[f32],
    oc: usize,
    dinp: &mut [f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    use kernels::gemm::{sgemm, Operand};
    let c = w.len() / oc;
    let n = inp.len() / c;
    sgemm(n, c, oc, Operand::new(dout), Operand::new(w), dinp, true);
    sgemm(oc, c, n, Operand::t(dout), Operand::new(inp), dw, true);
    if let Some(db) = db {
        for row in dout.chunks_exact(oc) {
            for (d, g) in db.iter_mut().zip(row) {
                *d += g;
            }
        }
    }
}
