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

/// Training forward: out (B*T, C) = wte[ids] + wpe[position], for sequences of length `t`;
/// wte (V, C), wpe (maxT, C), f32.
pub fn embedding_forward(ids: &[u32], t: usize, wte: &[f32], wpe: &[f32], out: &mut [f32]) {
    let c = out.len() / ids.len();
    for (i, (o, &id)) in out.chunks_exact_mut(c).zip(ids).enumerate() {
        let (tok, pos) = (
            &wte[id as usize * c..(id as usize + 1) * c],
            &wpe[(i % t) * c..(i % t + 1) * c],
        );
        for ((y, a), b) in o.iter_mut().zip(tok).zip(pos) {
            *y = a + b;
        }
    }
}

/// The backward pass of [`embedding_forward`]: each position's gradient flows into the row of
/// its token (dwte) and of its position (dwpe).
pub fn embedding_backward(dout: &[f32], ids: &[u32], t: usize, dwte: &mut [f32], dwpe: &mut [f32]) {
    let c = dout.len() / ids.len();
    for (i, (g, &id)) in dout.chunks_exact(c).zip(ids).enumerate() {
        for (d, x) in dwte[id as usize * c..(id as usize + 1) * c]
            .iter_mut()
            .zip(g)
        {
            *d += x;
        }
        for (d, x) in dwpe[(i % t) * c..(i % t + 1) * c].iter_mut().zip(g) {
            *d += x;
        }
    }
}
