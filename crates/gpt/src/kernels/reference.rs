//! Plain, portable kernels: the reference twins of the SIMD ones and the fallback path.
#![deny(unsafe_code)]

use super::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, BlockQ8x2, Q8X2_LO_SCALE, QK};

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// sum over blocks of d_w * d_a * sum((q_w - 8) * q_a)
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            s += ((bw.qs[j] & 0x0f) as i32 - 8) * ba.qs[j] as i32;
            s += ((bw.qs[j] >> 4) as i32 - 8) * ba.qs[j + QK / 2] as i32;
        }
        acc += bw.d.to_f32() * ba.d.to_f32() * s as f32;
    }
    acc
}

/// sum over blocks of d_w * d_a * sum(q_w * q_a) + m_w * s_a
pub fn dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            s += (bw.qs[j] & 0x0f) as i32 * ba.qs[j] as i32;
            s += (bw.qs[j] >> 4) as i32 * ba.qs[j + QK / 2] as i32;
        }
        acc += bw.d.to_f32() * ba.d * s as f32 + bw.m.to_f32() * ba.s;
    }
    acc
}

pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let s: i32 = bw
            .qs
            .iter()
            .zip(&ba.qs)
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum();
        acc += bw.d.to_f32() * ba.d.to_f32() * s as f32;
    }
    acc
}

/// The integer sums of one weight block's quants `q` (32, in element order) with both planes
/// of an activation block: (sum(q * hi), sum(q * lo)).
fn q8x2_block_sums(q: impl Fn(usize) -> i32, a: &BlockQ8x2) -> (i32, i32) {
    (0..QK).fold((0, 0), |(sh, sl), j| {
        (sh + q(j) * a.hi[j] as i32, sl + q(j) * a.lo[j] as i32)
    })
}

/// Element j of a 4-bit block: low nibbles hold elements 0..16, high nibbles 16..32.
fn nibble(qs: &[u8; QK / 2], j: usize) -> i32 {
    if j < QK / 2 {
        (qs[j] & 0x0f) as i32
    } else {
        (qs[j - QK / 2] >> 4) as i32
    }
}

/// sum over blocks of d_w * d_a * (sum(q_w * hi) + sum(q_w * lo) / 254) + m_w * s_a
pub fn dot_q4_1_q8x2(w: &[BlockQ4_1], a: &[BlockQ8x2]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (sh, sl) = q8x2_block_sums(|j| nibble(&bw.qs, j), ba);
        acc +=
            bw.d.to_f32() * ba.d * (sh as f32 + sl as f32 / Q8X2_LO_SCALE) + bw.m.to_f32() * ba.s;
    }
    acc
}

/// sum over blocks of d_w * d_a * (sum((q_w - 8) * hi) + sum((q_w - 8) * lo) / 254)
pub fn dot_q4_0_q8x2(w: &[BlockQ4_0], a: &[BlockQ8x2]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (sh, sl) = q8x2_block_sums(|j| nibble(&bw.qs, j) - 8, ba);
        acc += bw.d.to_f32() * ba.d * (sh as f32 + sl as f32 / Q8X2_LO_SCALE);
    }
    acc
}

/// sum over blocks of d_w * d_a * (sum(q_w * hi) + sum(q_w * lo) / 254)
pub fn dot_q8_0_q8x2(w: &[BlockQ8_0], a: &[BlockQ8x2]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (sh, sl) = q8x2_block_sums(|j| bw.qs[j] as i32, ba);
        acc += bw.d.to_f32() * ba.d * (sh as f32 + sl as f32 / Q8X2_LO_SCALE);
    }
    acc
}

/// x (n) = e^(x - max) / sum(e^(x - max)): subtracting the max keeps e^ from overflowing.
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

/// y (n) += a * x (n).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// x (n) *= a.
pub fn scale(a: f32, x: &mut [f32]) {
    for v in x.iter_mut() {
        *v *= a;
    }
}
