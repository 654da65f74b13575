//! Finite-difference checks of every backward operation: for L = Σ dout ⊙ op(x) with a random
//! dout, the analytic gradient must match (L(x + h) - L(x - h)) / 2h on random small shapes.

use gpt::infer::sampling::Rng;
use gpt::model::{attention, embedding, linear, loss, mlp, norm};

/// Central differences in f32 with this step are good to about 1e-3 relative.
const STEP: f32 = 1e-2;
const RTOL: f32 = 2e-2;
const ATOL: f32 = 2e-3;

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Compares `analytic` with central differences of `f` around `x`, at every index.
fn check(label: &str, x: &[f32], analytic: &[f32], f: &dyn Fn(&[f32]) -> f64) {
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + STEP;
        let up = f(&xp);
        xp[i] = x[i] - STEP;
        let down = f(&xp);
        xp[i] = x[i];
        let fd = ((up - down) / (2.0 * STEP as f64)) as f32;
        let a = analytic[i];
        assert!(
            (a - fd).abs() <= ATOL + RTOL * fd.abs().max(a.abs()),
            "{label}[{i}]: analytic {a}, finite difference {fd}"
        );
    }
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    let mut rng = Rng::new(1);
    let (n, c) = (3, 7);
    let (x, w, b, dout) = (
        random(&mut rng, n * c),
        random(&mut rng, c),
        random(&mut rng, c),
        random(&mut rng, n * c),
    );
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let (mut out, mut m, mut r) = (vec![0f32; n * c], vec![0f32; n], vec![0f32; n]);
        norm::layer_norm_forward(x, w, b, 1e-5, &mut out, &mut m, &mut r);
        (out, m, r)
    };
    let (_, m, r) = fwd(&x, &w, &b);
    let (mut dx, mut dw, mut db) = (vec![0f32; n * c], vec![0f32; c], vec![0f32; c]);
    norm::layer_norm_backward(&dout, &x, &w, &m, &r, &mut dx, &mut dw, &mut db);
    check("dx", &x, &dx, &|x| dot(&fwd(x, &w, &b).0, &dout));
    check("dw", &w, &dw, &|w| dot(&fwd(&x, w, &b).0, &dout));
    check("db", &b, &db, &|b| dot(&fwd(&x, &w, b).0, &dout));
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut rng = Rng::new(2);
    let (n, c, oc) = (5, 6, 4);
    let (x, w, b, dout) = (
        random(&mut rng, n * c),
        random(&mut rng, oc * c),
        random(&mut rng, oc),
        random(&mut rng, n * oc),
    );
    // The forward is the inference layer's, on f32 weights.
    let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
        let weight = gpt::tensor::Matrix::from_f32("w", oc, c, w).unwrap();
        let layer = linear::Linear::new(weight, Some(b.to_vec()));
        dot(&layer.forward(x, n, gpt::kernels::Precision::F32), &dout)
    };
    let (mut dx, mut dw, mut db) = (vec![0f32; n * c], vec![0f32; oc * c], vec![0f32; oc]);
    linear::linear_backward(&dout, &x, &w, oc, &mut dx, &mut dw, Some(&mut db));
    check("dx", &x, &dx, &|x| fwd(x, &w, &b));
    check("dw", &w, &dw, &|w| fwd(&x, w, &b));
    check("db", &b, &db, &|b| fwd(&x, &w, b));
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(4);
    let (x, dout) = (
        random(&mut rng, 9)
            .iter()
            .map(|v| v * 3.0)
            .collect::<Vec<_>>(),
        random(&mut rng, 9),
    );
    let mut dx = vec![0f32; 9];
    mlp::gelu_backward(&dout, &x, &mut dx);
    check("dx", &x, &dx, &|x| {
        let mut out = vec![0f32; 9];
        mlp::gelu_forward(x, &mut out);
        dot(&out, &dout)
    });
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let mut rng = Rng::new(5);
    let (v, c) = (5, 3);
    let ids = [1u32, 3, 3, 0, 4, 1, 2, 2];
    let (table, dout) = (random(&mut rng, v * c), random(&mut rng, ids.len() * c));
    // The forward is the inference embedding's lookup.
    let fwd = |w: &[f32]| {
        let e = embedding::Embedding {
            table: gpt::tensor::Matrix::from_f32("wte", v, c, w).unwrap(),
            scale: None,
        };
        dot(&e.forward(&ids), &dout)
    };
    let rows: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let mut dtable = vec![0f32; v * c];
    embedding::embedding_backward(&dout, &rows, &mut dtable);
    check("dtable", &table, &dtable, &fwd);
}

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let mut rng = Rng::new(6);
    let (n, v) = (3, 6);
    let logits = random(&mut rng, n * v);
    let targets = [2u32, 0, 5];
    let fwd = |l: &[f32]| {
        let (mut p, mut ls) = (vec![0f32; n * v], vec![0f32; n]);
        loss::cross_entropy_forward(l, &targets, &mut p, &mut ls) as f64
    };
    let (mut p, mut ls) = (vec![0f32; n * v], vec![0f32; n]);
    loss::cross_entropy_forward(&logits, &targets, &mut p, &mut ls);
    let mut d = vec![0f32; n * v];
    loss::cross_entropy_backward(&p, &targets, &mut d);
    check("dlogits", &logits, &d, &fwd);
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let mut rng = Rng::new(7);
    let (n, c) = (3, 7);
    let (x, w, dout) = (
        random(&mut rng, n * c),
        random(&mut rng, c),
        random(&mut rng, n * c),
    );
    let fwd = |x: &[f32], w: &[f32]| {
        let norm = norm::Norm::Rms {
            weight: w.to_vec(),
            eps: 1e-5,
        };
        dot(&norm.forward(x), &dout)
    };
    let (mut dx, mut dw) = (vec![0f32; n * c], vec![0f32; c]);
    norm::rms_norm_backward(&dout, &x, &w, 1e-5, &mut dx, &mut dw);
    check("dx", &x, &dx, &|x| fwd(x, &w));
    check("dw", &w, &dw, &|w| fwd(&x, w));
}

#[test]
fn rope_backward_matches_finite_differences() {
    use gpt::model::rope::{Rope, RopePairs};
    let mut rng = Rng::new(8);
    let (heads, hs) = (2, 8);
    for pairs in [RopePairs::Halves, RopePairs::Adjacent] {
        // Rotating 6 of the 8 dimensions (partial RoPE, as Phi and GPT-NeoX do).
        let rope = Rope::new(6, 10000.0, pairs);
        let (cos, sin) = rope.angles(5);
        let (x, dout) = (random(&mut rng, heads * hs), random(&mut rng, heads * hs));
        let mut dx = dout.clone();
        rope.rotate_back(&mut dx, hs, &cos, &sin);
        check("dx", &x, &dx, &|x| {
            let mut y = x.to_vec();
            rope.rotate(&mut y, hs, &cos, &sin);
            dot(&y, &dout)
        });
    }
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let mut rng = Rng::new(9);
    let n = 11;
    let scaled = |rng: &mut Rng| random(rng, n).iter().map(|v| v * 4.0).collect::<Vec<_>>();
    let (gate, up, dout) = (scaled(&mut rng), scaled(&mut rng), random(&mut rng, n));
    let fwd = |g: &[f32], u: &[f32]| {
        let h: Vec<f32> = g.iter().zip(u).map(|(&g, &u)| mlp::silu(g) * u).collect();
        dot(&h, &dout)
    };
    let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
    mlp::swiglu_backward(&dout, &gate, &up, &mut dg, &mut du);
    check("dgate", &gate, &dg, &|g| fwd(g, &up));
    check("dup", &up, &du, &|u| fwd(&gate, u));
}

/// Grouped-query attention (4 query heads on 2 key/value heads) and multi-head attention (3 on
/// 3, GPT-2's), the forward computed by the kernel inference runs (`kernels::attend_block`, one
/// query at a time).
#[test]
fn grouped_query_attention_backward_matches_finite_differences() {
    for (nh, nkv) in [(4, 2), (3, 3)] {
        grouped_query_attention_case(nh, nkv);
    }
}

fn grouped_query_attention_case(nh: usize, nkv: usize) {
    let mut rng = Rng::new(10);
    let (t, hs) = (5, 3);
    let scale = 0.7;
    let q = random(&mut rng, t * nh * hs);
    let keys: Vec<Vec<f32>> = (0..nkv).map(|_| random(&mut rng, t * hs)).collect();
    let values: Vec<Vec<f32>> = (0..nkv).map(|_| random(&mut rng, t * hs)).collect();
    let dout = random(&mut rng, t * nh * hs);
    let fwd = |q: &[f32], keys: &[Vec<f32>], values: &[Vec<f32>]| {
        let mut out = vec![0f32; t * nh * hs];
        for i in 0..t {
            for h in 0..nh {
                let kv = h / (nh / nkv);
                let at = (i * nh + h) * hs;
                let (mut probs, mut o) = (vec![0f32; i + 1], vec![0f32; hs]);
                gpt::kernels::attend_block(
                    &q[at..at + hs],
                    hs,
                    &keys[kv][..(i + 1) * hs],
                    &values[kv][..(i + 1) * hs],
                    std::slice::from_ref(&(0..i + 1)),
                    scale,
                    &mut probs,
                    &mut o,
                );
                out[at..at + hs].copy_from_slice(&o);
            }
        }
        dot(&out, &dout)
    };
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![vec![0f32; t * hs]; nkv];
    let mut dv = vec![vec![0f32; t * hs]; nkv];
    attention::causal_attention_backward(
        &q, &keys, &values, nh, hs, scale, &dout, &mut dq, &mut dk, &mut dv,
    );
    check("dq", &q, &dq, &|q| fwd(q, &keys, &values));
    for kv in 0..nkv {
        let with = |x: &[f32], which: &[Vec<f32>]| {
            let mut m = which.to_vec();
            m[kv] = x.to_vec();
            m
        };
        check("dk", &keys[kv], &dk[kv], &|k| {
            fwd(&q, &with(k, &keys), &values)
        });
        check("dv", &values[kv], &dv[kv], &|v| {
            fwd(&q, &keys, &with(v, &values))
        });
    }
}
