//! Kernel benchmarks: each SIMD kernel set against the reference twin it must beat, and the
//! matmul shapes of SmolLM2-135M (C = 576, MLP 1536, V = 49152).
//!
//! `cargo bench -p gpt --bench kernels` (add `-- vec_dot` etc. to filter). Throughput is weight
//! bytes read, so GiB/s compares directly with the machine's memory bandwidth.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpt::kernels::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, BlockQ8x2, QK};
use gpt::kernels::{Isa, MatRef, PackedWeights, Precision};
use gpt::tensor::DType;
use half::f16;
use std::time::{Duration, Instant};

/// Deterministic pseudo-random bytes and floats (splitmix64): no rand dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Weights (N, K) of `dtype` with valid (finite) scales and random quants.
fn weights(rng: &mut Rng, dtype: DType, n: usize, k: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..n * dtype.bytes_for(k as u64).unwrap() as usize)
        .map(|_| rng.next_u64() as u8)
        .collect();
    let row_bytes = dtype.bytes_for(k as u64).unwrap() as usize;
    let block = dtype.type_size();
    let half = |v: f32| f16::from_f32(v).to_le_bytes();
    // Byte offsets of the f16 scale (and min) of each block type (ggml-common.h).
    let halves: &[(usize, f32)] = match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[(0, 0.01)],
        DType::Q4_1 | DType::Q5_1 => &[(0, 0.01), (2, -0.05)],
        DType::Q4_K | DType::Q5_K => &[(0, 0.01), (2, 0.002)],
        DType::Q2_K => &[(80, 0.01), (82, 0.002)],
        DType::Q3_K => &[(108, 0.01)],
        DType::Q6_K => &[(208, 0.01)],
        _ => &[],
    };
    for r in 0..n {
        for b in 0..k / dtype.block_size() {
            let o = r * row_bytes + b * block;
            match dtype {
                DType::F16 => bytes[o..o + 2].copy_from_slice(&half(rng.f32())),
                DType::F32 => bytes[o..o + 4].copy_from_slice(&rng.f32().to_le_bytes()),
                DType::BF16 => {
                    bytes[o..o + 2].copy_from_slice(&half::bf16::from_f32(rng.f32()).to_le_bytes())
                }
                DType::Q8_K => bytes[o..o + 4].copy_from_slice(&0.01f32.to_le_bytes()),
                _ => {
                    for &(off, v) in halves {
                        bytes[o + off..o + off + 2].copy_from_slice(&half(v));
                    }
                }
            }
        }
    }
    bytes
}

fn bench_vec_dot(c: &mut Criterion) {
    let mut rng = Rng(1);
    let mut group = c.benchmark_group("vec_dot");
    for k in [576, 1536] {
        let kb = k / QK;
        let x = rng.vec(k);
        let mut a0 = vec![
            BlockQ8_0 {
                d: f16::ZERO,
                qs: [0; QK]
            };
            kb
        ];
        let mut a1 = vec![
            BlockQ8_1 {
                d: 0.0,
                s: 0.0,
                qs: [0; QK]
            };
            kb
        ];
        let mut a2 = vec![
            BlockQ8x2 {
                d: 0.0,
                s: 0.0,
                hi: [0; QK],
                lo: [0; QK]
            };
            kb
        ];
        gpt::kernels::quant::quantize_q8_0(&x, &mut a0);
        gpt::kernels::quant::quantize_q8_1(&x, &mut a1);
        gpt::kernels::quant::quantize_q8x2(&x, &mut a2);
        let w40 = weights(&mut rng, DType::Q4_0, 1, k);
        let w41 = weights(&mut rng, DType::Q4_1, 1, k);
        let w80 = weights(&mut rng, DType::Q8_0, 1, k);
        let (w40, w41, w80): (&[BlockQ4_0], &[BlockQ4_1], &[BlockQ8_0]) = (
            bytemuck::cast_slice(&w40),
            bytemuck::cast_slice(&w41),
            bytemuck::cast_slice(&w80),
        );
        for isa in Isa::available() {
            let id = |q: &str| BenchmarkId::new(format!("{q}/K={k}"), isa.name());
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w41) as u64));
            group.bench_function(id("q4_1"), |b| {
                b.iter(|| isa.dot_q4_1_q8_1(black_box(w41), &a1))
            });
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w40) as u64));
            group.bench_function(id("q4_0"), |b| {
                b.iter(|| isa.dot_q4_0_q8_0(black_box(w40), &a0))
            });
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w80) as u64));
            group.bench_function(id("q8_0"), |b| {
                b.iter(|| isa.dot_q8_0_q8_0(black_box(w80), &a0))
            });
            // The two-plane activations of Precision::Fast, against the same weights.
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w41) as u64));
            group.bench_function(id("q4_1_q8x2"), |b| {
                b.iter(|| isa.dot_q4_1_q8x2(black_box(w41), &a2))
            });
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w40) as u64));
            group.bench_function(id("q4_0_q8x2"), |b| {
                b.iter(|| isa.dot_q4_0_q8x2(black_box(w40), &a2))
            });
            group.throughput(Throughput::Bytes(std::mem::size_of_val(w80) as u64));
            group.bench_function(id("q8_0_q8x2"), |b| {
                b.iter(|| isa.dot_q8_0_q8x2(black_box(w80), &a2))
            });
            let y = rng.vec(k);
            group.throughput(Throughput::Bytes(4 * k as u64));
            group.bench_function(id("f32"), |b| b.iter(|| isa.dot_f32(black_box(&x), &y)));
        }
    }
    group.finish();
}

/// The dot products of Q5_0, Q5_1 and the K-quants, in both activation kinds (Fast: two-plane
/// blocks; Q8: Q8_0 / Q8_1 / Q8_K as llama.cpp), at K = 2048 (Gemma 3 270M's MLP width).
fn bench_vec_dot_new_types(c: &mut Criterion) {
    use gpt::kernels::kquant::{self, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K};
    use gpt::kernels::kquant::{BlockQ8_K, QK_K};
    use gpt::kernels::quant::{BlockQ5_0, BlockQ5_1};
    let mut rng = Rng(4);
    let mut group = c.benchmark_group("vec_dot");
    let k = 2048;
    let x = rng.vec(k);
    let zero8x2 = BlockQ8x2 {
        d: 0.0,
        s: 0.0,
        hi: [0; QK],
        lo: [0; QK],
    };
    let mut a2 = vec![zero8x2; k / QK];
    gpt::kernels::quant::quantize_q8x2(&x, &mut a2);
    let mut a0 = vec![
        BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; QK]
        };
        k / QK
    ];
    gpt::kernels::quant::quantize_q8_0(&x, &mut a0);
    let mut a1 = vec![
        BlockQ8_1 {
            d: 0.0,
            s: 0.0,
            qs: [0; QK]
        };
        k / QK
    ];
    gpt::kernels::quant::quantize_q8_1(&x, &mut a1);
    let mut ak = vec![
        BlockQ8_K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; 16]
        };
        k / QK_K
    ];
    kquant::quantize_q8_k(&x, &mut ak);
    macro_rules! case {
        ($isa:expr, $name:literal, $dtype:expr, $b:ty, $fast:ident, $q8:ident, $acts:expr) => {{
            let bytes = weights(&mut rng, $dtype, 1, k);
            let w: &[$b] = bytemuck::cast_slice(&bytes);
            let isa = $isa;
            let id = |q: &str| BenchmarkId::new(format!("{q}/K={k}"), isa.name());
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_function(id(concat!($name, "_q8x2")), |b| {
                b.iter(|| isa.$fast(black_box(w), &a2))
            });
            group.bench_function(id($name), |b| b.iter(|| isa.$q8(black_box(w), $acts)));
        }};
    }
    for isa in Isa::available() {
        case!(
            isa,
            "q5_0",
            DType::Q5_0,
            BlockQ5_0,
            dot_q5_0_q8x2,
            dot_q5_0_q8_0,
            &a0
        );
        case!(
            isa,
            "q5_1",
            DType::Q5_1,
            BlockQ5_1,
            dot_q5_1_q8x2,
            dot_q5_1_q8_1,
            &a1
        );
        case!(
            isa,
            "q2_k",
            DType::Q2_K,
            BlockQ2_K,
            dot_q2_k_q8x2,
            dot_q2_k_q8_k,
            &ak
        );
        case!(
            isa,
            "q3_k",
            DType::Q3_K,
            BlockQ3_K,
            dot_q3_k_q8x2,
            dot_q3_k_q8_k,
            &ak
        );
        case!(
            isa,
            "q4_k",
            DType::Q4_K,
            BlockQ4_K,
            dot_q4_k_q8x2,
            dot_q4_k_q8_k,
            &ak
        );
        case!(
            isa,
            "q5_k",
            DType::Q5_K,
            BlockQ5_K,
            dot_q5_k_q8x2,
            dot_q5_k_q8_k,
            &ak
        );
        case!(
            isa,
            "q6_k",
            DType::Q6_K,
            BlockQ6_K,
            dot_q6_k_q8x2,
            dot_q6_k_q8_k,
            &ak
        );
    }
    group.finish();
}

fn bench_quantize(c: &mut Criterion) {
    let mut rng = Rng(2);
    let mut group = c.benchmark_group("quantize");
    let x = rng.vec(576);
    let mut out = vec![
        BlockQ8_1 {
            d: 0.0,
            s: 0.0,
            qs: [0; QK]
        };
        576 / QK
    ];
    let mut out2 = vec![
        BlockQ8x2 {
            d: 0.0,
            s: 0.0,
            hi: [0; QK],
            lo: [0; QK]
        };
        576 / QK
    ];
    for isa in Isa::available() {
        group.bench_function(BenchmarkId::new("q8_1/K=576", isa.name()), |b| {
            b.iter(|| isa.quantize_q8_1(black_box(&x), &mut out))
        });
        group.bench_function(BenchmarkId::new("q8x2/K=576", isa.name()), |b| {
            b.iter(|| isa.quantize_q8x2(black_box(&x), &mut out2))
        });
    }
    group.finish();
}

/// The matmuls of one SmolLM2-135M token, on the detected kernel set (and the reference for
/// the headline Q4_1 shape). Calls run inside a rayon pool, as a model's forward pass should:
/// then the calling thread works on a band itself, and the other workers are still spinning
/// from the previous matmul. `/outside-pool` shows the cost of calling from a foreign thread,
/// which hands the work over and sleeps until it is done.
fn bench_matmul(c: &mut Criterion) {
    let mut rng = Rng(3);
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("a thread pool");
    let mut group = c.benchmark_group("matmul");
    let cases: &[(DType, usize, usize, usize, Precision)] = &[
        (DType::Q4_1, 1536, 576, 1, Precision::Fast),
        (DType::Q4_1, 1536, 576, 1, Precision::Q8),
        (DType::Q4_1, 1536, 576, 64, Precision::Fast),
        (DType::Q4_1, 1536, 576, 64, Precision::Q8),
        (DType::Q4_1, 576, 576, 1, Precision::Fast),
        (DType::Q4_1, 576, 1536, 1, Precision::Fast),
        (DType::Q4_1, 192, 576, 1, Precision::Fast),
        (DType::Q8_0, 49152, 576, 1, Precision::Fast),
        (DType::Q8_0, 49152, 576, 1, Precision::Q8),
        (DType::Q4_0, 1536, 576, 64, Precision::Fast),
        (DType::Q4_0, 1536, 576, 64, Precision::Q8),
        (DType::Q8_0, 1536, 576, 64, Precision::Fast),
        (DType::Q8_0, 1536, 576, 64, Precision::Q8),
        (DType::Q4_1, 1536, 576, 64, Precision::F32),
        (DType::F16, 1536, 576, 1, Precision::Fast),
        (DType::F16, 1536, 576, 64, Precision::Fast),
        (DType::BF16, 1536, 576, 1, Precision::Fast),
        (DType::BF16, 1536, 576, 64, Precision::Fast),
        (DType::F32, 1536, 576, 1, Precision::Fast),
        (DType::F32, 1536, 576, 64, Precision::Fast),
        (DType::F32, 576, 1536, 512, Precision::Fast),
        // Gemma 3 270M Q4_K_M's MLP (C = 640, 2048 wide): Q5_0 gate/up, Q4_K or Q6_K down.
        (DType::Q5_0, 2048, 640, 1, Precision::Fast),
        (DType::Q5_0, 2048, 640, 1, Precision::Q8),
        (DType::Q4_K, 640, 2048, 1, Precision::Fast),
        (DType::Q4_K, 640, 2048, 1, Precision::Q8),
        (DType::Q6_K, 640, 2048, 1, Precision::Fast),
        (DType::Q6_K, 640, 2048, 1, Precision::Q8),
        (DType::Q4_K, 640, 2048, 64, Precision::Fast),
        (DType::Q4_K, 640, 2048, 64, Precision::Q8),
        (DType::Q6_K, 640, 2048, 64, Precision::Fast),
        (DType::Q5_0, 2048, 640, 64, Precision::Fast),
    ];
    let isa = Isa::detected();
    for &(dtype, n, k, t, precision) in cases {
        let w = weights(&mut rng, dtype, n, k);
        let m = MatRef {
            dtype,
            rows: n,
            cols: k,
            data: &w,
            packed: None,
        };
        let x = rng.vec(t * k);
        let mut out = vec![0f32; t * n];
        group.throughput(Throughput::Bytes(w.len() as u64));
        let name = format!("{dtype}/{n}x{k}/T={t}/{precision:?}");
        // As a model holds it: repacked at load, where the kernel set has panels for the type.
        let packed = PackedWeights::new(m, |_| {});
        let mut run = |isa: Isa, m: MatRef, label: &str| {
            let id = BenchmarkId::new(&name, label);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            isa.matmul(m, black_box(&x), t, &mut out, precision);
                        }
                        start.elapsed()
                    })
                })
            });
        };
        run(isa, m, isa.name());
        if let Some(p) = &packed {
            let mp = MatRef {
                packed: Some(p),
                ..m
            };
            run(isa, mp, &format!("{}/packed", isa.name()));
        }
        if (dtype == DType::Q4_1 && n == 1536 || dtype == DType::Q4_K && t == 1)
            && precision == Precision::Fast
        {
            run(Isa::Reference, m, Isa::Reference.name());
        }
        if t == 1 && dtype == DType::Q4_1 && precision == Precision::Fast {
            let id = BenchmarkId::new(&name, format!("{}/outside-pool", isa.name()));
            group.bench_function(id, |b| {
                b.iter(|| isa.matmul(m, black_box(&x), t, &mut out, precision))
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    // Short runs: these kernels take micro- to milliseconds, and the machine is shared.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_vec_dot, bench_vec_dot_new_types, bench_quantize, bench_matmul
}
criterion_main!(benches);
