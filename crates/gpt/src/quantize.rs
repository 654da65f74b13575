//! `gpt quantize`: a GGUF file of float weights (F32, F16, BF16) to a smaller one, with the
//! block quantizers of ggml (`quantize_row_*_ref` in ggml-quants.c, which `llama-quantize`
//! runs when it has no importance matrix), so that the bytes equal llama-quantize's.
//!
//! Which tensors are quantized follows `llama-quantize --pure`: every tensor of two or more
//! dimensions whose name ends in `weight` and whose rows are a whole number of blocks; the others
//! (norms, biases, RoPE factors) are copied as they are. Metadata is copied, with
//! `general.file_type` and `general.quantization_version` set as llama.cpp sets them.

use crate::formats::gguf::{GgufFile, GgufWriter, Value};
use crate::kernels::quant::{self, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, QK};
use crate::tensor::DType;
use crate::{Error, Result};
use half::f16;
use std::path::Path;

/// The types `gpt quantize` writes, with llama.cpp's `llama_ftype` number for each.
pub const TARGETS: [(DType, u32); 5] = [
    (DType::Q4_0, 2),
    (DType::Q4_1, 3),
    (DType::Q8_0, 7),
    (DType::Q5_0, 8),
    (DType::Q5_1, 9),
];

/// The block of 32 values with the largest magnitude, and that value (sign kept): ggml's
/// `amax` / `max` loop (the first of equal magnitudes wins).
fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// ggml's quantize_row_q4_0_ref: d = max / -8 (max: the value of largest magnitude), q =
/// min(15, trunc(x / d + 8.5)).
pub fn quantize_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let d = signed_max(xb) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        for j in 0..QK / 2 {
            let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
            b.qs[j] = q(xb[j]) | q(xb[j + QK / 2]) << 4;
        }
    }
}

/// ggml's quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d
/// + 0.5)).
pub fn quantize_q4_1(x: &[f32], out: &mut [BlockQ4_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        b.m = f16::from_f32(min);
        for j in 0..QK / 2 {
            let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
            b.qs[j] = q(xb[j]) | q(xb[j + QK / 2]) << 4;
        }
    }
}

/// The low nibbles and the 5th bits (bit j of qh for element j) of 32 5-bit quants.
fn pack5(q: impl Fn(usize) -> u8) -> ([u8; QK / 2], [u8; 4]) {
    let (mut qs, mut qh) = ([0u8; QK / 2], 0u32);
    for (j, b) in qs.iter_mut().enumerate() {
        let (q0, q1) = (q(j), q(j + QK / 2));
        *b = (q0 & 0x0f) | (q1 & 0x0f) << 4;
        qh |= u32::from(q0 >> 4 & 1) << j | u32::from(q1 >> 4 & 1) << (j + QK / 2);
    }
    (qs, qh.to_le_bytes())
}

/// ggml's quantize_row_q5_0_ref: d = max / -16, q = min(31, trunc(x / d + 16.5)).
pub fn quantize_q5_0(x: &[f32], out: &mut [BlockQ5_0]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let d = signed_max(xb) / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        (b.qs, b.qh) = pack5(|j| ((xb[j] * id + 16.5) as i8).min(31) as u8);
    }
}

/// ggml's quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5).
pub fn quantize_q5_1(x: &[f32], out: &mut [BlockQ5_1]) {
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d);
        b.m = f16::from_f32(min);
        (b.qs, b.qh) = pack5(|j| ((xb[j] - min) * id + 0.5) as u8);
    }
}

/// `x` (a whole number of blocks) as `dtype` blocks, in bytes.
pub fn quantize_values(dtype: DType, x: &[f32]) -> Result<Vec<u8>> {
    fn blocks<B: bytemuck::Pod + bytemuck::Zeroable>(
        x: &[f32],
        f: fn(&[f32], &mut [B]),
    ) -> Vec<u8> {
        let mut out = vec![B::zeroed(); x.len() / QK];
        f(x, &mut out);
        bytemuck::cast_slice(&out).to_vec()
    }
    if !x.len().is_multiple_of(QK) {
        return Err(Error::Invalid(format!(
            "quantize: {} values are not whole blocks of {QK}",
            x.len()
        )));
    }
    Ok(match dtype {
        DType::Q4_0 => blocks(x, quantize_q4_0),
        DType::Q4_1 => blocks(x, quantize_q4_1),
        DType::Q5_0 => blocks(x, quantize_q5_0),
        DType::Q5_1 => blocks(x, quantize_q5_1),
        DType::Q8_0 => blocks(x, quant::quantize_q8_0),
        other => {
            return Err(Error::Invalid(format!(
                "quantize: {other} is not a type gpt quantize writes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)"
            )))
        }
    })
}

/// Whether `llama-quantize --pure` quantizes this tensor.
fn quantizes(name: &str, dims: &[u64], dtype: DType) -> bool {
    dims.len() >= 2 && name.ends_with("weight") && dims[0].is_multiple_of(dtype.block_size() as u64)
}

/// Quantizes the GGUF file `input` to `dtype`, written atomically to `out` (a temporary file
/// beside it, renamed when complete). `progress(tensors done, tensors)` is called as it goes.
/// Quantized input tensors are refused unless `allow_requantize` (then they are dequantized
/// first, as llama-quantize does).
pub fn quantize_file(
    input: &Path,
    out: &Path,
    dtype: DType,
    allow_requantize: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<()> {
    let ftype = TARGETS
        .iter()
        .find(|(t, _)| *t == dtype)
        .map(|&(_, f)| f)
        .ok_or_else(|| {
            Error::Invalid(format!("quantize: {dtype} is not a type gpt quantize writes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)"))
        })?;
    let g = GgufFile::open(input)?;
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        if k != "general.file_type" && k != "general.quantization_version" {
            w.add_metadata(k.clone(), v.clone());
        }
    }
    w.add_metadata("general.quantization_version", Value::U32(2));
    w.add_metadata("general.file_type", Value::U32(ftype));
    for (i, t) in g.tensors.iter().enumerate() {
        let data = g.tensor_data(t);
        let float = matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16);
        if !quantizes(&t.name, &t.dims, dtype) || t.dtype == dtype {
            w.add_tensor(t.name.clone(), &t.dims, t.dtype, data.to_vec());
        } else {
            if !float && !allow_requantize {
                return Err(Error::Tensor {
                    name: t.name.clone(),
                    msg: format!(
                        "{}: is already {}; quantizing it again loses more (--allow-requantize to do it anyway)",
                        g.name, t.dtype
                    ),
                });
            }
            let n: u64 = t.dims.iter().product();
            let mut x = vec![0f32; n as usize];
            quant::dequantize_row(t.dtype, &data, &mut x);
            w.add_tensor(t.name.clone(), &t.dims, dtype, quantize_values(dtype, &x)?);
        }
        progress(i + 1, g.tensors.len());
    }
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map_or("quantized.gguf".into(), |n| n.to_string_lossy())
    ));
    let written = w
        .write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
