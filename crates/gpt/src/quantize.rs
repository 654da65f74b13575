//! `gpt quantize`: a GGUF file of float weights (F32, F16, BF16) to a smaller one, with the
//! block quantizers of ggml (`quantize_row_*_ref` in ggml-quants.c, which `llama-quantize`
//! runs when it has no importance matrix), so that the bytes equal llama-quantize's.
//!
//! Which tensors are quantized follows `llama-quantize --pure`: every tensor of two or more
//! dimensions whose name ends in `weight` (where rows are not whole blocks of the type, the type
//! falls back as llama.cpp's does, see [`type_for_rows`]); the others (norms, biases, RoPE
//! factors) are copied as they are. Metadata is copied, with
//! `general.file_type` and `general.quantization_version` set as llama.cpp sets them.

use crate::formats::gguf::{GgufFile, GgufWriter, Value};
use crate::kernels::kquant::{BlockQ4_K, BlockQ5_K, BlockQ6_K, K_SCALE_SIZE, QK_K};
use crate::kernels::quant::{self, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, QK};
use crate::tensor::DType;
use crate::{Error, Result};
use half::f16;
use std::path::Path;

/// The types `gpt quantize` writes, with llama.cpp's `llama_ftype` number for each (for the
/// K-quants, that of the `_M` mix whose main type they are, as llama-quantize records it).
pub const TARGETS: [(DType, u32); 8] = [
    (DType::Q4_0, 2),
    (DType::Q4_1, 3),
    (DType::Q8_0, 7),
    (DType::Q5_0, 8),
    (DType::Q5_1, 9),
    (DType::Q4_K, 15),
    (DType::Q5_K, 17),
    (DType::Q6_K, 18),
];

/// The names `gpt quantize` takes: [`TARGETS`] and the mixes of [`Scheme`].
pub const TARGET_NAMES: &str = "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q4_K_M, Q5_K_M";

/// What `gpt quantize` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Every weight matrix in one type, as `llama-quantize --pure`.
    Pure(DType),
    /// llama.cpp's Q4_K_M (`Q5_K`: Q5_K_M): the matrices in Q4_K (Q5_K), but Q6_K for the
    /// output matrix (the embedding, when it is tied), and for the value projections and
    /// `ffn_down` matrices of the first and last eighth of the layers and every third between
    /// (llama.cpp's `use_more_bits`).
    Mix(DType),
}

impl Scheme {
    /// `Q4_0` .. `Q6_K` (pure), `Q4_K_M`, `Q5_K_M`, any case.
    pub fn parse(s: &str) -> Option<Scheme> {
        let s = s.to_ascii_uppercase();
        match s.as_str() {
            "Q4_K_M" => Some(Scheme::Mix(DType::Q4_K)),
            "Q5_K_M" => Some(Scheme::Mix(DType::Q5_K)),
            _ => TARGETS
                .iter()
                .map(|&(t, _)| t)
                .find(|t| t.to_string() == s)
                .map(Scheme::Pure),
        }
    }

    /// llama.cpp's `llama_ftype` for `general.file_type`.
    pub fn file_type(self) -> u32 {
        let t = match self {
            Scheme::Pure(t) | Scheme::Mix(t) => t,
        };
        TARGETS.iter().find(|(d, _)| *d == t).map_or(0, |&(_, f)| f)
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheme::Pure(t) => write!(f, "{t}"),
            Scheme::Mix(t) => write!(f, "{t}_M"),
        }
    }
}

/// llama.cpp's use_more_bits: the first and last eighth of `n` layers, and every third between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The type of each tensor of `g` under `scheme` (None: copied as it is), following
/// llama.cpp's llama_tensor_get_type for the mixes (tensors in file order, as it counts them),
/// then its fallback for rows that are not whole blocks.
fn tensor_types(g: &GgufFile, scheme: Scheme) -> Vec<Option<DType>> {
    let attn_v = |n: &str| {
        n.contains("attn_qkv.weight")
            || n.contains("attn_kv_b.weight")
            || n.contains("attn_v.weight")
    };
    let n_wv = g.tensors.iter().filter(|t| attn_v(&t.name)).count() as i64;
    let tied = !g.tensors.iter().any(|t| t.name == "output.weight");
    let arch = g
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let n_layer = g
        .get(&format!("{arch}.block_count"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0) as i64;
    let (mut i_wv, mut i_down) = (0i64, 0i64);
    g.tensors
        .iter()
        .map(|t| {
            if !quantizes(&t.name, &t.dims) {
                return None;
            }
            let ty = match scheme {
                Scheme::Pure(ty) => ty,
                Scheme::Mix(ty) => {
                    let n = t.name.as_str();
                    if n == "output.weight" || (tied && n == "token_embd.weight") {
                        if !t.dims[0].is_multiple_of(ty.block_size() as u64) {
                            DType::Q8_0
                        } else {
                            DType::Q6_K
                        }
                    } else if n == "token_embd.weight" {
                        ty
                    } else if attn_v(n) {
                        i_wv += 1;
                        if use_more_bits(i_wv - 1, n_wv) {
                            DType::Q6_K
                        } else {
                            ty
                        }
                    } else if n.contains("ffn_down") {
                        i_down += 1;
                        if use_more_bits(i_down - 1, n_layer) {
                            DType::Q6_K
                        } else {
                            ty
                        }
                    } else {
                        ty
                    }
                }
            };
            Some(type_for_rows(ty, t.dims[0]))
        })
        .collect()
}

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

/// ggml's nearest_int: round half to even through the 1.5 * 2^23 trick (|v| < 2^22).
fn nearest_int(v: f32) -> i32 {
    ((v + 12582912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's make_qkx2_quants: a scale and a min for `x` (quants 0..=nmax in `l`), searched over
/// `nstep` + 1 candidate scales around the min-max one, minimizing the weighted squared error.
/// Returns (scale, -min). Written with ggml's float operations in its order (no fused ones).
fn make_qkx2_quants(
    x: &[f32],
    w: &[f32],
    nmax: i32,
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let lf = q as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// The super-block of Q4_K (nmax 15) or Q5_K (nmax 31), as ggml's quantize_row_q4_K_ref /
/// q5_K_ref: (d, dmin, packed 6-bit scales and mins, the 256 quants).
fn quantize_k_with_min(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (f16, f16, [u8; K_SCALE_SIZE], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * (j + 1)];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) =
            make_qkx2_quants(xs, &w, nmax, &mut l[32 * j..32 * (j + 1)], rmin, 0.1, nstep);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        // C stores nearest_int's int in a uint8_t (wrapping), then takes MIN(63, .).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = crate::kernels::kquant::q4_k_scale_min(&packed, j);
        let dj = d.to_f32() * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// ggml's quantize_row_q4_K_ref.
pub fn quantize_q4_k(x: &[f32], out: &mut [BlockQ4_K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let l;
        (b.d, b.dmin, b.scales, l) = quantize_k_with_min(xb, 15, -1.0, 20);
        for (n, q) in b.qs.chunks_exact_mut(32).enumerate() {
            for (i, v) in q.iter_mut().enumerate() {
                *v = l[64 * n + i] | l[64 * n + i + 32] << 4;
            }
        }
    }
}

/// ggml's quantize_row_q5_K_ref.
pub fn quantize_q5_k(x: &[f32], out: &mut [BlockQ5_K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let l;
        (b.d, b.dmin, b.scales, l) = quantize_k_with_min(xb, 31, -0.5, 15);
        b.qh = [0; QK_K / 8];
        for (n, q) in b.qs.chunks_exact_mut(32).enumerate() {
            let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
            for (j, v) in q.iter_mut().enumerate() {
                let (mut l1, mut l2) = (l[64 * n + j], l[64 * n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    b.qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    b.qh[j] |= m2;
                }
                *v = l1 | l2 << 4;
            }
        }
    }
}

/// ggml's make_qx_quants with rmse_type 1 and no importance weights (weights x^2): a signed
/// scale for `x` (quants -nmax..nmax-1, stored + nmax in `l`), the best of 19 candidates.
fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        l[..x.len()].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        l[i] = (q + nmax) as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                l[i] = (nearest_int(iscale * v).clamp(-nmax, nmax - 1) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's quantize_row_q6_K_ref.
pub fn quantize_q6_k(x: &[f32], out: &mut [BlockQ6_K]) {
    for (xb, b) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            scales[ib] = make_qx_quants(
                &xb[16 * ib..16 * (ib + 1)],
                32,
                &mut l[16 * ib..16 * (ib + 1)],
            );
            if scales[ib].abs() > max_abs_scale {
                max_abs_scale = scales[ib].abs();
                max_scale = scales[ib];
            }
        }
        if max_abs_scale < 1e-15 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = f16::from_f32(1.0 / iscale);
        for (sc, &s) in b.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = b.d.to_f32() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(xb[16 * j + i] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for h in 0..QK_K / 128 {
            let (ql, qh) = (
                &mut b.ql[64 * h..64 * (h + 1)],
                &mut b.qh[32 * h..32 * (h + 1)],
            );
            let lv = |k: usize| l[128 * h + k] as u8;
            for i in 0..32 {
                ql[i] = (lv(i) & 0xf) | (lv(i + 64) & 0xf) << 4;
                ql[i + 32] = (lv(i + 32) & 0xf) | (lv(i + 96) & 0xf) << 4;
                qh[i] = (lv(i) >> 4)
                    | (lv(i + 32) >> 4) << 2
                    | (lv(i + 64) >> 4) << 4
                    | (lv(i + 96) >> 4) << 6;
            }
        }
    }
}

/// `x` (a whole number of blocks) as `dtype` blocks, in bytes.
pub fn quantize_values(dtype: DType, x: &[f32]) -> Result<Vec<u8>> {
    /// x as blocks of `B` (`per` values each), in bytes.
    fn blocks<B: bytemuck::Pod + bytemuck::Zeroable>(
        x: &[f32],
        per: usize,
        f: fn(&[f32], &mut [B]),
    ) -> Vec<u8> {
        let mut out = vec![B::zeroed(); x.len() / per];
        f(x, &mut out);
        bytemuck::cast_slice(&out).to_vec()
    }
    if !x.len().is_multiple_of(dtype.block_size()) {
        return Err(Error::Invalid(format!(
            "quantize: {} values are not whole blocks of {}",
            x.len(),
            dtype.block_size()
        )));
    }
    Ok(match dtype {
        DType::Q4_K => blocks(x, QK_K, quantize_q4_k),
        DType::Q5_K => blocks(x, QK_K, quantize_q5_k),
        DType::Q6_K => blocks(x, QK_K, quantize_q6_k),
        DType::F16 => x
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::Q4_0 => blocks(x, QK, quantize_q4_0),
        DType::Q4_1 => blocks(x, QK, quantize_q4_1),
        DType::Q5_0 => blocks(x, QK, quantize_q5_0),
        DType::Q5_1 => blocks(x, QK, quantize_q5_1),
        DType::Q8_0 => blocks(x, QK, quant::quantize_q8_0),
        other => {
            return Err(Error::Invalid(format!(
                "quantize: {other} is not a type gpt quantize writes ({TARGET_NAMES})"
            )))
        }
    })
}

/// Whether `llama-quantize --pure` quantizes this tensor.
fn quantizes(name: &str, dims: &[u64]) -> bool {
    dims.len() >= 2 && name.ends_with("weight")
}

/// The type a tensor of rows of `ncols` gets when `dtype` is asked, as llama.cpp's
/// tensor_type_fallback: a K-quant's 32-element relative where rows are not whole super-blocks
/// (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), F16 where they are not whole blocks of 32.
pub fn type_for_rows(dtype: DType, ncols: u64) -> DType {
    let fits = |t: DType| ncols.is_multiple_of(t.block_size() as u64);
    let t = match dtype {
        _ if fits(dtype) => return dtype,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        other => other,
    };
    if fits(t) {
        t
    } else {
        DType::F16
    }
}

/// Quantizes `input` by `scheme`, written atomically to `out` (a temporary file beside it,
/// renamed when complete). `input` is a GGUF file, or a Hugging Face folder (a `gpt train`
/// checkpoint, say), exported as F32 first ([`crate::export`]) as llama.cpp quantizes the
/// output of its converter. `progress(tensors done, tensors)` is called as it goes. Quantized
/// input tensors are refused unless `allow_requantize` (then they are dequantized first, as
/// llama-quantize does).
pub fn quantize_file(
    input: &Path,
    out: &Path,
    scheme: Scheme,
    allow_requantize: bool,
    progress: impl FnMut(usize, usize),
) -> Result<()> {
    let g = if input.is_dir() {
        let bytes = crate::export::hf_to_gguf(input, DType::F32)?.to_bytes()?;
        GgufFile::from_bytes(
            &input.display().to_string(),
            crate::tensor::Bytes::from_vec(bytes),
        )?
    } else {
        GgufFile::open(input)?
    };
    let w = quantize_gguf(&g, scheme, allow_requantize, progress)?;
    crate::export::write_atomic(&w, out)
}

/// [`quantize_file`] of an open GGUF file, in memory.
pub fn quantize_gguf(
    g: &GgufFile,
    scheme: Scheme,
    allow_requantize: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<GgufWriter> {
    let valid = match scheme {
        Scheme::Pure(t) => TARGETS.iter().any(|(d, _)| *d == t),
        Scheme::Mix(t) => matches!(t, DType::Q4_K | DType::Q5_K),
    };
    if !valid {
        return Err(Error::Invalid(format!(
            "quantize: {scheme} is not a type gpt quantize writes ({TARGET_NAMES})"
        )));
    }
    let ftype = scheme.file_type();
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        if k != "general.file_type" && k != "general.quantization_version" {
            w.add_metadata(k.clone(), v.clone());
        }
    }
    w.add_metadata("general.quantization_version", Value::U32(2));
    w.add_metadata("general.file_type", Value::U32(ftype));
    let types = tensor_types(g, scheme);
    for (i, (t, target)) in g.tensors.iter().zip(types).enumerate() {
        let data = g.tensor_data(t);
        let float = matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16);
        let Some(target) = target.filter(|&ty| ty != t.dtype) else {
            w.add_tensor(t.name.clone(), &t.dims, t.dtype, data.to_vec());
            progress(i + 1, g.tensors.len());
            continue;
        };
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
        w.add_tensor(
            t.name.clone(),
            &t.dims,
            target,
            quantize_values(target, &x)?,
        );
        progress(i + 1, g.tensors.len());
    }
    Ok(w)
}
