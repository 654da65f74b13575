//! `gpt perplexity`'s two methods against the same numbers computed by hand from the model's
//! logits (every position's, in f64): llama-perplexity's chunks (BOS first in each window, the
//! second half scored, its standard error) and the sliding window of Hugging Face's perplexity
//! guide (its loop, written out as the guide writes it). On the tiny random Llama fixture.

use gpt::formats::gguf::GgufFile;
use gpt::infer::perplexity::{perplexity, windows, Method, Window};
use gpt::kernels::Precision;
use gpt::model::{Logits, Transformer};
use std::path::Path;

fn load(file: &str, precision: Precision) -> Transformer {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arch/llama")
        .join(file);
    let mut t = Transformer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    t.set_precision(precision);
    t
}

fn model() -> Transformer {
    // The f16 file read with f32 math: its values are the f32 file's (see the fixtures' README).
    load("model-f16.gguf", Precision::F32)
}

/// The f32 model, and a quantized file at the default precision (its repacked matmuls).
fn models() -> Vec<(&'static str, Transformer)> {
    vec![
        ("f32", model()),
        ("Q4_K_M fast", load("model-Q4_K_M.gguf", Precision::Fast)),
    ]
}

/// Ids spread over the vocabulary (a fixed sequence: no generator to trust).
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 37 + i * i * 11 + 5) % vocab) as u32)
        .collect()
}

/// Every position's logits (T, V) of `ids`, as one sequence from an empty cache.
fn all_logits(t: &Transformer, ids: &[u32]) -> Vec<f32> {
    t.forward(ids, &mut t.new_cache(), Logits::All, None)
        .unwrap()
}

/// -log softmax(row)[target], all in f64.
fn nll_f64(row: &[f32], target: u32) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let lse = max
        + row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    lse - row[target as usize] as f64
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: {got} against {want} by hand"
    );
}

#[test]
fn chunks_equal_llama_perplexity_by_hand() {
    for (name, t) in models() {
        let v = t.config.vocab_size;
        for (n, ctx, bos) in [
            (50, 8, Some(318u32)),
            (64, 16, Some(318)),
            (33, 16, Some(318)),
            (47, 9, None),
            (20, 3, None),
        ] {
            let mut toks = tokens(n, v);
            if let Some(b) = bos {
                toks[0] = b;
            }
            let ws = windows(n, ctx, Method::Chunks, bos).unwrap();
            let got = perplexity(&t, &toks, &ws, 1, |_, _, _| {}).unwrap();
            // llama-perplexity: n / ctx chunks; in each, BOS (where the model adds one) replaces
            // the first token, and logits at positions ctx/2 ..= ctx - 2 predict the next token.
            let mut nlls = Vec::new();
            for i in 0..n / ctx {
                let mut ids = toks[i * ctx..(i + 1) * ctx].to_vec();
                if let Some(b) = bos {
                    ids[0] = b;
                }
                let logits = all_logits(&t, &ids);
                for p in ctx / 2..ctx - 1 {
                    nlls.push(nll_f64(&logits[p * v..(p + 1) * v], ids[p + 1]));
                }
            }
            let k = nlls.len() as f64;
            let mean = nlls.iter().sum::<f64>() / k;
            let var = nlls.iter().map(|x| x * x).sum::<f64>() / k - mean * mean;
            let what = format!("{name} chunks n={n} ctx={ctx} bos={bos:?}");
            assert_eq!(
                got.count,
                (n / ctx) * (ctx - ctx / 2 - 1),
                "{what}: scored tokens"
            );
            assert_eq!(got.count, nlls.len(), "{what}: scored tokens");
            close(
                &format!("{what} perplexity"),
                got.perplexity(),
                mean.exp(),
                1e-6,
            );
            close(
                &format!("{what} stderr"),
                got.perplexity_stderr(),
                (var / (k - 1.0)).sqrt() * mean.exp(),
                1e-4,
            );
        }
    }
}

#[test]
fn stride_equals_the_hugging_face_guide_by_hand() {
    for (name, t) in models() {
        let v = t.config.vocab_size;
        for (n, ctx, stride) in [(30, 8, 3), (30, 8, 8), (41, 16, 5), (7, 16, 4)] {
            let toks = tokens(n, v);
            let ws = windows(n, ctx, Method::Stride(stride), None).unwrap();
            let got = perplexity(&t, &toks, &ws, 1, |_, _, _| {}).unwrap();
            // The guide's loop: labels before the window's last trg_len positions are -100, and the
            // model shifts labels by one, so position 0 of a window is never a target.
            let (mut sum, mut sum_sq, mut count, mut prev_end, mut begin) =
                (0f64, 0f64, 0usize, 0usize, 0usize);
            while begin < n {
                let end = (begin + ctx).min(n);
                let trg_len = end - prev_end;
                let ids = &toks[begin..end];
                let logits = all_logits(&t, ids);
                let len = ids.len();
                for k in 1..len {
                    if k >= len - trg_len {
                        let x = nll_f64(&logits[(k - 1) * v..k * v], ids[k]);
                        sum += x;
                        sum_sq += x * x;
                        count += 1;
                    }
                }
                prev_end = end;
                if end == n {
                    break;
                }
                begin += stride;
            }
            let what = format!("{name} stride n={n} ctx={ctx} stride={stride}");
            if stride < ctx {
                assert_eq!(
                    count,
                    n - 1,
                    "{what}: every token but the first scored once"
                );
            }
            assert_eq!(got.count, count, "{what}: scored tokens");
            let (k, mean) = (count as f64, sum / count as f64);
            close(
                &format!("{what} perplexity"),
                got.perplexity(),
                mean.exp(),
                1e-6,
            );
            let se = ((sum_sq / k - mean * mean) / (k - 1.0)).sqrt() * mean.exp();
            close(&format!("{what} stderr"), got.perplexity_stderr(), se, 1e-4);
        }
    }
}

#[test]
fn windows_evaluated_together_equal_one_at_a_time() {
    let t = model();
    let toks = tokens(100, t.config.vocab_size);
    let ws = windows(toks.len(), 16, Method::Stride(6), None).unwrap();
    let one = perplexity(&t, &toks, &ws, 1, |_, _, _| {}).unwrap();
    let mut calls = Vec::new();
    let many = perplexity(&t, &toks, &ws, 3, |done, total, _| {
        calls.push((done, total))
    })
    .unwrap();
    assert_eq!(one.count, many.count);
    close("batch 3", many.perplexity(), one.perplexity(), 1e-6);
    assert_eq!(
        calls.last(),
        Some(&(ws.len(), ws.len())),
        "progress ends at the last window"
    );
}

#[test]
fn bad_windows_and_tokens_are_clear_errors() {
    let t = model();
    let err = |r: gpt::Result<Vec<Window>>| r.unwrap_err().to_string();
    assert!(err(windows(15, 8, Method::Chunks, None)).contains("at least 16"));
    assert!(err(windows(100, 8, Method::Stride(0), None)).contains("stride 0"));
    assert!(err(windows(100, 8, Method::Stride(9), None)).contains("stride 9"));
    assert!(err(windows(100, 1, Method::Chunks, None)).contains("context of 1"));
    assert!(err(windows(100, 2, Method::Chunks, None)).contains("at least 3"));
    let outside = [Window {
        start: 0,
        end: 8,
        score_from: 8,
        bos: None,
    }];
    let e = perplexity(&t, &tokens(20, 10), &outside, 1, |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    let long = windows(600, 300, Method::Chunks, None).unwrap();
    let e = perplexity(&t, &tokens(600, 10), &long, 1, |_, _, _| {}).unwrap_err();
    assert!(
        e.to_string().contains("longer than the model's context"),
        "{e}"
    );
    let bad = vec![t.config.vocab_size as u32; 40];
    let ws = windows(40, 8, Method::Chunks, None).unwrap();
    let e = perplexity(&t, &bad, &ws, 1, |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}
