//! The SIMD kernels agree with their reference twins: quantized dot products (one- and
//! two-plane activations), activation quantization (bit-exact), dequantization (bit-exact,
//! checked by hand), matmul on every dtype and precision, and the small vector helpers. Every
//! kernel set the CPU supports is tested. Two-plane activations are also checked against exact
//! math: their error is a small fraction of one plane's.

use gpt::kernels::quant::{
    self, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, BlockQ8x2, Q8X2_LO_SCALE, QK,
};
use gpt::kernels::{reference, Isa, MatRef, Precision};
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

/// A token's result does not depend on the batch it is in, up to the order of f32 sums: T = 1
/// runs row kernels, larger T (on AVX-512 VNNI) packed panels that scale 16 rows at once.
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
            };
            let mut wf = vec![0f32; k];
            for isa in supported() {
                for precision in [Precision::Fast, Precision::Q8, Precision::F32] {
                    for t in [1, 3, 7] {
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
                                "{isa:?} {dtype} {precision:?} ({n}, {k}) T={t} token {ti}"
                            );
                            check_close(&what, &all[ti * n..(ti + 1) * n], &one, |r| tol[r]);
                        }
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
                for isa in supported() {
                    let got = run(isa, w, &x, t, precision);
                    // Fast and Q8: the same quantized activations, so only sum order differs;
                    // their magnitude is within 1% of the f32 one.
                    let tol = |i: usize| SUM_ORDER_REL_TOL * 1.01 * mags[i];
                    check_close(
                        &format!("{isa:?} {dtype} {precision:?} ({n}, {k})"),
                        &got,
                        &want,
                        tol,
                    );
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
