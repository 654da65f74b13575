//! Dense f32 matrix products for training, through the `gemm` crate (the baseline our own
//! kernels would have to beat to replace it, per ARCHITECTURE.md).

#![allow(unsafe_code)]

use gemm::Parallelism;

/// Below this many multiply-adds a product runs on one thread: handing out work costs more.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// A row-major matrix operand, possibly used transposed.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    /// Stored as the transpose of the operand the product needs: an (M, K) operand stored as
    /// (K, M) rows.
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn new(data: &'a [f32]) -> Self {
        Operand {
            data,
            transposed: false,
        }
    }
    pub fn t(data: &'a [f32]) -> Self {
        Operand {
            data,
            transposed: true,
        }
    }
    /// (row stride, column stride) of an (rows, cols) operand.
    fn strides(&self, rows: usize, cols: usize) -> (isize, isize) {
        if self.transposed {
            (1, rows as isize)
        } else {
            (cols as isize, 1)
        }
    }
}

/// c (M, N) = a (M, K) @ b (K, N), or c += a @ b with `accumulate`.
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: &mut [f32],
    accumulate: bool,
) {
    assert_eq!(a.data.len(), m * k, "sgemm: a is not (M, K)");
    assert_eq!(b.data.len(), k * n, "sgemm: b is not (K, N)");
    assert_eq!(c.len(), m * n, "sgemm: c is not (M, N)");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let (a_rs, a_cs) = a.strides(m, k);
    let (b_rs, b_cs) = b.strides(k, n);
    let threads = rayon::current_num_threads();
    let parallelism = if m * n * k >= PARALLEL_MIN_FLOPS && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above check that every index the strides reach lies inside the three
    // slices (a: m*k, b: k*n, c: m*n elements, row-major or transposed), and `c` is borrowed
    // mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_by_hand_in_every_layout() {
        // a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]]: a @ b = [[19, 22], [43, 50]]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let (at, bt) = ([1.0, 3.0, 2.0, 4.0], [5.0, 7.0, 6.0, 8.0]);
        let want = [19.0, 22.0, 43.0, 50.0];
        for (x, y) in [
            (Operand::new(&a), Operand::new(&b)),
            (Operand::t(&at), Operand::new(&b)),
            (Operand::new(&a), Operand::t(&bt)),
            (Operand::t(&at), Operand::t(&bt)),
        ] {
            let mut c = [0.0; 4];
            sgemm(2, 2, 2, x, y, &mut c, false);
            assert_eq!(c, want);
            sgemm(2, 2, 2, x, y, &mut c, true);
            assert_eq!(c, want.map(|v| 2.0 * v));
        }
    }

    #[test]
    fn rectangular_product_matches_naive_sum() {
        let (m, n, k) = (37, 23, 71);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let mut c = vec![0.0; m * n];
        sgemm(m, n, k, Operand::new(&a), Operand::new(&b), &mut c, false);
        for i in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - s).abs() < 1e-4 * (1.0 + s.abs()));
            }
        }
    }
}
