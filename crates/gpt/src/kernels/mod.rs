//! Compute kernels: the only home of SIMD and `unsafe` in gpt.
//!
//! Every fast kernel has a plain twin in [`reference`](mod@reference); CPU features are detected once at run
//! time ([`cpu`]), and tests check that the two paths agree.
//!
//! The central operation is [`matmul`]: `out (T, N) = x (T, K) @ w^T` for a weight matrix
//! `w (N, K)` stored row-major in any [`DType`]. Output rows are split across threads.
//!
//! Dispatch: [`Isa`] names a kernel set (reference, AVX2, AVX-512 VNNI). The free functions here
//! ([`matmul`], [`dot_f32`], [`softmax`], ...) run on [`Isa::detected`], chosen once per process
//! (capped by the `GPT_RS_KERNELS` environment variable); the same operations are methods of
//! [`Isa`], so tests and benchmarks can run every set the CPU supports side by side. Each method
//! checks [`Isa::usable`] before it calls a SIMD kernel, which keeps the `unsafe` calls sound.
//!
//! How [`matmul`] runs, by case:
//! - Quantized weights, [`Precision::Fast`] or [`Precision::Q8`]: activations are quantized once
//!   per call (Fast: two int8 planes per block, [`quant::BlockQ8x2`], against every weight type;
//!   Q8: Q8_1 against Q4_1/Q5_1, Q8_0 against Q4_0/Q5_0/Q8_0, Q8_K against the K-quants) and
//!   block products run in integers. Q8_K weights (an activation type) go through f32. On
//!   AVX-512 VNNI, a model's matrices are repacked once at load into panels of 16 rows
//!   ([`PackedWeights`], see `x86_64.rs`), which every T reads, generation included: one
//!   vpdpbusd adds 4 elements of 16 rows. A matrix that was not repacked is packed per band
//!   and call for T >= 5. Elsewhere (AVX2, the reference set, K-quants at Q8 precision) row
//!   kernels run, one unpacked weight block serving up to 4 tokens.
//! - Float weights (F32, F16, BF16): on AVX-512, repacked once at load into K-major panels of 16
//!   rows in the file's type, which every T reads: each load of 16 rows' weights at one column
//!   serves a tile of up to 12 tokens, whose values are broadcast inside the FMAs, and each
//!   output is one FMA chain over k. Elsewhere, and for matrices that were not repacked: f32
//!   dots of each row with every token, in register tiles of a few tokens x a few rows (f16/bf16
//!   rows widened as they load).
//! - [`Precision::F32`] against quantized weights: rows dequantized a few at a time, then the
//!   float dots above.
//!
//! Batch invariance: in the forms a loaded model uses (repacked where the kernel set has
//! panels, float rows, F32 precision), a token's output is bit for bit the same whatever T and
//! whichever tokens share the call, and so is [`attend_block`]'s per query. A position's keys,
//! values and logits therefore do not depend on how its sequence was cut into forward passes,
//! which is what lets the server reuse a kept prompt prefix exactly. (A matrix left unpacked on
//! AVX-512 VNNI is the exception: T = 1 runs row kernels, T >= 5 packs per call.)
//!
//! Threads: the parallel loops of inference (bands of a matmul's rows, attention's heads,
//! quantization and elementwise steps of a prompt) run on [`team`], the kernels' own workers,
//! which stay awake between the many short loops of a forward pass and claim tasks one at a time.
//! The width is rayon's: `ThreadPool::install` (or `--threads`) around the forward pass sets it.
//! An input that several matrices read is quantized once ([`Activations`]), and their products
//! run as one parallel loop ([`matmuls_acts`]).
#![allow(unsafe_code)]

pub mod cpu;
pub mod elementwise;
pub mod gemm;
pub mod kquant;
pub mod quant;
pub mod reference;
pub mod team;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use cpu::{Isa, KERNELS_ENV};
pub use team::parallel_for;

use crate::tensor::DType;
use bytemuck::Zeroable;
use kquant::{BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, QK_K};
use quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, BlockQ8x2, QK};
use std::cell::Cell;
use std::ops::Range;
use std::sync::OnceLock;
use std::thread::LocalKey;

/// How a matmul against quantized weights treats the activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Activations are quantized once per matmul to two int8 planes per block of 32
    /// ([`quant::BlockQ8x2`]: x ~= d * (hi + lo / 254)) and each block product runs in integers.
    /// K-quant weights use the same blocks: 8 per super-block, each block's integer products
    /// scaled per 16-element (or 32-element) sub-block before rounding.
    /// On SmolLM2-135M the top-20 logits stay within 0.004 of f32 math (greedy continuations
    /// identical on all 8 reference prompts); measured against [`Q8`] on 2 cores, generation is
    /// ~10% and prompt processing ~20% slower. Float weights (F32/F16/BF16) are always
    /// multiplied in f32, whatever the precision.
    ///
    /// [`Q8`]: Precision::Q8
    #[default]
    Fast,
    /// llama.cpp's scheme: one int8 plane per activation block (Q8_0, Q8_1 against Q4_1/Q5_1,
    /// Q8_K (256 per block) against the K-quants); fastest, but moves logits of small models by
    /// up to ~1 against f32 math.
    Q8,
    /// Weights are dequantized to f32 and multiplied with f32 activations: the exact math of a
    /// reference implementation that dequantizes the whole model, at a cost in speed.
    F32,
    /// [`F32`](Precision::F32), with f32 weights multiplied as one blocked product (the gemm
    /// crate): training's choice. Inference's f32 kernels compute each row exactly as a single
    /// token would (so that cached and recomputed positions agree bit for bit); a training batch
    /// has no cache, so the fastest summation order wins.
    Dense,
}

/// A weight matrix: `rows` rows of `cols` elements, each row `dtype.bytes_for(cols)` bytes.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    /// The same matrix repacked once for the panel kernels ([`PackedWeights`]), if it was.
    pub packed: Option<&'a PackedWeights>,
}

impl<'a> MatRef<'a> {
    /// A matrix that has not been repacked.
    pub fn new(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Self {
        MatRef {
            dtype,
            rows,
            cols,
            data,
            packed: None,
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.type_size()
    }

    pub fn row(&self, n: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[n * rb..(n + 1) * rb]
    }

    /// Dequantizes row `n` into `out` (K).
    pub fn dequantize_row(&self, n: usize, out: &mut [f32]) {
        quant::dequantize_row(self.dtype, self.row(n), out)
    }
}

/// A weight matrix repacked once, at model load, into the panels that the AVX-512 kernels read
/// (16 rows in the lanes of a register, see `x86_64.rs`), so that no matmul repacks it:
/// generation (T = 1) runs on panels too. Quantized panels: one vpdpbusd serves 16 rows instead
/// of one row kernel step per row; they store the quants in as few bits as the type needs, and
/// the file's scales. Float panels (F32, F16, BF16): the file's values, K-major, so that one
/// load of 16 rows' weights serves a tile of tokens. Either is about the size of the rows it
/// holds.
pub struct PackedWeights {
    /// The (rows, cols) of the matrix packed.
    shape: (usize, usize),
    #[cfg(target_arch = "x86_64")]
    form: PackedForm,
    bytes: usize,
}

#[cfg(target_arch = "x86_64")]
enum PackedForm {
    Quant {
        ty: x86_64::PanelType,
        panels: Vec<x86_64::Panel>,
    },
    Float {
        dtype: DType,
        panels: Vec<x86_64::FloatPanel>,
    },
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeights({} bytes)", self.bytes)
    }
}

impl PackedWeights {
    /// `w` repacked for [`Isa::detected`], if that kernel set has panels for its type (the
    /// float types and the quantized ones but Q8_K, on AVX-512 VNNI); None otherwise. `packed` is
    /// told each range of w's bytes as soon as it has been packed (so that a caller can let the
    /// pages of a mapped file go while a large matrix is still being packed).
    pub fn new(w: MatRef, packed: impl Fn(Range<usize>)) -> Option<PackedWeights> {
        Isa::detected().pack(w, packed)
    }

    /// Heap bytes of the packed form.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether matmuls at `precision` read this packed form. Quantized panels: not at F32
    /// precision (which dequantizes the rows), nor at Q8 against K-quants (whose Q8_K
    /// activations run in the row kernels). Float panels: at every precision but Dense.
    pub fn read_at(&self, precision: Precision) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match (&self.form, precision) {
            (_, Precision::Dense) => false,
            (PackedForm::Float { .. }, _) => true,
            (PackedForm::Quant { .. }, Precision::Fast) => true,
            (PackedForm::Quant { ty, .. }, Precision::Q8) => !ty.is_k(),
            (PackedForm::Quant { .. }, Precision::F32) => false,
        };
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = precision;
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The public operations, on the detected kernel set.

/// `out (T, N) = x (T, K) @ w^T` with `w (N, K)`, on [`Isa::detected`].
pub fn matmul(w: MatRef, x: &[f32], t: usize, out: &mut [f32], precision: Precision) {
    Isa::detected().matmul(w, x, t, out, precision)
}

/// [`matmul`] of an input prepared once for several weight matrices: `out (T, N) = x @ w^T`.
pub fn matmul_acts(w: MatRef, x: &Activations, out: &mut [f32], precision: Precision) {
    x.isa.matmul_acts(w, x, out, precision)
}

/// [`matmul_acts`] of several weight matrices that read the same input (Q, K and V; gate and
/// up), in one parallel loop: `outs[i] (T, N_i) = x @ ws[i]^T`.
pub fn matmuls_acts(ws: &[MatRef], x: &Activations, outs: &mut [&mut [f32]], precision: Precision) {
    x.isa.matmuls_acts(ws, x, outs, precision)
}

/// The input of one or more matmuls, x (T, K), with each quantized form made on first use and
/// kept: the projections that read the same vectors (Q, K and V; gate and up) quantize them
/// once. Made by the team when T is large.
pub struct Activations<'a> {
    x: &'a [f32],
    t: usize,
    isa: Isa,
    q8x2: OnceLock<Vec<BlockQ8x2>>,
    q8_0: OnceLock<Vec<BlockQ8_0>>,
    q8_1: OnceLock<Vec<BlockQ8_1>>,
    q8_k: OnceLock<Vec<BlockQ8_K>>,
    /// Per block of `q8x2` / `q8_0`: its scale and sums, for panels of types without a min.
    #[cfg(target_arch = "x86_64")]
    q8x2_sums: OnceLock<Vec<x86_64::ActSum>>,
    #[cfg(target_arch = "x86_64")]
    q8_0_sums: OnceLock<Vec<x86_64::ActSum>>,
    /// Whether every value of x is finite.
    finite: OnceLock<bool>,
}

impl<'a> Activations<'a> {
    /// x (T, K), for the kernels of [`Isa::detected`].
    pub fn new(x: &'a [f32], t: usize) -> Self {
        Isa::detected().activations(x, t)
    }

    /// (T, K)
    pub fn x(&self) -> &'a [f32] {
        self.x
    }

    pub fn tokens(&self) -> usize {
        self.t
    }

    /// Whether x holds no NaN or infinity (checked once, O(T * K) against the matmul's
    /// O(T * K * N)). With an exponent of all ones (infinity, NaN), adding one to the exponent
    /// carries into the sign bit: integer ops that vectorize on any x86-64, about 5x faster than
    /// `is_finite` per element (22 us for 128 x 1536 values here).
    fn finite(&self) -> bool {
        *self.finite.get_or_init(|| {
            let carry = self
                .x
                .iter()
                .fold(0u32, |m, v| m | ((v.to_bits() & 0x7f80_0000) + 0x0080_0000));
            carry & 0x8000_0000 == 0
        })
    }

    /// The form kept in `cell`: x quantized by `quantize` into blocks of `block` elements.
    fn quantized<'s, A: Zeroable + Clone + Send>(
        &'s self,
        cell: &'s OnceLock<Vec<A>>,
        block: usize,
        quantize: impl Fn(Isa, &[f32], &mut [A]) + Sync,
    ) -> &'s [A] {
        cell.get_or_init(|| {
            let mut a = vec![A::zeroed(); self.x.len() / block];
            quantize_tokens(self.x, self.t, &mut a, |x, a| quantize(self.isa, x, a));
            a
        })
    }

    fn q8x2(&self) -> &[BlockQ8x2] {
        self.quantized(&self.q8x2, QK, Isa::quantize_q8x2)
    }

    fn q8_0(&self) -> &[BlockQ8_0] {
        self.quantized(&self.q8_0, QK, Isa::quantize_q8_0)
    }

    fn q8_1(&self) -> &[BlockQ8_1] {
        self.quantized(&self.q8_1, QK, Isa::quantize_q8_1)
    }

    fn q8_k(&self) -> &[BlockQ8_K] {
        self.quantized(&self.q8_k, QK_K, Isa::quantize_q8_k)
    }

    #[cfg(target_arch = "x86_64")]
    fn q8x2_sums(&self) -> &[x86_64::ActSum] {
        self.q8x2_sums.get_or_init(|| {
            let lo_weight = quant::Q8X2_LO_SCALE as i32;
            let sum = |q: &[i8]| q.iter().map(|&q| q as i32).sum::<i32>();
            map_blocks(self.q8x2(), |a| x86_64::ActSum {
                d: a.d,
                sum: lo_weight * sum(&a.hi) + sum(&a.lo),
                half: lo_weight * sum(&a.hi[..16]) + sum(&a.lo[..16]),
            })
        })
    }

    #[cfg(target_arch = "x86_64")]
    fn q8_0_sums(&self) -> &[x86_64::ActSum] {
        self.q8_0_sums.get_or_init(|| {
            map_blocks(self.q8_0(), |a| x86_64::ActSum {
                d: a.d.to_f32(),
                sum: a.qs.iter().map(|&q| q as i32).sum(),
                half: a.qs[..16].iter().map(|&q| q as i32).sum(),
            })
        })
    }
}

/// `sum(a[i] * b[i])`; a, b: (K).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    Isa::detected().dot_f32(a, b)
}

/// x (n) = softmax(x) = e^(x - max) / sum, stable for large x. Needs one finite value.
pub fn softmax(x: &mut [f32]) {
    Isa::detected().softmax(x)
}

/// y (n) += a * x (n): one step of attention's weighted sum of values.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    Isa::detected().axpy(a, x, y)
}

/// One head's causal attention for M queries over NP keys.
///
/// q: (M, HS), rows `q_stride` apart; keys, values: (NP, HS); `visible[i]`: the keys query i
/// sees (the causal mask, and a sliding window's start), not empty. Writes the softmax of each
/// query's scores dot(q_i, k_j) * scale over its visible keys to row i of probs (M, NP; 0 for
/// the keys it does not see) and out_i (HS) = Σ_j p_ij v_j.
///
/// Each row is computed by the same arithmetic whatever M and whichever queries share the call,
/// so a position's output does not depend on how its sequence was cut into forward passes:
/// one decode token and a chunk of a long prompt agree bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn attend_block(
    q: &[f32],
    q_stride: usize,
    keys: &[f32],
    values: &[f32],
    visible: &[Range<usize>],
    scale: f32,
    probs: &mut [f32],
    out: &mut [f32],
) {
    Isa::detected().attend_block(q, q_stride, keys, values, visible, scale, probs, out)
}

/// x (n) *= a.
pub fn scale(a: f32, x: &mut [f32]) {
    Isa::detected().scale(a, x)
}

/// Quantizes activations x (32 * out.len()) to Q8_0 blocks, bit-exact with
/// [`quant::quantize_q8_0`].
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    Isa::detected().quantize_q8_0(x, out)
}

/// Quantizes activations x (32 * out.len()) to Q8_1 blocks, bit-exact with
/// [`quant::quantize_q8_1`].
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    Isa::detected().quantize_q8_1(x, out)
}

/// Quantizes activations x (32 * out.len()) to two-plane blocks, bit-exact with
/// [`quant::quantize_q8x2`].
pub fn quantize_q8x2(x: &[f32], out: &mut [BlockQ8x2]) {
    Isa::detected().quantize_q8x2(x, out)
}

/// The quantized dot products, as [`reference::dot_q4_0_q8_0`] and its siblings compute them
/// (up to the order of float sums).
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    Isa::detected().dot_q4_0_q8_0(w, a)
}

pub fn dot_q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    Isa::detected().dot_q4_1_q8_1(w, a)
}

pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    Isa::detected().dot_q8_0_q8_0(w, a)
}

/// The two-plane dot products of [`Precision::Fast`], as [`reference::dot_q4_1_q8x2`] and its
/// siblings compute them (up to the order of float sums).
pub fn dot_q4_1_q8x2(w: &[BlockQ4_1], a: &[BlockQ8x2]) -> f32 {
    Isa::detected().dot_q4_1_q8x2(w, a)
}

pub fn dot_q4_0_q8x2(w: &[BlockQ4_0], a: &[BlockQ8x2]) -> f32 {
    Isa::detected().dot_q4_0_q8x2(w, a)
}

pub fn dot_q8_0_q8x2(w: &[BlockQ8_0], a: &[BlockQ8x2]) -> f32 {
    Isa::detected().dot_q8_0_q8x2(w, a)
}

// ---------------------------------------------------------------------------------------------
// The same operations on a chosen kernel set.

/// Elements per block of a weight or activation block type.
trait Elems {
    const N: usize;
}

macro_rules! elems {
    ($n:expr; $($t:ty),*) => {$(impl Elems for $t { const N: usize = $n; })*};
}

elems!(QK; BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, BlockQ8x2);
elems!(QK_K; BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K);

/// Dot products of one weight row with one activation row through the [`QuantKernel`] that
/// matmul uses, on this kernel set: `$name(w, a)` computes what `reference::$name` does (up to
/// the order of float sums). `a` covers as many elements as `w`.
macro_rules! dot_methods {
    ($($name:ident, $w:ty, $a:ty, $ctor:ident;)*) => {$(
        #[doc = concat!("As [`reference::", stringify!($name), "`], up to the order of float sums.")]
        pub fn $name(self, w: &[$w], a: &[$a]) -> f32 {
            assert_eq!(
                w.len() * <$w as Elems>::N,
                a.len() * <$a as Elems>::N,
                concat!(stringify!($name), ": element counts differ")
            );
            let groups = w.len() * <$w as Elems>::N / QK;
            // SAFETY: w holds `groups` groups of 32 weights and a as many activations; the
            // kernel set is usable().
            unsafe {
                (QuantKernel::<$a>::$ctor(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], groups)[0]
            }
        }
    )*};
}

/// Calls the x86-64 kernel `$f` instantiated for the float row type of `$dtype` (F32, F16 or
/// BF16): one dispatch for every kernel generic over the row type.
#[cfg(target_arch = "x86_64")]
macro_rules! for_float_row {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => x86_64::$f::<x86_64::F32Row>($($arg),*),
            DType::F16 => x86_64::$f::<x86_64::F16Row>($($arg),*),
            DType::BF16 => x86_64::$f::<x86_64::Bf16Row>($($arg),*),
            other => unreachable!("{}: {other} is not a float type", stringify!($f)),
        }
    };
}

impl Isa {
    /// `out (T, N) = x (T, K) @ w^T` with `w (N, K)`.
    ///
    /// With [`Precision::Fast`] or [`Precision::Q8`] and quantized weights, each token's
    /// activations are quantized once (Fast: two-plane blocks; Q8: Q8_1 against Q4_1/Q5_1, Q8_0
    /// against Q4_0/Q5_0/Q8_0, Q8_K against the K-quants) and every block product runs in
    /// integers. Float weights repacked at load run the float panels (one FMA chain per output);
    /// otherwise (float weights not repacked, Q8_K weights, or [`Precision::F32`]) each weight
    /// row is widened to f32 once and dotted with all T tokens.
    /// A token's result depends on T only through the order of f32 sums (T = 1 and T > 1 run
    /// different kernels); integer block sums are exact either way.
    pub fn matmul(self, w: MatRef, x: &[f32], t: usize, out: &mut [f32], precision: Precision) {
        self.matmul_acts(w, &self.activations(x, t), out, precision)
    }

    /// x (T, K) prepared for matmuls on this kernel set ([`Activations`]).
    pub fn activations(self, x: &[f32], t: usize) -> Activations<'_> {
        Activations {
            x,
            t,
            isa: self.usable(),
            q8x2: OnceLock::new(),
            q8_0: OnceLock::new(),
            q8_1: OnceLock::new(),
            q8_k: OnceLock::new(),
            #[cfg(target_arch = "x86_64")]
            q8x2_sums: OnceLock::new(),
            #[cfg(target_arch = "x86_64")]
            q8_0_sums: OnceLock::new(),
            finite: OnceLock::new(),
        }
    }

    /// `w` repacked for this kernel set's panel kernels, if it has them for w's type; see
    /// [`PackedWeights::new`].
    pub fn pack(self, w: MatRef, packed: impl Fn(Range<usize>)) -> Option<PackedWeights> {
        #[cfg(target_arch = "x86_64")]
        if self.usable() == Isa::Avx512Vnni {
            use x86_64::{FloatPanel, PANEL_ROWS};
            let shape = (w.rows, w.cols);
            let rows_of = |p: usize| -> Vec<&[u8]> {
                (p * PANEL_ROWS..((p + 1) * PANEL_ROWS).min(w.rows))
                    .map(|r| w.row(r))
                    .collect()
            };
            if matches!(w.dtype, DType::F32 | DType::F16 | DType::BF16) {
                let size = w.dtype.type_size();
                let pack = |p: usize| FloatPanel::pack(&rows_of(p), w.cols, size);
                let panels = pack_in_batches(w, &packed, pack);
                let bytes = panels.iter().map(|p| p.bytes()).sum();
                let dtype = w.dtype;
                let form = PackedForm::Float { dtype, panels };
                return Some(PackedWeights { shape, form, bytes });
            }
            let ty = panel_type(w.dtype)?;
            let kb = w.cols / QK;
            let pack = |p: usize| {
                let (mut panel, mut scratch) = (x86_64::Panel::default(), Vec::new());
                // SAFETY: usable() checked AVX-512 VNNI; each row holds kb blocks of `ty`.
                unsafe { x86_64::pack_panel(ty, &rows_of(p), kb, &mut panel, &mut scratch) };
                panel
            };
            let panels = pack_in_batches(w, &packed, pack);
            let bytes = panels.iter().map(|p| p.bytes()).sum();
            let form = PackedForm::Quant { ty, panels };
            return Some(PackedWeights { shape, form, bytes });
        }
        let _ = (w, packed);
        None
    }

    /// [`Isa::matmul`] of prepared activations, made by [`Isa::activations`] for this set.
    pub fn matmul_acts(self, w: MatRef, acts: &Activations, out: &mut [f32], precision: Precision) {
        self.matmul_job(w, acts, out, precision, &mut |job| run_jobs(&[job]))
    }

    /// [`Isa::matmul_acts`] of several matrices that read the same activations, their bands in
    /// one parallel loop of the team: one start and one join instead of one per matrix (at T = 1
    /// the key and value projections of a small model are a few microseconds of work each).
    pub fn matmuls_acts(
        self,
        ws: &[MatRef],
        acts: &Activations,
        outs: &mut [&mut [f32]],
        precision: Precision,
    ) {
        assert_eq!(ws.len(), outs.len(), "matmuls: one output per matrix");
        assert!(
            ws.len() <= MAX_GROUP,
            "matmuls: at most {MAX_GROUP} matrices"
        );
        self.nest_jobs(ws, acts, outs, precision, &[]);
    }

    /// The jobs of `ws` after those in `done`, then all of them in one loop: each matrix's job
    /// lives in the frame of its [`matmul_job`](Self::matmul_job), so the next is made inside it.
    fn nest_jobs(
        self,
        ws: &[MatRef],
        acts: &Activations,
        outs: &mut [&mut [f32]],
        precision: Precision,
        done: &[&BandJob],
    ) {
        let (Some((w, ws)), Some((out, outs))) = (ws.split_first(), outs.split_first_mut()) else {
            return run_jobs(done);
        };
        let mut ran = false;
        self.matmul_job(*w, acts, out, precision, &mut |job| {
            let mut all = [&BandJob::DONE; MAX_GROUP];
            all[..done.len()].copy_from_slice(done);
            all[done.len()] = job;
            self.nest_jobs(ws, acts, outs, precision, &all[..=done.len()]);
            ran = true;
        });
        assert!(ran, "matmul_job ended without its job");
    }

    /// The matmul of [`Isa::matmul_acts`] as a job of bands, handed to `then` (exactly once)
    /// and computed when `then` runs it ([`run_jobs`]).
    fn matmul_job(
        self,
        w: MatRef,
        acts: &Activations,
        out: &mut [f32],
        precision: Precision,
        then: Then,
    ) {
        let (x, t) = (acts.x, acts.t);
        let (n, k) = (w.rows, w.cols);
        assert_eq!(
            acts.isa,
            self.usable(),
            "matmul: activations of another kernel set"
        );
        assert_eq!(x.len(), t * k, "matmul: x is not (T, K)");
        assert_eq!(out.len(), t * n, "matmul: out is not (T, N)");
        assert_eq!(w.data.len(), n * w.row_bytes(), "matmul: w is not (N, K)");
        assert_eq!(
            k % w.dtype.block_size(),
            0,
            "matmul: K is not a multiple of the block size"
        );
        if t == 0 || n == 0 {
            return then(&BandJob::DONE);
        }
        // Quantizing activations turns a NaN into 0 (the cast to i8), which would hide a model's
        // NaN weights behind finite garbage: such activations take the f32 path, where NaN and
        // infinity reach the logits and the forward pass reports them. (Float weights never
        // quantize activations: no check.)
        let quantizes =
            matches!(precision, Precision::Fast | Precision::Q8) && w.dtype.is_quantized();
        let precision = if quantizes && !acts.finite() {
            Precision::F32
        } else {
            precision
        };
        if precision == Precision::Dense && w.dtype == DType::F32 {
            if let Ok(wf) = bytemuck::try_cast_slice::<u8, f32>(w.data) {
                use gemm::{sgemm, Operand};
                sgemm(t, n, k, Operand::new(x), Operand::t(wf), out, false);
                return then(&BandJob::DONE);
            }
        }
        let isa = self.usable();
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = w
            .packed
            .filter(|p| p.read_at(precision) && p.shape == (n, k))
        {
            if let PackedForm::Float { dtype, panels } = &p.form {
                if isa == Isa::Avx512Vnni && *dtype == w.dtype {
                    return float_panel_matmul(*dtype, panels, w, x, t, out, then);
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512Vnni && (t >= PANEL_MIN_TOKENS || w.packed.is_some()) {
            if let (Some(ty), Some(acts_kind)) = (panel_type(w.dtype), panel_acts(precision)) {
                // K-quant panels hold groups of 32 for two-plane activations; Q8 precision
                // keeps llama.cpp's Q8_K activations, through the row kernels.
                if !(ty.is_k() && acts_kind == x86_64::PanelActs::Q8) {
                    return panel_matmul(ty, acts_kind, w, acts, out, then);
                }
            }
        }
        let q8x2 = QuantKernel::<BlockQ8x2>::for_dtype(w.dtype, isa);
        let q8_k = QuantKernel::<BlockQ8_K>::for_dtype(w.dtype, isa);
        match (precision, w.dtype, q8x2, q8_k) {
            (Precision::Fast, _, Some(kern), _) => {
                quant_matmul(&kern, w, acts.q8x2(), t, out, then)
            }
            (Precision::Q8, DType::Q4_1 | DType::Q5_1, ..) => {
                let kern = match w.dtype {
                    DType::Q4_1 => QuantKernel::q4_1(isa),
                    _ => QuantKernel::q5_1(isa),
                };
                quant_matmul(&kern, w, acts.q8_1(), t, out, then);
            }
            (Precision::Q8, DType::Q4_0 | DType::Q5_0 | DType::Q8_0, ..) => {
                let kern = match w.dtype {
                    DType::Q4_0 => QuantKernel::q4_0(isa),
                    DType::Q5_0 => QuantKernel::q5_0(isa),
                    _ => QuantKernel::q8_0(isa),
                };
                quant_matmul(&kern, w, acts.q8_0(), t, out, then);
            }
            (Precision::Q8, _, _, Some(kern)) => quant_matmul(&kern, w, acts.q8_k(), t, out, then),
            _ => float_matmul(isa, w, x, t, out, then),
        }
    }

    /// out (T, rows) = x (T, K) @ w^T for the float rows `rows` of `w` (each `row_bytes` bytes
    /// of `dtype`: F32, F16 or BF16, any alignment): `set(token, row, value)`, each value the
    /// [`dot_float_row`](Self::dot_float_row) of that row and token.
    #[allow(clippy::too_many_arguments)]
    fn float_rows(
        self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: Range<usize>,
        x: &[f32],
        k: usize,
        set: &(impl Fn(usize, usize, f32) + Sync),
    ) {
        assert!(rows.end * row_bytes <= w.len() && row_bytes >= k * dtype.type_size());
        assert!(
            k > 0 && x.len().is_multiple_of(k),
            "float_rows: x is not (T, K)"
        );
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX-512; the asserts bound every row read.
            Isa::Avx512Vnni => unsafe {
                for_float_row!(dtype, float_rows_avx512(w, row_bytes, rows, x, k, set))
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C; rows bounded as above.
            Isa::Avx2 => unsafe {
                for_float_row!(dtype, float_rows_avx2(w, row_bytes, rows, x, k, set))
            },
            _ => {
                let mut row = vec![0f32; k];
                for r in rows {
                    quant::dequantize_row(dtype, &w[r * row_bytes..(r + 1) * row_bytes], &mut row);
                    for (ti, xt) in x.chunks_exact(k).enumerate() {
                        set(ti, r, reference::dot_f32(&row, xt));
                    }
                }
            }
        }
    }

    /// `sum(a[i] * b[i])`; a, b: (K).
    pub fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot_f32: lengths differ");
        self.dot_float_row(DType::F32, bytemuck::cast_slice(a), b)
    }

    /// Dot of one float row `w` (x.len() elements of `dtype`: F32, F16 or BF16, any alignment)
    /// with x (K), without widening the row first.
    fn dot_float_row(self, dtype: DType, w: &[u8], x: &[f32]) -> f32 {
        assert!(w.len() >= x.len() * dtype.type_size());
        match self.usable() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX-512; w holds x.len() elements.
            Isa::Avx512Vnni => unsafe { for_float_row!(dtype, dot_row_avx512(w, x)) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C; w holds x.len() elements.
            Isa::Avx2 => unsafe { for_float_row!(dtype, dot_row_avx2(w, x)) },
            _ => {
                let mut row = vec![0f32; x.len()];
                quant::dequantize_row(dtype, w, &mut row);
                reference::dot_f32(&row, x)
            }
        }
    }

    /// Dequantizes one row stored as `dtype` in `bytes` into out (K), bit-exact with
    /// [`quant::dequantize_row`].
    pub fn dequantize_row(self, dtype: DType, bytes: &[u8], out: &mut [f32]) {
        assert_eq!(
            bytes.len(),
            out.len() / dtype.block_size() * dtype.type_size()
        );
        assert_eq!(out.len() % dtype.block_size(), 0);
        if self.usable() == Isa::Reference {
            return quant::dequantize_row(dtype, bytes, out);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: usable() checked the CPU has at least AVX2, FMA and F16C; the asserts above
        // checked that bytes holds out.len() elements.
        unsafe {
            match dtype {
                DType::F32 => x86_64::widen_row_avx2::<x86_64::F32Row>(bytes, out),
                DType::F16 => x86_64::widen_row_avx2::<x86_64::F16Row>(bytes, out),
                DType::BF16 => x86_64::widen_row_avx2::<x86_64::Bf16Row>(bytes, out),
                DType::Q4_0 => x86_64::dequantize_q4_0_avx2(bytes, out),
                DType::Q4_1 => x86_64::dequantize_q4_1_avx2(bytes, out),
                DType::Q8_0 => x86_64::dequantize_q8_0_avx2(bytes, out),
                // No SIMD dequantization yet: the reference is bit-exact by definition.
                DType::Q5_0
                | DType::Q5_1
                | DType::Q2_K
                | DType::Q3_K
                | DType::Q4_K
                | DType::Q5_K
                | DType::Q6_K
                | DType::Q8_K => quant::dequantize_row(dtype, bytes, out),
            }
        }
    }

    /// x (32 * out.len()) -> Q8_0 blocks, bit-exact with [`quant::quantize_q8_0`].
    pub fn quantize_q8_0(self, x: &[f32], out: &mut [BlockQ8_0]) {
        assert_eq!(
            x.len(),
            out.len() * QK,
            "quantize_q8_0: x is not 32 * blocks"
        );
        match self.usable() {
            Isa::Reference => quant::quantize_q8_0(x, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::quantize_q8_0_avx2(x, out) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => quant::quantize_q8_0(x, out),
        }
    }

    /// x (32 * out.len()) -> Q8_1 blocks, bit-exact with [`quant::quantize_q8_1`].
    pub fn quantize_q8_1(self, x: &[f32], out: &mut [BlockQ8_1]) {
        assert_eq!(
            x.len(),
            out.len() * QK,
            "quantize_q8_1: x is not 32 * blocks"
        );
        match self.usable() {
            Isa::Reference => quant::quantize_q8_1(x, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::quantize_q8_1_avx2(x, out) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => quant::quantize_q8_1(x, out),
        }
    }

    /// x (32 * out.len()) -> two-plane blocks, bit-exact with [`quant::quantize_q8x2`].
    pub fn quantize_q8x2(self, x: &[f32], out: &mut [BlockQ8x2]) {
        assert_eq!(
            x.len(),
            out.len() * QK,
            "quantize_q8x2: x is not 32 * blocks"
        );
        match self.usable() {
            Isa::Reference => quant::quantize_q8x2(x, out),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::quantize_q8x2_avx2(x, out) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => quant::quantize_q8x2(x, out),
        }
    }

    /// x (256 * out.len()) -> Q8_K blocks ([`kquant::quantize_q8_k`]; no SIMD version: it runs
    /// once per matmul, against the matmul's K * N products).
    pub fn quantize_q8_k(self, x: &[f32], out: &mut [BlockQ8_K]) {
        assert_eq!(
            x.len(),
            out.len() * QK_K,
            "quantize_q8_k: x is not 256 * blocks"
        );
        kquant::quantize_q8_k(x, out)
    }

    pub fn dot_q4_0_q8_0(self, w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q4_0_q8_0: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q4_0(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    pub fn dot_q4_1_q8_1(self, w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q4_1_q8_1: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q4_1(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    pub fn dot_q8_0_q8_0(self, w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q8_0_q8_0: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q8_0(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    pub fn dot_q4_1_q8x2(self, w: &[BlockQ4_1], a: &[BlockQ8x2]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q4_1_q8x2: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q4_1_q8x2(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    pub fn dot_q4_0_q8x2(self, w: &[BlockQ4_0], a: &[BlockQ8x2]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q4_0_q8x2: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q4_0_q8x2(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    pub fn dot_q8_0_q8x2(self, w: &[BlockQ8_0], a: &[BlockQ8x2]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot_q8_0_q8x2: block counts differ");
        // SAFETY: both slices hold w.len() blocks; the kernel set is usable().
        unsafe {
            (QuantKernel::q8_0_q8x2(self.usable()).one)(w.as_ptr().cast(), [a.as_ptr()], w.len())[0]
        }
    }

    dot_methods! {
        dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0, q5_0;
        dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1, q5_1;
        dot_q5_0_q8x2, BlockQ5_0, BlockQ8x2, q5_0_q8x2;
        dot_q5_1_q8x2, BlockQ5_1, BlockQ8x2, q5_1_q8x2;
        dot_q2_k_q8x2, BlockQ2_K, BlockQ8x2, q2_k_q8x2;
        dot_q3_k_q8x2, BlockQ3_K, BlockQ8x2, q3_k_q8x2;
        dot_q4_k_q8x2, BlockQ4_K, BlockQ8x2, q4_k_q8x2;
        dot_q5_k_q8x2, BlockQ5_K, BlockQ8x2, q5_k_q8x2;
        dot_q6_k_q8x2, BlockQ6_K, BlockQ8x2, q6_k_q8x2;
        dot_q2_k_q8_k, BlockQ2_K, BlockQ8_K, q2_k;
        dot_q3_k_q8_k, BlockQ3_K, BlockQ8_K, q3_k;
        dot_q4_k_q8_k, BlockQ4_K, BlockQ8_K, q4_k;
        dot_q5_k_q8_k, BlockQ5_K, BlockQ8_K, q5_k;
        dot_q6_k_q8_k, BlockQ6_K, BlockQ8_K, q6_k;
    }

    /// x (n) = softmax(x), as [`softmax`].
    pub fn softmax(self, x: &mut [f32]) {
        match self.usable() {
            Isa::Reference => reference::softmax(x),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::softmax_avx2(x) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => reference::softmax(x),
        }
    }

    /// y (n) += a * x (n).
    pub fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
        assert_eq!(x.len(), y.len(), "axpy: lengths differ");
        match self.usable() {
            Isa::Reference => reference::axpy(a, x, y),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::axpy_avx2(a, x, y) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => reference::axpy(a, x, y),
        }
    }

    /// [`attend_block`](super::attend_block) on this kernel set.
    #[allow(clippy::too_many_arguments)]
    pub fn attend_block(
        self,
        q: &[f32],
        q_stride: usize,
        keys: &[f32],
        values: &[f32],
        visible: &[Range<usize>],
        scale: f32,
        probs: &mut [f32],
        out: &mut [f32],
    ) {
        let m = visible.len();
        assert!(
            m > 0 && out.len().is_multiple_of(m),
            "attend_block: out is not (M, HS)"
        );
        let hs = out.len() / m;
        assert!(hs > 0 && keys.len().is_multiple_of(hs) && values.len() == keys.len());
        let np = keys.len() / hs;
        assert_eq!(probs.len(), m * np, "attend_block: probs is not (M, NP)");
        assert!(
            (m - 1) * q_stride + hs <= q.len(),
            "attend_block: q is not (M, HS)"
        );
        assert!(
            visible.iter().all(|v| v.start < v.end && v.end <= np),
            "attend_block: a query sees no key, or keys past NP"
        );
        match self.usable() {
            Isa::Reference => {
                reference::attend_block(q, q_stride, keys, values, visible, scale, probs, out)
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX-512; the asserts above bound every index.
            Isa::Avx512Vnni => unsafe {
                x86_64::attend_block_avx512(q, q_stride, keys, values, visible, scale, probs, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C; indices bounded as above.
            Isa::Avx2 => unsafe {
                x86_64::attend_block_avx2(q, q_stride, keys, values, visible, scale, probs, out)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => reference::attend_block(q, q_stride, keys, values, visible, scale, probs, out),
        }
    }

    /// x (n) *= a.
    pub fn scale(self, a: f32, x: &mut [f32]) {
        match self.usable() {
            Isa::Reference => reference::scale(a, x),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: usable() checked the CPU has AVX2, FMA and F16C.
            _ => unsafe { x86_64::scale_avx2(a, x) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => reference::scale(a, x),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quantized kernels behind one signature, so matmul picks them once per call.

/// One weight row (`kb` = K / 32 groups of 32 elements at the `*const u8`) against the
/// activation rows of N tokens (the same K elements at each pointer), for N = 1 and N = 4.
/// Safety: the pointers must be valid for those reads, and the kernel set usable on this CPU.
type RowKernel<A, const N: usize> = unsafe fn(*const u8, [*const A; N], usize) -> [f32; N];

struct QuantKernel<A> {
    one: RowKernel<A, 1>,
    four: RowKernel<A, 4>,
}

/// Wraps a reference dot product in the [`RowKernel`] signature.
macro_rules! reference_kernel {
    ($name:ident, $w:ty, $a:ty, $dot:path) => {
        /// Safety: `w` holds `kb` groups of 32 weights, each `a[i]` as many activations.
        unsafe fn $name<const N: usize>(w: *const u8, a: [*const $a; N], kb: usize) -> [f32; N] {
            let (wn, an) = (kb * QK / <$w as Elems>::N, kb * QK / <$a as Elems>::N);
            let bytes = std::slice::from_raw_parts(w, wn * std::mem::size_of::<$w>());
            let wb = quant::blocks::<$w>(bytes);
            a.map(|ai| $dot(&wb, std::slice::from_raw_parts(ai, an)))
        }
    };
}

reference_kernel!(ref_q4_0, BlockQ4_0, BlockQ8_0, reference::dot_q4_0_q8_0);
reference_kernel!(ref_q4_1, BlockQ4_1, BlockQ8_1, reference::dot_q4_1_q8_1);
reference_kernel!(ref_q8_0, BlockQ8_0, BlockQ8_0, reference::dot_q8_0_q8_0);
reference_kernel!(ref_q5_0, BlockQ5_0, BlockQ8_0, reference::dot_q5_0_q8_0);
reference_kernel!(ref_q5_1, BlockQ5_1, BlockQ8_1, reference::dot_q5_1_q8_1);
reference_kernel!(
    ref_q4_1_q8x2,
    BlockQ4_1,
    BlockQ8x2,
    reference::dot_q4_1_q8x2
);
reference_kernel!(
    ref_q4_0_q8x2,
    BlockQ4_0,
    BlockQ8x2,
    reference::dot_q4_0_q8x2
);
reference_kernel!(
    ref_q8_0_q8x2,
    BlockQ8_0,
    BlockQ8x2,
    reference::dot_q8_0_q8x2
);
reference_kernel!(
    ref_q5_0_q8x2,
    BlockQ5_0,
    BlockQ8x2,
    reference::dot_q5_0_q8x2
);
reference_kernel!(
    ref_q5_1_q8x2,
    BlockQ5_1,
    BlockQ8x2,
    reference::dot_q5_1_q8x2
);
reference_kernel!(
    ref_q2_k_q8x2,
    BlockQ2_K,
    BlockQ8x2,
    reference::dot_q2_k_q8x2
);
reference_kernel!(
    ref_q3_k_q8x2,
    BlockQ3_K,
    BlockQ8x2,
    reference::dot_q3_k_q8x2
);
reference_kernel!(
    ref_q4_k_q8x2,
    BlockQ4_K,
    BlockQ8x2,
    reference::dot_q4_k_q8x2
);
reference_kernel!(
    ref_q5_k_q8x2,
    BlockQ5_K,
    BlockQ8x2,
    reference::dot_q5_k_q8x2
);
reference_kernel!(
    ref_q6_k_q8x2,
    BlockQ6_K,
    BlockQ8x2,
    reference::dot_q6_k_q8x2
);
reference_kernel!(ref_q2_k, BlockQ2_K, BlockQ8_K, reference::dot_q2_k_q8_k);
reference_kernel!(ref_q3_k, BlockQ3_K, BlockQ8_K, reference::dot_q3_k_q8_k);
reference_kernel!(ref_q4_k, BlockQ4_K, BlockQ8_K, reference::dot_q4_k_q8_k);
reference_kernel!(ref_q5_k, BlockQ5_K, BlockQ8_K, reference::dot_q5_k_q8_k);
reference_kernel!(ref_q6_k, BlockQ6_K, BlockQ8_K, reference::dot_q6_k_q8_k);

/// A constructor of the two-plane kernels for one weight type (`x86_64::WeightBlock` `$w`).
macro_rules! q8x2_kernel {
    ($name:ident, $w:ident, $reference:ident) => {
        /// `isa` must be usable().
        fn $name(isa: Isa) -> Self {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512Vnni => QuantKernel {
                    one: x86_64::q8x2_vnni::<x86_64::$w, 1>,
                    four: x86_64::q8x2_vnni::<x86_64::$w, 4>,
                },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => QuantKernel {
                    one: x86_64::q8x2_avx2::<x86_64::$w, 1>,
                    four: x86_64::q8x2_avx2::<x86_64::$w, 4>,
                },
                _ => QuantKernel {
                    one: $reference::<1>,
                    four: $reference::<4>,
                },
            }
        }
    };
}

/// A constructor of the row kernels for one K-quant weight type (`x86_64::KWeight` `$w`)
/// against activations `$a`, by the `$avx2` / `$vnni` kernel templates.
macro_rules! kquant_kernel {
    ($name:ident, $w:ident, $avx2:ident, $vnni:ident, $reference:ident) => {
        /// `isa` must be usable().
        fn $name(isa: Isa) -> Self {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512Vnni => QuantKernel {
                    one: x86_64::$vnni::<x86_64::$w, 1>,
                    four: x86_64::$vnni::<x86_64::$w, 4>,
                },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => QuantKernel {
                    one: x86_64::$avx2::<x86_64::$w, 1>,
                    four: x86_64::$avx2::<x86_64::$w, 4>,
                },
                _ => QuantKernel {
                    one: $reference::<1>,
                    four: $reference::<4>,
                },
            }
        }
    };
}

impl QuantKernel<BlockQ8x2> {
    q8x2_kernel!(q4_1_q8x2, Q4_1W, ref_q4_1_q8x2);
    q8x2_kernel!(q4_0_q8x2, Q4_0W, ref_q4_0_q8x2);
    q8x2_kernel!(q8_0_q8x2, Q8_0W, ref_q8_0_q8x2);
    q8x2_kernel!(q5_0_q8x2, Q5_0W, ref_q5_0_q8x2);
    q8x2_kernel!(q5_1_q8x2, Q5_1W, ref_q5_1_q8x2);
    kquant_kernel!(q2_k_q8x2, Q2KW, kq_q8x2_avx2, kq_q8x2_vnni, ref_q2_k_q8x2);
    kquant_kernel!(q3_k_q8x2, Q3KW, kq_q8x2_avx2, kq_q8x2_vnni, ref_q3_k_q8x2);
    kquant_kernel!(q4_k_q8x2, Q4KW, kq_q8x2_avx2, kq_q8x2_vnni, ref_q4_k_q8x2);
    kquant_kernel!(q5_k_q8x2, Q5KW, kq_q8x2_avx2, kq_q8x2_vnni, ref_q5_k_q8x2);
    kquant_kernel!(q6_k_q8x2, Q6KW, kq_q8x2_avx2, kq_q8x2_vnni, ref_q6_k_q8x2);

    /// The two-plane kernel for weights of `dtype`, if it has one (every quantized weight type
    /// but Q8_K). `isa` must be usable().
    fn for_dtype(dtype: DType, isa: Isa) -> Option<Self> {
        Some(match dtype {
            DType::Q4_0 => Self::q4_0_q8x2(isa),
            DType::Q4_1 => Self::q4_1_q8x2(isa),
            DType::Q5_0 => Self::q5_0_q8x2(isa),
            DType::Q5_1 => Self::q5_1_q8x2(isa),
            DType::Q8_0 => Self::q8_0_q8x2(isa),
            DType::Q2_K => Self::q2_k_q8x2(isa),
            DType::Q3_K => Self::q3_k_q8x2(isa),
            DType::Q4_K => Self::q4_k_q8x2(isa),
            DType::Q5_K => Self::q5_k_q8x2(isa),
            DType::Q6_K => Self::q6_k_q8x2(isa),
            DType::F32 | DType::F16 | DType::BF16 | DType::Q8_K => return None,
        })
    }
}

impl QuantKernel<BlockQ8_K> {
    kquant_kernel!(q2_k, Q2KW, kq_q8k_avx2, kq_q8k_vnni, ref_q2_k);
    kquant_kernel!(q3_k, Q3KW, kq_q8k_avx2, kq_q8k_vnni, ref_q3_k);
    kquant_kernel!(q4_k, Q4KW, kq_q8k_avx2, kq_q8k_vnni, ref_q4_k);
    kquant_kernel!(q5_k, Q5KW, kq_q8k_avx2, kq_q8k_vnni, ref_q5_k);
    kquant_kernel!(q6_k, Q6KW, kq_q8k_avx2, kq_q8k_vnni, ref_q6_k);

    /// The Q8_K kernel for K-quant weights of `dtype`. `isa` must be usable().
    fn for_dtype(dtype: DType, isa: Isa) -> Option<Self> {
        Some(match dtype {
            DType::Q2_K => Self::q2_k(isa),
            DType::Q3_K => Self::q3_k(isa),
            DType::Q4_K => Self::q4_k(isa),
            DType::Q5_K => Self::q5_k(isa),
            DType::Q6_K => Self::q6_k(isa),
            _ => return None,
        })
    }
}

impl QuantKernel<BlockQ8_1> {
    /// `isa` must be usable().
    fn q4_1(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => QuantKernel {
                one: x86_64::q4_1_q8_1_vnni::<1>,
                four: x86_64::q4_1_q8_1_vnni::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => QuantKernel {
                one: x86_64::q4_1_q8_1_avx2::<1>,
                four: x86_64::q4_1_q8_1_avx2::<4>,
            },
            _ => QuantKernel {
                one: ref_q4_1::<1>,
                four: ref_q4_1::<4>,
            },
        }
    }

    /// `isa` must be usable().
    fn q5_1(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => QuantKernel {
                one: x86_64::q5_1_q8_1_vnni::<1>,
                four: x86_64::q5_1_q8_1_vnni::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => QuantKernel {
                one: x86_64::q5_1_q8_1_avx2::<1>,
                four: x86_64::q5_1_q8_1_avx2::<4>,
            },
            _ => QuantKernel {
                one: ref_q5_1::<1>,
                four: ref_q5_1::<4>,
            },
        }
    }
}

impl QuantKernel<BlockQ8_0> {
    /// `isa` must be usable().
    fn q4_0(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => QuantKernel {
                one: x86_64::q4_0_q8_0_vnni::<1>,
                four: x86_64::q4_0_q8_0_vnni::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => QuantKernel {
                one: x86_64::q4_0_q8_0_avx2::<1>,
                four: x86_64::q4_0_q8_0_avx2::<4>,
            },
            _ => QuantKernel {
                one: ref_q4_0::<1>,
                four: ref_q4_0::<4>,
            },
        }
    }

    /// `isa` must be usable().
    fn q8_0(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => QuantKernel {
                one: x86_64::q8_0_q8_0_vnni::<1>,
                four: x86_64::q8_0_q8_0_vnni::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => QuantKernel {
                one: x86_64::q8_0_q8_0_avx2::<1>,
                four: x86_64::q8_0_q8_0_avx2::<4>,
            },
            _ => QuantKernel {
                one: ref_q8_0::<1>,
                four: ref_q8_0::<4>,
            },
        }
    }

    /// `isa` must be usable().
    fn q5_0(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => QuantKernel {
                one: x86_64::q5_0_q8_0_vnni::<1>,
                four: x86_64::q5_0_q8_0_vnni::<4>,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => QuantKernel {
                one: x86_64::q5_0_q8_0_avx2::<1>,
                four: x86_64::q5_0_q8_0_avx2::<4>,
            },
            _ => QuantKernel {
                one: ref_q5_0::<1>,
                four: ref_q5_0::<4>,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The matmul drivers: bands of output rows on the team, scratch reused across calls.

thread_local! {
    static ROW_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of `len` elements, allocated once and kept. The
/// buffer is taken out while `f` runs, so a nested call (a worker running another matmul
/// while it waits) gets a fresh buffer instead of a double borrow.
fn with_scratch<T: Zeroable + Clone, R>(
    key: &'static LocalKey<Cell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = key.take();
    buf.resize(len, T::zeroed());
    let r = f(&mut buf[..len]);
    key.set(buf);
    r
}

/// From this many tokens on, activations are quantized by the team, tokens split among threads.
const PARALLEL_QUANTIZE_MIN_TOKENS: usize = 32;

/// Quantizes the activations x (T, K) into `acts` (T, K / block) with `quantize` (which takes
/// any whole number of tokens); prompts split the tokens among the team.
fn quantize_tokens<A: Send>(
    x: &[f32],
    t: usize,
    acts: &mut [A],
    quantize: impl Fn(&[f32], &mut [A]) + Sync,
) {
    let (k, per_token) = (x.len() / t, acts.len() / t);
    let chunk = if t < PARALLEL_QUANTIZE_MIN_TOKENS {
        t
    } else {
        t.div_ceil(2 * team::width())
    };
    team::for_each_chunk_pair_mut(acts, chunk * per_token, &mut [(); 0], 0, |i, a, _| {
        quantize(&x[i * chunk * k..][..a.len() / per_token * k], a)
    });
}

/// `f` of every block, by the team when there are many.
#[cfg(target_arch = "x86_64")]
fn map_blocks<A: Sync, S: Send + Zeroable + Clone>(
    blocks: &[A],
    f: impl Fn(&A) -> S + Sync,
) -> Vec<S> {
    const CHUNK: usize = 1024;
    let mut out = vec![S::zeroed(); blocks.len()];
    team::for_each_chunk_pair_mut(&mut out, CHUNK, &mut [(); 0], 0, |i, o, _| {
        for (o, b) in o.iter_mut().zip(&blocks[i * CHUNK..]) {
            *o = f(b);
        }
    });
    out
}

/// Below this many multiply-adds a matmul runs on the calling thread: waking a second thread
/// costs more than it saves.
const MIN_PARALLEL_MACS: usize = 1 << 16;

/// Tokens whose activations stay in L1 while a band's weight rows are reused for them.
const TOKEN_TILE: usize = 16;

const BANDS_PER_THREAD_T1: usize = 8;

/// `out (T, N)` seen by bands of rows: each band writes only its own rows.
struct SharedOut {
    ptr: *mut f32,
    n: usize,
    t: usize,
}

// SAFETY: bands write disjoint elements (see `band`), so sharing the pointer across threads
// cannot race.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Safety: no two live `OutBand`s may have overlapping rows.
    unsafe fn band(&self, rows: Range<usize>) -> OutBand<'_> {
        OutBand { out: self, rows }
    }
}

struct OutBand<'a> {
    out: &'a SharedOut,
    rows: Range<usize>,
}

impl OutBand<'_> {
    /// out[ti, r] = v, for r in this band's rows.
    #[inline]
    fn set(&self, ti: usize, r: usize, v: f32) {
        assert!(ti < self.out.t && self.rows.contains(&r));
        // SAFETY: in bounds (checked above), and only this band writes row r.
        unsafe { *self.out.ptr.add(ti * self.out.n + r) = v }
    }

    /// out[ti, r0 + j] = vals[j]: a run of this band's rows for one token, with one bounds check
    /// (out is (T, N) row-major, so the run is contiguous).
    #[inline]
    fn set_run(&self, ti: usize, r0: usize, vals: &[f32]) {
        assert!(ti < self.out.t && r0 >= self.rows.start && r0 + vals.len() <= self.rows.end);
        // SAFETY: in bounds (checked above), and only this band writes these rows.
        unsafe {
            std::ptr::copy_nonoverlapping(
                vals.as_ptr(),
                self.out.ptr.add(ti * self.out.n + r0),
                vals.len(),
            )
        }
    }
}

/// The most matrices [`Isa::matmuls_acts`] runs together (Q, K and V are three).
const MAX_GROUP: usize = 4;

/// What a path of [`Isa::matmul_job`] does with its job: runs it, or makes the next matrix's
/// job inside it and runs them together ([`Isa::matmuls_acts`]).
type Then<'a> = &'a mut dyn FnMut(&BandJob);

/// One matmul's `out (T, N)`, ready to be computed in bands of rows by `f`: each band writes only
/// its own rows. `macs` (multiply-adds) decides whether the work is worth a second thread.
struct BandJob<'a> {
    out: SharedOut,
    macs: usize,
    /// Bands hold a multiple of this many rows (a panel kernel's 16).
    row_multiple: usize,
    f: &'a (dyn Fn(OutBand) + Sync),
}

impl BandJob<'_> {
    /// A matmul already computed (or empty): no bands.
    const DONE: BandJob<'static> = BandJob {
        out: SharedOut {
            ptr: std::ptr::null_mut(),
            n: 0,
            t: 0,
        },
        macs: 0,
        row_multiple: 1,
        f: &|_| {},
    };

    /// Rows per band on `threads` threads. Generation (T = 1): few bands, since each task
    /// costs a claim and the rows are uniform work. Prompts: smaller bands balance the load;
    /// each re-reads the tokens' activations, which stay in L2.
    fn rows_per_band(&self, threads: usize) -> usize {
        let n = self.out.n;
        let rows = if self.out.t == 1 {
            n.div_ceil(threads * BANDS_PER_THREAD_T1).max(16)
        } else {
            n.div_ceil(threads * 8).clamp(4, 64)
        };
        rows.next_multiple_of(self.row_multiple)
    }
}

/// Hands `then` the job of computing out (T, N) by bands of rows, `band(rows)` each.
fn band_job(
    n: usize,
    t: usize,
    macs: usize,
    row_multiple: usize,
    out: &mut [f32],
    band: impl Fn(OutBand) + Sync,
    then: Then,
) {
    assert_eq!(out.len(), n * t, "band_job: out is not (T, N)");
    let out = SharedOut {
        ptr: out.as_mut_ptr(),
        n,
        t,
    };
    then(&BandJob {
        out,
        macs,
        row_multiple,
        f: &band,
    })
}

/// Runs the bands of every job in one parallel loop of the team (on the calling thread alone
/// when the work is too small for two).
fn run_jobs(jobs: &[&BandJob]) {
    let threads = team::width();
    let macs: usize = jobs.iter().map(|j| j.macs).sum();
    if threads == 1 || macs < MIN_PARALLEL_MACS {
        for job in jobs {
            // SAFETY: the job's only band.
            (job.f)(unsafe { job.out.band(0..job.out.n) });
        }
        return;
    }
    // (rows per band, bands) of a job: a few integer operations, recomputed rather than kept in
    // a vector (this runs a few hundred times per token).
    let bands = |job: &BandJob| {
        let size = job.rows_per_band(threads);
        (size, job.out.n.div_ceil(size))
    };
    team::parallel_for(jobs.iter().map(|j| bands(j).1).sum(), |mut b| {
        for job in jobs {
            let (size, count) = bands(job);
            if b < count {
                let rows = b * size..((b + 1) * size).min(job.out.n);
                // SAFETY: the bands b of a job are disjoint ranges of its rows, and jobs write
                // to distinct outputs.
                return (job.f)(unsafe { job.out.band(rows) });
            }
            b -= count;
        }
    });
}

/// Quantized path: `out (T, N)` from quantized weights `w (N, K)` and quantized activations
/// `acts (T, K / block)` blocks (32 elements each, or 256 for Q8_K).
fn quant_matmul<A: Sync + Elems>(
    kern: &QuantKernel<A>,
    w: MatRef,
    acts: &[A],
    t: usize,
    out: &mut [f32],
    then: Then,
) {
    let (n, kb) = (w.rows, w.cols / QK);
    let per_token = w.cols / A::N;
    assert_eq!(acts.len(), t * per_token);
    let act = |ti: usize| acts[ti * per_token..].as_ptr();
    band_job(
        n,
        t,
        n * w.cols * t,
        1,
        out,
        |band| {
            for t0 in (0..t).step_by(TOKEN_TILE) {
                let t1 = (t0 + TOKEN_TILE).min(t);
                for r in band.rows.clone() {
                    let wr = w.row(r).as_ptr();
                    let mut ti = t0;
                    while ti + 4 <= t1 {
                        let ptrs = [act(ti), act(ti + 1), act(ti + 2), act(ti + 3)];
                        // SAFETY: row r holds kb blocks, each token's activations kb blocks; the
                        // kernel set was checked usable() when `kern` was chosen.
                        let res = unsafe { (kern.four)(wr, ptrs, kb) };
                        for (i, v) in res.into_iter().enumerate() {
                            band.set(ti + i, r, v);
                        }
                        ti += 4;
                    }
                    while ti < t1 {
                        // SAFETY: as above.
                        let [v] = unsafe { (kern.one)(wr, [act(ti)], kb) };
                        band.set(ti, r, v);
                        ti += 1;
                    }
                }
            }
        },
        then,
    );
}

/// From this many tokens on, AVX-512 VNNI repacks weights into panels (see `x86_64`): the panel
/// kernel is several times faster per token, but packing costs more than one pass of the row
/// kernels, and one such pass serves up to 4 tokens. Measured on SmolLM2-135M Q4_1, 2 cores,
/// one batched decode step: 4 tokens take 14 ms through the row kernels and 24 ms through
/// panels; 6 tokens 35 ms (two passes) against 30 ms.
#[cfg(target_arch = "x86_64")]
const PANEL_MIN_TOKENS: usize = 5;

#[cfg(target_arch = "x86_64")]
fn panel_type(dtype: DType) -> Option<x86_64::PanelType> {
    match dtype {
        DType::Q4_1 => Some(x86_64::PanelType::Q4_1),
        DType::Q4_0 => Some(x86_64::PanelType::Q4_0),
        DType::Q8_0 => Some(x86_64::PanelType::Q8_0),
        DType::Q5_1 => Some(x86_64::PanelType::Q5_1),
        DType::Q5_0 => Some(x86_64::PanelType::Q5_0),
        DType::Q4_K => Some(x86_64::PanelType::Q4_K),
        DType::Q5_K => Some(x86_64::PanelType::Q5_K),
        DType::Q6_K => Some(x86_64::PanelType::Q6_K),
        DType::Q3_K => Some(x86_64::PanelType::Q3_K),
        DType::Q2_K => Some(x86_64::PanelType::Q2_K),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
fn panel_acts(precision: Precision) -> Option<x86_64::PanelActs> {
    match precision {
        Precision::Fast => Some(x86_64::PanelActs::Q8x2),
        Precision::Q8 => Some(x86_64::PanelActs::Q8),
        Precision::F32 | Precision::Dense => None,
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// A band's panel, packed per call for matrices without [`PackedWeights`], and its
    /// byte-quant scratch.
    static PANEL_SCRATCH: Cell<(x86_64::Panel, Vec<u8>)> = Cell::new(Default::default());
}

/// Quantized path on AVX-512 VNNI for a matrix repacked at load (any T) or T >=
/// [`PANEL_MIN_TOKENS`] (packed here, per band): `out (T, N)` from quantized weights `w (N, K)`
/// and activations x (T, K), 16 rows at a time. The caller checked the CPU.
#[cfg(target_arch = "x86_64")]
fn panel_matmul(
    ty: x86_64::PanelType,
    acts_kind: x86_64::PanelActs,
    w: MatRef,
    acts: &Activations,
    out: &mut [f32],
    then: Then,
) {
    let t = acts.t;
    use x86_64::{ActSum, PanelActs, PANEL_ROWS};
    let (n, kb) = (w.rows, w.cols / QK);
    // A repacked matrix of another type or shape would be a caller's bug: pack per call then.
    let packed = w.packed.and_then(|p| match &p.form {
        PackedForm::Quant { ty: pt, panels } if *pt == ty && p.shape == (n, w.cols) => Some(panels),
        _ => None,
    });
    // Activations as raw blocks (T, kb), plus each block's scale and sums where the kernel reads them.
    let mut run = |acts: &[u8], block_bytes: usize, sums: &[ActSum], out: &mut [f32]| {
        let act = |ti: usize| acts[ti * kb * block_bytes..].as_ptr();
        let sum = |ti: usize| sums.get(ti * kb..).map_or(std::ptr::null(), |s| s.as_ptr());
        band_job(
            n,
            t,
            n * w.cols * t,
            PANEL_ROWS,
            out,
            |band| {
                let mut scratch = PANEL_SCRATCH.take();
                let mut r0 = band.rows.start;
                while r0 < band.rows.end {
                    let r1 = (r0 + PANEL_ROWS).min(band.rows.end);
                    let panel = match packed {
                        Some(panels) => &panels[r0 / PANEL_ROWS],
                        None => {
                            let mut rows: [&[u8]; PANEL_ROWS] = [&[]; PANEL_ROWS];
                            for (slot, r) in rows.iter_mut().zip(r0..r1) {
                                *slot = w.row(r);
                            }
                            let (panel, bytes) = &mut scratch;
                            // SAFETY: the caller checked AVX-512 VNNI; each row holds kb blocks of `ty`.
                            unsafe { x86_64::pack_panel(ty, &rows[..r1 - r0], kb, panel, bytes) };
                            &scratch.0
                        }
                    };
                    let mut ti = 0;
                    while ti < t {
                        let res: &[[f32; PANEL_ROWS]] = if ti + 4 <= t {
                            let a = [act(ti), act(ti + 1), act(ti + 2), act(ti + 3)];
                            let s = [sum(ti), sum(ti + 1), sum(ti + 2), sum(ti + 3)];
                            // SAFETY: the panel holds kb packed blocks; each token's activations
                            // (and sums, against the types without a min) hold kb blocks of `acts_kind`.
                            &unsafe { x86_64::panel_dots::<4>(ty, acts_kind, panel, kb, a, s) }
                        } else {
                            let (a, s) = ([act(ti)], [sum(ti)]);
                            // SAFETY: as above.
                            &unsafe { x86_64::panel_dots::<1>(ty, acts_kind, panel, kb, a, s) }
                        };
                        for (i, vals) in res.iter().enumerate() {
                            band.set_run(ti + i, r0, &vals[..r1 - r0]);
                        }
                        ti += res.len();
                    }
                    r0 = r1;
                }
                PANEL_SCRATCH.set(scratch);
            },
            then,
        );
    };
    let none: &[ActSum] = &[];
    match acts_kind {
        PanelActs::Q8x2 => {
            let sums = if ty.reads_sums() {
                acts.q8x2_sums()
            } else {
                none
            };
            let block_bytes = std::mem::size_of::<BlockQ8x2>();
            run(bytemuck::cast_slice(acts.q8x2()), block_bytes, sums, out)
        }
        PanelActs::Q8 if ty.has_min() => {
            let block_bytes = std::mem::size_of::<BlockQ8_1>();
            run(bytemuck::cast_slice(acts.q8_1()), block_bytes, none, out)
        }
        PanelActs::Q8 => {
            let block_bytes = std::mem::size_of::<BlockQ8_0>();
            run(
                bytemuck::cast_slice(acts.q8_0()),
                block_bytes,
                acts.q8_0_sums(),
                out,
            )
        }
    }
}

/// Rows packed between two calls of [`PackedWeights::new`]'s `packed`: 64 panels.
#[cfg(target_arch = "x86_64")]
const PACK_BATCH_ROWS: usize = 1024;

/// The panels of w's rows, `pack(p)` making panel p (rows 16p..16p + 16), in batches of
/// [`PACK_BATCH_ROWS`] rows on the team; `packed` is told each batch's bytes once it is done.
#[cfg(target_arch = "x86_64")]
fn pack_in_batches<P: Send>(
    w: MatRef,
    packed: &impl Fn(Range<usize>),
    pack: impl Fn(usize) -> P + Sync,
) -> Vec<P> {
    use x86_64::PANEL_ROWS;
    let n_panels = w.rows.div_ceil(PANEL_ROWS);
    let per_batch = PACK_BATCH_ROWS / PANEL_ROWS;
    let mut panels = Vec::with_capacity(n_panels);
    for p0 in (0..n_panels).step_by(per_batch) {
        let p1 = (p0 + per_batch).min(n_panels);
        panels.extend(team::parallel_map(p1 - p0, |i| pack(p0 + i)));
        let rows = p0 * PANEL_ROWS..(p1 * PANEL_ROWS).min(w.rows);
        packed(rows.start * w.row_bytes()..rows.end * w.row_bytes());
    }
    panels
}

/// Float weights repacked at load ([`PackedForm::Float`]), on AVX-512, at any T: `out (T, N)`
/// from x (T, K), 16 rows at a time. Each output is one FMA chain over k whatever T (see
/// `x86_64.rs`), so a token's result does not depend on the batch. The caller checked the CPU.
#[cfg(target_arch = "x86_64")]
fn float_panel_matmul(
    dtype: DType,
    panels: &[x86_64::FloatPanel],
    w: MatRef,
    x: &[f32],
    t: usize,
    out: &mut [f32],
    then: Then,
) {
    use x86_64::PANEL_ROWS;
    let (n, k) = (w.rows, w.cols);
    band_job(
        n,
        t,
        n * k * t,
        PANEL_ROWS,
        out,
        |band| {
            let p0 = band.rows.start / PANEL_ROWS;
            let p1 = band.rows.end.div_ceil(PANEL_ROWS);
            let set = |ti: usize, p: usize, vals: &[f32; PANEL_ROWS]| {
                let r0 = (p0 + p) * PANEL_ROWS;
                let r1 = (r0 + PANEL_ROWS).min(band.rows.end);
                band.set_run(ti, r0, &vals[..r1 - r0]);
            };
            // SAFETY: the caller checked AVX-512; each panel holds k columns of 16 rows of dtype,
            // and x is (T, K).
            unsafe { for_float_row!(dtype, float_panels_avx512(&panels[p0..p1], x, t, k, &set)) }
        },
        then,
    );
}

/// Rows dequantized at a time for the f32 products of quantized weights at F32 precision.
const DEQUANT_ROWS: usize = 8;

/// F32 precision, or float weights: dots in f32 of each weight row with every token, in tiles of
/// a few tokens x a few rows whose weights and activations stay in registers (float rows read
/// in place, quantized ones dequantized a few rows at a time). Each output is the dot the
/// one-token product computes, bit for bit, so a token's result does not depend on T.
fn float_matmul(isa: Isa, w: MatRef, x: &[f32], t: usize, out: &mut [f32], then: Then) {
    let (n, k) = (w.rows, w.cols);
    band_job(
        n,
        t,
        n * k * t,
        1,
        out,
        |band| {
            let set = |ti: usize, r: usize, v: f32| band.set(ti, r, v);
            if matches!(w.dtype, DType::F32 | DType::F16 | DType::BF16) {
                return isa.float_rows(
                    w.dtype,
                    w.data,
                    w.row_bytes(),
                    band.rows.clone(),
                    x,
                    k,
                    &set,
                );
            }
            with_scratch(&ROW_SCRATCH, DEQUANT_ROWS * k, |rows| {
                for r0 in band.rows.clone().step_by(DEQUANT_ROWS) {
                    let r1 = (r0 + DEQUANT_ROWS).min(band.rows.end);
                    for (r, dst) in (r0..r1).zip(rows.chunks_exact_mut(k)) {
                        isa.dequantize_row(w.dtype, w.row(r), dst);
                    }
                    let shifted = |ti: usize, r: usize, v: f32| band.set(ti, r0 + r, v);
                    let bytes: &[u8] = bytemuck::cast_slice(&rows[..(r1 - r0) * k]);
                    isa.float_rows(DType::F32, bytes, k * 4, 0..r1 - r0, x, k, &shifted);
                }
            });
        },
        then,
    );
}
