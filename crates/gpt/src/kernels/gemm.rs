//! Dense f32 matrix products for training and long prompts, through the `gemm` crate (the
//! baseline our own kernels would have to beat to replace it, per ARCHITECTURE.md).

#![allow(unsafe_code)]

use gemm::Parallelism;

/// Below this many multiply-adds a product runs on one thread: handing out work costs more.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// How an operand's elements are laid out in its slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Row-major (rows, cols).
    RowMajor,
    /// The transpose stored row-major: an (M, K) operand stored as (K, M) rows.
    Transposed,
    /// Element (i, j) at i * row_stride + j * col_stride: a view into a wider tensor, such as
    /// one head's columns of a (T, 3C) QKV matrix.
    Strided { row: usize, col: usize },
}

/// A matrix operand of a product: a slice and how its elements are laid out.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    layout: Layout,
}

impl<'a> Operand<'a> {
    /// A row-major matrix.
    pub fn new(data: &'a [f32]) -> Self {
        Operand {
            data,
            layout: Layout::RowMajor,
        }
    }

    /// The transpose of the row-major matrix in `data`.
    pub fn t(data: &'a [f32]) -> Self {
        Operand {
            data,
            layout: Layout::Transposed,
        }
    }

    /// Element (i, j) is `data[i * row + j * col]`.
    pub fn strided(data: &'a [f32], row: usize, col: usize) -> Self {
        Operand {
            data,
            layout: Layout::Strided { row, col },
        }
    }

    /// (row stride, column stride) of an (rows, cols) operand.
    fn strides(&self, rows: usize, cols: usize) -> (usize, usize) {
        match self.layout {
            Layout::RowMajor => (cols, 1),
            Layout::Transposed => (1, rows),
            Layout::Strided { row, col } => (row, col),
        }
    }

    /// Checks that every element of an (rows, cols) operand lies in the slice.
    fn check(&self, rows: usize, cols: usize, what: &str) -> (isize, isize) {
        let (rs, cs) = self.strides(rows, cols);
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(
                last < self.data.len(),
                "sgemm: {what} ({rows}, {cols}) does not fit its slice of {}",
                self.data.len()
            );
        }
        if matches!(self.layout, Layout::RowMajor | Layout::Transposed) {
            assert_eq!(
                self.data.len(),
                rows * cols,
                "sgemm: {what} is not ({rows}, {cols})"
            );
        }
        (rs as isize, cs as isize)
    }
}

/// c (M, N) = a (M, K) @ b (K, N), or c += a @ b with `accumulate`; c is row-major.
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: &mut [f32],
    accumulate: bool,
) {
    sgemm_into(m, n, k, a, b, c, n, accumulate)
}

/// [`sgemm`] into rows of `c` that are `c_row_stride` apart (a block of columns of a wider
/// matrix).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_into(
    m: usize,
    n: usize,
    k: usize,
    a: Operand,
    b: Operand,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c_row_stride >= n && (m - 1) * c_row_stride + n <= c.len(),
        "sgemm: c is not (M, N)"
    );
    let (a_rs, a_cs) = a.check(m, k, "a");
    let (b_rs, b_cs) = b.check(k, n, "b");
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(c_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let threads = super::team::width();
    let parallelism = if m * n * k >= PARALLEL_MIN_FLOPS && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: `check` and the assert above prove that every index the strides reach lies inside
    // the three slices; `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_row_stride as isize,
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
        // a as the first two columns of a (2, 3) matrix
        let wide = [1.0, 2.0, 9.0, 3.0, 4.0, 9.0];
        let want = [19.0, 22.0, 43.0, 50.0];
        for (x, y) in [
            (Operand::new(&a), Operand::new(&b)),
            (Operand::t(&at), Operand::new(&b)),
            (Operand::new(&a), Operand::t(&bt)),
            (Operand::t(&at), Operand::t(&bt)),
            (Operand::strided(&wide, 3, 1), Operand::strided(&bt, 1, 2)),
        ] {
            let mut c = [0.0; 4];
            sgemm(2, 2, 2, x, y, &mut c, false);
            assert_eq!(c, want);
            sgemm(2, 2, 2, x, y, &mut c, true);
            assert_eq!(c, want.map(|v| 2.0 * v));
        }
        // into the last two columns of a (2, 3) output
        let mut c = [7.0; 6];
        sgemm_into(
            2,
            2,
            2,
            Operand::new(&a),
            Operand::new(&b),
            &mut c[1..],
            3,
            false,
        );
        assert_eq!(c, [7.0, 19.0, 22.0, 7.0, 43.0, 50.0]);
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
