//! `Isa::attend_block`, one head's causal attention for a block of queries, on every kernel set
//! of this CPU: against attention computed here in f64 (scores, mask, softmax, weighted values),
//! and row by row bit for bit against the same query run alone, which is what makes a kept
//! prefix cache exact. Head sizes cover the 16-lane path, a tail of scalar elements, and
//! Gemma 3's 256; visible ranges cover the causal mask and a sliding window.

use gpt::kernels::Isa;
use std::ops::Range;

struct Rng(u64);

impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

/// out (HS) and probs (NP) of one query, in f64.
fn naive(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    vis: Range<usize>,
    scale: f32,
) -> (Vec<f64>, Vec<f64>) {
    let hs = q.len();
    let np = keys.len() / hs;
    let scores: Vec<f64> = vis
        .clone()
        .map(|j| {
            let k = &keys[j * hs..(j + 1) * hs];
            q.iter()
                .zip(k)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                * scale as f64
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
    let mut probs = vec![0f64; np];
    for (j, s) in vis.clone().zip(&scores) {
        probs[j] = (s - max).exp() / sum;
    }
    let mut out = vec![0f64; hs];
    for j in vis {
        for (o, &v) in out.iter_mut().zip(&values[j * hs..(j + 1) * hs]) {
            *o += probs[j] * v as f64;
        }
    }
    (out, probs)
}

#[test]
fn attention_blocks_match_f64_and_each_row_matches_its_query_alone() {
    let mut rng = Rng(11);
    for hs in [16, 40, 64, 80, 256] {
        for (m, window) in [(1, None), (5, None), (64, None), (37, Some(9))] {
            let pos0 = 23; // the block's first query sees pos0 + 1 keys (window permitting)
            let np = pos0 + m;
            let q_stride = hs * 3; // the query of one head among others, as in a (T, NH * HS) matrix
            let q = rng.vec(m * q_stride, 2.0);
            let keys = rng.vec(np * hs, 2.0);
            let values = rng.vec(np * hs, 1.0);
            let visible: Vec<Range<usize>> = (0..m)
                .map(|i| {
                    let pos = pos0 + i;
                    window.map_or(0, |w: usize| (pos + 1).saturating_sub(w))..pos + 1
                })
                .collect();
            let scale = 1.0 / (hs as f32).sqrt();
            for isa in Isa::available() {
                let mut probs = vec![f32::NAN; m * np];
                let mut out = vec![f32::NAN; m * hs];
                isa.attend_block(
                    &q, q_stride, &keys, &values, &visible, scale, &mut probs, &mut out,
                );
                for (i, vis) in visible.iter().enumerate() {
                    let qi = &q[i * q_stride..i * q_stride + hs];
                    let what = format!("{isa:?} HS={hs} M={m} window {window:?} row {i}");
                    let (want_out, want_p) = naive(qi, &keys, &values, vis.clone(), scale);
                    for (j, (&g, &w)) in probs[i * np..(i + 1) * np].iter().zip(&want_p).enumerate()
                    {
                        assert!((g as f64 - w).abs() < 1e-5, "{what}: p[{j}] {g} vs {w}");
                    }
                    for (d, (&g, &w)) in out[i * hs..(i + 1) * hs].iter().zip(&want_out).enumerate()
                    {
                        assert!((g as f64 - w).abs() < 1e-5, "{what}: out[{d}] {g} vs {w}");
                    }
                    // The same query alone, over only the keys it sees.
                    let keys_i = &keys[..vis.end * hs];
                    let values_i = &values[..vis.end * hs];
                    let mut p1 = vec![f32::NAN; vis.end];
                    let mut o1 = vec![f32::NAN; hs];
                    isa.attend_block(
                        qi,
                        hs,
                        keys_i,
                        values_i,
                        std::slice::from_ref(vis),
                        scale,
                        &mut p1,
                        &mut o1,
                    );
                    assert!(
                        o1[..] == out[i * hs..(i + 1) * hs],
                        "{what}: alone it differs"
                    );
                    assert!(
                        p1[..] == probs[i * np..i * np + vis.end],
                        "{what}: alone its probabilities differ"
                    );
                }
            }
        }
    }
}
