//! GGML's block-quantized types, bit-exact with ggml-common.h.
//!
//! Each block holds 32 consecutive elements of a row. Weights use Q4_0, Q4_1 and Q8_0;
//! activations are quantized on the fly to Q8_0 (against Q4_0/Q8_0 weights) or Q8_1
//! (against Q4_1, whose min term needs the activation block's sum).
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

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
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
    }
}
