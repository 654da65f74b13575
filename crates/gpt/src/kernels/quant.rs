//! GGML's block-quantized types, bit-exact with ggml-common.h.
//!
//! Each block holds 32 consecutive elements of a row. Weights use Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0 (and the K-quants of [`super::kquant`], super-blocks of 256).
//! Activations are quantized on the fly, by [`Precision`](super::Precision):
//! - `Fast`: to [`BlockQ8x2`], two int8 planes per block (ours, not a GGML type), against every
//!   weight type;
//! - `Q8`: to Q8_0 (against Q4_0/Q5_0/Q8_0 weights) or Q8_1 (against Q4_1/Q5_1, whose min term
//!   needs the activation block's sum), or Q8_K against the K-quants, as llama.cpp does.
#![deny(unsafe_code)]

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per quantized block (ggml's QK4_0 = QK4_1 = QK8_0 = QK8_1 = 32).
pub const QK: usize = 32;

/// value = d * (q - 8), q in 0..16; low nibbles hold elements 0..16, high nibbles 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// value = d * q + m, q in 0..16; nibble order as in [`BlockQ4_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// value = d * (q - 16), q in 0..32: the low 4 bits as in [`BlockQ4_0`], the 5th bit of
/// element j in bit j of `qh` (a little-endian u32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// value = d * q + m, q in 0..32; bits as in [`BlockQ5_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// value = d * q, q in -127..=127.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// An activation block for Q4_1 dot products: value = d * q, and s = d * sum(q).
/// ggml stores d and s as f16; we keep f32, since these never touch a file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
}

/// The scale of [`BlockQ8x2`]'s second plane: the residual of rounding to the first plane is
/// in [-0.5, 0.5], and 254 maps that onto -127..=127, the int8 range the SIMD products accept.
pub const Q8X2_LO_SCALE: f32 = 254.0;

/// An activation block in two int8 planes: value ~= d * (hi + lo / 254), where hi = round(x/d)
/// are the usual Q8 quants and lo = round((x/d - hi) * 254) the rounding residual, and
/// s = d * (sum(hi) + sum(lo) / 254), the block's sum for the Q4_1 min term (ignored
/// against Q4_0 and Q8_0). One block serves every weight type.
///
/// Why: one 8-bit plane moves each element by up to d/2, which on a small model moves final
/// logits by up to ~1 against f32 math (SmolLM2-135M: greedy output changes on 5 of 8 prompts).
/// The second plane cuts that error 254-fold, to below the weights' own f16 rounding, for one
/// more integer product per block on a weight block already unpacked in registers.
/// `hi` and `lo` are adjacent, so one 64-byte load fetches both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8x2 {
    pub d: f32,
    pub s: f32,
    pub hi: [i8; QK],
    pub lo: [i8; QK],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ8x2>() == 72);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 40);

/// Views raw bytes as blocks. File data is only 1-byte aligned, and every block type here
/// has alignment 2 (f16) at most, so we cast when aligned and otherwise copy.
pub fn blocks<T: Pod>(bytes: &[u8]) -> std::borrow::Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(
            bytes
                .chunks_exact(std::mem::size_of::<T>())
                .map(bytemuck::pod_read_unaligned)
                .collect(),
        ),
    }
}

pub fn dequantize_q4_0(b: &BlockQ4_0, out: &mut [f32]) {
    let d = b.d.to_f32();
    for j in 0..QK / 2 {
        out[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
        out[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

pub fn dequantize_q4_1(b: &BlockQ4_1, out: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for j in 0..QK / 2 {
        out[j] = (b.qs[j] & 0x0f) as f32 * d + m;
        out[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
    }
}

/// The 5-bit quant of element j (0..32) of a Q5_0/Q5_1 block.
#[inline(always)]
pub fn q5_quant(qh: &[u8; 4], qs: &[u8; QK / 2], j: usize) -> i32 {
    let low = if j < QK / 2 {
        qs[j] & 0x0f
    } else {
        qs[j - QK / 2] >> 4
    };
    let high = (u32::from_le_bytes(*qh) >> j) & 1;
    low as i32 | (high as i32) << 4
}

pub fn dequantize_q5_0(b: &BlockQ5_0, out: &mut [f32]) {
    let d = b.d.to_f32();
    for (j, o) in out[..QK].iter_mut().enumerate() {
        *o = (q5_quant(&b.qh, &b.qs, j) - 16) as f32 * d;
    }
}

pub fn dequantize_q5_1(b: &BlockQ5_1, out: &mut [f32]) {
    let (d, m) = (b.d.to_f32(), b.m.to_f32());
    for (j, o) in out[..QK].iter_mut().enumerate() {
        *o = q5_quant(&b.qh, &b.qs, j) as f32 * d + m;
    }
}

pub fn dequantize_q8_0(b: &BlockQ8_0, out: &mut [f32]) {
    let d = b.d.to_f32();
    for (o, &q) in out.iter_mut().zip(&b.qs) {
        *o = q as f32 * d;
    }
}

/// ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d).
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// ggml's quantize_row_q8_1_ref, with d and s kept in f32.
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// Two-plane quantization (see [`BlockQ8x2`]): d = max|x| / 127, hi = round(x / d) as for
/// Q8_0, lo = round((x / d - hi) * 254). Rounding is half away from zero, as ggml's roundf.
/// x / d - hi is exact in f32 (the fraction of x / d), so only the two roundings lose anything.
pub fn quantize_q8x2(x: &[f32], out: &mut [BlockQ8x2]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (mut sum_hi, mut sum_lo) = (0i32, 0i32);
        for ((h, l), v) in b.hi.iter_mut().zip(b.lo.iter_mut()).zip(xb) {
            let v = v * id;
            let hr = v.round();
            *h = hr as i8;
            *l = ((v - hr) * Q8X2_LO_SCALE).round() as i8;
            sum_hi += *h as i32;
            sum_lo += *l as i32;
        }
        b.d = d;
        b.s = q8x2_sum(d, sum_hi, sum_lo);
    }
}

/// A [`BlockQ8x2`]'s s from its scale and the sums of its planes; shared with the SIMD
/// quantizer so the two agree bit for bit.
#[inline(always)]
pub(super) fn q8x2_sum(d: f32, sum_hi: i32, sum_lo: i32) -> f32 {
    d * (sum_hi as f32 + sum_lo as f32 / Q8X2_LO_SCALE)
}

/// Dequantizes one row of `out.len()` elements stored as `dtype` in `bytes`.
/// `bytes` must hold exactly `dtype.bytes_for(out.len())` bytes.
pub fn dequantize_row(dtype: crate::tensor::DType, bytes: &[u8], out: &mut [f32]) {
    use crate::tensor::DType;
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::Q4_0 => {
            for (b, o) in blocks::<BlockQ4_0>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK))
            {
                dequantize_q4_0(b, o);
            }
        }
        DType::Q4_1 => {
            for (b, o) in blocks::<BlockQ4_1>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK))
            {
                dequantize_q4_1(b, o);
            }
        }
        DType::Q8_0 => {
            for (b, o) in blocks::<BlockQ8_0>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK))
            {
                dequantize_q8_0(b, o);
            }
        }
        DType::Q5_0 => {
            for (b, o) in blocks::<BlockQ5_0>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK))
            {
                dequantize_q5_0(b, o);
            }
        }
        DType::Q5_1 => {
            for (b, o) in blocks::<BlockQ5_1>(bytes)
                .iter()
                .zip(out.chunks_exact_mut(QK))
            {
                dequantize_q5_1(b, o);
            }
        }
        DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q8_K => {
            super::kquant::dequantize_row(dtype, bytes, out)
        }
    }
}
