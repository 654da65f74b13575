//! Microbenchmark for issue 11 (the F32 prompt gap): the f32 product out (T, N) = x (T, K) W (N, K)^T on
//! one thread, in two shapes: A, dot tiles of 4 tokens x 4 rows (lanes over k, one horizontal sum per
//! output: the shape of `kernels::x86_64::float_rows`); B, weights packed K-major in 16-row panels,
//! outputs in lanes, 12 tokens x 2 panels, each token value broadcast into the FMA. B keeps one
//! sequential FMA chain per output whatever T (batch invariance). B is now the float kernel of
//! gpt-rs (`kernels::x86_64::float_panels_avx512`, weights packed at load); `cargo bench --bench
//! kernels -- matmul/F32` measures it in place. This file keeps the measured case. Not part of the build:
//!   rustc -O -C target-cpu=native bench/float_panels.rs -o /tmp/float_panels && /tmp/float_panels
use std::arch::x86_64::*;
use std::time::Instant;

#[target_feature(enable = "avx512f")]
unsafe fn dots_a(w: &[f32], x: &[f32], n: usize, k: usize, t: usize, out: &mut [f32]) {
    for t0 in (0..t).step_by(4) {
        for r0 in (0..n).step_by(4) {
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            let mut i = 0;
            while i + 16 <= k {
                let xs: [__m512; 4] =
                    std::array::from_fn(|a| _mm512_loadu_ps(x.as_ptr().add((t0 + a) * k + i)));
                for r in 0..4 {
                    let wv = _mm512_loadu_ps(w.as_ptr().add((r0 + r) * k + i));
                    for a in 0..4 {
                        acc[a][r] = _mm512_fmadd_ps(wv, xs[a], acc[a][r]);
                    }
                }
                i += 16;
            }
            for a in 0..4 {
                for r in 0..4 {
                    out[(t0 + a) * n + r0 + r] = _mm512_reduce_add_ps(acc[a][r]);
                }
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn panels_b<const TT: usize>(
    p: &[f32],
    x: &[f32],
    n: usize,
    k: usize,
    t: usize,
    out: &mut [f32],
) {
    let panels = n / 16;
    for t0 in (0..t).step_by(TT) {
        for q0 in (0..panels).step_by(2) {
            let mut acc = [[_mm512_setzero_ps(); 2]; TT];
            let p0 = p.as_ptr().add(q0 * 16 * k);
            let p1 = p.as_ptr().add((q0 + 1) * 16 * k);
            for kk in 0..k {
                let w0 = _mm512_loadu_ps(p0.add(kk * 16));
                let w1 = _mm512_loadu_ps(p1.add(kk * 16));
                for a in 0..TT {
                    let xb = _mm512_set1_ps(*x.get_unchecked((t0 + a) * k + kk));
                    acc[a][0] = _mm512_fmadd_ps(w0, xb, acc[a][0]);
                    acc[a][1] = _mm512_fmadd_ps(w1, xb, acc[a][1]);
                }
            }
            for a in 0..TT {
                _mm512_storeu_ps(out.as_mut_ptr().add((t0 + a) * n + q0 * 16), acc[a][0]);
                _mm512_storeu_ps(out.as_mut_ptr().add((t0 + a) * n + q0 * 16 + 16), acc[a][1]);
            }
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn dots_1(w: &[f32], x: &[f32], n: usize, k: usize, out: &mut [f32]) {
    for r0 in (0..n).step_by(4) {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 16 <= k {
            let xv = _mm512_loadu_ps(x.as_ptr().add(i));
            for r in 0..4 {
                acc[r] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(w.as_ptr().add((r0 + r) * k + i)),
                    xv,
                    acc[r],
                );
            }
            i += 16;
        }
        for r in 0..4 {
            out[r0 + r] = _mm512_reduce_add_ps(acc[r]);
        }
    }
}

fn main() {
    let (n, k, t) = (1536usize, 576usize, 504usize); // t multiple of 4 and 12
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let x: Vec<f32> = (0..t * k)
        .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut p = vec![0f32; n * k];
    for q in 0..n / 16 {
        for kk in 0..k {
            for r in 0..16 {
                p[q * 16 * k + kk * 16 + r] = w[(q * 16 + r) * k + kk];
            }
        }
    }
    let (mut oa, mut ob) = (vec![0f32; t * n], vec![0f32; t * n]);
    let flops = 2.0 * (n * k * t) as f64;
    for _ in 0..2 {
        let s = Instant::now();
        for _ in 0..5 {
            unsafe { dots_a(&w, &x, n, k, t, &mut oa) }
        }
        let a = s.elapsed().as_secs_f64() / 5.0;
        let s = Instant::now();
        for _ in 0..5 {
            unsafe { panels_b::<12>(&p, &x, n, k, t, &mut ob) }
        }
        let b = s.elapsed().as_secs_f64() / 5.0;
        let maxd = oa
            .iter()
            .zip(&ob)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // One token (decode): the dot of each row against the panel kernel with one token.
        let reps = 2000;
        let s = Instant::now();
        for _ in 0..reps {
            unsafe { dots_1(&w, &x, n, k, &mut oa) }
        }
        let a1 = s.elapsed().as_secs_f64() / reps as f64;
        let s = Instant::now();
        for _ in 0..reps {
            unsafe { panels_b::<1>(&p, &x, n, k, 1, &mut ob) }
        }
        let b1 = s.elapsed().as_secs_f64() / reps as f64;
        println!(
            "T=1: dots {:.1} us, panels {:.1} us ({:.1} GB/s vs {:.1} GB/s)",
            a1 * 1e6,
            b1 * 1e6,
            (n * k * 4) as f64 / a1 / 1e9,
            (n * k * 4) as f64 / b1 / 1e9
        );
        println!("A dots 4x4: {:.1} GFLOP/s | B panels 12x2: {:.1} GFLOP/s | B/A {:.2}x | max diff {maxd:e}", flops / a / 1e9, flops / b / 1e9, a / b);
    }
}
