//! The unembedding: the final vector of a position times the unembedding matrix (V, C) gives one
//! logit per vocabulary entry. Models with tied embeddings reuse the token embedding matrix.

use super::linear::Linear;
use crate::kernels::Precision;

#[derive(Clone, Debug)]
pub struct Unembedding {
    /// (V, C)
    pub linear: Linear,
    /// True when the matrix is the token embedding's (counted once in parameter tables).
    pub tied: bool,
}

impl Unembedding {
    /// x: (T, C) -> logits (T, V)
    pub fn forward(&self, x: &[f32], t: usize, precision: Precision) -> Vec<f32> {
        self.linear.forward(x, t, precision)
    }
}
