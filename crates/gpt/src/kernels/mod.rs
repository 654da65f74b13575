//! Compute kernels: the only home of SIMD and `unsafe` in gpt.
//!
//! Every fast kernel has a plain twin in [`reference`]; CPU features are detected once at run
//! time ([`cpu`]), and tests check that the two paths agree.
//!
//! The central operation is [`matmul`]: `out (T, N) = x (T, K) @ w^T` for a weight matrix
//! `w (N, K)` stored row-major in any [`DType`]. Output rows are split across rayon's threads.

pub mod quant;
pub mod reference;

use crate::tensor::DType;
use quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};
use rayon::prelude::*;

/// How a matmul against quantized weights treats the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations are quantized to 8-bit blocks once per matmul and each block product runs in
    /// integers, as llama.cpp does. Float weights (F32/F16/BF16) are always multiplied in f32.
    #[default]
    Fast,
    /// Weights are dequantized to f32 and multiplied with f32 activations: the exact math of a
    /// reference implementation that dequantizes the whole model, at a cost in speed.
    F32,
}

/// A weight matrix: `rows` rows of `cols` elements, each row `dtype.bytes_for(cols)` bytes.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> MatRef<'a> {
    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.type_size()
    }

    pub fn row(&self, n: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[n * rb..(n + 1) * rb]
    }

    /// Dequantizes row `n` into `out` (K).
    pub fn dequantize_row(&self, n: usize, out: &mut [f32]) {
        quant::dequantize_row(self.dtype, self.row(n), out)
    }
}

/// Activations prepared for one weight type: kept in f32 or quantized per token.
enum Prepared {
    F32,
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
}

fn prepare(dtype: DType, precision: Precision, x: &[f32]) -> Prepared {
    match (precision, dtype) {
        (Precision::Fast, DType::Q4_0 | DType::Q8_0) => {
            let mut q = vec![BlockQ8_0::zeroed(); x.len() / QK];
            quant::quantize_q8_0(x, &mut q);
            Prepared::Q8_0(q)
        }
        (Precision::Fast, DType::Q4_1) => {
            let mut q = vec![BlockQ8_1::zeroed(); x.len() / QK];
            quant::quantize_q8_1(x, &mut q);
            Prepared::Q8_1(q)
        }
        _ => Prepared::F32,
    }
}

use bytemuck::Zeroable;

/// `out (T, N) = x (T, K) @ w^T` with `w (N, K)`.
pub fn matmul(w: MatRef, x: &[f32], t: usize, out: &mut [f32], precision: Precision) {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), t * k, "matmul: x is not (T, K)");
    assert_eq!(out.len(), t * n, "matmul: out is not (T, N)");
    assert_eq!(w.data.len(), n * w.row_bytes(), "matmul: w is not (N, K)");
    let prepared = prepare(w.dtype, precision, x);
    let kb = k / QK;

    // Each task computes a band of output rows for every token, so a weight row is read once
    // from memory and reused T times from cache.
    const ROWS_PER_TASK: usize = 16;
    let bands: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|band| {
            let r0 = band * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(n);
            let mut res = vec![0f32; (r1 - r0) * t];
            let mut row_f32 = Vec::new();
            for r in r0..r1 {
                let wr = w.row(r);
                match &prepared {
                    Prepared::F32 => {
                        row_f32.resize(k, 0.0);
                        quant::dequantize_row(w.dtype, wr, &mut row_f32);
                        for ti in 0..t {
                            res[(r - r0) * t + ti] =
                                reference::dot_f32(&row_f32, &x[ti * k..(ti + 1) * k]);
                        }
                    }
                    Prepared::Q8_0(a) => {
                        for ti in 0..t {
                            let ab = &a[ti * kb..(ti + 1) * kb];
                            res[(r - r0) * t + ti] = match w.dtype {
                                DType::Q4_0 => reference::dot_q4_0_q8_0(
                                    &quant::blocks::<BlockQ4_0>(wr),
                                    ab,
                                ),
                                _ => reference::dot_q8_0_q8_0(&quant::blocks::<BlockQ8_0>(wr), ab),
                            };
                        }
                    }
                    Prepared::Q8_1(a) => {
                        for ti in 0..t {
                            let ab = &a[ti * kb..(ti + 1) * kb];
                            res[(r - r0) * t + ti] =
                                reference::dot_q4_1_q8_1(&quant::blocks::<BlockQ4_1>(wr), ab);
                        }
                    }
                }
            }
            (r0, res)
        })
        .collect();
    for (r0, res) in bands {
        let rows = res.len() / t;
        for i in 0..rows {
            for ti in 0..t {
                out[ti * n + r0 + i] = res[i * t + ti];
            }
        }
    }
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    reference::dot_f32(a, b)
}

/// Softmax in place, numerically stable (the max is subtracted first); -inf entries become 0.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// y += a * x
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
