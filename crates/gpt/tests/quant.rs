//! The SIMD kernels agree with their reference twins: quantized dot products (one- and
//! two-plane activations), activation quantization (bit-exact), dequantization (bit-exact,
//! checked by hand), matmul on every dtype and precision, and the small vector helpers. Every
//! kernel set the CPU supports is tested. Two-plane activations are also checked against exact
//! math: their error is a small fraction of one plane's.

use gpt::kernels::quant::{
    self, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, BlockQ8x2, Q8X2_LO_SCALE, QK,
};
use gpt::kernels::{reference, Isa, MatRef, PackedWeights, Precision};
use gpt::tensor::DType;
use half::{bf16, f16};

/// SIMD and reference dot products differ only in the order of f32 sums (lanes, then blocks).
/// Reordering n terms perturbs a sum by at most about n * eps * sum|terms|; with n <= ~1600 terms
/// and eps = 2^-24 that is ~1e-4, but the error grows like sqrt(n) in practice, so 1e-5 of the
/// magnitude sum|w_i * x_i| is both safe and tight enough to catch a wrong block or lane.
const SUM_ORDER_REL_TOL: f32 = 1e-5;

/// Quantizing an activation block to 8 bits moves each element by at most d/2 (rounding), plus
/// |q| * |d - f16(d)| <= 127 * d * 2^-11 ~ 0.062 d where d is stored as f16 (Q8_0). 0.6 d per
/// element bounds the Q8-vs-F32 difference for any data, with no statistical assumption.
const ACT_QUANT_ERR_PER_D: f32 = 0.6;

/// Two planes move each element by at most d/2 / 254 (the second rounding), plus the f32
/// rounding of x * (1/d) (a relative 2^-23 of |x/d| <= 127, so 1.6e-5 d). 0.0021 d per element
/// bounds the Fast-vs-F32 difference for any data: 285 times tighter than one plane's bound.
const ACT_Q8X2_ERR_PER_D: f32 = 0.5 / Q8X2_LO_SCALE + 1.4e-4;

/// A small deterministic generator (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

fn supported() -> Vec<Isa> {
    let isas = Isa::available();
    static PRINT: std::sync::Once = std::sync::Once::new();
    PRINT.call_once(|| eprintln!("kernel sets on this CPU: {isas:?}"));
    isas
}

/// Checks |got - want| <= tol(i) for every element; on failure prints the first values, the
/// first offending element and the max difference, like llm.c's check_tensor.
fn check_close(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let diff = |i: usize| (got[i] - want[i]).abs();
    let bad = (0..got.len()).find(|&i| diff(i).is_nan() || diff(i) > tol(i));
    if let Some(i) = bad {
        let max = (0..got.len()).map(diff).fold(0f32, f32::max);
        let n = got.len().min(6);
        panic!(
            "{what}: element {i}: got {} want {} (diff {:e} > tolerance {:e}); max diff {max:e}\n  got  {:?}\n  want {:?}",
            got[i],
            want[i],
            diff(i),
            tol(i),
            &got[..n],
            &want[..n]
        );
    }
}

fn random_q4_0(rng: &mut Rng, kb: usize) -> Vec<BlockQ4_0> {
    (0..kb)
        .map(|_| BlockQ4_0 {
            d: f16::from_f32(rng.f32() * 0.1),
            qs: std::array::from_fn(|_| rng.below(256) as u8),
        })
        .collect()
}

fn random_q4_1(rng: &mut Rng, kb: usize) -> Vec<BlockQ4_1> {
    (0..kb)
        .map(|_| BlockQ4_1 {
            d: f16::from_f32(rng.f32().abs() * 0.02),
            m: f16::from_f32(rng.f32() * 0.1),
            qs: std::array::from_fn(|_| rng.below(256) as u8),
        })
        .collect()
}

fn random_q8_0(rng: &mut Rng, kb: usize) -> Vec<BlockQ8_0> {
    (0..kb)
        .map(|_| BlockQ8_0 {
            d: f16::from_f32(rng.f32() * 0.01),
            qs: std::array::from_fn(|_| (rng.below(255) as i32 - 127) as i8),
        })
        .collect()
}

/// sum |w_i * a_i| over dequantized values: the scale of a dot product's rounding error.
fn magnitude(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| (x * y).abs()).sum()
}

fn dequant_q8_0(a: &[BlockQ8_0]) -> Vec<f32> {
    let mut out = vec![0f32; a.len() * QK];
    quant::dequantize_row(DType::Q8_0, bytemuck::cast_slice(a), &mut out);
    out
}

fn dequant_q8_1(a: &[BlockQ8_1]) -> Vec<f32> {
    a.iter()
        .flat_map(|b| b.qs.map(|q| b.d * q as f32))
        .collect()
}

/// The values two-plane blocks stand for: d * (hi + lo / 254).
fn dequant_q8x2(a: &[BlockQ8x2]) -> Vec<f32> {
    a.iter()
        .flat_map(|b| {
            let v: [f32; QK] =
                std::array::from_fn(|j| b.d * (b.hi[j] as f32 + b.lo[j] as f32 / Q8X2_LO_SCALE));
            v
        })
        .collect()
}

fn quantize_q8x2(x: &[f32]) -> Vec<BlockQ8x2> {
    let mut a = vec![BlockQ8x2::zeroed(); x.len() / QK];
    quant::quantize_q8x2(x, &mut a);
    a
}

/// Activation rows to test against: random at several scales, plus the extremes.
fn activation_cases(rng: &mut Rng, k: usize) -> Vec<(String, Vec<f32>)> {
    vec![
        ("random".into(), rng.vec(k, 1.0)),
        ("random large".into(), rng.vec(k, 1e4)),
        ("random tiny".into(), rng.vec(k, 1e-4)),
        ("all +1 (q = 127)".into(), vec![1.0; k]),
        ("all -1 (q = -127)".into(), vec![-1.0; k]),
        (
            "alternating +-127".into(),
            (0..k)
                .map(|i| if i % 2 == 0 { 127.0 } else { -127.0 })
                .collect(),
        ),
        ("zeros".into(), vec![0.0; k]),
    ]
}

const BLOCK_COUNTS: [usize; 6] = [1, 2, 3, 7, 18, 48];

#[test]
fn simd_q4_1_dot_matches_reference() {
    let mut rng = Rng(1);
    for isa in supported() {
        for kb in BLOCK_COUNTS {
            let mut weights = vec![("random".to_string(), random_q4_1(&mut rng, kb))];
            let mut all15 = random_q4_1(&mut rng, kb);
            all15.iter_mut().for_each(|b| b.qs = [0xff; 16]);
            weights.push(("all nibbles 15".into(), all15));
            for (wname, w) in &weights {
                let mut wf = vec![0f32; kb * QK];
                quant::dequantize_row(DType::Q4_1, bytemuck::cast_slice(w), &mut wf);
                for (aname, x) in activation_cases(&mut rng, kb * QK) {
                    let mut a = vec![BlockQ8_1::zeroed(); kb];
                    quant::quantize_q8_1(&x, &mut a);
                    let want = reference::dot_q4_1_q8_1(w, &a);
                    let got = isa.dot_q4_1_q8_1(w, &a);
                    // The min term m * s adds sum|m| * |s| to the magnitude.
                    let mins: f32 = w
                        .iter()
                        .zip(&a)
                        .map(|(b, q)| (b.m.to_f32() * q.s).abs())
                        .sum();
                    let tol = SUM_ORDER_REL_TOL * (magnitude(&wf, &dequant_q8_1(&a)) + mins);
                    check_close(
                        &format!("{isa:?} q4_1 kb={kb} w={wname} a={aname}"),
                        &[got],
                        &[want],
                        |_| tol,
                    );
                }
            }
        }
    }
}

#[test]
fn simd_q4_0_dot_matches_reference() {
    let mut rng = Rng(2);
    for isa in supported() {
        for kb in BLOCK_COUNTS {
            let mut extremes = random_q4_0(&mut rng, kb);
            extremes
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| b.qs = [if i % 2 == 0 { 0xff } else { 0x00 }; 16]);
            for (wname, w) in [
                ("random", random_q4_0(&mut rng, kb)),
                ("nibbles 0 and 15", extremes),
            ] {
                let mut wf = vec![0f32; kb * QK];
                quant::dequantize_row(DType::Q4_0, bytemuck::cast_slice(&w), &mut wf);
                for (aname, x) in activation_cases(&mut rng, kb * QK) {
                    let mut a = vec![BlockQ8_0::zeroed(); kb];
                    quant::quantize_q8_0(&x, &mut a);
                    let want = reference::dot_q4_0_q8_0(&w, &a);
                    let got = isa.dot_q4_0_q8_0(&w, &a);
                    let tol = SUM_ORDER_REL_TOL * magnitude(&wf, &dequant_q8_0(&a));
                    check_close(
                        &format!("{isa:?} q4_0 kb={kb} w={wname} a={aname}"),
                        &[got],
                        &[want],
                        |_| tol,
                    );
                }
            }
        }
    }
}

#[test]
fn simd_q8_0_dot_matches_reference() {
    let mut rng = Rng(3);
    for isa in supported() {
        for kb in BLOCK_COUNTS {
            let mut extremes = random_q8_0(&mut rng, kb);
            extremes
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| b.qs = [if i % 2 == 0 { 127 } else { -127 }; 32]);
            let mut with_min = random_q8_0(&mut rng, kb);
            with_min.iter_mut().for_each(|b| b.qs[5] = -128);
            let cases = [
                ("random", random_q8_0(&mut rng, kb)),
                ("+-127", extremes),
                ("a -128", with_min),
            ];
            for (wname, w) in cases {
                let wf = dequant_q8_0(&w);
                for (aname, x) in activation_cases(&mut rng, kb * QK) {
                    let mut a = vec![BlockQ8_0::zeroed(); kb];
                    quant::quantize_q8_0(&x, &mut a);
                    let want = reference::dot_q8_0_q8_0(&w, &a);
                    let got = isa.dot_q8_0_q8_0(&w, &a);
                    let tol = SUM_ORDER_REL_TOL * magnitude(&wf, &dequant_q8_0(&a));
                    check_close(
                        &format!("{isa:?} q8_0 kb={kb} w={wname} a={aname}"),
                        &[got],
                        &[want],
                        |_| tol,
                    );
                }
            }
        }
    }
}

/// The two-plane dot products of every kernel set against their reference twins, for the three
/// weight types, on random and extreme weights and activations.
#[test]
fn simd_two_plane_dots_match_reference() {
    let mut rng = Rng(11);
    for isa in supported() {
        for kb in BLOCK_COUNTS {
            let mut q4_1_max = random_q4_1(&mut rng, kb);
            q4_1_max.iter_mut().for_each(|b| b.qs = [0xff; 16]);
            let mut q4_0_ext = random_q4_0(&mut rng, kb);
            q4_0_ext
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| b.qs = [if i % 2 == 0 { 0xff } else { 0x00 }; 16]);
            let mut q8_0_ext = random_q8_0(&mut rng, kb);
            q8_0_ext.iter_mut().enumerate().for_each(|(i, b)| {
                b.qs = [if i % 2 == 0 { 127 } else { -127 }; 32];
                b.qs[5] = -128;
            });
            let q4_1 = [random_q4_1(&mut rng, kb), q4_1_max];
            let q4_0 = [random_q4_0(&mut rng, kb), q4_0_ext];
            let q8_0 = [random_q8_0(&mut rng, kb), q8_0_ext];
            for (aname, x) in activation_cases(&mut rng, kb * QK) {
                let a = quantize_q8x2(&x);
                let af = dequant_q8x2(&a);
                let check = |what: &str, dtype: DType, w: &[u8], got: f32, want: f32| {
                    let mut wf = vec![0f32; kb * QK];
                    quant::dequantize_row(dtype, w, &mut wf);
                    // The min term m * s adds sum|m| * |s| to the magnitude (0 without one).
                    let mins: f32 = match dtype {
                        DType::Q4_1 => bytemuck::cast_slice::<_, BlockQ4_1>(w)
                            .iter()
                            .zip(&a)
                            .map(|(b, q)| (b.m.to_f32() * q.s).abs())
                            .sum(),
                        _ => 0.0,
                    };
                    let tol = SUM_ORDER_REL_TOL * (magnitude(&wf, &af) + mins);
                    check_close(
                        &format!("{isa:?} {what} kb={kb} a={aname}"),
                        &[got],
                        &[want],
                        |_| tol,
                    );
                };
                for (k, w) in q4_1.iter().enumerate() {
                    let (got, want) = (isa.dot_q4_1_q8x2(w, &a), reference::dot_q4_1_q8x2(w, &a));
                    check(
                        &format!("q4_1 w#{k}"),
                        DType::Q4_1,
                        bytemuck::cast_slice(w),
                        got,
                        want,
                    );
                }
                for (k, w) in q4_0.iter().enumerate() {
                    let (got, want) = (isa.dot_q4_0_q8x2(w, &a), reference::dot_q4_0_q8x2(w, &a));
                    check(
                        &format!("q4_0 w#{k}"),
                        DType::Q4_0,
                        bytemuck::cast_slice(w),
                        got,
                        want,
                    );
                }
                for (k, w) in q8_0.iter().enumerate() {
                    let (got, want) = (isa.dot_q8_0_q8x2(w, &a), reference::dot_q8_0_q8x2(w, &a));
                    check(
                        &format!("q8_0 w#{k}"),
                        DType::Q8_0,
                        bytemuck::cast_slice(w),
                        got,
                        want,
                    );
                }
            }
        }
    }
}

/// The point of two planes, as a property of the math rather than of our kernels: against the
/// exact dot product of the dequantized weights with the f32 activations (in f64), the
/// two-plane dot's error is at least 50 times smaller than the one-plane (llama.cpp) dot's.
/// (The rounding error per element shrinks 254-fold; the f16 scale of Q8_0 activations, which
/// two-plane blocks keep in f32, only widens the gap.)
#[test]
fn two_plane_dot_error_is_far_below_one_plane_error() {
    let mut rng = Rng(12);
    let kb = 18;
    let rows = 200;
    let exact =
        |w: &[f32], x: &[f32]| -> f64 { w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum() };
    let (mut one, mut two) = ([0f64; 3], [0f64; 3]);
    for _ in 0..rows {
        let x = rng.vec(kb * QK, 1.0);
        let a2 = quantize_q8x2(&x);
        let mut a0 = vec![BlockQ8_0::zeroed(); kb];
        quant::quantize_q8_0(&x, &mut a0);
        let mut a1 = vec![BlockQ8_1::zeroed(); kb];
        quant::quantize_q8_1(&x, &mut a1);
        let mut wf = vec![0f32; kb * QK];

        let w = random_q4_1(&mut rng, kb);
        quant::dequantize_row(DType::Q4_1, bytemuck::cast_slice(&w), &mut wf);
        let e = exact(&wf, &x);
        one[0] += (reference::dot_q4_1_q8_1(&w, &a1) as f64 - e).abs();
        two[0] += (reference::dot_q4_1_q8x2(&w, &a2) as f64 - e).abs();

        let w = random_q4_0(&mut rng, kb);
        quant::dequantize_row(DType::Q4_0, bytemuck::cast_slice(&w), &mut wf);
        let e = exact(&wf, &x);
        one[1] += (reference::dot_q4_0_q8_0(&w, &a0) as f64 - e).abs();
        two[1] += (reference::dot_q4_0_q8x2(&w, &a2) as f64 - e).abs();

        let w = random_q8_0(&mut rng, kb);
        let wf = dequant_q8_0(&w);
        let e = exact(&wf, &x);
        one[2] += (reference::dot_q8_0_q8_0(&w, &a0) as f64 - e).abs();
        two[2] += (reference::dot_q8_0_q8x2(&w, &a2) as f64 - e).abs();
    }
    for (k, name) in ["q4_1", "q4_0", "q8_0"].iter().enumerate() {
        let (e1, e2) = (one[k] / rows as f64, two[k] / rows as f64);
        eprintln!(
            "{name}: mean |error| one plane {e1:.3e}, two planes {e2:.3e}, ratio {:.0}",
            e1 / e2
        );
        assert!(
            e1 >= 50.0 * e2,
            "{name}: two-plane error {e2:e} is not 50x below one-plane error {e1:e}"
        );
    }
}

/// Activations whose scaled values land exactly on halves, where round-half-away-from-zero
/// (ggml's roundf, Rust's f32::round) and round-half-to-even differ.
fn tie_block() -> Vec<f32> {
    // max |x| = 127 gives d = 1 and 1/d = 1, so x / d = x exactly.
    let mut x: Vec<f32> = (0..QK).map(|i| i as f32 - 15.5).collect();
    x[0] = 127.0;
    x[1] = -0.5;
    x[2] = 0.5;
    x[3] = 2.5;
    x[4] = -2.5;
    x
}

#[test]
fn simd_activation_quantization_is_bit_exact() {
    let mut rng = Rng(4);
    let mut rows: Vec<Vec<f32>> = vec![tie_block(), vec![0.0; QK], vec![-3.0; 2 * QK]];
    for kb in BLOCK_COUNTS {
        for scale in [1e-6, 1.0, 3.7, 1e5] {
            rows.push(rng.vec(kb * QK, scale));
        }
    }
    for isa in supported() {
        for x in &rows {
            let kb = x.len() / QK;
            let (mut want0, mut got0) =
                (vec![BlockQ8_0::zeroed(); kb], vec![BlockQ8_0::zeroed(); kb]);
            quant::quantize_q8_0(x, &mut want0);
            isa.quantize_q8_0(x, &mut got0);
            assert_eq!(
                bytemuck::cast_slice::<_, u8>(&got0),
                bytemuck::cast_slice::<_, u8>(&want0),
                "{isa:?} q8_0 of {:?}..",
                &x[..4]
            );
            let (mut want1, mut got1) =
                (vec![BlockQ8_1::zeroed(); kb], vec![BlockQ8_1::zeroed(); kb]);
            quant::quantize_q8_1(x, &mut want1);
            isa.quantize_q8_1(x, &mut got1);
            assert_eq!(
                bytemuck::cast_slice::<_, u8>(&got1),
                bytemuck::cast_slice::<_, u8>(&want1),
                "{isa:?} q8_1 of {:?}..",
                &x[..4]
            );
            let mut got2 = vec![BlockQ8x2::zeroed(); kb];
            isa.quantize_q8x2(x, &mut got2);
            assert_eq!(
                bytemuck::cast_slice::<_, u8>(&got2),
                bytemuck::cast_slice::<_, u8>(&quantize_q8x2(x)),
                "{isa:?} q8x2 of {:?}..",
                &x[..4]
            );
        }
    }
    // The ties themselves, by hand: 127 -> 127, -0.5 -> -1, 0.5 -> 1, 2.5 -> 3, -2.5 -> -3.
    let mut b = [BlockQ8_0::zeroed()];
    Isa::detected().quantize_q8_0(&tie_block(), &mut b);
    assert_eq!(&b[0].qs[..5], &[127, -1, 1, 3, -3]);
    assert_eq!(b[0].d.to_f32(), 1.0);
}

/// Two planes by hand. With max |x| = 127, d = 1: hi = round(x), lo = round((x - hi) * 254).
/// 0.25 * 254 = 63.5 and -0.25 * 254 = -63.5 are ties in the second plane, rounded away from 0.
#[test]
fn two_plane_quantization_by_hand() {
    let mut x = vec![0f32; QK];
    x[..8].copy_from_slice(&[127.0, 2.5, -0.5, 0.25, 1.75, 0.125, -3.0, 10.5]);
    // hi: 127, 3 (tie), -1 (tie), 0, 2, 0, -3, 11; residuals 0, -0.5, 0.5, 0.25, -0.25,
    // 0.125, 0, -0.5, times 254: 0, -127, 127, 63.5, -63.5, 31.75, 0, -127.
    let want_hi = [127, 3, -1, 0, 2, 0, -3, 11];
    let want_lo = [0, -127, 127, 64, -64, 32, 0, -127];
    for isa in supported() {
        let mut b = [BlockQ8x2::zeroed()];
        isa.quantize_q8x2(&x, &mut b);
        assert_eq!(b[0].d, 1.0, "{isa:?}");
        assert_eq!(&b[0].hi[..8], &want_hi, "{isa:?} hi");
        assert_eq!(&b[0].lo[..8], &want_lo, "{isa:?} lo");
        // s = d * (sum(hi) + sum(lo) / 254) = 139 + (-95) / 254.
        assert_eq!(b[0].s, 139.0 + -95.0 / 254.0, "{isa:?} s");
        // 0.25 comes back as 64 / 254 = 0.25197: within d / 508 of the input.
        let back = dequant_q8x2(&b);
        assert!((back[3] - 0.25).abs() <= 0.5 / 254.0, "{back:?}");
    }
}

use bytemuck::Zeroable;

/// Runs every kernel set's dequantize_row on `bytes` and checks it equals `want` exactly.
fn check_dequantize(dtype: DType, bytes: &[u8], want: &[f32]) {
    let mut out = vec![f32::NAN; want.len()];
    quant::dequantize_row(dtype, bytes, &mut out);
    assert_eq!(out, want, "quant::dequantize_row {dtype}");
    for isa in supported() {
        out.fill(f32::NAN);
        isa.dequantize_row(dtype, bytes, &mut out);
        assert_eq!(out, want, "{isa:?} dequantize_row {dtype}");
    }
}

#[test]
fn dequantize_matches_ggml_definition_by_hand() {
    // Q4_1: value = d * q + m with d = 0.5, m = -1. Byte j holds element j in its low nibble
    // (q = j) and element 16 + j in its high nibble (q = 15 - j).
    let b = BlockQ4_1 {
        d: f16::from_f32(0.5),
        m: f16::from_f32(-1.0),
        qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
    };
    #[rustfmt::skip]
    let want = [
        -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5,
        6.5, 6.0, 5.5, 5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0,
    ];
    check_dequantize(DType::Q4_1, bytemuck::bytes_of(&b), &want);

    // Q4_0: value = d * (q - 8) with d = 2; low nibbles q = j, high nibbles q = 15 - j.
    let b = BlockQ4_0 {
        d: f16::from_f32(2.0),
        qs: std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4)),
    };
    #[rustfmt::skip]
    let want = [
        -16.0, -14.0, -12.0, -10.0, -8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0,
        14.0, 12.0, 10.0, 8.0, 6.0, 4.0, 2.0, 0.0, -2.0, -4.0, -6.0, -8.0, -10.0, -12.0, -14.0, -16.0,
    ];
    check_dequantize(DType::Q4_0, bytemuck::bytes_of(&b), &want);

    // Q8_0: value = d * q with d = 0.25 and q = -127, -126, ... for element j: q = 8 * j - 127
    // for j < 32 clamps nothing (max 121).
    let b = BlockQ8_0 {
        d: f16::from_f32(0.25),
        qs: std::array::from_fn(|j| (8 * j as i32 - 127) as i8),
    };
    let want: Vec<f32> = (0..32).map(|j| (8 * j - 127) as f32 * 0.25).collect();
    assert_eq!(&want[..3], &[-31.75, -29.75, -27.75]);
    check_dequantize(DType::Q8_0, bytemuck::bytes_of(&b), &want);
}

#[test]
fn simd_float_rows_widen_exactly() {
    let mut rng = Rng(5);
    for n in [1, 7, 8, 33, 576] {
        let x = rng.vec(n, 10.0);
        let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        let bh: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        check_dequantize(
            DType::F16,
            bytemuck::cast_slice(&h),
            &h.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        );
        check_dequantize(
            DType::BF16,
            bytemuck::cast_slice(&bh),
            &bh.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
        );
        check_dequantize(DType::F32, bytemuck::cast_slice(&x), &x);
    }
}

#[test]
fn simd_dot_f32_matches_reference() {
    let mut rng = Rng(6);
    for isa in supported() {
        for n in [0, 1, 5, 8, 31, 64, 100, 576, 1536] {
            let (a, b) = (rng.vec(n, 1.0), rng.vec(n, 3.0));
            let tol = SUM_ORDER_REL_TOL * magnitude(&a, &b);
            check_close(
                &format!("{isa:?} dot_f32 n={n}"),
                &[isa.dot_f32(&a, &b)],
                &[reference::dot_f32(&a, &b)],
                |_| tol,
            );
        }
    }
}

/// A random weight matrix (N, K) stored as `dtype`, preceded by one byte so that rows are not
/// aligned, as in a memory-mapped file. Returns the buffer; the matrix is `&buf[1..]`.
fn random_weights(rng: &mut Rng, dtype: DType, n: usize, k: usize) -> Vec<u8> {
    let kb = n * k / QK;
    let mut buf = vec![0u8];
    match dtype {
        DType::F32 => buf.extend_from_slice(bytemuck::cast_slice(&rng.vec(n * k, 0.1))),
        DType::F16 => {
            let v: Vec<f16> = rng.vec(n * k, 0.1).into_iter().map(f16::from_f32).collect();
            buf.extend_from_slice(bytemuck::cast_slice(&v))
        }
        DType::BF16 => {
            let v: Vec<bf16> = rng
                .vec(n * k, 0.1)
                .into_iter()
                .map(bf16::from_f32)
                .collect();
            buf.extend_from_slice(bytemuck::cast_slice(&v))
        }
        DType::Q4_0 => buf.extend_from_slice(bytemuck::cast_slice(&random_q4_0(rng, kb))),
        DType::Q4_1 => buf.extend_from_slice(bytemuck::cast_slice(&random_q4_1(rng, kb))),
        DType::Q8_0 => buf.extend_from_slice(bytemuck::cast_slice(&random_q8_0(rng, kb))),
        other => buf.extend(blocks_of(
            rng,
            other,
            n * k / other.block_size(),
            None,
            0.05,
        )),
    }
    buf
}

const DTYPES: [DType; 6] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q8_0,
];

/// Shapes (N, K): small ones run on one thread, (130, 576) and (300, 1536) on several.
const SHAPES: [(usize, usize); 3] = [(5, 64), (130, 576), (300, 1536)];

fn run(isa: Isa, w: MatRef, x: &[f32], t: usize, precision: Precision) -> Vec<f32> {
    let mut out = vec![f32::NAN; t * w.rows];
    isa.matmul(w, x, t, &mut out, precision);
    out
}

/// `w` as given, and repacked once as a model's matrices are at load ([`PackedWeights`], where
/// the detected kernel set has panels for its type): every check runs on both.
fn forms<'a>(w: MatRef<'a>, packed: &'a Option<PackedWeights>) -> Vec<(&'static str, MatRef<'a>)> {
    let mut v = vec![("", w)];
    if let Some(p) = packed {
        v.push((
            " packed",
            MatRef {
                packed: Some(p),
                ..w
            },
        ));
    }
    v
}

/// A token's result does not depend on the batch it is in: bit for bit in the forms a loaded
/// model uses (matrices repacked at load where the kernel set has panels for their type, float
/// rows, F32 precision), which a prompt cache's exactness rests on; up to the order of f32 sums
/// for a matrix left unpacked on AVX-512 VNNI (T = 1 runs row kernels, T >= 5 packs per call).
#[test]
fn matmul_of_t_tokens_matches_t_single_token_calls() {
    let mut rng = Rng(7);
    for (n, k) in SHAPES {
        for dtype in DTYPES {
            let buf = random_weights(&mut rng, dtype, n, k);
            let w = MatRef {
                dtype,
                rows: n,
                cols: k,
                data: &buf[1..],
                packed: None,
            };
            let mut wf = vec![0f32; k];
            let packed = PackedWeights::new(w, |_| {});
            for (form, w) in forms(w, &packed) {
                for isa in supported() {
                    for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                        // 40 tokens: panels with a remainder, dense products of float rows (T >=
                        // 16), activations quantized by the team (T >= 32).
                        for t in [1, 3, 7, 40] {
                            let x = rng.vec(t * k, 1.0);
                            let all = run(isa, w, &x, t, precision);
                            for ti in 0..t {
                                let xt = &x[ti * k..(ti + 1) * k];
                                let one = run(isa, w, xt, 1, precision);
                                let tol: Vec<f32> = (0..n)
                                    .map(|r| {
                                        w.dequantize_row(r, &mut wf);
                                        SUM_ORDER_REL_TOL * 1.01 * magnitude(&wf, xt)
                                    })
                                    .collect();
                                let what = format!(
                                "{isa:?} {dtype}{form} {precision:?} ({n}, {k}) T={t} token {ti}"
                            );
                                check_close(&what, &all[ti * n..(ti + 1) * n], &one, |r| tol[r]);
                                let as_loaded = !form.is_empty()
                                    || packed.is_none()
                                    || isa != Isa::Avx512Vnni
                                    || precision == Precision::F32;
                                assert!(
                                    !as_loaded || all[ti * n..(ti + 1) * n] == one[..],
                                    "{what}: not bit for bit the single token's result"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Float weights repacked at load (where the kernel set has float panels) run the panel kernel
/// at every T and precision: each output is the chain of fused multiply-adds over k in order,
/// [`reference::dot_f32_fused`], bit for bit, in bands of any width and with a partial panel.
#[test]
fn packed_float_matmul_is_the_fused_dot_chain() {
    let mut rng = Rng(17);
    for (n, k) in [(5, 64), (33, 7), (3, 0), (130, 576), (300, 1536)] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let buf = random_weights(&mut rng, dtype, n, k);
            let w = MatRef::new(dtype, n, k, &buf[1..]);
            let Some(packed) = PackedWeights::new(w, |_| {}) else {
                eprintln!(
                    "{dtype}: no float panels on this CPU ({:?})",
                    Isa::detected()
                );
                continue;
            };
            let wp = MatRef {
                packed: Some(&packed),
                ..w
            };
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|r| {
                    let mut row = vec![0f32; k];
                    w.dequantize_row(r, &mut row);
                    row
                })
                .collect();
            for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                for t in [1, 2, 5, 13, 40] {
                    let x = rng.vec(t * k, 1.0);
                    let got = run(Isa::detected(), wp, &x, t, precision);
                    for (i, &g) in got.iter().enumerate() {
                        let (ti, r) = (i / n, i % n);
                        let want = reference::dot_f32_fused(&rows[r], &x[ti * k..(ti + 1) * k]);
                        assert!(
                            g.to_bits() == want.to_bits(),
                            "{dtype} packed {precision:?} ({n}, {k}) T={t} token {ti} row {r}: \
                             {g} is not the fused chain's {want}"
                        );
                    }
                }
            }
        }
    }
}

/// Matrices that read the same input, multiplied in one parallel loop (`matmuls_acts`: Q, K and
/// V; gate and up), give each matrix's own matmul, bit for bit: mixed types (as K-quant files
/// mix them), repacked or not, every kernel set, precision and a few T.
#[test]
fn grouped_matmuls_equal_each_matmul() {
    let mut rng = Rng(19);
    let k = 768; // a multiple of the K-quants' 256
    let group = [
        (DType::Q4_0, 576),
        (DType::Q8_0, 192),
        (DType::F16, 192),
        (DType::Q6_K, 64),
    ];
    let bufs: Vec<Vec<u8>> = group
        .iter()
        .map(|&(dtype, n)| random_weights(&mut rng, dtype, n, k))
        .collect();
    let ws: Vec<MatRef> = group
        .iter()
        .zip(&bufs)
        .map(|(&(dtype, n), b)| MatRef::new(dtype, n, k, &b[1..]))
        .collect();
    let packed: Vec<Option<PackedWeights>> =
        ws.iter().map(|&w| PackedWeights::new(w, |_| {})).collect();
    let ws_packed: Vec<MatRef> = ws
        .iter()
        .zip(&packed)
        .map(|(&w, p)| MatRef {
            packed: p.as_ref(),
            ..w
        })
        .collect();
    for (form, ws) in [("", &ws), (" packed", &ws_packed)] {
        for isa in supported() {
            for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                for t in [1, 7, 40] {
                    let x = rng.vec(t * k, 1.0);
                    let acts = isa.activations(&x, t);
                    let mut ys: Vec<Vec<f32>> =
                        ws.iter().map(|w| vec![f32::NAN; t * w.rows]).collect();
                    let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                    isa.matmuls_acts(ws, &acts, &mut outs, precision);
                    for (w, y) in ws.iter().zip(&ys) {
                        let one = run(isa, *w, &x, t, precision);
                        assert!(
                            one == *y,
                            "{isa:?} {}{form} {precision:?} T={t}: the grouped product differs",
                            w.dtype
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_kernel_sets_agree_with_reference() {
    let mut rng = Rng(8);
    let t = 5;
    for (n, k) in SHAPES {
        for dtype in DTYPES {
            let buf = random_weights(&mut rng, dtype, n, k);
            let w = MatRef {
                dtype,
                rows: n,
                cols: k,
                data: &buf[1..],
                packed: None,
            };
            let x = rng.vec(t * k, 1.0);
            let mut wf = vec![0f32; k];
            let mags: Vec<f32> = (0..t * n)
                .map(|i| {
                    w.dequantize_row(i % n, &mut wf);
                    magnitude(&wf, &x[(i / n) * k..(i / n + 1) * k])
                })
                .collect();
            for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                let want = run(Isa::Reference, w, &x, t, precision);
                let packed = PackedWeights::new(w, |_| {});
                for (form, w) in forms(w, &packed) {
                    for isa in supported() {
                        let got = run(isa, w, &x, t, precision);
                        // Fast and Q8: the same quantized activations, so only sum order
                        // differs; their magnitude is within 1% of the f32 one.
                        let tol = |i: usize| SUM_ORDER_REL_TOL * 1.01 * mags[i];
                        check_close(
                            &format!("{isa:?} {dtype}{form} {precision:?} ({n}, {k})"),
                            &got,
                            &want,
                            tol,
                        );
                    }
                }
            }
        }
    }
}

/// Quantized-activation matmuls against F32 precision, within a bound on the activation
/// quantization error that holds for any data: per element `err_per_d` times its block's
/// scale d = max|x| / 127, weighted by |w|.
fn check_quantized_matmul_near_f32(precision: Precision, err_per_d: f32, seed: u64) {
    let mut rng = Rng(seed);
    let t = 3;
    for (n, k) in SHAPES {
        for dtype in [DType::Q4_0, DType::Q4_1, DType::Q8_0] {
            let buf = random_weights(&mut rng, dtype, n, k);
            let w = MatRef {
                dtype,
                rows: n,
                cols: k,
                data: &buf[1..],
                packed: None,
            };
            let x = rng.vec(t * k, 2.0);
            let mut wf = vec![0f32; k];
            let tol: Vec<f32> = (0..t * n)
                .map(|i| {
                    let xt = &x[(i / n) * k..(i / n + 1) * k];
                    w.dequantize_row(i % n, &mut wf);
                    let quant_err: f32 = wf
                        .chunks(QK)
                        .zip(xt.chunks(QK))
                        .map(|(wb, xb)| {
                            let d = xb.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                            err_per_d * d * wb.iter().map(|v| v.abs()).sum::<f32>()
                        })
                        .sum();
                    quant_err + 2.0 * SUM_ORDER_REL_TOL * magnitude(&wf, xt)
                })
                .collect();
            for isa in supported() {
                let fast = run(isa, w, &x, t, precision);
                let exact = run(isa, w, &x, t, Precision::F32);
                check_close(
                    &format!("{isa:?} {dtype} {precision:?} vs F32 ({n}, {k})"),
                    &fast,
                    &exact,
                    |i| tol[i],
                );
            }
        }
    }
}

#[test]
fn matmul_q8_matches_f32_precision_within_activation_quantization() {
    check_quantized_matmul_near_f32(Precision::Q8, ACT_QUANT_ERR_PER_D, 9);
}

#[test]
fn matmul_fast_matches_f32_precision_within_two_plane_quantization() {
    check_quantized_matmul_near_f32(Precision::Fast, ACT_Q8X2_ERR_PER_D, 13);
}

#[test]
fn precision_defaults_to_fast_two_plane() {
    assert_eq!(Precision::default(), Precision::Fast);
}

#[test]
fn softmax_axpy_scale_match_reference() {
    let mut rng = Rng(10);
    for isa in supported() {
        for n in [1, 3, 8, 17, 100, 1024] {
            let x = rng.vec(n, 20.0);
            let mut want = x.clone();
            reference::softmax(&mut want);
            let mut got = x.clone();
            isa.softmax(&mut got);
            // exp within a few ulp, then one division: 1e-6 relative per element.
            check_close(&format!("{isa:?} softmax n={n}"), &got, &want, |i| {
                1e-6 * want[i] + 1e-12
            });
            let sum: f32 = got.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{isa:?} softmax sums to {sum}");

            let y0 = rng.vec(n, 1.0);
            let (mut want, mut got) = (y0.clone(), y0.clone());
            reference::axpy(0.3, &x, &mut want);
            isa.axpy(0.3, &x, &mut got);
            // An FMA rounds once where the reference rounds twice: within 1 ulp of the terms.
            check_close(&format!("{isa:?} axpy n={n}"), &got, &want, |i| {
                2e-7 * ((0.3 * x[i]).abs() + y0[i].abs())
            });

            let (mut want, mut got) = (x.clone(), x.clone());
            reference::scale(-1.7, &mut want);
            isa.scale(-1.7, &mut got);
            assert_eq!(got, want, "{isa:?} scale n={n}");
        }
        // A causal mask's -inf becomes exactly 0; huge gaps underflow to 0 rather than NaN.
        let mut masked = [
            1.0,
            f32::NEG_INFINITY,
            3.0,
            -1e30,
            2.0,
            0.5,
            f32::NEG_INFINITY,
            0.0,
            1.0,
        ];
        isa.softmax(&mut masked);
        assert_eq!(
            (masked[1], masked[3], masked[6]),
            (0.0, 0.0, 0.0),
            "{isa:?} masked softmax {masked:?}"
        );
    }
}

#[test]
fn kernel_set_names_round_trip_and_never_exceed_the_cpu() {
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
        assert!(isa.usable() <= Isa::best_supported());
    }
    assert!(Isa::detected() <= Isa::best_supported());
    assert_eq!(Isa::from_name("sse9"), None);
}

// ---------------------------------------------------------------------------------------------
// Q5_0, Q5_1 and the K-quants (Q2_K .. Q6_K, Q8_K activations).

use gpt::kernels::kquant::{
    self, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, KQuant, QK_K,
};
use gpt::kernels::quant::{BlockQ5_0, BlockQ5_1};

/// The weight types added with the K-quants, most used first (Gemma 3 Q4_K_M: Q4_K, Q5_0, Q6_K).
const NEW_TYPES: [DType; 7] = [
    DType::Q4_K,
    DType::Q5_0,
    DType::Q6_K,
    DType::Q5_K,
    DType::Q5_1,
    DType::Q3_K,
    DType::Q2_K,
];

/// Byte offsets of each block type's f16 fields (ggml-common.h): d, and the min or dmin.
fn half_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => panic!("no f16 fields listed for {dtype}"),
    }
}

/// `blocks` blocks of `dtype`: every byte from `fill` (None: random), then the f16 fields set
/// to finite values of magnitude at most `scale` (random signs and sizes).
fn blocks_of(rng: &mut Rng, dtype: DType, blocks: usize, fill: Option<u8>, scale: f32) -> Vec<u8> {
    let size = dtype.type_size();
    let mut out: Vec<u8> = (0..blocks * size)
        .map(|_| fill.unwrap_or_else(|| rng.below(256) as u8))
        .collect();
    for b in 0..blocks {
        for &off in half_offsets(dtype) {
            let h = f16::from_f32(rng.f32() * scale).to_le_bytes();
            out[b * size + off..b * size + off + 2].copy_from_slice(&h);
        }
    }
    out
}

fn cast<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    quant::blocks::<T>(bytes).into_owned()
}

fn dequant(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / dtype.type_size() * dtype.block_size()];
    quant::dequantize_row(dtype, bytes, &mut out);
    out
}

/// Per element, |scale part| + |min part| of the weight (d * sc * q and dmin * m for the
/// K-quants, d * q and m for Q5_1): the size of the terms a dot product sums, whatever cancels.
fn weight_parts(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    fn k<B: KQuant>(bytes: &[u8]) -> Vec<f32> {
        cast::<B>(bytes)
            .iter()
            .flat_map(|b| {
                let (d, dmin) = b.d_dmin();
                let (q, sc, m) = (b.quants(), b.scales16(), b.mins16());
                (0..QK_K).map(move |e| {
                    (d * sc[e / 16] as f32 * q[e] as f32).abs() + (dmin * m[e / 16] as f32).abs()
                })
            })
            .collect()
    }
    match dtype {
        DType::Q2_K => k::<BlockQ2_K>(bytes),
        DType::Q3_K => k::<BlockQ3_K>(bytes),
        DType::Q4_K => k::<BlockQ4_K>(bytes),
        DType::Q5_K => k::<BlockQ5_K>(bytes),
        DType::Q6_K => k::<BlockQ6_K>(bytes),
        DType::Q5_1 => cast::<BlockQ5_1>(bytes)
            .iter()
            .flat_map(|b| {
                let (d, m) = (b.d.to_f32(), b.m.to_f32());
                (0..QK).map(move |j| (d * quant::q5_quant(&b.qh, &b.qs, j) as f32).abs() + m.abs())
            })
            .collect(),
        _ => dequant(dtype, bytes).iter().map(|v| v.abs()).collect(),
    }
}

fn quantize_q8_k(x: &[f32]) -> Vec<BlockQ8_K> {
    let mut a = vec![BlockQ8_K::zeroed(); x.len() / QK_K];
    kquant::quantize_q8_k(x, &mut a);
    a
}

fn dequant_q8_k(a: &[BlockQ8_K]) -> Vec<f32> {
    dequant(DType::Q8_K, bytemuck::cast_slice(a))
}

/// The Fast (two-plane) dot of a row of `dtype` weights: on `isa`, or the reference twin.
fn dot_fast(isa: Option<Isa>, dtype: DType, w: &[u8], a: &[BlockQ8x2]) -> f32 {
    macro_rules! go {
        ($b:ty, $m:ident) => {{
            let w = cast::<$b>(w);
            match isa {
                Some(i) => i.$m(&w, a),
                None => reference::$m(&w, a),
            }
        }};
    }
    match dtype {
        DType::Q5_0 => go!(BlockQ5_0, dot_q5_0_q8x2),
        DType::Q5_1 => go!(BlockQ5_1, dot_q5_1_q8x2),
        DType::Q2_K => go!(BlockQ2_K, dot_q2_k_q8x2),
        DType::Q3_K => go!(BlockQ3_K, dot_q3_k_q8x2),
        DType::Q4_K => go!(BlockQ4_K, dot_q4_k_q8x2),
        DType::Q5_K => go!(BlockQ5_K, dot_q5_k_q8x2),
        DType::Q6_K => go!(BlockQ6_K, dot_q6_k_q8x2),
        _ => panic!("no two-plane dot for {dtype} here"),
    }
}

/// The Q8 (llama.cpp) dot of a row of `dtype` weights against `x`, quantized as that type's
/// activations (Q8_0, Q8_1 or Q8_K): on `isa`, or the reference twin. Returns the dot and the
/// activations' values.
fn dot_q8(isa: Option<Isa>, dtype: DType, w: &[u8], x: &[f32]) -> (f32, Vec<f32>) {
    macro_rules! go {
        ($b:ty, $m:ident, $a:expr) => {{
            let w = cast::<$b>(w);
            let a = $a;
            let v = match isa {
                Some(i) => i.$m(&w, &a),
                None => reference::$m(&w, &a),
            };
            (v, a)
        }};
    }
    let q8_0 = || {
        let mut a = vec![BlockQ8_0::zeroed(); x.len() / QK];
        quant::quantize_q8_0(x, &mut a);
        a
    };
    let q8_1 = || {
        let mut a = vec![BlockQ8_1::zeroed(); x.len() / QK];
        quant::quantize_q8_1(x, &mut a);
        a
    };
    match dtype {
        DType::Q5_0 => {
            let (v, a) = go!(BlockQ5_0, dot_q5_0_q8_0, q8_0());
            (v, dequant_q8_0(&a))
        }
        DType::Q5_1 => {
            let (v, a) = go!(BlockQ5_1, dot_q5_1_q8_1, q8_1());
            (v, dequant_q8_1(&a))
        }
        _ => {
            let (v, a) = match dtype {
                DType::Q2_K => go!(BlockQ2_K, dot_q2_k_q8_k, quantize_q8_k(x)),
                DType::Q3_K => go!(BlockQ3_K, dot_q3_k_q8_k, quantize_q8_k(x)),
                DType::Q4_K => go!(BlockQ4_K, dot_q4_k_q8_k, quantize_q8_k(x)),
                DType::Q5_K => go!(BlockQ5_K, dot_q5_k_q8_k, quantize_q8_k(x)),
                DType::Q6_K => go!(BlockQ6_K, dot_q6_k_q8_k, quantize_q8_k(x)),
                _ => panic!("no Q8 dot for {dtype} here"),
            };
            (v, dequant_q8_k(&a))
        }
    }
}

/// Weight rows to test a type's dot products on: random quants and scales, every quant and
/// packed scale byte at its minimum (0x00) and at its maximum (0xff).
fn weight_cases(rng: &mut Rng, dtype: DType, blocks: usize) -> Vec<(String, Vec<u8>)> {
    vec![
        ("random".into(), blocks_of(rng, dtype, blocks, None, 0.05)),
        (
            "bytes 0x00".into(),
            blocks_of(rng, dtype, blocks, Some(0x00), 0.05),
        ),
        (
            "bytes 0xff".into(),
            blocks_of(rng, dtype, blocks, Some(0xff), 0.05),
        ),
        (
            "random, large scales".into(),
            blocks_of(rng, dtype, blocks, None, 6e4),
        ),
    ]
}

/// Every SIMD dot product of the new types equals its reference twin on every kernel set, for
/// both activation kinds, up to [`SUM_ORDER_REL_TOL`] of the sum of the terms' sizes (weights
/// as |scale part| + |min part|, so that a cancelling min cannot hide an error).
#[test]
fn simd_new_type_dots_match_reference() {
    let mut rng = Rng(21);
    for dtype in NEW_TYPES {
        for blocks in [1, 2, 3, 6] {
            let k = blocks * dtype.block_size();
            for (wname, w) in weight_cases(&mut rng, dtype, blocks) {
                let parts = weight_parts(dtype, &w);
                for (aname, x) in activation_cases(&mut rng, k) {
                    let a = quantize_q8x2(&x);
                    let af = dequant_q8x2(&a);
                    let want = dot_fast(None, dtype, &w, &a);
                    let (want8, a8) = dot_q8(None, dtype, &w, &x);
                    for isa in supported() {
                        let what = format!("{isa:?} {dtype} K={k} w={wname} a={aname}");
                        let tol = SUM_ORDER_REL_TOL * magnitude(&parts, &af);
                        let got = dot_fast(Some(isa), dtype, &w, &a);
                        check_close(&format!("{what} Fast"), &[got], &[want], |_| tol);
                        let tol = SUM_ORDER_REL_TOL * magnitude(&parts, &a8);
                        let (got8, _) = dot_q8(Some(isa), dtype, &w, &x);
                        check_close(&format!("{what} Q8"), &[got8], &[want8], |_| tol);
                    }
                }
            }
        }
    }
}

/// Every block in `tests/fixtures/quant/` (GGML blocks with extreme and random scales, and
/// what the `gguf` package dequantizes them to) dequantizes to the same bits here, through
/// the reference and every kernel set. A NaN only has to be a NaN.
#[test]
fn dequantize_matches_gguf_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the fixture folder")
        .map(|e| e.expect("a fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected fixtures for 10 types in {dir:?}"
    );
    let mut checked = 0;
    for path in &files {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("a fixture")).unwrap();
        let id = doc["ggml_id"].as_u64().unwrap() as u32;
        let dtype = DType::from_ggml(id).unwrap_or_else(|| panic!("{path:?}: GGML type {id}"));
        assert_eq!(dtype.name(), doc["type"].as_str().unwrap(), "{path:?}");
        assert_eq!(
            dtype.block_size() as u64,
            doc["block_size"].as_u64().unwrap()
        );
        assert_eq!(dtype.type_size() as u64, doc["type_size"].as_u64().unwrap());
        for case in doc["cases"].as_array().unwrap() {
            let name = format!("{} {}", dtype, case["name"].as_str().unwrap());
            let bytes = hex(case["blocks"].as_str().unwrap());
            let want: Vec<f32> = base64(case["expected"].as_str().unwrap())
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(
                want.len(),
                bytes.len() / dtype.type_size() * dtype.block_size(),
                "{name}"
            );
            let mut got = vec![0f32; want.len()];
            quant::dequantize_row(dtype, &bytes, &mut got);
            check_bits(&format!("reference {name}"), &got, &want);
            for isa in supported() {
                got.fill(0.0);
                isa.dequantize_row(dtype, &bytes, &mut got);
                check_bits(&format!("{isa:?} {name}"), &got, &want);
            }
            checked += 1;
        }
    }
    eprintln!("{checked} fixture cases in {} files", files.len());
}

/// Same bits, or both NaN; on failure the first offending element and the first values.
fn check_bits(what: &str, got: &[f32], want: &[f32]) {
    let same = |g: f32, w: f32| g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
    if let Some(i) = (0..got.len()).find(|&i| !same(got[i], want[i])) {
        let bad = (0..got.len()).filter(|&i| !same(got[i], want[i])).count();
        panic!(
            "{what}: element {i}: got {:e} ({:#010x}) want {:e} ({:#010x}); {bad} of {} differ\n  got  {:?}\n  want {:?}",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits(),
            got.len(),
            &got[i.saturating_sub(2)..(i + 4).min(got.len())],
            &want[i.saturating_sub(2)..(i + 4).min(want.len())],
        );
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Standard base64 with padding (RFC 4648), enough for the fixtures.
fn base64(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .fold(0u32, |acc, &c| acc << 6 | value(c))
            << (6 * pad);
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

#[test]
fn base64_decoder_decodes_rfc_4648_examples() {
    assert_eq!(base64("Zm9vYmFy"), b"foobar");
    assert_eq!(base64("Zm9vYg=="), b"foob");
    assert_eq!(base64("Zm9vYmE="), b"fooba");
}

/// GGML's type numbers and sizes for the types no fixture covers, by hand (ggml.h,
/// ggml-common.h): Q8_K = 15, 256 elements in 4 + 256 + 2 * 16 bytes.
#[test]
fn q8_k_layout_and_quantization_by_hand() {
    assert_eq!(DType::from_ggml(15), Some(DType::Q8_K));
    assert_eq!(
        (DType::Q8_K.block_size(), DType::Q8_K.type_size()),
        (256, 292)
    );
    assert_eq!(DType::Q8_K.name(), "Q8_K");
    // max |x| = 127 at a negative element: iscale = -127 / -127 = 1, so q = round(x), with
    // ties to even (ggml's nearest_int): 2.5 -> 2, -0.5 -> -0, 1.5 -> 2, 3.5 -> 4.
    let mut x = vec![0f32; QK_K];
    x[..6].copy_from_slice(&[-127.0, 2.5, -0.5, 1.5, 3.5, 100.2]);
    x[16] = 7.0;
    let a = quantize_q8_k(&x);
    assert_eq!(a[0].d, 1.0);
    assert_eq!(&a[0].qs[..6], &[-127, 2, 0, 2, 4, 100]);
    // bsums[0] = -127 + 2 + 0 + 2 + 4 + 100; bsums[1] = 7.
    assert_eq!(&a[0].bsums[..3], &[-19, 7, 0]);
    assert_eq!(&dequant_q8_k(&a)[..3], &[-127.0, 2.0, 0.0]);
    // The largest element positive: iscale = -127 / 127 = -1 and d = -1, so q = -round(x).
    x[0] = 127.0;
    let a = quantize_q8_k(&x);
    assert_eq!((a[0].d, a[0].qs[0], a[0].qs[5]), (-1.0, -127, -100));
    // All zeros: d = 0 and zero quants.
    let a = quantize_q8_k(&[0.0; QK_K]);
    assert_eq!((a[0].d, a[0].qs[0], a[0].bsums[0]), (0.0, 0, 0));
}

/// Q4_K's packed 6-bit scales by hand (ggml's get_scale_min_k4): sub-blocks 0..4 take the low
/// 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8 take a nibble of bytes 8..12 and the top
/// 2 bits of bytes 0..8.
#[test]
fn q4_k_scales_by_hand() {
    let mut s = [0u8; 12];
    s[0] = 0b11_000101; // scale 0 = 5, top bits of scale 4 = 3
    s[4] = 0b01_100000; // min 0 = 32, top bits of min 4 = 1
    s[8] = 0x9a; // scale 4 low nibble 0xa, min 4 low nibble 9
    assert_eq!(kquant::q4_k_scale_min(&s, 0), (5, 32));
    assert_eq!(kquant::q4_k_scale_min(&s, 4), (0x3a, 0x19));
    // Q3_K: scale 0 = low nibble of byte 0 | bits 0..2 of byte 8 << 4, minus 32; scale 8 =
    // high nibble of byte 0 | bits 4..6 of byte 8 << 4, minus 32.
    let mut s = [0u8; 12];
    s[0] = 0x7f;
    s[8] = 0b00_10_00_11;
    let sc = kquant::q3_k_scales(&s);
    assert_eq!((sc[0], sc[8], sc[1]), (0x3f - 32, 0x27 - 32, -32));
}

/// f64 sum of w * x: the exact math the matmuls are checked against.
fn exact_dot(w: &[f32], x: &[f32]) -> f64 {
    w.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// matmul on the new types, every precision, every kernel set: (1) equal to the reference
/// kernel set up to float sum order; (2) a token's result independent of T; (3) within a bound
/// on the activation quantization error of f64 math on the dequantized weights, for any data:
/// per element `err_per_d` times the scale d = max|x| / 127 of its activation block (32
/// elements; 256 for Q8_K), weighted by |w|, plus the sum-order tolerance.
#[test]
fn new_type_matmuls_match_reference_and_f32_math() {
    let mut rng = Rng(22);
    for dtype in NEW_TYPES {
        let ks: &[usize] = if dtype.block_size() == QK {
            &[96, 256, 512]
        } else {
            &[256, 512]
        };
        for &k in ks {
            // 130 rows: several bands on several threads for T > 1.
            let n = 130;
            let mut buf = vec![0u8];
            buf.extend(blocks_of(
                &mut rng,
                dtype,
                n * k / dtype.block_size(),
                None,
                0.05,
            ));
            let w = MatRef {
                dtype,
                rows: n,
                cols: k,
                data: &buf[1..],
                packed: None,
            };
            // The ranges reported packed cover the matrix's bytes, in order, without gaps.
            let done = std::sync::Mutex::new(0..0);
            let packed = PackedWeights::new(w, |r| {
                let mut d = done.lock().unwrap();
                assert_eq!(r.start, d.end, "{dtype}: packed ranges in order");
                d.end = r.end;
            });
            if packed.is_some() {
                assert_eq!(done.into_inner().unwrap(), 0..w.data.len(), "{dtype}");
            }
            let row_bytes = w.row_bytes();
            let rows: Vec<Vec<f32>> = (0..n).map(|r| dequant(dtype, w.row(r))).collect();
            let parts: Vec<Vec<f32>> = (0..n)
                .map(|r| weight_parts(dtype, &buf[1 + r * row_bytes..1 + (r + 1) * row_bytes]))
                .collect();
            for t in [1, 4, 7] {
                let x = rng.vec(t * k, 2.0);
                let xt = |ti: usize| &x[ti * k..(ti + 1) * k];
                let mag = |i: usize| magnitude(&parts[i % n], xt(i / n));
                for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                    let (err_per_d, act_block) = match precision {
                        Precision::Fast => (ACT_Q8X2_ERR_PER_D, QK),
                        Precision::Q8 if dtype.block_size() == QK_K => (ACT_QUANT_ERR_PER_D, QK_K),
                        Precision::Q8 => (ACT_QUANT_ERR_PER_D, QK),
                        Precision::F32 | Precision::Dense => (0.0, QK),
                    };
                    let tol_exact: Vec<f32> = (0..t * n)
                        .map(|i| {
                            let quant_err: f32 = rows[i % n]
                                .chunks(act_block)
                                .zip(xt(i / n).chunks(act_block))
                                .map(|(wb, xb)| {
                                    let d = xb.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                                    err_per_d * d * wb.iter().map(|v| v.abs()).sum::<f32>()
                                })
                                .sum();
                            quant_err + 2.0 * SUM_ORDER_REL_TOL * mag(i)
                        })
                        .collect();
                    let exact: Vec<f32> = (0..t * n)
                        .map(|i| exact_dot(&rows[i % n], xt(i / n)) as f32)
                        .collect();
                    let want = run(Isa::Reference, w, &x, t, precision);
                    let checks = supported()
                        .into_iter()
                        .flat_map(|isa| forms(w, &packed).into_iter().map(move |f| (isa, f)));
                    for (isa, (form, w)) in checks {
                        let what = format!("{isa:?} {dtype}{form} {precision:?} ({n}, {k}) T={t}");
                        let got = run(isa, w, &x, t, precision);
                        check_close(&format!("{what} vs reference"), &got, &want, |i| {
                            SUM_ORDER_REL_TOL * 1.01 * mag(i)
                        });
                        check_close(&format!("{what} vs f64 math"), &got, &exact, |i| {
                            tol_exact[i]
                        });
                        if t > 1 {
                            for ti in 0..t {
                                let one = run(isa, w, xt(ti), 1, precision);
                                check_close(
                                    &format!("{what} token {ti} vs T=1"),
                                    &got[ti * n..(ti + 1) * n],
                                    &one,
                                    |r| 2.0 * SUM_ORDER_REL_TOL * mag(ti * n + r),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary quant and packed-scale bytes with finite scales: every kernel set's dots of
    /// every new type equal the reference twins, for both activation kinds.
    #[test]
    fn new_type_dots_match_reference_on_random_blocks(
        type_index in 0..NEW_TYPES.len(),
        blocks in 1usize..4,
        seed in any::<u64>(),
        act_scale in prop::sample::select(vec![1e-3f32, 1.0, 3e3]),
    ) {
        let dtype = NEW_TYPES[type_index];
        let mut rng = Rng(seed);
        let w = blocks_of(&mut rng, dtype, blocks, None, 1.0);
        let x = rng.vec(blocks * dtype.block_size(), act_scale);
        let parts = weight_parts(dtype, &w);
        let a = quantize_q8x2(&x);
        let want = dot_fast(None, dtype, &w, &a);
        let (want8, a8) = dot_q8(None, dtype, &w, &x);
        for isa in supported() {
            let got = dot_fast(Some(isa), dtype, &w, &a);
            let tol = SUM_ORDER_REL_TOL * magnitude(&parts, &dequant_q8x2(&a));
            prop_assert!((got - want).abs() <= tol, "{isa:?} {dtype} Fast: {got} vs {want} (tol {tol})");
            let (got8, _) = dot_q8(Some(isa), dtype, &w, &x);
            let tol = SUM_ORDER_REL_TOL * magnitude(&parts, &a8);
            prop_assert!((got8 - want8).abs() <= tol, "{isa:?} {dtype} Q8: {got8} vs {want8} (tol {tol})");
        }
    }
}

/// Q4_K and Q6_K by hand: where each element's bits live and which scale it takes.
#[test]
fn k_quant_dequantization_by_hand() {
    // Q4_K, d = 1, dmin = 0.5; sub-block 0 has scale 3 and min 2, the others 0. Byte l of qs
    // holds element l (low nibble, q = l % 16) and element 32 + l (high nibble, q = 15).
    let mut b = BlockQ4_K::zeroed();
    b.d = f16::from_f32(1.0);
    b.dmin = f16::from_f32(0.5);
    b.scales[0] = 3;
    b.scales[4] = 2;
    b.qs = std::array::from_fn(|l| 0xf0 | (l % 16) as u8);
    let want: Vec<f32> = (0..QK_K)
        .map(|e| {
            if e < 32 {
                3.0 * (e % 16) as f32 - 1.0
            } else {
                0.0
            }
        })
        .collect();
    assert_eq!(&want[..3], &[-1.0, 2.0, 5.0]);
    check_dequantize(DType::Q4_K, bytemuck::bytes_of(&b), &want);

    // Q6_K, d = 0.5; sub-block 0 (elements 0..16) has scale 2, sub-block 1 scale -1, the
    // others 0. Element l < 32 takes its low 4 bits from ql[l] (l % 16) and its high 2 bits
    // from bits 0..2 of qh[l] (3 for element 0 only): q = that - 32.
    let mut b = BlockQ6_K::zeroed();
    b.d = f16::from_f32(0.5);
    b.scales[0] = 2;
    b.scales[1] = -1;
    b.ql = std::array::from_fn(|l| (l % 16) as u8);
    b.qh[0] = 0b11;
    let want: Vec<f32> = (0..QK_K)
        .map(|e| match e {
            0 => 0.5 * 2.0 * (48 - 32) as f32,
            1..16 => 0.5 * 2.0 * (e as f32 - 32.0),
            16..32 => -0.5 * ((e % 16) as f32 - 32.0), // d * sc = 0.5 * -1
            _ => 0.0,
        })
        .collect();
    assert_eq!((want[0], want[1], want[16]), (16.0, -31.0, 16.0));
    check_dequantize(DType::Q6_K, bytemuck::bytes_of(&b), &want);
}

/// Repacked weights cost about the file's bytes (issue 11: within 1.2x): panels keep the
/// file's f16 scales and integer sub-block scales and store quants in the bits the type needs.
/// Q3_K's 3-bit quants sit in 4 bits, the one exception (1.33x). Rows are padded to 16.
#[test]
fn packed_weights_are_about_the_size_of_the_rows() {
    let mut rng = Rng(31);
    for dtype in DTYPES.into_iter().chain(NEW_TYPES) {
        for n in [128, 130] {
            let k = 512;
            let buf = random_weights(&mut rng, dtype, n, k);
            let rows = &buf[1..];
            let w = MatRef::new(dtype, n, k, rows);
            let Some(p) = PackedWeights::new(w, |_| {}) else {
                continue;
            };
            let padded = n.next_multiple_of(16) as f64 / n as f64;
            let bound = if dtype == DType::Q3_K { 1.34 } else { 1.04 };
            let ratio = p.bytes() as f64 / rows.len() as f64;
            assert!(
                ratio <= bound * padded,
                "{dtype} ({n}, {k}): packed {} bytes, {ratio:.3}x the rows' {}",
                p.bytes(),
                rows.len()
            );
        }
    }
}
