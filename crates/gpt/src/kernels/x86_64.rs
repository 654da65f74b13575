//! x86-64 kernels: AVX2 (+FMA, F16C) and AVX-512 (F, BW, VL, VNNI).
//!
//! Every `pub(super)` function here is `unsafe` for one reason: it is compiled for CPU features
//! the caller must have checked (through [`super::Isa::usable`]). Slices are read within their
//! bounds; raw-pointer kernels state the lengths they read. Weight rows come straight from a
//! memory-mapped file, so they are only byte-aligned: every load here is unaligned.
#![allow(unsafe_code)]

use super::kquant::{self, BlockQ8_K, K_SCALE_SIZE};
use super::quant::{self, BlockQ8_0, BlockQ8_1, BlockQ8x2, Q8X2_LO_SCALE, QK};
use std::arch::x86_64::*;
use std::ptr::addr_of;
use std::ptr::read_unaligned;

/// Bytes per weight block (the sizes pinned in `quant`).
const Q4_0_BYTES: usize = 18;
const Q4_1_BYTES: usize = 20;
const Q8_0_BYTES: usize = 34;
const Q5_0_BYTES: usize = 22;
const Q5_1_BYTES: usize = 24;

// ---------------------------------------------------------------------------------------------
// Small helpers, always inlined into a caller compiled with the features they use.

#[inline(always)]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn hmax256(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn hsum256_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// One IEEE half at `p` (any alignment) as f32, with F16C: exact, like `half::f16::to_f32`.
/// The half is broadcast before converting: a scalar insert would merge into (and wait for)
/// whatever register the compiler picks, which it did, stalling a loop on its accumulator.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(read_unaligned(
        p as *const i16,
    ))))
}

/// The half at `p` as f32 in all 8 lanes.
#[inline(always)]
unsafe fn f16_splat(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(read_unaligned(p as *const i16)))
}

/// The 16 bytes of packed nibbles at `p` as 32 bytes 0..15 in ggml's element order: low
/// nibbles (elements 0..16) in the low 128 bits, high nibbles (16..32) in the high 128 bits.
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let qs = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Sums of 4 adjacent products u8 * i8 into 8 i32 lanes. `VNNI` selects one vpdpbusd over
/// AVX2's maddubs (u8*i8 pairs to saturating i16; our operands stay far below saturation:
/// |15*127*2| and |127*127*2| < 32767) + madd (i16 pairs to i32).
#[inline(always)]
unsafe fn mul_sum_u8_i8<const VNNI: bool>(u: __m256i, s: __m256i) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    } else {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }
}

// ---------------------------------------------------------------------------------------------
// Float rows: f32, f16 and bf16 weights against f32 activations.

/// How one float dtype's row turns into f32 lanes. Products of converted values are exact, so
/// the fused dot over f16 bytes and the dot over a dequantized copy agree bit for bit.
pub(super) trait FloatRow {
    /// Bytes per element.
    const SIZE: usize;
    unsafe fn load8(p: *const u8) -> __m256;
    unsafe fn load16(p: *const u8) -> __m512;
    unsafe fn scalar(p: *const u8) -> f32;
}

pub(super) struct F32Row;
pub(super) struct F16Row;
pub(super) struct Bf16Row;

impl FloatRow for F32Row {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        _mm512_loadu_ps(p as *const f32)
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        read_unaligned(p as *const f32)
    }
}

impl FloatRow for F16Row {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        f16_at(p)
    }
}

/// bf16 is the high half of an f32: widening is a 16-bit shift.
impl FloatRow for Bf16Row {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
    }
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
        _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))
    }
    #[inline(always)]
    unsafe fn scalar(p: *const u8) -> f32 {
        f32::from_bits((read_unaligned(p as *const u16) as u32) << 16)
    }
}

/// The dots of `TOK` f32 vectors x_t with `ROWS` float rows w_r (n elements each, of `R`):
/// out[t][r] = sum(w_r[i] * x_t[i]). Per pair: one accumulator of `V::N` lanes (the tile's
/// TOK x ROWS independent chains hide the FMA latency; a single dot is bound by memory), the
/// lanes summed in a fixed order, and the tail in scalar, in order. The arithmetic of a pair
/// does not depend on `TOK` or `ROWS`, so a tile of many tokens gives each token what the
/// one-token dot ([`dot_avx2`], [`dot_avx512`]) gives it, bit for bit.
#[inline(always)]
unsafe fn float_dots<V: F32Lanes, R: FloatRow, const TOK: usize, const ROWS: usize>(
    w: [*const u8; ROWS],
    x: [*const f32; TOK],
    n: usize,
) -> [[f32; ROWS]; TOK] {
    let mut acc = [[V::zero(); ROWS]; TOK];
    let mut i = 0;
    while i + V::N <= n {
        let xs: [V; TOK] = std::array::from_fn(|t| V::load(x[t].add(i)));
        for (r, &wr) in w.iter().enumerate() {
            let wv = V::load_row::<R>(wr.add(i * R::SIZE));
            for (a, &xv) in acc.iter_mut().zip(&xs) {
                a[r] = a[r].fmadd(wv, xv);
            }
        }
        i += V::N;
    }
    let mut out = [[0f32; ROWS]; TOK];
    if TOK == 4 && ROWS == 4 {
        // SAFETY: the same type when TOK = ROWS = 4.
        let sums = V::reduce_4x4(&*(&acc as *const [[V; ROWS]; TOK] as *const [[V; 4]; 4]));
        out = std::mem::transmute_copy(&sums);
    } else {
        for (o, a) in out.iter_mut().zip(&acc) {
            for (s, a) in o.iter_mut().zip(a) {
                *s = a.reduce();
            }
        }
    }
    for (t, o) in out.iter_mut().enumerate() {
        for (r, s) in o.iter_mut().enumerate() {
            let mut sum = *s;
            for j in i..n {
                sum += R::scalar(w[r].add(j * R::SIZE)) * *x[t].add(j);
            }
            *s = sum;
        }
    }
    out
}

/// sum(w[i] * x[i]) for i < n; w: n elements of `R` at `w`, x: n f32 at `x`.
#[inline(always)]
unsafe fn dot_avx2<R: FloatRow>(w: *const u8, x: *const f32, n: usize) -> f32 {
    float_dots::<__m256, R, 1, 1>([w], [x], n)[0][0]
}

/// As [`dot_avx2`], 16 lanes wide.
#[inline(always)]
unsafe fn dot_avx512<R: FloatRow>(w: *const u8, x: *const f32, n: usize) -> f32 {
    float_dots::<__m512, R, 1, 1>([w], [x], n)[0][0]
}

/// out (T, rows) = x (T, K) @ w^T for the float rows `rows` of w (each `row_bytes` of `R`):
/// tiles of `TOK` tokens x `ROWS` rows through [`float_dots`], `set(token, row, value)`.
/// Tokens go in blocks whose activations stay in L2 while the rows go by.
#[inline(always)]
unsafe fn float_rows<V: F32Lanes, R: FloatRow, const TOK: usize, const ROWS: usize>(
    w: &[u8],
    row_bytes: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    k: usize,
    set: &impl Fn(usize, usize, f32),
) {
    const TOKEN_BLOCK: usize = 12;
    let t = x.len() / k;
    debug_assert!(rows.end * row_bytes <= w.len() && row_bytes >= k * R::SIZE);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // A tile's rows are `stride` apart, so that each streams through its own long run of
    // memory (the prefetchers follow a few long streams, not many short ones); the rows left
    // over go one at a time.
    let stride = rows.len() / ROWS;
    let row_of = |g: usize, r: usize| rows.start + g + r * stride;
    macro_rules! tile {
        ($tok:expr, $rows:expr, $t0:expr, $row:expr) => {{
            let d = float_dots::<V, R, $tok, $rows>(
                std::array::from_fn(|r| wp.add($row(r) * row_bytes)),
                std::array::from_fn(|ti| xp.add(($t0 + ti) * k)),
                k,
            );
            for (ti, vals) in d.iter().enumerate() {
                for (r, &v) in vals.iter().enumerate() {
                    set($t0 + ti, $row(r), v);
                }
            }
        }};
    }
    for b0 in (0..t).step_by(TOKEN_BLOCK) {
        let b1 = (b0 + TOKEN_BLOCK).min(t);
        for g in 0..stride {
            let mut t0 = b0;
            while t0 + TOK <= b1 {
                tile!(TOK, ROWS, t0, |r| row_of(g, r));
                t0 += TOK;
            }
            for t0 in t0..b1 {
                tile!(1, ROWS, t0, |r| row_of(g, r));
            }
        }
        for row in rows.start + ROWS * stride..rows.end {
            for t0 in b0..b1 {
                tile!(1, 1, t0, |_| row);
            }
        }
    }
}

/// [`float_rows`] 8 lanes wide: 3 tokens x 3 rows (9 accumulators of the 16 registers).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn float_rows_avx2<R: FloatRow>(
    w: &[u8],
    row_bytes: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    k: usize,
    set: &impl Fn(usize, usize, f32),
) {
    float_rows::<__m256, R, 3, 3>(w, row_bytes, rows, x, k, set)
}

/// [`float_rows`] 16 lanes wide: 4 tokens x 4 rows (16 accumulators of the 32 registers).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn float_rows_avx512<R: FloatRow>(
    w: &[u8],
    row_bytes: usize,
    rows: std::ops::Range<usize>,
    x: &[f32],
    k: usize,
    set: &impl Fn(usize, usize, f32),
) {
    float_rows::<__m512, R, 4, 4>(w, row_bytes, rows, x, k, set)
}

/// Dot of a float row (`x.len()` elements of `R` in `w`) with `x`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_row_avx2<R: FloatRow>(w: &[u8], x: &[f32]) -> f32 {
    debug_assert!(w.len() >= x.len() * R::SIZE);
    dot_avx2::<R>(w.as_ptr(), x.as_ptr(), x.len())
}

/// Dot of a float row (`x.len()` elements of `R` in `w`) with `x`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn dot_row_avx512<R: FloatRow>(w: &[u8], x: &[f32]) -> f32 {
    debug_assert!(w.len() >= x.len() * R::SIZE);
    dot_avx512::<R>(w.as_ptr(), x.as_ptr(), x.len())
}

/// out (n) = the float row `w` (n elements of `R`) widened to f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn widen_row_avx2<R: FloatRow>(w: &[u8], out: &mut [f32]) {
    let n = out.len();
    debug_assert!(w.len() >= n * R::SIZE);
    let (p, o) = (w.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(o.add(i), R::load8(p.add(i * R::SIZE)));
        i += 8;
    }
    while i < n {
        *o.add(i) = R::scalar(p.add(i * R::SIZE));
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Float panels: f32, f16 and bf16 weights repacked K-major, 16 rows in the lanes of a register.
//
// The dot tiles above keep the lanes over k and sum each output's lanes at the end: every
// FMA needs a load of weights and a load of activations, and with 16 accumulators the loads,
// not the FMA units, set the pace (60 GFLOP/s on one core here). In a panel, the 16 values of
// column k of 16 rows are adjacent: one load of them serves every token of a tile, whose x[t][k]
// is broadcast inside the FMA, and each lane is one output. 12 tokens x 2 panels keep 24
// accumulators and 2 weight registers: 200 GFLOP/s, the FMA units' peak (bench/float_panels.rs).
// Each output is one FMA chain over k in order, whatever the tile it is in: a token's result
// does not depend on T, and equals `reference::dot_f32_fused` bit for bit.

/// 64 bytes, aligned as a cache line, so that a panel's loads never straddle two lines.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct Line([u8; 64]);

/// Up to 16 float rows of k elements, K-major: element kk of row j at element kk * 16 + j (in the
/// file's type: f32, f16 or bf16). Rows past the matrix's end are zero.
pub(super) struct FloatPanel {
    lines: Vec<Line>,
}

impl FloatPanel {
    /// Packs `rows` (at most 16, each k elements of `size` bytes).
    pub(super) fn pack(rows: &[&[u8]], k: usize, size: usize) -> FloatPanel {
        assert!(rows.len() <= PANEL_ROWS && rows.iter().all(|r| r.len() >= k * size));
        let bytes = k * PANEL_ROWS * size;
        let mut lines = vec![Line([0; 64]); bytes.div_ceil(64)];
        // SAFETY: Line is 64 plain bytes; the slice covers the vector's initialized elements.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u8, lines.len() * 64)
        };
        for (kk, column) in dst[..bytes].chunks_exact_mut(PANEL_ROWS * size).enumerate() {
            for (row, value) in rows.iter().zip(column.chunks_exact_mut(size)) {
                value.copy_from_slice(&row[kk * size..(kk + 1) * size]);
            }
        }
        FloatPanel { lines }
    }

    /// Heap bytes the panel holds.
    pub(super) fn bytes(&self) -> usize {
        self.lines.capacity() * 64
    }

    fn as_ptr(&self) -> *const u8 {
        self.lines.as_ptr() as *const u8
    }
}

/// The outputs of `TT` tokens (x_t at x + t * k, k f32 each) against `P` panels of 16 rows
/// (k columns of `R` each): out[t][p][j] = sum over kk of w_pj[kk] * x_t[kk], one FMA chain per
/// output in order of kk.
#[inline(always)]
unsafe fn float_panel_tile<R: FloatRow, const TT: usize, const P: usize>(
    panels: [*const u8; P],
    x: *const f32,
    k: usize,
    stream: bool,
) -> [[[f32; PANEL_ROWS]; P]; TT] {
    let mut acc = [[_mm512_setzero_ps(); P]; TT];
    for kk in 0..k {
        // Once per cache line of each panel: 16 columns of f32, 32 of f16.
        if stream && (kk * 16 * R::SIZE).is_multiple_of(64) {
            for &p in &panels {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(kk * 16 * R::SIZE + 2048) as *const i8);
            }
        }
        let w: [__m512; P] = std::array::from_fn(|p| R::load16(panels[p].add(kk * 16 * R::SIZE)));
        for (t, acc) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(*x.add(t * k + kk));
            for (a, &w) in acc.iter_mut().zip(&w) {
                *a = _mm512_fmadd_ps(w, xb, *a);
            }
        }
    }
    let mut out = [[[0f32; PANEL_ROWS]; P]; TT];
    for (o, a) in out.iter_mut().zip(&acc) {
        for (o, &a) in o.iter_mut().zip(a) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
    }
    out
}

/// out (T, 16 * panels.len()) = x (T, K) @ the panels' rows^T: `set(token, panel, values)`
/// with the panel's 16 outputs (zero rows included). Tiles of 12 tokens (the rest in 8, 4, 2,
/// 1) x 2 panels; the tokens' activations stay in L1/L2 while the band's panels go by.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn float_panels_avx512<R: FloatRow>(
    panels: &[FloatPanel],
    x: &[f32],
    t: usize,
    k: usize,
    set: &impl Fn(usize, usize, &[f32; PANEL_ROWS]),
) {
    // Panels in groups that stay in L2 while every token tile goes by them.
    const GROUP: usize = 4;
    debug_assert_eq!(x.len(), t * k);
    debug_assert!(panels.iter().all(|p| p.bytes() >= k * PANEL_ROWS * R::SIZE));
    for g0 in (0..panels.len()).step_by(GROUP) {
        let group = g0..(g0 + GROUP).min(panels.len());
        macro_rules! tiles {
            ($tt:literal, $t0:expr) => {{
                let xt = x.as_ptr().add($t0 * k);
                let mut p = group.start;
                if $tt == 1 {
                    while p + 4 <= group.end {
                        let ptrs = std::array::from_fn(|i| panels[p + i].as_ptr());
                        let d = float_panel_tile::<R, 1, 4>(ptrs, xt, k, $t0 == 0);
                        for (i, d) in d[0].iter().enumerate() {
                            set($t0, p + i, d);
                        }
                        p += 4;
                    }
                }
                while p + 2 <= group.end {
                    let ptrs = [panels[p].as_ptr(), panels[p + 1].as_ptr()];
                    let d = float_panel_tile::<R, $tt, 2>(ptrs, xt, k, $t0 == 0);
                    for (ti, d) in d.iter().enumerate() {
                        set($t0 + ti, p, &d[0]);
                        set($t0 + ti, p + 1, &d[1]);
                    }
                    p += 2;
                }
                if p < group.end {
                    let d = float_panel_tile::<R, $tt, 1>([panels[p].as_ptr()], xt, k, $t0 == 0);
                    for (ti, d) in d.iter().enumerate() {
                        set($t0 + ti, p, &d[0]);
                    }
                }
                $tt
            }};
        }
        let mut t0 = 0;
        while t0 < t {
            t0 += match t - t0 {
                12.. => tiles!(12, t0),
                8.. => tiles!(8, t0),
                4.. => tiles!(4, t0),
                2.. => tiles!(2, t0),
                _ => tiles!(1, t0),
            };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dequantization, bit-exact with `quant::dequantize_*`: the same int->float conversions and the
// same separate multiply and add (an FMA would round once where the reference rounds twice).

/// out (32 * kb) = `kb` Q4_0 blocks at `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dequantize_q4_0_avx2(w: &[u8], out: &mut [f32]) {
    let kb = out.len() / QK;
    debug_assert!(w.len() >= kb * Q4_0_BYTES);
    for b in 0..kb {
        let p = w.as_ptr().add(b * Q4_0_BYTES);
        let d = f16_splat(p);
        let q = _mm256_sub_epi8(unpack_nibbles(p.add(2)), _mm256_set1_epi8(8));
        store_i8x32_scaled(
            q,
            d,
            _mm256_setzero_ps(),
            out.as_mut_ptr().add(b * QK),
            false,
        );
    }
}

/// out (32 * kb) = `kb` Q4_1 blocks at `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dequantize_q4_1_avx2(w: &[u8], out: &mut [f32]) {
    let kb = out.len() / QK;
    debug_assert!(w.len() >= kb * Q4_1_BYTES);
    for b in 0..kb {
        let p = w.as_ptr().add(b * Q4_1_BYTES);
        let d = f16_splat(p);
        let m = f16_splat(p.add(2));
        let q = unpack_nibbles(p.add(4));
        store_i8x32_scaled(q, d, m, out.as_mut_ptr().add(b * QK), true);
    }
}

/// out (32 * kb) = `kb` Q8_0 blocks at `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dequantize_q8_0_avx2(w: &[u8], out: &mut [f32]) {
    let kb = out.len() / QK;
    debug_assert!(w.len() >= kb * Q8_0_BYTES);
    for b in 0..kb {
        let p = w.as_ptr().add(b * Q8_0_BYTES);
        let d = f16_splat(p);
        let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
        store_i8x32_scaled(
            q,
            d,
            _mm256_setzero_ps(),
            out.as_mut_ptr().add(b * QK),
            false,
        );
    }
}

/// out[0..32] = q[i] * d (+ m when `add_m`), q as signed bytes.
#[inline(always)]
unsafe fn store_i8x32_scaled(q: __m256i, d: __m256, m: __m256, out: *mut f32, add_m: bool) {
    let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)];
    for (h, v) in halves.into_iter().enumerate() {
        for (j, part) in [v, _mm_srli_si128(v, 8)].into_iter().enumerate() {
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part));
            let mut r = _mm256_mul_ps(f, d);
            if add_m {
                r = _mm256_add_ps(r, m);
            }
            _mm256_storeu_ps(out.add(16 * h + 8 * j), r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization, bit-exact with `quant::quantize_q8_0/q8_1`.

/// Rounds half away from zero, like `f32::round` and C's roundf: trunc(v) plus sign(v) when
/// |v - trunc(v)| >= 0.5. The subtraction is exact, so this is exact for every finite v
/// (`_mm256_round_ps` to nearest would round halves to even, as ggml's SIMD path does).
#[inline(always)]
unsafe fn round_half_away(v: __m256) -> __m256 {
    let t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    let sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0));
    let frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(v, t));
    let away = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5), _CMP_GE_OQ);
    let step = _mm256_and_ps(away, _mm256_or_ps(sign, _mm256_set1_ps(1.0)));
    _mm256_add_ps(t, step)
}

/// Loads 32 floats at `x` and returns them with ggml's Q8 scale d = max|x| / 127 and its
/// inverse (0 for an all-zero block) in every lane.
#[inline(always)]
unsafe fn load_block_scale(x: *const f32) -> ([__m256; 4], f32, __m256) {
    let v = [
        _mm256_loadu_ps(x),
        _mm256_loadu_ps(x.add(8)),
        _mm256_loadu_ps(x.add(16)),
        _mm256_loadu_ps(x.add(24)),
    ];
    // No closures here: they would not inherit the caller's target features, and their
    // intrinsics would become calls.
    let sign = _mm256_set1_ps(-0.0);
    let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
    let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
    let amax = hmax256(_mm256_max_ps(m01, m23));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    (v, d, id)
}

/// Stores 32 i32 lanes (in element order) as 32 i8 at `q`, saturating like `as i8`, and
/// returns their sum.
#[inline(always)]
unsafe fn store_i8x32(i: [__m256i; 4], q: *mut i8) -> i32 {
    let sum = hsum256_i32(_mm256_add_epi32(
        _mm256_add_epi32(i[0], i[1]),
        _mm256_add_epi32(i[2], i[3]),
    ));
    // Packing interleaves 128-bit lanes: the permute restores order.
    let p01 = _mm256_packs_epi32(i[0], i[1]);
    let p23 = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(p01, p23);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(q as *mut __m256i, p);
    sum
}

/// Quantizes 32 floats at `x` as ggml's quantize_row_q8_0_ref does: returns the f32 scale
/// d = max|x| / 127, the 32 quants round(x / d) stored at `q`, and their sum.
#[inline(always)]
unsafe fn quantize_block(x: *const f32, q: *mut i8) -> (f32, i32) {
    let (v, d, id) = load_block_scale(x);
    let mut i = [_mm256_setzero_si256(); 4];
    for j in 0..4 {
        i[j] = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v[j], id)));
    }
    (d, store_i8x32(i, q))
}

/// x (32 * out.len()) -> Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_0_avx2(x: &[f32], out: &mut [BlockQ8_0]) {
    assert!(x.len() >= out.len() * QK);
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (d, _) = quantize_block(xb.as_ptr(), b.qs.as_mut_ptr());
        b.d = half::f16::from_f32(d);
    }
}

/// x (32 * out.len()) -> Q8_1 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_1_avx2(x: &[f32], out: &mut [BlockQ8_1]) {
    assert!(x.len() >= out.len() * QK);
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (d, sum) = quantize_block(xb.as_ptr(), b.qs.as_mut_ptr());
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// x (32 * out.len()) -> two-plane blocks, with the operations of `quant::quantize_q8x2` in
/// the same order (a separate multiply and subtract, no FMA), so the planes agree bit for bit.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8x2_avx2(x: &[f32], out: &mut [BlockQ8x2]) {
    assert!(x.len() >= out.len() * QK);
    let lo_scale = _mm256_set1_ps(Q8X2_LO_SCALE);
    for (xb, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let (v, d, id) = load_block_scale(xb.as_ptr());
        let mut hi = [_mm256_setzero_si256(); 4];
        let mut lo = [_mm256_setzero_si256(); 4];
        for j in 0..4 {
            let scaled = _mm256_mul_ps(v[j], id);
            let h = round_half_away(scaled);
            let l = round_half_away(_mm256_mul_ps(_mm256_sub_ps(scaled, h), lo_scale));
            hi[j] = _mm256_cvtps_epi32(h);
            lo[j] = _mm256_cvtps_epi32(l);
        }
        let sum_hi = store_i8x32(hi, b.hi.as_mut_ptr());
        let sum_lo = store_i8x32(lo, b.lo.as_mut_ptr());
        b.d = d;
        b.s = quant::q8x2_sum(d, sum_hi, sum_lo);
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized dot products: one weight row of `kb` blocks against N tokens' activation rows.
// The weight block is unpacked once and reused for all N tokens, which is what makes prompt
// processing cheaper per token than generation. Each token's arithmetic is the same for every
// N, so a token's result does not depend on how tokens are grouped.

/// How far ahead of the weight block being read the quantized row kernels prefetch. Generation
/// streams the whole model from L3 or memory, and these kernels were bound by the weight loads
/// (perf put most of their time on the first use of a weight load): the hardware prefetcher
/// alone does not run far enough ahead. Measured: generation 1.3-1.5x faster.
const WEIGHT_PREFETCH_BYTES: usize = 1024;

/// Prefetches weight bytes [`WEIGHT_PREFETCH_BYTES`] past `p`. A prefetch never faults, so
/// reading past the end of the matrix is harmless.
#[inline(always)]
unsafe fn prefetch_weights(p: *const u8) {
    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(WEIGHT_PREFETCH_BYTES) as *const i8);
}

/// Q4_1 weights (value = d*q + m) x Q8_1 activations (value = d_a*a, s_a = d_a*sum(a)):
/// per block d*d_a*sum(q*a) + m*s_a.
#[inline(always)]
unsafe fn q4_1_q8_1<const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_1; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    // Lane 1 collects m * s_a; lane 0 collects d * d_a, unused.
    let mut acc_m = [_mm_setzero_ps(); N];
    for b in 0..kb {
        let wb = w.add(b * Q4_1_BYTES);
        prefetch_weights(wb);
        // [d, m, 0, 0]: d and m are adjacent halves, converted together.
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(wb as *const i32)));
        let q = unpack_nibbles(wb.add(4));
        for i in 0..N {
            let ab = a[i].add(b);
            // [d_a, s_a, 0, 0]: the block's first 8 bytes.
            let ds = _mm_castsi128_ps(_mm_loadl_epi64(ab as *const __m128i));
            let p = _mm_mul_ps(dm, ds);
            let y = _mm256_loadu_si256((*ab).qs.as_ptr() as *const __m256i);
            let s = _mm256_cvtepi32_ps(mul_sum_u8_i8::<VNNI>(q, y));
            acc[i] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), s, acc[i]);
            acc_m[i] = _mm_add_ps(acc_m[i], p);
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m[i]));
    }
    out
}

/// Q4_0 weights (value = d*(q-8)) x Q8_0 activations. maddubs and vpdpbusd want an unsigned
/// first operand, so (as ggml does) we multiply |w| by a carrying w's sign: |w| * (sign(w) * a).
#[inline(always)]
unsafe fn q4_0_q8_0<const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_0; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..kb {
        let wb = w.add(b * Q4_0_BYTES);
        prefetch_weights(wb);
        let dw = f16_splat(wb);
        let x = _mm256_sub_epi8(unpack_nibbles(wb.add(2)), _mm256_set1_epi8(8));
        let ax = _mm256_sign_epi8(x, x);
        for i in 0..N {
            let ab = a[i].add(b) as *const u8;
            let dd = _mm256_mul_ps(dw, f16_splat(ab));
            let y = _mm256_loadu_si256(ab.add(2) as *const __m256i);
            let s = mul_sum_u8_i8::<VNNI>(ax, _mm256_sign_epi8(y, x));
            acc[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[i]);
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]);
    }
    out
}

/// Q8_0 weights x Q8_0 activations, with the sign trick of [`q4_0_q8_0`]. A weight of -128
/// (never written by ggml's quantizer) still works: |-128| read as u8 is 128.
#[inline(always)]
unsafe fn q8_0_q8_0<const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_0; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..kb {
        let wb = w.add(b * Q8_0_BYTES);
        prefetch_weights(wb);
        let dw = f16_splat(wb);
        let x = _mm256_loadu_si256(wb.add(2) as *const __m256i);
        let ax = _mm256_sign_epi8(x, x);
        for i in 0..N {
            let ab = a[i].add(b) as *const u8;
            let dd = _mm256_mul_ps(dw, f16_splat(ab));
            let y = _mm256_loadu_si256(ab.add(2) as *const __m256i);
            let s = mul_sum_u8_i8::<VNNI>(ax, _mm256_sign_epi8(y, x));
            acc[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[i]);
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]);
    }
    out
}

/// Instantiates one quantized kernel for N tokens, for AVX2 and for AVX-512 VNNI.
/// Safety: `w` points at `kb` weight blocks, each `a[i]` at `kb` activation blocks.
macro_rules! quant_kernels {
    ($inner:ident, $act:ty, $avx2:ident, $vnni:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn $avx2<const N: usize>(
            w: *const u8,
            a: [*const $act; N],
            kb: usize,
        ) -> [f32; N] {
            $inner::<N, false>(w, a, kb)
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(super) unsafe fn $vnni<const N: usize>(
            w: *const u8,
            a: [*const $act; N],
            kb: usize,
        ) -> [f32; N] {
            $inner::<N, true>(w, a, kb)
        }
    };
}

quant_kernels!(q4_1_q8_1, BlockQ8_1, q4_1_q8_1_avx2, q4_1_q8_1_vnni);
quant_kernels!(q4_0_q8_0, BlockQ8_0, q4_0_q8_0_avx2, q4_0_q8_0_vnni);
quant_kernels!(q8_0_q8_0, BlockQ8_0, q8_0_q8_0_avx2, q8_0_q8_0_vnni);

// ---------------------------------------------------------------------------------------------
// Two-plane activations (`BlockQ8x2`): per block d_w * d_a * (sum(q*hi) + sum(q*lo) / 254),
// plus m * s_a for Q4_1. The 1/254 is constant, so it is applied once per row, not per block.

/// How one weight block type yields its scale, min and 32 quants for the integer products.
pub(super) trait WeightBlock {
    const BYTES: usize;
    /// Quants are signed (Q4_0's q - 8, Q8_0's q). maddubs and vpdpbusd want an unsigned first
    /// operand, so (as ggml does) we multiply |q| by the activation carrying q's sign. A Q8_0
    /// weight of -128 (never written by ggml's quantizer) still works: |-128| as u8 is 128.
    const SIGNED: bool;
    /// value = d*q + m: the block adds m * s_a.
    const HAS_MIN: bool;
    /// [d, m, 0, 0] in f32 (m = 0 without a min term).
    unsafe fn dm(p: *const u8) -> __m128;
    /// The 32 quants, in element order: u8 0..15 (Q4_1) or i8.
    unsafe fn quants(p: *const u8) -> __m256i;
}

pub(super) struct Q4_1W;
pub(super) struct Q4_0W;
pub(super) struct Q8_0W;

/// The half at `p` as [f32, 0, 0, 0].
#[inline(always)]
unsafe fn f16_lane0(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const u16) as i32))
}

impl WeightBlock for Q4_1W {
    const BYTES: usize = Q4_1_BYTES;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        // d and m are adjacent halves, converted together.
        _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const i32)))
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8) -> __m256i {
        unpack_nibbles(p.add(4))
    }
}

impl WeightBlock for Q4_0W {
    const BYTES: usize = Q4_0_BYTES;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        f16_lane0(p)
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8) -> __m256i {
        _mm256_sub_epi8(unpack_nibbles(p.add(2)), _mm256_set1_epi8(8))
    }
}

impl WeightBlock for Q8_0W {
    const BYTES: usize = Q8_0_BYTES;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        f16_lane0(p)
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p.add(2) as *const __m256i)
    }
}

pub(super) struct Q5_0W;
pub(super) struct Q5_1W;

/// The 5th bits of a Q5_0/Q5_1 block (the little-endian u32 at `p`: bit j for element j) as 32
/// bytes, 0x10 where the bit is set: ggml's bytes_from_bits_32. Byte j gets byte j / 8 of the
/// u32 by a shuffle; OR-ing every bit but bit j % 8 leaves 0xff exactly when that bit is set.
#[inline(always)]
unsafe fn q5_high_bits(p: *const u8) -> __m256i {
    let bits = _mm256_set1_epi32(read_unaligned(p as *const i32));
    let spread = _mm256_shuffle_epi8(
        bits,
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

impl WeightBlock for Q5_0W {
    const BYTES: usize = Q5_0_BYTES;
    const SIGNED: bool = true;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        f16_lane0(p)
    }
    /// (nibble | 5th bit) - 16, in -16..16.
    #[inline(always)]
    unsafe fn quants(p: *const u8) -> __m256i {
        let q = _mm256_or_si256(unpack_nibbles(p.add(6)), q5_high_bits(p.add(2)));
        _mm256_sub_epi8(q, _mm256_set1_epi8(16))
    }
}

impl WeightBlock for Q5_1W {
    const BYTES: usize = Q5_1_BYTES;
    const SIGNED: bool = false;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn dm(p: *const u8) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const i32)))
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8) -> __m256i {
        _mm256_or_si256(unpack_nibbles(p.add(8)), q5_high_bits(p.add(4)))
    }
}

/// A signed weight type without a min (`W::SIGNED`, e.g. Q5_0) x Q8_0 activations, with the
/// sign trick of [`q4_0_q8_0`]: per block d * d_a * sum(q * a).
#[inline(always)]
unsafe fn wq_q8_0<W: WeightBlock, const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_0; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..kb {
        let wb = w.add(b * W::BYTES);
        prefetch_weights(wb);
        let dw = _mm256_broadcastss_ps(W::dm(wb));
        let x = W::quants(wb);
        let ax = _mm256_sign_epi8(x, x);
        for i in 0..N {
            let ab = a[i].add(b) as *const u8;
            let dd = _mm256_mul_ps(dw, f16_splat(ab));
            let y = _mm256_loadu_si256(ab.add(2) as *const __m256i);
            let s = mul_sum_u8_i8::<VNNI>(ax, _mm256_sign_epi8(y, x));
            acc[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[i]);
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]);
    }
    out
}

/// An unsigned weight type with a min (`W::HAS_MIN`, e.g. Q5_1) x Q8_1 activations, as
/// [`q4_1_q8_1`]: per block d * d_a * sum(q * a) + m * s_a.
#[inline(always)]
unsafe fn wq_q8_1<W: WeightBlock, const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_1; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    for b in 0..kb {
        let wb = w.add(b * W::BYTES);
        prefetch_weights(wb);
        let dm = W::dm(wb);
        let q = W::quants(wb);
        for i in 0..N {
            let ab = a[i].add(b);
            let ds = _mm_castsi128_ps(_mm_loadl_epi64(ab as *const __m128i));
            let p = _mm_mul_ps(dm, ds);
            let y = _mm256_loadu_si256((*ab).qs.as_ptr() as *const __m256i);
            let s = _mm256_cvtepi32_ps(mul_sum_u8_i8::<VNNI>(q, y));
            acc[i] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), s, acc[i]);
            acc_m[i] = _mm_add_ps(acc_m[i], p);
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m[i]));
    }
    out
}

#[inline(always)]
unsafe fn q5_0_q8_0<const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_0; N],
    kb: usize,
) -> [f32; N] {
    wq_q8_0::<Q5_0W, N, VNNI>(w, a, kb)
}

#[inline(always)]
unsafe fn q5_1_q8_1<const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_1; N],
    kb: usize,
) -> [f32; N] {
    wq_q8_1::<Q5_1W, N, VNNI>(w, a, kb)
}

quant_kernels!(q5_0_q8_0, BlockQ8_0, q5_0_q8_0_avx2, q5_0_q8_0_vnni);
quant_kernels!(q5_1_q8_1, BlockQ8_1, q5_1_q8_1_avx2, q5_1_q8_1_vnni);

/// [d_a, s_a, 0, 0]: a two-plane block's first 8 bytes.
#[inline(always)]
unsafe fn q8x2_ds(a: *const BlockQ8x2) -> __m128 {
    _mm_castsi128_ps(_mm_loadl_epi64(a as *const __m128i))
}

/// AVX2: the two planes' products are combined in integers, 254 * sum(q*hi) + sum(q*lo), by
/// the madd that widens maddubs' i16 pairs anyway (with 254 instead of 1 as its multiplier;
/// |i16 pair sum| <= 2 * 128 * 127, times 254 and summed over 4 pairs, stays below 2^25).
#[inline(always)]
unsafe fn wq_q8x2_avx2<W: WeightBlock, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    // Lane 1 collects m * s_a; lane 0 collects d_w * d_a, unused.
    let mut acc_m = [_mm_setzero_ps(); N];
    let lo_weight = _mm256_set1_epi16(Q8X2_LO_SCALE as i16);
    let ones = _mm256_set1_epi16(1);
    for b in 0..kb {
        let wb = w.add(b * W::BYTES);
        prefetch_weights(wb);
        let dm = W::dm(wb);
        let q = W::quants(wb);
        let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
        for i in 0..N {
            let ab = a[i].add(b);
            let p = _mm_mul_ps(dm, q8x2_ds(ab));
            let mut hi = _mm256_loadu_si256(addr_of!((*ab).hi) as *const __m256i);
            let mut lo = _mm256_loadu_si256(addr_of!((*ab).lo) as *const __m256i);
            if W::SIGNED {
                hi = _mm256_sign_epi8(hi, q);
                lo = _mm256_sign_epi8(lo, q);
            }
            let s = _mm256_add_epi32(
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, hi), lo_weight),
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, lo), ones),
            );
            acc[i] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(s), acc[i]);
            if W::HAS_MIN {
                acc_m[i] = _mm_add_ps(acc_m[i], p);
            }
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]) / Q8X2_LO_SCALE + _mm_cvtss_f32(_mm_movehdup_ps(acc_m[i]));
    }
    out
}

/// AVX-512 VNNI: one vpdpbusd per plane, 256 bits wide, and the planes' sums kept in two f32
/// accumulators (hi, and lo to be divided by 254 at the end). A single 512-bit vpdpbusd over
/// both planes would need fewer instructions, but 512-bit instructions close port 1's vector
/// units on Intel cores, and this loop is bound by vector throughput: it measured 10-40%
/// slower (Sapphire Rapids).
#[inline(always)]
unsafe fn wq_q8x2_vnni<W: WeightBlock, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    let mut acc_hi = [_mm256_setzero_ps(); N];
    let mut acc_lo = [_mm256_setzero_ps(); N];
    let mut acc_m = [_mm_setzero_ps(); N];
    let zero = _mm256_setzero_si256();
    for b in 0..kb {
        let wb = w.add(b * W::BYTES);
        prefetch_weights(wb);
        let dm = W::dm(wb);
        let q = W::quants(wb);
        let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
        for i in 0..N {
            let ab = a[i].add(b);
            let p = _mm_mul_ps(dm, q8x2_ds(ab));
            let dd = _mm256_broadcastss_ps(p);
            let mut hi = _mm256_loadu_si256(addr_of!((*ab).hi) as *const __m256i);
            let mut lo = _mm256_loadu_si256(addr_of!((*ab).lo) as *const __m256i);
            if W::SIGNED {
                hi = _mm256_sign_epi8(hi, q);
                lo = _mm256_sign_epi8(lo, q);
            }
            let sh = _mm256_dpbusd_epi32(zero, u, hi);
            let sl = _mm256_dpbusd_epi32(zero, u, lo);
            acc_hi[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sh), acc_hi[i]);
            acc_lo[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sl), acc_lo[i]);
            if W::HAS_MIN {
                acc_m[i] = _mm_add_ps(acc_m[i], p);
            }
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc_hi[i])
            + hsum256(acc_lo[i]) / Q8X2_LO_SCALE
            + _mm_cvtss_f32(_mm_movehdup_ps(acc_m[i]));
    }
    out
}

/// One weight row (`kb` blocks of `W` at `w`) against N tokens' two-plane activations
/// (`kb` blocks at each `a[i]`), AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8x2_avx2<W: WeightBlock, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    wq_q8x2_avx2::<W, N>(w, a, kb)
}

/// As [`q8x2_avx2`], on AVX-512 VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q8x2_vnni<W: WeightBlock, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    wq_q8x2_vnni::<W, N>(w, a, kb)
}

// ---------------------------------------------------------------------------------------------
// K-quant weights (super-blocks of 256, see `kquant`): one weight row against N tokens.
//
// Each super-block is read as 8 groups of 32 quants in element order, with one integer scale
// per 16 elements. A group's products are summed in pairs (maddubs), then the pairs of each
// 16 elements are multiplied by their scale as they are widened to i32 (madd, or vpdpwssd):
// the 16-element scales of Q6_K, Q3_K and Q2_K apply exactly, in integers, before any
// rounding (Q4_K and Q5_K repeat one scale for both halves).

/// One super-block's scales: (d, dmin) and an integer scale and min per 16 elements.
pub(super) struct KHeader {
    d: f32,
    dmin: f32,
    sc: [i16; 16],
    m: [i16; 16],
}

/// How one K-quant weight type yields its scales and its quants.
pub(super) trait KWeight {
    const BYTES: usize;
    /// Quants are signed (Q3_K, Q6_K): multiplied as |q| times the activation with q's sign.
    const SIGNED: bool;
    /// One min per 32 elements (Q4_K, Q5_K): dmin * m * (the activation block's sum).
    const MIN32: bool;
    /// One min per 16 elements (Q2_K): dmin * m * (the sum of those 16 activations).
    const MIN16: bool;
    unsafe fn header(p: *const u8) -> KHeader;
    /// Quants 32j..32j+32 of the super-block at `p`, as bytes in element order (offsets applied).
    unsafe fn quants(p: *const u8, j: usize) -> __m256i;
}

pub(super) struct Q2KW;
pub(super) struct Q3KW;
pub(super) struct Q4KW;
pub(super) struct Q5KW;
pub(super) struct Q6KW;

/// The 32 bytes at `p`, each shifted right by `shift` and masked to `mask`. The 16-bit shift
/// moves bits of a byte's neighbour into its top; the mask removes them.
#[inline(always)]
unsafe fn bits_at(p: *const u8, shift: usize, mask: i8) -> __m256i {
    let v = _mm256_loadu_si256(p as *const __m256i);
    let v = _mm256_srl_epi16(v, _mm_cvtsi32_si128(shift as i32));
    _mm256_and_si256(v, _mm256_set1_epi8(mask))
}

/// The 12 packed 6-bit scale bytes at `p`.
#[inline(always)]
unsafe fn scale_bytes(p: *const u8) -> [u8; K_SCALE_SIZE] {
    read_unaligned(p as *const [u8; K_SCALE_SIZE])
}

/// Q4_K/Q5_K's header: d, dmin at 0 and 2, the packed scales at 4.
#[inline(always)]
unsafe fn q4_k_header(p: *const u8) -> KHeader {
    let scales = scale_bytes(p.add(4));
    let mut h = KHeader {
        d: f16_at(p),
        dmin: f16_at(p.add(2)),
        sc: [0; 16],
        m: [0; 16],
    };
    for j in 0..8 {
        let (sc, m) = kquant::q4_k_scale_min(&scales, j);
        h.sc[2 * j] = sc as i16;
        h.sc[2 * j + 1] = sc as i16;
        h.m[2 * j] = m as i16;
        h.m[2 * j + 1] = m as i16;
    }
    h
}

impl KWeight for Q2KW {
    const BYTES: usize = 84;
    const SIGNED: bool = false;
    const MIN32: bool = false;
    const MIN16: bool = true;
    #[inline(always)]
    unsafe fn header(p: *const u8) -> KHeader {
        let scales = read_unaligned(p as *const [u8; 16]);
        KHeader {
            d: f16_at(p.add(80)),
            dmin: f16_at(p.add(82)),
            sc: scales.map(|s| (s & 0x0f) as i16),
            m: scales.map(|s| (s >> 4) as i16),
        }
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m256i {
        bits_at(p.add(16 + 32 * (j / 4)), 2 * (j % 4), 3)
    }
}

impl KWeight for Q3KW {
    const BYTES: usize = 110;
    const SIGNED: bool = true;
    const MIN32: bool = false;
    const MIN16: bool = false;
    #[inline(always)]
    unsafe fn header(p: *const u8) -> KHeader {
        let sc = kquant::q3_k_scales(&scale_bytes(p.add(96)));
        KHeader {
            d: f16_at(p.add(108)),
            dmin: 0.0,
            sc: sc.map(|s| s as i16),
            m: [0; 16],
        }
    }
    /// low 2 bits | (mask bit << 2), minus 4: low - 4 when the mask bit is clear.
    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m256i {
        let low = bits_at(p.add(32 + 32 * (j / 4)), 2 * (j % 4), 3);
        let high = bits_at(p, j, 1);
        let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
        _mm256_sub_epi8(q, _mm256_set1_epi8(4))
    }
}

impl KWeight for Q4KW {
    const BYTES: usize = 144;
    const SIGNED: bool = false;
    const MIN32: bool = true;
    const MIN16: bool = false;
    #[inline(always)]
    unsafe fn header(p: *const u8) -> KHeader {
        q4_k_header(p)
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m256i {
        bits_at(p.add(16 + 32 * (j / 2)), 4 * (j % 2), 0x0f)
    }
}

impl KWeight for Q5KW {
    const BYTES: usize = 176;
    const SIGNED: bool = false;
    const MIN32: bool = true;
    const MIN16: bool = false;
    #[inline(always)]
    unsafe fn header(p: *const u8) -> KHeader {
        q4_k_header(p)
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m256i {
        let low = bits_at(p.add(48 + 32 * (j / 2)), 4 * (j % 2), 0x0f);
        let high = bits_at(p.add(16), j, 1);
        _mm256_or_si256(low, _mm256_slli_epi16(high, 4))
    }
}

impl KWeight for Q6KW {
    const BYTES: usize = 210;
    const SIGNED: bool = true;
    const MIN32: bool = false;
    const MIN16: bool = false;
    #[inline(always)]
    unsafe fn header(p: *const u8) -> KHeader {
        let scales = read_unaligned(p.add(192) as *const [i8; 16]);
        KHeader {
            d: f16_at(p.add(208)),
            dmin: 0.0,
            sc: scales.map(|s| s as i16),
            m: [0; 16],
        }
    }
    #[inline(always)]
    unsafe fn quants(p: *const u8, j: usize) -> __m256i {
        let (h, s) = (j / 4, j % 4);
        let low = bits_at(p.add(64 * h + 32 * (s & 1)), 4 * (s / 2), 0x0f);
        let high = bits_at(p.add(128 + 32 * h), 2 * s, 3);
        let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
        _mm256_sub_epi8(q, _mm256_set1_epi8(32))
    }
}

/// A super-block's 16 scales (or mins) as bytes in both 128-bit lanes, for [`group_scales`].
/// Every K-quant's scales and mins fit i8 (Q6_K's are i8; the others are 4- or 6-bit).
#[inline(always)]
unsafe fn scale_source(v: &[i16; 16]) -> __m256i {
    let b: [i8; 16] = v.map(|x| x as i8);
    _mm256_broadcastsi128_si256(_mm_loadu_si128(b.as_ptr() as *const __m128i))
}

/// The scales (or mins) of group j, elements 32j..32j+32, as 16 i16 lanes in maddubs' pairs:
/// v[2j] for elements 0..16 (lanes 0..8) and v[2j+1] for 16..32 (lanes 8..16), from
/// [`scale_source`]. One byte shuffle puts each into the high byte of its lanes (a control
/// byte with bit 7 set writes 0), and the arithmetic shift sign-extends them. Times 254 they
/// still fit i16: |sc * 254| <= 128 * 254 = 32512.
#[inline(always)]
unsafe fn group_scales(src: __m256i, j: usize) -> __m256i {
    let (z, lo, hi) = (-128i8, 0i8, 1i8);
    #[rustfmt::skip]
    let base = _mm256_setr_epi8(
        z, lo, z, lo, z, lo, z, lo, z, lo, z, lo, z, lo, z, lo,
        z, hi, z, hi, z, hi, z, hi, z, hi, z, hi, z, hi, z, hi,
    );
    let ctrl = _mm256_add_epi8(base, _mm256_set1_epi8(2 * j as i8));
    _mm256_srai_epi16(_mm256_shuffle_epi8(src, ctrl), 8)
}

/// acc + sum over each 4 elements of u * s times the lane's scale (from [`group_scales`]), in 8
/// i32 lanes (lanes 0..4 hold elements 0..16): maddubs' i16 pairs (|pair| <= 2 * 32 * 127 =
/// 8128, far from saturating) multiplied by the scale as they widen, by madd, or with VNNI by
/// vpdpwssd, which also adds. (vpdpbusd would need a 10-cycle vpmulld for the scales
/// afterwards: measured 1.3-1.5x slower.)
#[inline(always)]
unsafe fn scaled_sums<const VNNI: bool>(
    acc: __m256i,
    u: __m256i,
    s: __m256i,
    scales: __m256i,
) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, s);
    if VNNI {
        _mm256_dpwssd_epi32(acc, pairs, scales)
    } else {
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales))
    }
}

/// Prefetches the weight bytes [`WEIGHT_PREFETCH_BYTES`] past each cache line of a super-block.
#[inline(always)]
unsafe fn prefetch_super_block(p: *const u8, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        prefetch_weights(p.wrapping_add(off));
        off += 64;
    }
}

/// K-quant weights x two-plane activations, as [`super::reference::dot_kquant_q8x2`]: per
/// group of 32, d * d_a * (254 * S_hi + S_lo) / 254 with S_p = sum of scaled products with
/// plane p, joined in integers (|254 * S_hi| <= 254 * 2 * 16 * 32 * 127 * 128 < 2^31 / 4),
/// minus the min terms.
#[inline(always)]
unsafe fn kq_q8x2<W: KWeight, const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_min = [0f32; N];
    let lo_weight = _mm256_set1_epi16(Q8X2_LO_SCALE as i16);
    let ones = _mm256_set1_epi8(1);
    for sb in 0..kb / 8 {
        let wb = w.add(sb * W::BYTES);
        prefetch_super_block(wb, W::BYTES);
        let h = W::header(wb);
        let (sc_src, m_src) = (scale_source(&h.sc), scale_source(&h.m));
        for j in 0..8 {
            let q = W::quants(wb, j);
            let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
            let sc_lo = group_scales(sc_src, j);
            let sc_hi = _mm256_mullo_epi16(sc_lo, lo_weight);
            let m_lo = group_scales(m_src, j);
            let m_hi = _mm256_mullo_epi16(m_lo, lo_weight);
            let dmin_m = h.dmin * h.m[2 * j] as f32;
            for i in 0..N {
                let ab = a[i].add(8 * sb + j);
                let da = (*ab).d;
                let mut hi = _mm256_loadu_si256(addr_of!((*ab).hi) as *const __m256i);
                let mut lo = _mm256_loadu_si256(addr_of!((*ab).lo) as *const __m256i);
                if W::MIN16 {
                    let ms = scaled_sums::<VNNI>(_mm256_setzero_si256(), ones, hi, m_hi);
                    let ms = scaled_sums::<VNNI>(ms, ones, lo, m_lo);
                    let dm = _mm256_set1_ps(h.dmin * da);
                    acc[i] = _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(ms), acc[i]);
                }
                if W::SIGNED {
                    hi = _mm256_sign_epi8(hi, q);
                    lo = _mm256_sign_epi8(lo, q);
                }
                let s = scaled_sums::<VNNI>(_mm256_setzero_si256(), u, hi, sc_hi);
                let s = scaled_sums::<VNNI>(s, u, lo, sc_lo);
                let dd = _mm256_set1_ps(h.d * da);
                acc[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[i]);
                if W::MIN32 {
                    acc_min[i] += dmin_m * (*ab).s;
                }
            }
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]) / Q8X2_LO_SCALE - acc_min[i];
    }
    out
}

/// K-quant weights x Q8_K activations, as [`super::reference::dot_kquant_q8_k`]: per
/// super-block d * d_a * sum(sc * q * a) (integers, |sum| < 2^25) - dmin * d_a * sum(m * bsum).
#[inline(always)]
unsafe fn kq_q8k<W: KWeight, const N: usize, const VNNI: bool>(
    w: *const u8,
    a: [*const BlockQ8_K; N],
    kb: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut acc_min = [0f32; N];
    for sb in 0..kb / 8 {
        let wb = w.add(sb * W::BYTES);
        prefetch_super_block(wb, W::BYTES);
        let h = W::header(wb);
        let sc_src = scale_source(&h.sc);
        let mut isum = [_mm256_setzero_si256(); N];
        for j in 0..8 {
            let q = W::quants(wb, j);
            let u = if W::SIGNED { _mm256_sign_epi8(q, q) } else { q };
            let sc = group_scales(sc_src, j);
            for i in 0..N {
                let ab = a[i].add(sb);
                let mut y = _mm256_loadu_si256((*ab).qs.as_ptr().add(32 * j) as *const __m256i);
                if W::SIGNED {
                    y = _mm256_sign_epi8(y, q);
                }
                isum[i] = scaled_sums::<VNNI>(isum[i], u, y, sc);
            }
        }
        for i in 0..N {
            let ab = a[i].add(sb);
            let da = (*ab).d;
            let dd = _mm256_set1_ps(h.d * da);
            acc[i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum[i]), acc[i]);
            if W::MIN16 || W::MIN32 {
                let bsums = &(*ab).bsums;
                let msum: i32 = (0..16).map(|k| h.m[k] as i32 * bsums[k] as i32).sum();
                acc_min[i] += h.dmin * da * msum as f32;
            }
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        out[i] = hsum256(acc[i]) - acc_min[i];
    }
    out
}

/// One K-quant weight row (`kb` / 8 super-blocks of `W` at `w`) against N tokens' two-plane
/// activations (`kb` blocks at each `a[i]`), AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn kq_q8x2_avx2<W: KWeight, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    kq_q8x2::<W, N, false>(w, a, kb)
}

/// As [`kq_q8x2_avx2`], on AVX-512 VNNI (256-bit vpdpwssd).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn kq_q8x2_vnni<W: KWeight, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8x2; N],
    kb: usize,
) -> [f32; N] {
    kq_q8x2::<W, N, true>(w, a, kb)
}

/// One K-quant weight row (`kb` / 8 super-blocks of `W` at `w`) against N tokens' Q8_K
/// activations (`kb` / 8 blocks at each `a[i]`), AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn kq_q8k_avx2<W: KWeight, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8_K; N],
    kb: usize,
) -> [f32; N] {
    kq_q8k::<W, N, false>(w, a, kb)
}

/// As [`kq_q8k_avx2`], on AVX-512 VNNI (256-bit vpdpwssd).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn kq_q8k_vnni<W: KWeight, const N: usize>(
    w: *const u8,
    a: [*const BlockQ8_K; N],
    kb: usize,
) -> [f32; N] {
    kq_q8k::<W, N, true>(w, a, kb)
}

// ---------------------------------------------------------------------------------------------
// Small vector helpers for attention and norms.

/// y (n) += a * x (n).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        let r = _mm256_fmadd_ps(av, _mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)));
        _mm256_storeu_ps(yp.add(i), r);
        i += 8;
    }
    while i < n {
        *yp.add(i) += a * *xp.add(i);
        i += 1;
    }
}

/// x (n) *= a.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scale_avx2(a: f32, x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(av, _mm256_loadu_ps(p.add(i))));
        i += 8;
    }
    while i < n {
        *p.add(i) *= a;
        i += 1;
    }
}

/// e^x for 8 lanes, within 2 ulp of `f32::exp` on [-87.3, 88.7]; exactly 0 below (where the
/// true value is subnormal or a softmax mask's -inf), +inf above.
/// Cephes' expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact r), a degree-5
/// polynomial for e^r, and 2^n built in the exponent bits.
#[inline(always)]
unsafe fn exp256(x: __m256) -> __m256 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MIN_X: f32 = -87.336_55; // ln(f32::MIN_POSITIVE)
    const MAX_X: f32 = 88.722_83; // ln(f32::MAX)
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(MIN_X)),
        _mm256_set1_ps(MAX_X),
    );
    let n = _mm256_round_ps(
        _mm256_mul_ps(xc, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
    );
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let e_r = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    // 2^n: n in [-126, 128]; n = 128 (x near MAX_X) is split as 2^127 * 2 to stay finite.
    let ni = _mm256_cvtps_epi32(n);
    let half_n = _mm256_srai_epi32(ni, 1);
    let pow_a = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(half_n, _mm256_set1_epi32(127)),
        23,
    ));
    let pow_b = _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_add_epi32(_mm256_sub_epi32(ni, half_n), _mm256_set1_epi32(127)),
        23,
    ));
    let y = _mm256_mul_ps(_mm256_mul_ps(e_r, pow_a), pow_b);
    let y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps(x, _mm256_set1_ps(MAX_X), _CMP_GT_OQ),
    );
    _mm256_and_ps(y, _mm256_cmp_ps(x, _mm256_set1_ps(MIN_X), _CMP_GE_OQ))
}

/// x (n) = softmax(x): e^(x - max) / sum. Needs at least one finite value.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn softmax_avx2(x: &mut [f32]) {
    let n = x.len();
    let p = x.as_mut_ptr();
    let mut i = 0;
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    while i + 8 <= n {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(p.add(i)));
        i += 8;
    }
    let mut max = hmax256(vmax);
    for v in &x[i..] {
        max = max.max(*v);
    }
    let mv = _mm256_set1_ps(max);
    let mut vsum = _mm256_setzero_ps();
    i = 0;
    while i + 8 <= n {
        let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), mv));
        _mm256_storeu_ps(p.add(i), e);
        vsum = _mm256_add_ps(vsum, e);
        i += 8;
    }
    let mut sum = hsum256(vsum);
    while i < n {
        let e = (*p.add(i) - max).exp();
        *p.add(i) = e;
        sum += e;
        i += 1;
    }
    scale_avx2(1.0 / sum, x);
}

// ---------------------------------------------------------------------------------------------
// Attention of one head over a block of queries (see `super::attend_block`). Every row's
// arithmetic is fixed by the head size alone: the same dot per score, the softmax over exactly
// its visible scores, one FMA chain per output element in the order of the keys. So a row's
// output is bit for bit the same whichever rows share the block (one decode token, a chunk of
// a prompt), which is what makes a reused prefix cache exact.

/// f32 lanes of one register width, for the kernels written once for both widths.
trait F32Lanes: Copy {
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// a * b + self, rounded once.
    unsafe fn fmadd(self, a: Self, b: Self) -> Self;
    /// The sum of the lanes, in a fixed order.
    unsafe fn reduce(self) -> f32;
    /// [`reduce`](Self::reduce) of each of 4 x 4 registers, bit for bit.
    #[inline(always)]
    unsafe fn reduce_4x4(v: &[[Self; 4]; 4]) -> [[f32; 4]; 4] {
        v.map(|row| row.map(|x| x.reduce()))
    }
    /// `N` elements of a float row, widened to f32.
    unsafe fn load_row<R: FloatRow>(p: *const u8) -> Self;
}

impl F32Lanes for __m256 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn fmadd(self, a: Self, b: Self) -> Self {
        _mm256_fmadd_ps(a, b, self)
    }
    #[inline(always)]
    unsafe fn reduce(self) -> f32 {
        hsum256(self)
    }
    #[inline(always)]
    unsafe fn load_row<R: FloatRow>(p: *const u8) -> Self {
        R::load8(p)
    }
}

impl F32Lanes for __m512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        _mm512_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn fmadd(self, a: Self, b: Self) -> Self {
        _mm512_fmadd_ps(a, b, self)
    }
    /// Halves, then [`hsum256`]'s tree: lanes i + i+8, then + i+4, + i+2, + i+1.
    #[inline(always)]
    unsafe fn reduce(self) -> f32 {
        let hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(self, self, 0xEE));
        hsum256(_mm256_add_ps(_mm512_castps512_ps256(self), hi))
    }
    /// The same tree for 16 registers at once, transposing as it adds: each level's adds pair
    /// the same lanes as [`reduce`](Self::reduce)'s, so every sum is bit for bit the same, in 15
    /// adds instead of 16 x 4 (and 16 x 4 shuffles fewer).
    #[inline(always)]
    unsafe fn reduce_4x4(v: &[[Self; 4]; 4]) -> [[f32; 4]; 4] {
        let p: [__m512; 16] = std::array::from_fn(|i| v[i / 4][i % 4]);
        // a_i = x_i + x_{i+8}: pairs 2k, 2k+1 in the two halves of l1[k].
        let l1: [__m512; 8] = std::array::from_fn(|k| {
            let (a, b) = (p[2 * k], p[2 * k + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4(a, b, 0x44),
                _mm512_shuffle_f32x4(a, b, 0xEE),
            )
        });
        // b_i = a_i + a_{i+4}: quarter j of l2[m] is pair 4m + j.
        let l2: [__m512; 4] = std::array::from_fn(|m| {
            let (a, b) = (l1[2 * m], l1[2 * m + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4(a, b, 0x88),
                _mm512_shuffle_f32x4(a, b, 0xDD),
            )
        });
        // c_i = b_i + b_{i+2}: quarter j of l3[u] is (c0, c1) of pairs 8u + j, 8u + 4 + j.
        let l3: [__m512; 2] = std::array::from_fn(|u| {
            let (a, b) = (l2[2 * u], l2[2 * u + 1]);
            _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE))
        });
        // d = c0 + c1: lane 4j + k is pair 4k + j.
        let d = _mm512_add_ps(
            _mm512_shuffle_ps(l3[0], l3[1], 0x88),
            _mm512_shuffle_ps(l3[0], l3[1], 0xDD),
        );
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), d);
        std::array::from_fn(|t| std::array::from_fn(|r| lanes[4 * r + t]))
    }
    #[inline(always)]
    unsafe fn load_row<R: FloatRow>(p: *const u8) -> Self {
        R::load16(p)
    }
}

/// Queries whose sums share each value load.
const ATTEND_QUERIES: usize = 4;

/// Scores of `Q` queries from i0 against `K` keys from j0 into probs (M, NP), scaled.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn score_tile<V: F32Lanes, const Q: usize, const K: usize>(
    q: &[f32],
    q_stride: usize,
    keys: &[f32],
    hs: usize,
    i0: usize,
    j0: usize,
    scale: f32,
    probs: &mut [f32],
) {
    let np = keys.len() / hs;
    let (qp, kp) = (q.as_ptr(), keys.as_ptr() as *const u8);
    let d = float_dots::<V, F32Row, Q, K>(
        std::array::from_fn(|r| kp.add((j0 + r) * hs * 4)),
        std::array::from_fn(|t| qp.add((i0 + t) * q_stride)),
        hs,
    );
    for (t, row) in d.iter().enumerate() {
        let dst = &mut probs[(i0 + t) * np + j0..(i0 + t) * np + j0 + K];
        for (p, &s) in dst.iter_mut().zip(row) {
            *p = s * scale;
        }
    }
}

/// The block's scores and softmax: tiles of `QT` queries x `KT` keys through [`float_dots`]
/// (each score is the one-query dot, bit for bit) over the keys some query of the tile sees;
/// then, row by row, 0 outside the visible keys and the softmax over them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_scores<V: F32Lanes, const QT: usize, const KT: usize>(
    q: &[f32],
    q_stride: usize,
    keys: &[f32],
    hs: usize,
    visible: &[std::ops::Range<usize>],
    scale: f32,
    probs: &mut [f32],
) {
    let (m, np) = (visible.len(), keys.len() / hs);
    debug_assert!((m - 1) * q_stride + hs <= q.len() && visible.iter().all(|v| v.end <= np));
    let mut i0 = 0;
    while i0 < m {
        let qn = QT.min(m - i0);
        let rows = &visible[i0..i0 + qn];
        let hi = rows.iter().map(|v| v.end).max().unwrap_or(0);
        let mut j0 = rows.iter().map(|v| v.start).min().unwrap_or(0);
        while j0 < hi {
            let full = j0 + KT <= hi;
            macro_rules! tile {
                ($q:literal) => {
                    if full {
                        score_tile::<V, $q, KT>(q, q_stride, keys, hs, i0, j0, scale, probs)
                    } else {
                        score_tile::<V, $q, 1>(q, q_stride, keys, hs, i0, j0, scale, probs)
                    }
                };
            }
            match qn {
                4 => tile!(4),
                3 => tile!(3),
                2 => tile!(2),
                _ => tile!(1),
            }
            j0 += if full { KT } else { 1 };
        }
        i0 += qn;
    }
    for (row, vis) in probs.chunks_exact_mut(np).zip(visible) {
        row[..vis.start].fill(0.0);
        row[vis.end..].fill(0.0);
        softmax_avx2(&mut row[vis.clone()]);
    }
}

/// out (M, HS) = probs (M, NP) @ values (NP, HS): `Q` queries x `W` registers of each output row
/// held in registers while the keys of any of the `Q` go by (a key a query does not see has
/// p = 0, and fma(0, v, s) = s: the sum starts at +0 and never becomes -0).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_values_tile<V: F32Lanes, const Q: usize, const W: usize>(
    probs: &[f32],
    np: usize,
    values: &[f32],
    hs: usize,
    i0: usize,
    d0: usize,
    keys: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let mut acc = [[V::zero(); W]; Q];
    let vp = values.as_ptr().add(d0);
    let pp = probs.as_ptr().add(i0 * np);
    for j in keys {
        let mut v = [V::zero(); W];
        for (c, x) in v.iter_mut().enumerate() {
            *x = V::load(vp.add(j * hs + c * V::N));
        }
        for (t, a) in acc.iter_mut().enumerate() {
            let p = V::splat(*pp.add(t * np + j));
            for (s, &x) in a.iter_mut().zip(&v) {
                *s = s.fmadd(p, x);
            }
        }
    }
    let op = out.as_mut_ptr().add(i0 * hs + d0);
    for (t, a) in acc.iter().enumerate() {
        for (c, s) in a.iter().enumerate() {
            s.store(op.add(t * hs + c * V::N));
        }
    }
}

/// [`weighted_values_tile`] for `q` (1..=4) queries from i0 and `w` (1 or 4) registers from d0.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn weighted_values_tile_of<V: F32Lanes>(
    q: usize,
    w: usize,
    probs: &[f32],
    np: usize,
    values: &[f32],
    hs: usize,
    i0: usize,
    d0: usize,
    keys: std::ops::Range<usize>,
    out: &mut [f32],
) {
    macro_rules! tile {
        ($q:literal, $w:literal) => {
            weighted_values_tile::<V, $q, $w>(probs, np, values, hs, i0, d0, keys, out)
        };
    }
    match (q, w) {
        (4, 4) => tile!(4, 4),
        (3, 4) => tile!(3, 4),
        (2, 4) => tile!(2, 4),
        (1, 4) => tile!(1, 4),
        (4, _) => tile!(4, 1),
        (3, _) => tile!(3, 1),
        (2, _) => tile!(2, 1),
        _ => tile!(1, 1),
    }
}

/// out (M, HS) = probs (M, NP) @ values (NP, HS), each element one FMA chain over the keys in
/// order; the last HS mod N elements of a row in scalar multiply-adds.
#[inline(always)]
unsafe fn weighted_values<V: F32Lanes>(
    probs: &[f32],
    values: &[f32],
    hs: usize,
    visible: &[std::ops::Range<usize>],
    out: &mut [f32],
) {
    let (m, np) = (visible.len(), probs.len() / visible.len());
    let wide = hs / V::N * V::N;
    let mut i0 = 0;
    while i0 < m {
        let q = ATTEND_QUERIES.min(m - i0);
        let rows = &visible[i0..i0 + q];
        let keys = rows.iter().map(|v| v.start).min().unwrap_or(0)
            ..rows.iter().map(|v| v.end).max().unwrap_or(0);
        let mut d0 = 0;
        while d0 < wide {
            let w = if wide - d0 >= 4 * V::N { 4 } else { 1 };
            weighted_values_tile_of::<V>(q, w, probs, np, values, hs, i0, d0, keys.clone(), out);
            d0 += w * V::N;
        }
        for t in i0..i0 + q {
            for d in wide..hs {
                let mut s = 0f32;
                for j in keys.clone() {
                    s += probs[t * np + j] * values[j * hs + d];
                }
                out[t * hs + d] = s;
            }
        }
        i0 += q;
    }
}

/// One head's attention for a block of queries, 8 lanes wide.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attend_block_avx2(
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
    attend_scores::<__m256, 2, 4>(q, q_stride, keys, hs, visible, scale, probs);
    weighted_values::<__m256>(probs, values, hs, visible, out);
}

/// One head's attention for a block of queries, 16 lanes wide.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attend_block_avx512(
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
    attend_scores::<__m512, 4, 4>(q, q_stride, keys, hs, visible, scale, probs);
    weighted_values::<__m512>(probs, values, hs, visible, out);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI: weight panels with rows in lanes, for every T.
//
// The row kernels above spend most of their work per (row, block, token) on float scaling:
// convert 8 partial sums, multiply, add. Here 16 rows are repacked so that one vpdpbusd adds
// 4 elements of each of 16 rows into 16 lanes, with the activation's 4 bytes broadcast; after
// 8 of them each lane holds its row's exact integer block sum, and one convert and one FMA
// scale all 16 rows at once. A model's matrices are packed once, at load (generation on them
// measured 1.5x the row kernels' tokens/s); others are packed per band and call when T is more
// than a few tokens, which amortizes the packing.

/// Rows per panel: the i32 lanes of one zmm register.
pub(super) const PANEL_ROWS: usize = 16;

/// Bytes of one block column of byte quants: 8 groups of 4 elements x 16 rows.
const PANEL_BLOCK_BYTES: usize = QK * PANEL_ROWS;

/// Up to 16 weight rows, packed. Rows past the matrix's end are zero.
///
/// For each block column b (32 elements of every row), the quants of 8 groups g of 4 elements:
/// element 4g+e of row j is byte i = 4j+e of group g, as u8 with the type's offset added
/// ([`PanelType`]). They are stored in [`PanelType::bits`] bits, [`PanelType::column_bytes`] per
/// column, so that a panel is about as large as the rows it holds:
/// - 8 bits: group g's 64 bytes at 64g;
/// - 2 bits: byte i of chunk c (bytes 64c..64c+64, c < 2) holds group c + 2s at bits
///   2s..2s+2, for s < 4;
/// - 4 bits: byte i of chunk c (bytes 64c..64c+64, c < 4) holds group c in its low nibble and
///   group c+4 in its high nibble;
/// - 5 bits: the low 4 bits as for 4, then at 256 + 8g the u64 whose bit i is bit 4 of group
///   g's byte i (a mask register: one masked add restores it);
/// - 6 bits: the low 4 bits as for 4, then at 256 + 64c (c < 2) byte i holds bits 4..6 of group
///   c + 2s at bits 2s..2s+2, for s < 4.
///
/// Scales are kept as the file has them, so a panel holds about as many bytes as its rows:
/// the f16 block scales (and mins) of the 32-element types, and for the K-quants the f16
/// super-block scales with the integer scale (and min) of each group. The kernels multiply
/// them out per block column, with the float operations of the row kernels.
#[derive(Default)]
pub(super) struct Panel {
    /// (kb, column bytes): the quants, as above.
    q: Vec<u8>,
    /// f16 bits. 32-element types: (kb, 16), each row's block scale d. K-quants: (kb / 8, 16),
    /// each row's super-block scale d.
    d: Vec<u16>,
    /// f16 bits, types with a min only (empty otherwise). 32-element types: (kb, 16), each
    /// row's block min m. K-quants: (kb / 8, 16), each row's super-block dmin.
    m: Vec<u16>,
    /// K-quants: (kb, 16), each row's integer scale of the group (of its elements 0..16 where
    /// scales change every 16: Q6_K, Q3_K, Q2_K), as i8; Q2_K keeps its byte sc | m << 4.
    sc: Vec<i8>,
    /// Q6_K, Q3_K and Q2_K: (kb, 16), as `sc` for elements 16..32 of each row's group.
    sc2: Vec<i8>,
    /// Q4_K and Q5_K: (kb, 16), each row's integer min of the group.
    mn: Vec<i8>,
}

impl Panel {
    /// Heap bytes the panel holds.
    pub(super) fn bytes(&self) -> usize {
        let halves = 2 * (self.d.capacity() + self.m.capacity());
        self.q.capacity() + halves + self.sc.capacity() + self.sc2.capacity() + self.mn.capacity()
    }
}

/// The weight types a panel holds, with the offset their u8 storage adds to q (named as GGML
/// names them).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PanelType {
    /// value = d*q + m.
    Q4_1,
    /// value = d*(q - 8).
    Q4_0,
    /// value = d*q, stored as q + 128.
    Q8_0,
    /// value = d*q + m, q in 0..32.
    Q5_1,
    /// value = d*(q - 16).
    Q5_0,
    /// Q4_K: each group of 32 packed like a Q4_1 block with d = d * sc and m = -dmin * m (its
    /// 6-bit scale and min); the rounding of those two products is the only difference from
    /// the row kernels.
    Q4_K,
    /// Q5_K, as [`PanelType::Q4_K`] with q in 0..32.
    Q5_K,
    /// Q6_K: q + 32 in 0..64 (offset 32), d = d * sc of elements 0..16 of each group of 32,
    /// d2 = d * sc of 16..32.
    Q6_K,
    /// Q3_K: q + 4 in 0..8 (offset 4), scales as [`PanelType::Q6_K`].
    Q3_K,
    /// Q2_K: q in 0..4, a scale and a min per 16 elements: value = d * sc - dmin * m, with
    /// `sc` and `sc2` holding the file's bytes sc | m << 4 of each group's two halves.
    Q2_K,
}

impl PanelType {
    fn offset(self) -> i32 {
        match self {
            PanelType::Q4_1
            | PanelType::Q5_1
            | PanelType::Q4_K
            | PanelType::Q5_K
            | PanelType::Q2_K => 0,
            PanelType::Q4_0 => 8,
            PanelType::Q5_0 => 16,
            PanelType::Q6_K => 32,
            PanelType::Q3_K => 4,
            PanelType::Q8_0 => 128,
        }
    }

    /// value = d*q + m: the activation block's sum s_a carries the min term.
    pub(super) fn has_min(self) -> bool {
        matches!(
            self,
            PanelType::Q4_1 | PanelType::Q5_1 | PanelType::Q4_K | PanelType::Q5_K | PanelType::Q2_K
        )
    }

    /// The kernels read the activation blocks' [`ActSum`]s: to undo an offset, or for mins
    /// per 16 elements (Q2_K). The other types with a min take it from the blocks' float sum.
    pub(super) fn reads_sums(self) -> bool {
        !self.has_min() || self.scale_per_16()
    }

    /// A K-quant: rows hold super-blocks of 256, packed as 8 groups of 32.
    pub(super) fn is_k(self) -> bool {
        matches!(
            self,
            PanelType::Q4_K | PanelType::Q5_K | PanelType::Q6_K | PanelType::Q3_K | PanelType::Q2_K
        )
    }

    /// Scales change every 16 elements (`Panel::sc2`).
    fn scale_per_16(self) -> bool {
        matches!(self, PanelType::Q6_K | PanelType::Q3_K | PanelType::Q2_K)
    }

    /// Bits each stored quant (offset applied) needs: how a [`Panel`] lays them out.
    pub(super) fn bits(self) -> usize {
        match self {
            PanelType::Q2_K => 2,
            PanelType::Q4_1 | PanelType::Q4_0 | PanelType::Q4_K | PanelType::Q3_K => 4,
            PanelType::Q5_1 | PanelType::Q5_0 | PanelType::Q5_K => 5,
            PanelType::Q6_K => 6,
            PanelType::Q8_0 => 8,
        }
    }

    /// Bytes of quants per block column of a [`Panel`] (16 rows x 32 elements).
    pub(super) fn column_bytes(self) -> usize {
        column_bytes(self.bits())
    }
}

/// Bytes of quants per block column stored in `bits` bits (see [`Panel`]).
const fn column_bytes(bits: usize) -> usize {
    match bits {
        2 => 128,
        4 => 256,
        5 => 256 + 64,
        6 => 256 + 128,
        _ => PANEL_BLOCK_BYTES,
    }
}

/// Stores one block column of byte quants (`src`: 8 groups x 64 bytes, values below
/// 2^`bits`) at `dst` in the layout of `bits` ([`Panel`]).
#[inline(always)]
unsafe fn compress_column(bits: usize, src: *const u8, dst: *mut u8) {
    let group = |g: usize| _mm512_loadu_si512(src.add(64 * g) as *const _);
    if bits == 8 {
        std::ptr::copy_nonoverlapping(src, dst, PANEL_BLOCK_BYTES);
        return;
    }
    if bits == 2 {
        for c in 0..2 {
            let v = _mm512_or_si512(
                _mm512_or_si512(group(c), _mm512_slli_epi16::<2>(group(c + 2))),
                _mm512_or_si512(
                    _mm512_slli_epi16::<4>(group(c + 4)),
                    _mm512_slli_epi16::<6>(group(c + 6)),
                ),
            );
            _mm512_storeu_si512(dst.add(64 * c) as *mut _, v);
        }
        return;
    }
    let low = _mm512_set1_epi8(0x0f);
    for c in 0..4 {
        let high = _mm512_slli_epi16::<4>(_mm512_and_si512(group(c + 4), low));
        let v = _mm512_or_si512(_mm512_and_si512(group(c), low), high);
        _mm512_storeu_si512(dst.add(64 * c) as *mut _, v);
    }
    if bits == 5 {
        for g in 0..8 {
            let bit4 = _mm512_test_epi8_mask(group(g), _mm512_set1_epi8(0x10));
            std::ptr::write_unaligned(dst.add(256 + 8 * g) as *mut u64, bit4);
        }
    }
    if bits == 6 {
        for c in 0..2 {
            let three = _mm512_set1_epi8(3);
            let top = |g: usize| _mm512_and_si512(_mm512_srli_epi16::<4>(group(g)), three);
            let h = _mm512_or_si512(
                _mm512_or_si512(top(c), _mm512_slli_epi16::<2>(top(c + 2))),
                _mm512_or_si512(
                    _mm512_slli_epi16::<4>(top(c + 4)),
                    _mm512_slli_epi16::<6>(top(c + 6)),
                ),
            );
            _mm512_storeu_si512(dst.add(256 + 64 * c) as *mut _, h);
        }
    }
}

/// The 8 groups of one block column at `q` (stored in `BITS` bits, [`Panel`]) as bytes.
#[inline(always)]
unsafe fn panel_quants<const BITS: usize>(q: *const u8) -> [__m512i; 8] {
    let load = |k: usize| _mm512_loadu_si512(q.add(64 * k) as *const _);
    let mut w = [_mm512_setzero_si512(); 8];
    if BITS == 8 {
        for (g, wg) in w.iter_mut().enumerate() {
            *wg = load(g);
        }
        return w;
    }
    if BITS == 2 {
        let three = _mm512_set1_epi8(3);
        for c in 0..2 {
            let v = load(c);
            w[c] = _mm512_and_si512(v, three);
            w[c + 2] = _mm512_and_si512(_mm512_srli_epi16::<2>(v), three);
            w[c + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), three);
            w[c + 6] = _mm512_and_si512(_mm512_srli_epi16::<6>(v), three);
        }
        return w;
    }
    let low = _mm512_set1_epi8(0x0f);
    for c in 0..4 {
        let v = load(c);
        w[c] = _mm512_and_si512(v, low);
        w[c + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
    }
    if BITS == 5 {
        let sixteen = _mm512_set1_epi8(0x10);
        for (g, wg) in w.iter_mut().enumerate() {
            let bit4: __mmask64 = read_unaligned(q.add(256 + 8 * g) as *const u64);
            *wg = _mm512_mask_add_epi8(*wg, bit4, *wg, sixteen);
        }
    }
    if BITS == 6 {
        let m = _mm512_set1_epi8(0x30);
        for c in 0..2 {
            let h = load(4 + c);
            let or = |w: __m512i, top: __m512i| _mm512_or_si512(w, _mm512_and_si512(top, m));
            w[c] = or(w[c], _mm512_slli_epi16::<4>(h));
            w[c + 2] = or(w[c + 2], _mm512_slli_epi16::<2>(h));
            w[c + 4] = or(w[c + 4], h);
            w[c + 6] = or(w[c + 6], _mm512_srli_epi16::<2>(h));
        }
    }
    w
}

/// Packs `rows` (at most 16 weight rows of `kb` blocks of type `ty`) into `panel`; `bytes` is
/// scratch (the byte quants before [`compress_column`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn pack_panel(
    ty: PanelType,
    rows: &[&[u8]],
    kb: usize,
    panel: &mut Panel,
    bytes: &mut Vec<u8>,
) {
    assert!(rows.len() <= PANEL_ROWS);
    let block_bytes = match ty {
        PanelType::Q4_1 => Q4_1_BYTES,
        PanelType::Q4_0 => Q4_0_BYTES,
        PanelType::Q8_0 => Q8_0_BYTES,
        PanelType::Q5_1 => Q5_1_BYTES,
        PanelType::Q5_0 => Q5_0_BYTES,
        PanelType::Q4_K => Q4KW::BYTES,
        PanelType::Q5_K => Q5KW::BYTES,
        PanelType::Q6_K => Q6KW::BYTES,
        PanelType::Q3_K => Q3KW::BYTES,
        PanelType::Q2_K => Q2KW::BYTES,
    };
    // Weight blocks per row: kb groups of 32, or kb / 8 super-blocks.
    let row_blocks = if ty.is_k() { kb / 8 } else { kb };
    bytes.clear();
    bytes.resize(kb * PANEL_BLOCK_BYTES, 0);
    let k = ty.is_k();
    let per = |keep: bool, blocks: usize| if keep { blocks * PANEL_ROWS } else { 0 };
    let scale_blocks = if k { kb / 8 } else { kb };
    let fill = |v: &mut Vec<i8>, len: usize| {
        v.clear();
        v.resize(len, 0);
    };
    panel.d.clear();
    panel.d.resize(scale_blocks * PANEL_ROWS, 0);
    panel.m.clear();
    panel.m.resize(per(ty.has_min(), scale_blocks), 0);
    let sub_scale_bytes = |p: *const u8| read_unaligned(p as *const [u8; 16]);
    fill(&mut panel.sc, per(k, kb));
    fill(&mut panel.sc2, per(ty.scale_per_16(), kb));
    fill(
        &mut panel.mn,
        per(k && ty.has_min() && !ty.scale_per_16(), kb),
    );
    let half = |p: *const u8| read_unaligned(p as *const u16);
    // Dword g of a row's 32 bytes goes to group g: 16 dwords apart.
    let groups = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    for (j, row) in rows.iter().enumerate() {
        assert!(row.len() >= row_blocks * block_bytes);
        let index = _mm256_add_epi32(groups, _mm256_set1_epi32(j as i32));
        for b in 0..kb {
            let dst = bytes.as_mut_ptr().add(b * PANEL_BLOCK_BYTES);
            if ty.scale_per_16() {
                let (p, g) = (row.as_ptr().add(b / 8 * block_bytes), b % 8);
                // Each 16 elements' scale (Q2_K: scale and min) as one byte.
                let (q, sc, d_at) = match ty {
                    PanelType::Q6_K => {
                        (Q6KW::quants(p, g), Q6KW::header(p).sc.map(|s| s as u8), 208)
                    }
                    PanelType::Q3_K => {
                        (Q3KW::quants(p, g), Q3KW::header(p).sc.map(|s| s as u8), 108)
                    }
                    _ => (Q2KW::quants(p, g), sub_scale_bytes(p), 80),
                };
                let q = _mm256_add_epi8(q, _mm256_set1_epi8(ty.offset() as i8));
                _mm256_i32scatter_epi32::<4>(dst as *mut i32, index, q);
                panel.d[b / 8 * PANEL_ROWS + j] = half(p.add(d_at));
                if ty.has_min() {
                    panel.m[b / 8 * PANEL_ROWS + j] = half(p.add(d_at + 2));
                }
                panel.sc[b * PANEL_ROWS + j] = sc[2 * g] as i8;
                panel.sc2[b * PANEL_ROWS + j] = sc[2 * g + 1] as i8;
                continue;
            }
            if ty.is_k() {
                let (p, g) = (row.as_ptr().add(b / 8 * block_bytes), b % 8);
                let (sc, m) = kquant::q4_k_scale_min(&scale_bytes(p.add(4)), g);
                let q = if ty == PanelType::Q4_K {
                    Q4KW::quants(p, g)
                } else {
                    Q5KW::quants(p, g)
                };
                _mm256_i32scatter_epi32::<4>(dst as *mut i32, index, q);
                panel.d[b / 8 * PANEL_ROWS + j] = half(p);
                panel.m[b / 8 * PANEL_ROWS + j] = half(p.add(2));
                // 6-bit values: they fit i8.
                panel.sc[b * PANEL_ROWS + j] = sc as i8;
                panel.mn[b * PANEL_ROWS + j] = m as i8;
                continue;
            }
            let p = row.as_ptr().add(b * block_bytes);
            let q = match ty {
                PanelType::Q4_1 => unpack_nibbles(p.add(4)),
                PanelType::Q4_0 => unpack_nibbles(p.add(2)),
                PanelType::Q8_0 => _mm256_xor_si256(
                    _mm256_loadu_si256(p.add(2) as *const __m256i),
                    _mm256_set1_epi8(-128),
                ),
                PanelType::Q5_1 => {
                    _mm256_or_si256(unpack_nibbles(p.add(8)), q5_high_bits(p.add(4)))
                }
                PanelType::Q5_0 => {
                    _mm256_or_si256(unpack_nibbles(p.add(6)), q5_high_bits(p.add(2)))
                }
                PanelType::Q4_K
                | PanelType::Q5_K
                | PanelType::Q6_K
                | PanelType::Q3_K
                | PanelType::Q2_K => unreachable!("packed above"),
            };
            _mm256_i32scatter_epi32::<4>(dst as *mut i32, index, q);
            panel.d[b * PANEL_ROWS + j] = half(p);
            if ty.has_min() {
                panel.m[b * PANEL_ROWS + j] = half(p.add(2));
            }
        }
    }
    let column = ty.column_bytes();
    panel.q.clear();
    panel.q.resize(kb * column, 0);
    for b in 0..kb {
        let (src, dst) = (
            bytes.as_ptr().add(b * PANEL_BLOCK_BYTES),
            panel.q.as_mut_ptr(),
        );
        compress_column(ty.bits(), src, dst.add(b * column));
    }
}

/// One activation block's scale and integer sum, for Q8_0 and two-plane activations against
/// Q4_0/Q8_0 panels: the panel kernels subtract offset * sum to undo the weights' u8 offset.
/// For two-plane blocks, sum = 254 * sum(hi) + sum(lo), the sum of the planes as one integer.
#[derive(Clone, Copy, Default, Debug, bytemuck::Zeroable)]
pub(super) struct ActSum {
    pub d: f32,
    pub sum: i32,
    /// The same sum over the block's first 16 elements (for scales per 16: Q6_K, Q3_K, Q2_K).
    pub half: i32,
}

/// Which activation blocks a panel kernel reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PanelActs {
    /// One int8 plane: Q8_1 against Q4_1/Q5_1, Q8_0 (with [`ActSum`]s) against Q4_0/Q5_0/Q8_0.
    Q8,
    /// [`BlockQ8x2`] against every type (with [`ActSum`]s against Q4_0/Q5_0/Q8_0).
    Q8x2,
}

/// out[i][j] = dot(panel row j, token i) for N tokens.
/// `acts[i]` points at the token's `kb` activation blocks: Q8_1 (panels with a min, Q4_1 and
/// Q5_1) or Q8_0 (the others) for [`PanelActs::Q8`], [`BlockQ8x2`] for [`PanelActs::Q8x2`].
/// Where [`PanelType::reads_sums`], `sums[i]` points at their `kb` [`ActSum`]s; otherwise it is
/// unused.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn panel_dots<const N: usize>(
    ty: PanelType,
    acts_kind: PanelActs,
    panel: &Panel,
    kb: usize,
    acts: [*const u8; N],
    sums: [*const ActSum; N],
) -> [[f32; PANEL_ROWS]; N] {
    let scale_blocks = if ty.is_k() { kb / 8 } else { kb };
    assert!(panel.q.len() >= kb * ty.column_bytes());
    assert!(panel.d.len() >= scale_blocks * PANEL_ROWS);
    assert!(!ty.has_min() || panel.m.len() >= scale_blocks * PANEL_ROWS);
    assert!(!ty.is_k() || panel.sc.len() >= kb * PANEL_ROWS);
    assert!(!ty.scale_per_16() || panel.sc2.len() >= kb * PANEL_ROWS);
    let k_min32 = ty.is_k() && ty.has_min() && !ty.scale_per_16();
    assert!(!k_min32 || panel.mn.len() >= kb * PANEL_ROWS);
    match ty.bits() {
        2 => panel_dots_bits::<N, 2>(ty, acts_kind, panel, kb, acts, sums),
        4 => panel_dots_bits::<N, 4>(ty, acts_kind, panel, kb, acts, sums),
        5 => panel_dots_bits::<N, 5>(ty, acts_kind, panel, kb, acts, sums),
        6 => panel_dots_bits::<N, 6>(ty, acts_kind, panel, kb, acts, sums),
        _ => panel_dots_bits::<N, 8>(ty, acts_kind, panel, kb, acts, sums),
    }
}

/// [`panel_dots`] for a panel of `BITS`-bit quants.
#[inline(always)]
unsafe fn panel_dots_bits<const N: usize, const BITS: usize>(
    ty: PanelType,
    acts_kind: PanelActs,
    panel: &Panel,
    kb: usize,
    acts: [*const u8; N],
    sums: [*const ActSum; N],
) -> [[f32; PANEL_ROWS]; N] {
    // The types are const parameters inside, so the loop carries no branches on them.
    if ty.is_k() {
        panel_dots_kind::<N, BITS, true>(ty, acts_kind, panel, kb, acts, sums)
    } else {
        panel_dots_kind::<N, BITS, false>(ty, acts_kind, panel, kb, acts, sums)
    }
}

/// [`panel_dots_bits`] for a K-quant panel (`K`) or not.
#[inline(always)]
unsafe fn panel_dots_kind<const N: usize, const BITS: usize, const K: bool>(
    ty: PanelType,
    acts_kind: PanelActs,
    panel: &Panel,
    kb: usize,
    acts: [*const u8; N],
    sums: [*const ActSum; N],
) -> [[f32; PANEL_ROWS]; N] {
    let offset = ty.offset();
    match (ty, acts_kind) {
        (_, PanelActs::Q8x2) if ty.scale_per_16() && ty.has_min() => {
            panel_dots_impl::<N, BITS, K, true, true, true>(offset, panel, kb, acts, sums)
        }
        (_, PanelActs::Q8x2) if ty.scale_per_16() => {
            panel_dots_impl::<N, BITS, K, false, true, true>(offset, panel, kb, acts, sums)
        }
        (_, PanelActs::Q8) if ty.has_min() => {
            panel_dots_impl::<N, BITS, K, true, false, false>(0, panel, kb, acts, sums)
        }
        (_, PanelActs::Q8x2) if ty.has_min() => {
            panel_dots_impl::<N, BITS, K, true, true, false>(0, panel, kb, acts, sums)
        }
        (_, PanelActs::Q8) => {
            panel_dots_impl::<N, BITS, K, false, false, false>(offset, panel, kb, acts, sums)
        }
        (_, PanelActs::Q8x2) => {
            panel_dots_impl::<N, BITS, K, false, true, false>(offset, panel, kb, acts, sums)
        }
    }
}

/// 16 f16 values at `p` as f32 (exact).
#[inline(always)]
unsafe fn f16x16(p: *const u16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
}

/// 16 i8 values at `p` as f32 (exact).
#[inline(always)]
unsafe fn i8x16(p: *const i8) -> __m512 {
    _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
}

/// Block column b's scales for the 16 rows of a panel: (d, m, d2, m2) with m the min to add
/// (`MIN`; zero otherwise), d2 and m2 those of elements 16..32 (`S16`; d and m otherwise).
/// K-quants multiply out d * sc and -(dmin * m), each rounded once, as the row kernels do.
#[inline(always)]
unsafe fn column_scales<const K: bool, const MIN: bool, const S16: bool>(
    panel: &Panel,
    b: usize,
) -> (__m512, __m512, __m512, __m512) {
    let at = |v: &[i8]| v.as_ptr().add(b * PANEL_ROWS);
    if !K {
        let d = f16x16(panel.d.as_ptr().add(b * PANEL_ROWS));
        let m = if MIN {
            f16x16(panel.m.as_ptr().add(b * PANEL_ROWS))
        } else {
            _mm512_setzero_ps()
        };
        return (d, m, d, m);
    }
    let sb = b / 8 * PANEL_ROWS;
    let d_super = f16x16(panel.d.as_ptr().add(sb));
    let times_min = |m: __m512| {
        let dmin = f16x16(panel.m.as_ptr().add(sb));
        _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, m))
    };
    if MIN && S16 {
        // Q2_K: each byte is sc | m << 4.
        let nibbles = |v: &[i8]| {
            let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(at(v) as *const __m128i));
            let low = _mm512_and_si512(bytes, _mm512_set1_epi32(0x0f));
            let high = _mm512_srli_epi32::<4>(bytes);
            (_mm512_cvtepi32_ps(low), _mm512_cvtepi32_ps(high))
        };
        let ((sc, mn), (sc2, mn2)) = (nibbles(&panel.sc), nibbles(&panel.sc2));
        let d = _mm512_mul_ps(d_super, sc);
        let d2 = _mm512_mul_ps(d_super, sc2);
        return (d, times_min(mn), d2, times_min(mn2));
    }
    let d = _mm512_mul_ps(d_super, i8x16(at(&panel.sc)));
    let m = if MIN {
        times_min(i8x16(at(&panel.mn)))
    } else {
        _mm512_setzero_ps()
    };
    let d2 = if S16 {
        _mm512_mul_ps(d_super, i8x16(at(&panel.sc2)))
    } else {
        d
    };
    (d, m, d2, m)
}

/// 254 * x in each lane (the weight of the high plane, [`Q8X2_LO_SCALE`]) as 256x - 2x: two
/// shifts and a subtraction instead of a multiply on the port the dot products need.
#[inline(always)]
unsafe fn times_lo_scale(x: __m512i) -> __m512i {
    const _: () = assert!(Q8X2_LO_SCALE == 254.0);
    _mm512_sub_epi32(_mm512_slli_epi32::<8>(x), _mm512_slli_epi32::<1>(x))
}

/// The panel kernel. With two planes (`X2`) each token's block takes 16 vpdpbusd instead of 8,
/// in two independent chains (hi and lo), joined in integers as 254 * hi + lo. Weights with a
/// `MIN` take the activations' sum from each block's float s, or per 16 elements from the
/// [`ActSum`]s where scales change every 16 (`S16`: Q2_K).
#[inline(always)]
unsafe fn panel_dots_impl<
    const N: usize,
    const BITS: usize,
    const K: bool,
    const MIN: bool,
    const X2: bool,
    const S16: bool,
>(
    offset: i32,
    panel: &Panel,
    kb: usize,
    acts: [*const u8; N],
    sums: [*const ActSum; N],
) -> [[f32; PANEL_ROWS]; N] {
    // Q8_1 and BlockQ8x2 both start with d and s as f32; their quants follow at byte 8.
    let (block_bytes, qs_at) = if X2 {
        (std::mem::size_of::<BlockQ8x2>(), 8)
    } else if MIN {
        (std::mem::size_of::<BlockQ8_1>(), 8)
    } else {
        (std::mem::size_of::<BlockQ8_0>(), 2)
    };
    let mut acc = [_mm512_setzero_ps(); N];
    let mut acc_m = [_mm512_setzero_ps(); N];
    for b in 0..kb {
        let w = panel_quants::<BITS>(panel.q.as_ptr().add(b * column_bytes(BITS)));
        let (d, m, d2, m2) = column_scales::<K, MIN, S16>(panel, b);
        for i in 0..N {
            let ab = acts[i].add(b * block_bytes);
            let qs = ab.add(qs_at);
            if S16 {
                // Two-plane activations against scales per 16 elements: groups 0..4 and 4..8
                // in separate sums, each joined as 254 * hi + lo and offset-corrected by its
                // half's activation sum, then scaled by its half's d.
                let lo = qs.add(QK);
                let mut half = [_mm512_setzero_si512(); 2];
                for (k, hs) in half.iter_mut().enumerate() {
                    let (mut sh, mut sl) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for (g, wg) in w.iter().enumerate().skip(4 * k).take(4) {
                        let ah = _mm512_set1_epi32(read_unaligned(qs.add(4 * g) as *const i32));
                        let al = _mm512_set1_epi32(read_unaligned(lo.add(4 * g) as *const i32));
                        sh = _mm512_dpbusd_epi32(sh, *wg, ah);
                        sl = _mm512_dpbusd_epi32(sl, *wg, al);
                    }
                    *hs = _mm512_add_epi32(times_lo_scale(sh), sl);
                }
                let s = *sums[i].add(b);
                let corr = |sum: i32| _mm512_set1_epi32(offset * sum);
                let h0 = _mm512_sub_epi32(half[0], corr(s.half));
                let h1 = _mm512_sub_epi32(half[1], corr(s.sum - s.half));
                let da = s.d / Q8X2_LO_SCALE;
                let dav = _mm512_set1_ps(da);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h0), _mm512_mul_ps(d, dav), acc[i]);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(h1), _mm512_mul_ps(d2, dav), acc[i]);
                if MIN {
                    // A min per 16 elements (Q2_K) times the sum of those activations.
                    let (s0, s1) = (s.half as f32 * da, (s.sum - s.half) as f32 * da);
                    acc_m[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(s0), acc_m[i]);
                    acc_m[i] = _mm512_fmadd_ps(m2, _mm512_set1_ps(s1), acc_m[i]);
                }
                continue;
            }
            let mut isum = _mm512_setzero_si512();
            for (g, wg) in w.iter().enumerate() {
                let a4 = _mm512_set1_epi32(read_unaligned(qs.add(4 * g) as *const i32));
                isum = _mm512_dpbusd_epi32(isum, *wg, a4);
            }
            if X2 {
                let lo = qs.add(QK);
                let mut isum_lo = _mm512_setzero_si512();
                for (g, wg) in w.iter().enumerate() {
                    let a4 = _mm512_set1_epi32(read_unaligned(lo.add(4 * g) as *const i32));
                    isum_lo = _mm512_dpbusd_epi32(isum_lo, *wg, a4);
                }
                isum = _mm512_add_epi32(times_lo_scale(isum), isum_lo);
            }
            let (mut da, sa) = if MIN {
                let ds = ab as *const f32;
                (*ds, *ds.add(1))
            } else {
                let s = *sums[i].add(b);
                isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(offset * s.sum));
                (s.d, 0.0)
            };
            if X2 {
                da /= Q8X2_LO_SCALE;
            }
            let dd = _mm512_mul_ps(d, _mm512_set1_ps(da));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc[i]);
            if MIN {
                acc_m[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(sa), acc_m[i]);
            }
        }
    }
    let mut out = [[0f32; PANEL_ROWS]; N];
    for i in 0..N {
        _mm512_storeu_ps(out[i].as_mut_ptr(), _mm512_add_ps(acc[i], acc_m[i]));
    }
    out
}
