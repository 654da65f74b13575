//! Elementwise loops (activations and their gradients) compiled for the widest SIMD the CPU
//! has. The arithmetic is an ordinary Rust closure; inlined into a function with AVX2 or
//! AVX-512 enabled, the loop vectorizes over 8 or 16 lanes instead of the baseline's 4.

#![allow(unsafe_code)]

use super::Isa;

/// Slices longer than this are split into chunks of this size across threads.
const CHUNK: usize = 1 << 14;

/// out[i] = f(x[i]).
pub fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Copy + Sync) {
    assert_eq!(x.len(), out.len(), "map: lengths differ");
    if x.len() > CHUNK {
        use rayon::prelude::*;
        return out
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| map(x, o, f));
    }
    match Isa::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected` returns Avx512Vnni only when avx512f/bw/vl are available.
        Isa::Avx512Vnni => unsafe { map_avx512(x, out, f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detected` returns Avx2 only when avx2 and fma are available.
        Isa::Avx2 => unsafe { map_avx2(x, out, f) },
        _ => map_plain(x, out, f),
    }
}

/// acc[i] += f(x[i]) * g[i]: the chain rule through an elementwise function with derivative f.
pub fn chain(g: &[f32], x: &[f32], acc: &mut [f32], f: impl Fn(f32) -> f32 + Copy + Sync) {
    assert!(
        g.len() == x.len() && x.len() == acc.len(),
        "chain: lengths differ"
    );
    if x.len() > CHUNK {
        use rayon::prelude::*;
        return acc
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|((a, x), g)| chain(g, x, a, f));
    }
    match Isa::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `map`.
        Isa::Avx512Vnni => unsafe { chain_avx512(g, x, acc, f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `map`.
        Isa::Avx2 => unsafe { chain_avx2(g, x, acc, f) },
        _ => chain_plain(g, x, acc, f),
    }
}

/// acc[i] = f(acc[i], x[i]): a residual add, a gated activation. Long slices are split among
/// the kernels' team.
pub fn combine(acc: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32 + Copy + Sync) {
    assert_eq!(acc.len(), x.len(), "combine: lengths differ");
    if acc.len() > CHUNK {
        return super::team::for_each_chunk_pair_mut(acc, CHUNK, &mut [(); 0], 0, |i, a, _| {
            combine(a, &x[i * CHUNK..][..a.len()], f)
        });
    }
    match Isa::detected() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `map`.
        Isa::Avx512Vnni => unsafe { combine_avx512(acc, x, f) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `map`.
        Isa::Avx2 => unsafe { combine_avx2(acc, x, f) },
        _ => combine_plain(acc, x, f),
    }
}

#[inline(always)]
fn combine_plain(acc: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a = f(*a, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn combine_avx2(acc: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32) {
    combine_plain(acc, x, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
unsafe fn combine_avx512(acc: &mut [f32], x: &[f32], f: impl Fn(f32, f32) -> f32) {
    combine_plain(acc, x, f)
}

#[inline(always)]
fn map_plain(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

#[inline(always)]
fn chain_plain(g: &[f32], x: &[f32], acc: &mut [f32], f: impl Fn(f32) -> f32) {
    for ((a, &v), &d) in acc.iter_mut().zip(x).zip(g) {
        *a += f(v) * d;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn map_avx2(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    map_plain(x, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
unsafe fn map_avx512(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    map_plain(x, out, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chain_avx2(g: &[f32], x: &[f32], acc: &mut [f32], f: impl Fn(f32) -> f32) {
    chain_plain(g, x, acc, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
unsafe fn chain_avx512(g: &[f32], x: &[f32], acc: &mut [f32], f: impl Fn(f32) -> f32) {
    chain_plain(g, x, acc, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_and_chain_by_hand() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 - 18.0).collect();
        let mut out = vec![0f32; 37];
        map(&x, &mut out, |v| v * v + 1.0);
        assert!(out.iter().zip(&x).all(|(o, v)| *o == v * v + 1.0));
        let mut acc = vec![1f32; 37];
        chain(&x, &x, &mut acc, |v| 2.0 * v);
        assert!(acc.iter().zip(&x).all(|(a, v)| *a == 1.0 + 2.0 * v * v));
        let long: Vec<f32> = (0..3 * CHUNK + 5).map(|i| i as f32).collect();
        let mut sum = vec![0.5f32; long.len()];
        combine(&mut sum, &long, |a, v| a + 2.0 * v);
        assert!(sum.iter().zip(&long).all(|(s, v)| *s == 0.5 + 2.0 * v));
    }
}
