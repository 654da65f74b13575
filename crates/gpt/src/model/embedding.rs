//! Embeddings: each token id selects one row of the embedding matrix (V, C); GPT-2 also adds a
//! learned row per position (n_positions, C).

use crate::tensor::Matrix;

#[derive(Clone, Debug)]
pub struct Embedding {
    /// (V, C) for tokens, (n_positions, C) for positions.
    pub table: Matrix,
}

impl Embedding {
    /// ids: (T) -> (T, C)
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let c = self.table.cols;
        let mut out = vec![0f32; ids.len() * c];
        for (row, &id) in out.chunks_exact_mut(c).zip(ids) {
            self.table.row_f32(id as usize, row);
        }
        out
    }

    /// Adds rows `pos0..pos0+T` to x: (T, C).
    pub fn add_positions(&self, x: &mut [f32], pos0: usize) {
        let c = self.table.cols;
        let mut row = vec![0f32; c];
        for (i, xr) in x.chunks_exact_mut(c).enumerate() {
            self.table.row_f32(pos0 + i, &mut row);
            for (a, b) in xr.iter_mut().zip(&row) {
                *a += b;
            }
        }
    }
}
