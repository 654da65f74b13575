//! Plain, portable kernels: the reference twins of the SIMD ones and the fallback path.
#![deny(unsafe_code)]

use super::kquant::{self, BlockQ8_K, KQuant, QK_K, SUB16};
use super::quant::{
    q5_quant, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, BlockQ8x2,
    Q8X2_LO_SCALE, QK,
};

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// sum(a[i] * b[i]) as one chain of fused multiply-adds in order of i, each rounded once: the
/// twin of the float panel kernels, which give each output exactly this.
pub fn dot_f32_fused(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |s, (x, y)| x.mul_add(*y, s))
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

/// sum over blocks of d_w * d_a * sum((q_w - 16) * q_a)
pub fn dot_q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let s: i32 = (0..QK)
            .map(|j| (q5_quant(&bw.qh, &bw.qs, j) - 16) * ba.qs[j] as i32)
            .sum();
        acc += bw.d.to_f32() * ba.d.to_f32() * s as f32;
    }
    acc
}

/// sum over blocks of d_w * d_a * sum(q_w * q_a) + m_w * s_a
pub fn dot_q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let s: i32 = (0..QK)
            .map(|j| q5_quant(&bw.qh, &bw.qs, j) * ba.qs[j] as i32)
            .sum();
        acc += bw.d.to_f32() * ba.d * s as f32 + bw.m.to_f32() * ba.s;
    }
    acc
}

/// sum over blocks of d_w * d_a * (sum((q_w - 16) * hi) + sum((q_w - 16) * lo) / 254)
pub fn dot_q5_0_q8x2(w: &[BlockQ5_0], a: &[BlockQ8x2]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (sh, sl) = q8x2_block_sums(|j| q5_quant(&bw.qh, &bw.qs, j) - 16, ba);
        acc += bw.d.to_f32() * ba.d * (sh as f32 + sl as f32 / Q8X2_LO_SCALE);
    }
    acc
}

/// sum over blocks of d_w * d_a * (sum(q_w * hi) + sum(q_w * lo) / 254) + m_w * s_a
pub fn dot_q5_1_q8x2(w: &[BlockQ5_1], a: &[BlockQ8x2]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (sh, sl) = q8x2_block_sums(|j| q5_quant(&bw.qh, &bw.qs, j), ba);
        acc +=
            bw.d.to_f32() * ba.d * (sh as f32 + sl as f32 / Q8X2_LO_SCALE) + bw.m.to_f32() * ba.s;
    }
    acc
}

/// A K-quant row (`w.len()` super-blocks) against two-plane activations (`8 * w.len()` blocks
/// of 32): for each activation block, with the weight's 16-element scales sc and mins m over
/// its two halves h,
///   d * d_a * (S_hi + S_lo / 254) - dmin * d_a * (M_hi + M_lo / 254),
/// S_p = sum_h sc_h * sum(q * p) and M_p = sum_h m_h * sum(p) in integers for each plane p.
/// Q6_K, Q3_K and Q2_K change scale inside an activation block; the two 16-element partial
/// products are scaled separately, in integers, before anything is rounded.
/// (Q4_K and Q5_K, whose scales and mins span whole blocks of 32, use the block sum s_a for
/// the min term instead: dmin * m * s_a, as the SIMD kernels do.)
pub fn dot_kquant_q8x2<B: KQuant>(w: &[B], a: &[BlockQ8x2]) -> f32 {
    let per_super = QK_K / QK;
    let min_per_32 = matches!(
        B::DTYPE,
        crate::tensor::DType::Q4_K | crate::tensor::DType::Q5_K
    );
    let mut acc = 0f32;
    for (bw, ab) in w.iter().zip(a.chunks_exact(per_super)) {
        let (q, sc, m) = (bw.quants(), bw.scales16(), bw.mins16());
        let (d, dmin) = bw.d_dmin();
        for (j, ba) in ab.iter().enumerate() {
            let (mut s_hi, mut s_lo, mut m_hi, mut m_lo) = (0i32, 0i32, 0i32, 0i32);
            for h in 0..2 {
                let sub = 2 * j + h;
                let (mut qh, mut ql, mut ph, mut pl) = (0i32, 0i32, 0i32, 0i32);
                for e in SUB16 * h..SUB16 * (h + 1) {
                    let qe = q[QK * j + e] as i32;
                    qh += qe * ba.hi[e] as i32;
                    ql += qe * ba.lo[e] as i32;
                    ph += ba.hi[e] as i32;
                    pl += ba.lo[e] as i32;
                }
                s_hi += sc[sub] * qh;
                s_lo += sc[sub] * ql;
                m_hi += m[sub] * ph;
                m_lo += m[sub] * pl;
            }
            acc += d * ba.d * (s_hi as f32 + s_lo as f32 / Q8X2_LO_SCALE);
            if B::HAS_MIN {
                if min_per_32 {
                    acc -= dmin * m[2 * j] as f32 * ba.s;
                } else {
                    acc -= dmin * ba.d * (m_hi as f32 + m_lo as f32 / Q8X2_LO_SCALE);
                }
            }
        }
    }
    acc
}

/// A K-quant row against Q8_K activations, as ggml's `ggml_vec_dot_q*_K_q8_K` (generic):
/// per super-block d * d_a * sum_i sc_i * sum(q * a over sub-block i)
/// - dmin * d_a * sum_i m_i * bsum_i, with i over the 16-element sub-blocks.
pub fn dot_kquant_q8_k<B: KQuant>(w: &[B], a: &[BlockQ8_K]) -> f32 {
    let mut acc = 0f32;
    for (bw, ba) in w.iter().zip(a) {
        let (q, sc, m) = (bw.quants(), bw.scales16(), bw.mins16());
        let (d, dmin) = bw.d_dmin();
        let mut isum = 0i32;
        let mut msum = 0i32;
        for i in 0..QK_K / SUB16 {
            let s: i32 = (SUB16 * i..SUB16 * (i + 1))
                .map(|e| q[e] as i32 * ba.qs[e] as i32)
                .sum();
            isum += sc[i] * s;
            msum += m[i] * ba.bsums[i] as i32;
        }
        acc += d * ba.d * isum as f32;
        if B::HAS_MIN {
            acc -= dmin * ba.d * msum as f32;
        }
    }
    acc
}

/// The per-type names of the K-quant reference twins, as the SIMD kernels are named.
macro_rules! kquant_twins {
    ($($x2:ident, $k:ident, $b:ty;)*) => {$(
        pub fn $x2(w: &[$b], a: &[BlockQ8x2]) -> f32 {
            dot_kquant_q8x2(w, a)
        }
        pub fn $k(w: &[$b], a: &[BlockQ8_K]) -> f32 {
            dot_kquant_q8_k(w, a)
        }
    )*};
}

kquant_twins! {
    dot_q2_k_q8x2, dot_q2_k_q8_k, kquant::BlockQ2_K;
    dot_q3_k_q8x2, dot_q3_k_q8_k, kquant::BlockQ3_K;
    dot_q4_k_q8x2, dot_q4_k_q8_k, kquant::BlockQ4_K;
    dot_q5_k_q8x2, dot_q5_k_q8_k, kquant::BlockQ5_K;
    dot_q6_k_q8x2, dot_q6_k_q8_k, kquant::BlockQ6_K;
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

/// One head's causal attention for M queries over NP keys (see [`super::attend_block`]): the
/// scores of query i are dot(q_i, k_j) * scale over its `visible[i]` keys, their softmax goes to
/// row i of probs (M, NP; 0 for the rest), and out_i (HS) = Σ_j p_ij v_j summed in the order of
/// j. Each row's arithmetic depends only on that row.
#[allow(clippy::too_many_arguments)]
pub fn attend_block(
    q: &[f32],
    q_stride: usize,
    keys: &[f32],
    values: &[f32],
    visible: &[std::ops::Range<usize>],
    scale: f32,
    probs: &mut [f32],
    out: &mut [f32],
) {
    let hs = out.len() / visible.len();
    let np = keys.len() / hs;
    for (i, vis) in visible.iter().enumerate() {
        let qi = &q[i * q_stride..i * q_stride + hs];
        let row = &mut probs[i * np..(i + 1) * np];
        row.fill(0.0);
        for j in vis.clone() {
            row[j] = dot_f32(qi, &keys[j * hs..(j + 1) * hs]) * scale;
        }
        softmax(&mut row[vis.clone()]);
        let o = &mut out[i * hs..(i + 1) * hs];
        o.fill(0.0);
        for j in vis.clone() {
            axpy(row[j], &values[j * hs..(j + 1) * hs], o);
        }
    }
}
