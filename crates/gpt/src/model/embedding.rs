//! Embeddings: each token id selects one row of the embedding matrix (V, C); GPT-2 also adds a
//! learned row per position (n_positions, C).

use crate::tensor::Matrix;

#[derive(Clone, Debug)]
pub struct Embedding {
    /// (V, C) for tokens, (n_positions, C) for positions.
    pub table: Matrix,
    /// Each looked-up row is multiplied by this (Gemma: sqrt(C), so that embeddings stored at
    /// the unembedding's scale enter the residual stream at the blocks' scale).
    pub scale: Option<f32>,
}

impl Embedding {
    /// ids: (T) -> (T, C)
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let c = self.table.cols;
        let mut out = vec![0f32; ids.len() * c];
        for (row, &id) in out.chunks_exact_mut(c).zip(ids) {
            self.table.row_f32(id as usize, row);
            if let Some(s) = self.scale {
                row.iter_mut().for_each(|x| *x *= s);
            }
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

/// The backward pass of [`Embedding::forward`] (unscaled): row i of dout (N, C) flows into the
/// row of the table its id picked: dtable (rows, C) [ids[i]] += dout[i]. Positions are ids too
/// (GPT-2's table of learned positions).
pub fn embedding_backward(dout: &[f32], ids: &[usize], dtable: &mut [f32]) {
    let c = dout.len() / ids.len();
    for (g, &id) in dout.chunks_exact(c).zip(ids) {
        for (d, x) in dtable[id * c..(id + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
    }
}
