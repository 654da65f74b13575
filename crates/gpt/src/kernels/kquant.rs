//! GGML's K-quants: super-blocks of 256 elements with per-sub-block scales (and mins), bit-exact
//! with ggml-common.h (`block_q2_K` .. `block_q8_K`) and ggml-quants.c (`dequantize_row_q2_K` ..).
//!
//! | type | sub-blocks | value | scales |
//! |---|---|---|---|
//! | Q2_K | 16 x 16 | d * sc * q - dmin * m, q in 0..4 | 4-bit sc and m per sub-block |
//! | Q3_K | 16 x 16 | d * (sc - 32) * q, q in -4..4 | 6-bit, packed in 12 bytes |
//! | Q4_K | 8 x 32 | d * sc * q - dmin * m, q in 0..16 | 6-bit sc and m, packed in 12 bytes |
//! | Q5_K | 8 x 32 | as Q4_K, q in 0..32 | as Q4_K |
//! | Q6_K | 16 x 16 | d * sc * q, q in -32..32 | int8 |
//! | Q8_K | (activations) | d * q, d in f32 | bsums: the sums of each 16 quants |
//!
//! Every weight type exposes the same three things through [`KQuant`]: its 256 integer quants in
//! element order, one integer scale (and min) per 16 elements, and the two f16 super-scales.
//! The reference dequantization and dot products ([`super::reference`]) are written once over
//! that view; the float operations are those of ggml, in its order, so results are bit-exact.
#![deny(unsafe_code)]
#![allow(non_camel_case_types)]

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per super-block (ggml's QK_K).
pub const QK_K: usize = 256;

/// Bytes of the packed 6-bit scales and mins of Q3_K, Q4_K and Q5_K (ggml's K_SCALE_SIZE).
pub const K_SCALE_SIZE: usize = 12;

/// Elements per sub-block of the 16-sub-block types, and the granularity of [`KQuant`]'s scales.
pub const SUB16: usize = 16;

/// Q2_K: `scales[i]` holds sub-block i's scale (low nibble) and min (high nibble). `qs` holds
/// 2-bit quants: element 128h + 32s + l is bits 2s..2s+2 of `qs[32h + l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2_K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// Q3_K: low 2 bits as in [`BlockQ2_K`]; element 32j + l has its high bit at bit j of
/// `hmask[l]`, and q = low - 4 when that bit is clear (ggml subtracts 4 when the mask bit is 0).
/// The 16 6-bit scales are packed in 12 bytes (see [`q3_k_scales`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3_K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; K_SCALE_SIZE],
    pub d: f16,
}

/// Q4_K: element 64i + l (l < 32) is the low nibble of `qs[32i + l]`, element 64i + 32 + l its
/// high nibble. Sub-block j (32 elements) has the 6-bit scale and min of [`q4_k_scale_min`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: low 4 bits as in [`BlockQ4_K`]; element 32j + l has its 5th bit at bit j of `qh[l]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: in each half h (128 elements), element 128h + 32s + l has low 4 bits from
/// `ql[64h + l + 32 * (s & 1)]` (low nibble for s < 2, high nibble for s >= 2) and high 2 bits
/// from bits 2s..2s+2 of `qh[32h + l]`; q = that 6-bit value - 32. Sub-block i (16 elements)
/// has the int8 scale `scales[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6_K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Q8_K, llama.cpp's activation blocks against K-quant weights: value = d * q, and
/// `bsums[i]` = the sum of quants 16i..16i+16 (for the weights' min terms).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ8_K>() == 292);

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block j (0..8) of Q4_K/Q5_K.
/// Bytes 0..4 hold scales 0..4 (low 6 bits) and the top 2 bits of scales 4..8; bytes 4..8 the
/// same for the mins; bytes 8..12 the low 4 bits of scales 4..8 (low nibble) and mins 4..8.
#[inline(always)]
pub fn q4_k_scale_min(scales: &[u8; K_SCALE_SIZE], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Q3_K's 16 scales, unpacked and offset: sc - 32 in -32..32. Scale i has its low 4 bits in
/// `scales[i % 8]` (low nibble for i < 8, high nibble otherwise) and its high 2 bits at bits
/// 2(i / 4)..2(i / 4)+2 of `scales[8 + i % 4]`.
#[inline(always)]
pub fn q3_k_scales(scales: &[u8; K_SCALE_SIZE]) -> [i32; 16] {
    std::array::from_fn(|i| {
        let low = (scales[i % 8] >> (4 * (i / 8))) & 0x0f;
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
        (low | high << 4) as i32 - 32
    })
}

/// The common view of the K-quant weight blocks that the reference kernels are written over.
pub trait KQuant: Pod {
    /// The GGML type this block is.
    const DTYPE: crate::tensor::DType;
    /// value = d * sc * q - dmin * m (Q2_K, Q4_K, Q5_K); without it, d * sc * q.
    const HAS_MIN: bool;
    /// The 256 quants, in element order, offsets applied (signed for Q3_K and Q6_K).
    fn quants(&self) -> [i8; QK_K];
    /// Scale of each 16 elements (sub-blocks of 32 repeat theirs twice), offsets applied.
    fn scales16(&self) -> [i32; QK_K / SUB16];
    /// Min of each 16 elements (zeros without a min).
    fn mins16(&self) -> [i32; QK_K / SUB16];
    /// The super-block scales (d, dmin); dmin = 0 without a min.
    fn d_dmin(&self) -> (f32, f32);
}

/// 2-bit fields of `qs` in the order Q2_K and Q3_K share: element 128h + 32s + l.
#[inline(always)]
fn crumb(qs: &[u8; QK_K / 4], e: usize) -> u8 {
    let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
    (qs[32 * h + l] >> (2 * s)) & 3
}

/// 4-bit fields of `qs` in the order Q4_K and Q5_K share: element 64i + 32n + l.
#[inline(always)]
fn nibble_k(qs: &[u8; QK_K / 2], e: usize) -> u8 {
    let (i, n, l) = (e / 64, (e / 32) % 2, e % 32);
    (qs[32 * i + l] >> (4 * n)) & 0x0f
}

/// Scales (or mins) of 8 sub-blocks of 32 as 16 per-16 values.
fn per16(v: [u8; 8]) -> [i32; 16] {
    std::array::from_fn(|i| v[i / 2] as i32)
}

impl KQuant for BlockQ2_K {
    const DTYPE: crate::tensor::DType = crate::tensor::DType::Q2_K;
    const HAS_MIN: bool = true;
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| crumb(&self.qs, e) as i8)
    }
    fn scales16(&self) -> [i32; 16] {
        self.scales.map(|s| (s & 0x0f) as i32)
    }
    fn mins16(&self) -> [i32; 16] {
        self.scales.map(|s| (s >> 4) as i32)
    }
    fn d_dmin(&self) -> (f32, f32) {
        (self.d.to_f32(), self.dmin.to_f32())
    }
}

impl KQuant for BlockQ3_K {
    const DTYPE: crate::tensor::DType = crate::tensor::DType::Q3_K;
    const HAS_MIN: bool = false;
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let high = (self.hmask[e % 32] >> (e / 32)) & 1;
            crumb(&self.qs, e) as i8 - if high == 0 { 4 } else { 0 }
        })
    }
    fn scales16(&self) -> [i32; 16] {
        q3_k_scales(&self.scales)
    }
    fn mins16(&self) -> [i32; 16] {
        [0; 16]
    }
    fn d_dmin(&self) -> (f32, f32) {
        (self.d.to_f32(), 0.0)
    }
}

impl KQuant for BlockQ4_K {
    const DTYPE: crate::tensor::DType = crate::tensor::DType::Q4_K;
    const HAS_MIN: bool = true;
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| nibble_k(&self.qs, e) as i8)
    }
    fn scales16(&self) -> [i32; 16] {
        per16(std::array::from_fn(|j| q4_k_scale_min(&self.scales, j).0))
    }
    fn mins16(&self) -> [i32; 16] {
        per16(std::array::from_fn(|j| q4_k_scale_min(&self.scales, j).1))
    }
    fn d_dmin(&self) -> (f32, f32) {
        (self.d.to_f32(), self.dmin.to_f32())
    }
}

impl KQuant for BlockQ5_K {
    const DTYPE: crate::tensor::DType = crate::tensor::DType::Q5_K;
    const HAS_MIN: bool = true;
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let high = (self.qh[e % 32] >> (e / 32)) & 1;
            (nibble_k(&self.qs, e) | high << 4) as i8
        })
    }
    fn scales16(&self) -> [i32; 16] {
        per16(std::array::from_fn(|j| q4_k_scale_min(&self.scales, j).0))
    }
    fn mins16(&self) -> [i32; 16] {
        per16(std::array::from_fn(|j| q4_k_scale_min(&self.scales, j).1))
    }
    fn d_dmin(&self) -> (f32, f32) {
        (self.d.to_f32(), self.dmin.to_f32())
    }
}

impl KQuant for BlockQ6_K {
    const DTYPE: crate::tensor::DType = crate::tensor::DType::Q6_K;
    const HAS_MIN: bool = false;
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (h, s, l) = (e / 128, (e / 32) % 4, e % 32);
            let low = (self.ql[64 * h + l + 32 * (s & 1)] >> (4 * (s / 2))) & 0x0f;
            let high = (self.qh[32 * h + l] >> (2 * s)) & 3;
            (low | high << 4) as i8 - 32
        })
    }
    fn scales16(&self) -> [i32; 16] {
        self.scales.map(|s| s as i32)
    }
    fn mins16(&self) -> [i32; 16] {
        [0; 16]
    }
    fn d_dmin(&self) -> (f32, f32) {
        (self.d.to_f32(), 0.0)
    }
}

/// Dequantizes one K-quant super-block into out (256), with ggml's float operations:
/// (d * sc) * q - (dmin * m), each product rounded to f32 (Q3_K: d * (sc - 32), then times q).
pub fn dequantize_block<B: KQuant>(b: &B, out: &mut [f32]) {
    let (d, dmin) = b.d_dmin();
    let (q, sc, m) = (b.quants(), b.scales16(), b.mins16());
    for (e, o) in out[..QK_K].iter_mut().enumerate() {
        let dl = d * sc[e / SUB16] as f32;
        let v = dl * q[e] as f32;
        *o = if B::HAS_MIN {
            v - dmin * m[e / SUB16] as f32
        } else {
            v
        };
    }
}

pub fn dequantize_q8_k(b: &BlockQ8_K, out: &mut [f32]) {
    for (o, &q) in out.iter_mut().zip(&b.qs) {
        *o = b.d * q as f32;
    }
}

/// Dequantizes one row of K-quant `dtype` blocks in `bytes` into out.
pub(super) fn dequantize_row(dtype: crate::tensor::DType, bytes: &[u8], out: &mut [f32]) {
    use super::quant::blocks;
    use crate::tensor::DType;
    fn each<B: KQuant>(bytes: &[u8], out: &mut [f32]) {
        for (b, o) in blocks::<B>(bytes).iter().zip(out.chunks_exact_mut(QK_K)) {
            dequantize_block(b, o);
        }
    }
    match dtype {
        DType::Q2_K => each::<BlockQ2_K>(bytes, out),
        DType::Q3_K => each::<BlockQ3_K>(bytes, out),
        DType::Q4_K => each::<BlockQ4_K>(bytes, out),
        DType::Q5_K => each::<BlockQ5_K>(bytes, out),
        DType::Q6_K => each::<BlockQ6_K>(bytes, out),
        DType::Q8_K => {
            for (b, o) in blocks::<BlockQ8_K>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK_K))
            {
                dequantize_q8_k(b, o);
            }
        }
        _ => unreachable!("kquant::dequantize_row: {dtype} is not a K-quant"),
    }
}

/// ggml's quantize_row_q8_K_ref: with `max` the element of largest magnitude,
/// iscale = -127 / max, q = min(127, round_half_even(iscale * x)), d = 1 / iscale, and the
/// sums of each 16 quants. An all-zero block gets d = 0. (ggml rounds with its `nearest_int`,
/// the 1.5 * 2^23 trick: round half to even.)
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8_K::zeroed();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(SUB16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}
