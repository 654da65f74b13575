//! Rotary position embeddings (RoPE): position enters attention by rotating each pair of a
//! query's and key's dimensions by an angle proportional to the position, so that the score
//! q·k depends on the distance between the two positions.

/// Which dimensions form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// (2i, 2i+1): llama.cpp's "normal" RoPE. GGUF files store Q and K rows permuted so that
    /// this layout computes the same scores as Hugging Face's.
    Adjacent,
    /// (i, i + d/2): Hugging Face's `rotate_half` (GPT-NeoX style), for unpermuted weights.
    Halves,
}

/// llama.cpp's `LlamaModel.permute` of Q or K rows (heads x HS, cols): each head's rows go
/// from Hugging Face's halves order (first halves, then second halves of the rotated pairs) to
/// adjacent pairs, row (h, i, j) of shape (heads, HS/2, 2) taking row (h, j, i) of
/// (heads, 2, HS/2). What `gpt export` writes for llama.cpp's "normal" RoPE.
pub fn halves_to_adjacent(x: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_pairs(x, heads, cols, true)
}

/// The inverse of [`halves_to_adjacent`]: a GGUF file's Q or K rows back in Hugging Face's
/// order, as training's parameters keep them.
pub fn adjacent_to_halves(x: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_pairs(x, heads, cols, false)
}

fn permute_pairs(x: &[f32], heads: usize, cols: usize, to_adjacent: bool) -> Vec<f32> {
    let rows = x.len() / cols.max(1);
    let half = rows / heads.max(1) / 2;
    let mut out = vec![0f32; x.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let adjacent = h * 2 * half + i * 2 + j;
                let halves = h * 2 * half + j * half + i;
                let (dst, src) = if to_adjacent {
                    (adjacent, halves)
                } else {
                    (halves, adjacent)
                };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&x[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Rope {
    /// Rotated dimensions per head (the first `dim` of HS).
    pub dim: usize,
    pub pairs: RopePairs,
    /// theta^(-2i/dim) for i in 0..dim/2
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(dim: usize, theta: f32, pairs: RopePairs) -> Rope {
        let inv_freq = (0..dim / 2)
            .map(|i| (theta as f64).powf(-2.0 * i as f64 / dim as f64) as f32)
            .collect();
        Rope {
            dim,
            pairs,
            inv_freq,
        }
    }

    /// Linear RoPE scaling: positions divided by `factor` (as transformers' "linear" rope_type
    /// divides its inverse frequencies).
    pub fn with_linear_scaling(mut self, factor: f32) -> Rope {
        if factor != 1.0 {
            self.inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        self
    }

    /// Per-pair frequency divisors (dim/2), as Llama 3.1's RoPE scaling stretches the low
    /// frequencies: GGUF's `rope_freqs.weight` (ggml_rope_ext's freq_factors), or transformers'
    /// "llama3" rope_type computed into the same form.
    pub fn with_freq_factors(mut self, factors: &[f32]) -> Rope {
        for (f, d) in self.inv_freq.iter_mut().zip(factors) {
            *f /= d;
        }
        self
    }

    /// The (cos, sin) of every pair's angle at `pos`: (dim/2) each.
    pub fn angles(&self, pos: usize) -> (Vec<f32>, Vec<f32>) {
        self.inv_freq
            .iter()
            .map(|f| {
                // Angle in f32 as Hugging Face computes it (position * inv_freq in float32).
                let a = pos as f32 * f;
                (a.cos(), a.sin())
            })
            .unzip()
    }

    /// Rotates each head of x: (n_heads * HS) in place, given the angles of its position.
    pub fn rotate(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        self.rotate_by(x, head_dim, cos, sin, 1.0)
    }

    /// The backward pass of [`rotate`](Self::rotate): a rotation's gradient is the rotation
    /// by the opposite angle (its transpose), applied in place to the gradient (n_heads * HS).
    pub fn rotate_back(&self, dx: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        self.rotate_by(dx, head_dim, cos, sin, -1.0)
    }

    fn rotate_by(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], sign: f32) {
        let half = self.dim / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match self.pairs {
                    RopePairs::Adjacent => (2 * i, 2 * i + 1),
                    RopePairs::Halves => (i, i + half),
                };
                let (x0, x1, sin) = (head[a], head[b], sign * sin[i]);
                head[a] = x0 * cos[i] - x1 * sin;
                head[b] = x0 * sin + x1 * cos[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gguf_permutation_interleaves_each_heads_halves_and_inverts() {
        // 2 heads of HS 4, one column: rows h0 [a b c d] -> [a c b d] (pairs (a, c), (b, d)).
        let x: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let p = halves_to_adjacent(&x, 2, 1);
        assert_eq!(p, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        let y: Vec<f32> = (0..24).map(|v| v as f32).collect(); // HS 6, 2 columns
        assert_eq!(adjacent_to_halves(&halves_to_adjacent(&y, 2, 2), 2, 2), y);
    }

    #[test]
    fn rotation_preserves_norm_and_relative_position() {
        // q·k after rotation depends only on the distance between positions.
        let rope = Rope::new(4, 10000.0, RopePairs::Adjacent);
        let q = [0.3f32, -1.2, 0.7, 2.0];
        let k = [1.1f32, 0.4, -0.5, 0.9];
        let score = |pq: usize, pk: usize| {
            let (mut a, mut b) = (q, k);
            let (c, s) = rope.angles(pq);
            rope.rotate(&mut a, 4, &c, &s);
            let (c, s) = rope.angles(pk);
            rope.rotate(&mut b, 4, &c, &s);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((score(5, 2) - score(13, 10)).abs() < 1e-4);
        let (c, s) = rope.angles(7);
        let mut a = q;
        rope.rotate(&mut a, 4, &c, &s);
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
        assert!((n(&a) - n(&q)).abs() < 1e-5);
    }
}
