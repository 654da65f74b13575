//! A linear layer `y = x W^T + b`, the workhorse of the model: Q, K, V and output projections,
//! the MLP's matrices and the unembedding are all linear layers.

use crate::kernels::{self, Precision};
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
        let mut y = vec![0f32; t * self.out_features()];
        kernels::matmul(self.weight.as_ref(), x, t, &mut y, precision);
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(b.len()) {
                for (yi, bi) in row.iter_mut().zip(b) {
                    *yi += bi;
                }
            }
        }
        y
    }
}
