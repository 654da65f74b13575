//! `Transformer::forward_batch` (one decode step for several sequences in one pass, what the
//! server's continuous batching runs) against separate `forward` calls, bit for bit, on the tiny GPT-2
//! fixture (f32 weights, learned positions) and on the default model (quantized weights, RoPE,
//! grouped-query attention).

use gpt::infer::sampling::argmax;
use gpt::infer::KvCache;
use gpt::model::{Logits, Transformer};
use std::path::Path;

// Exact, f32 and quantized weights alike: every kernel computes a token's row, and attention a
// query's, by the same arithmetic whatever else shares the pass (see `gpt::kernels`), which is
// what the server's batching and its prompt cache rely on.

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Prefills each prompt into its own cache, then runs `steps` decode steps both ways (batched
/// and one sequence at a time), feeding both the greedy token of the separate path, and
/// returns the largest logit difference seen.
fn batched_vs_separate(model: &Transformer, prompts: &[Vec<u32>], steps: usize) -> f32 {
    let mut solo: Vec<KvCache> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut batch: Vec<KvCache> = prompts.iter().map(|_| model.new_cache()).collect();
    let mut next = Vec::new();
    for ((p, a), b) in prompts.iter().zip(&mut solo).zip(&mut batch) {
        let la = model.forward(p, a, Logits::Last, None).unwrap();
        let lb = model.forward(p, b, Logits::Last, None).unwrap();
        assert_eq!(la, lb, "prefill is deterministic");
        next.push(argmax(&la));
    }
    let mut worst = 0f32;
    for step in 0..steps {
        let separate: Vec<Vec<f32>> = next
            .iter()
            .zip(&mut solo)
            .map(|(&id, c)| model.forward(&[id], c, Logits::Last, None).unwrap())
            .collect();
        let mut refs: Vec<&mut KvCache> = batch.iter_mut().collect();
        let batched = model.forward_batch(&next, &mut refs).unwrap();
        assert_eq!(batched.len(), prompts.len());
        for (s, (a, b)) in separate.iter().zip(&batched).enumerate() {
            let d = max_diff(a, b);
            if d > worst {
                eprintln!(
                    "step {step}, sequence {s}: max |diff| {d:e}; first logits {:?} vs {:?}",
                    &a[..4],
                    &b[..4]
                );
            }
            worst = worst.max(d);
        }
        next = separate.iter().map(|l| argmax(l)).collect();
    }
    for (a, b) in solo.iter().zip(&batch) {
        assert_eq!(a.len(), b.len(), "both caches hold the same positions");
    }
    worst
}

#[test]
fn batched_decode_matches_separate_forward_on_tiny_gpt2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let model = Transformer::from_hf_dir(&dir).unwrap();
    let v = model.config.vocab_size as u32;
    // Different lengths, so each sequence's rows sit at other positions of the stack.
    let prompts: Vec<Vec<u32>> = (1..=5)
        .map(|n| (0..n * 3).map(|i| (7 * i as u32 + n as u32) % v).collect())
        .collect();
    let worst = batched_vs_separate(&model, &prompts, 6);
    assert_eq!(worst, 0.0, "batching changed the logits");
}

#[test]
fn batched_decode_matches_separate_forward_on_default_model() {
    let path = gpt::hub::resolve(gpt::hub::DEFAULT_MODEL, &mut |_, _, _| {}).expect("the model");
    let m = gpt::LoadedModel::open(&path).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived",
        "def fibonacci(n):",
        "1, 2, 3, 4,",
        "Water boils at",
    ]
    .iter()
    .map(|p| m.encode_prompt(p, false))
    .collect();
    let worst = batched_vs_separate(&m.transformer, &prompts, 8);
    assert_eq!(worst, 0.0, "batching changed the logits");
}

#[test]
fn prompts_and_decode_steps_in_one_pass_match_separate_forward() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let model = Transformer::from_hf_dir(&dir).unwrap();
    // Two sequences already running (one token each to decode), two new prompts.
    let running: Vec<Vec<u32>> = vec![vec![5, 9, 2], vec![7, 7, 7, 7, 1]];
    let (next, prompts): (Vec<u32>, Vec<Vec<u32>>) =
        (vec![11, 3], vec![vec![4, 8, 15], vec![16, 23, 42, 8, 1, 2]]);
    let mut solo: Vec<KvCache> = (0..4).map(|_| model.new_cache()).collect();
    let mut mixed: Vec<KvCache> = (0..4).map(|_| model.new_cache()).collect();
    for (i, r) in running.iter().enumerate() {
        model.forward(r, &mut solo[i], Logits::Last, None).unwrap();
        model.forward(r, &mut mixed[i], Logits::Last, None).unwrap();
    }
    let segments: Vec<Vec<u32>> = vec![
        vec![next[0]],
        vec![next[1]],
        prompts[0].clone(),
        prompts[1].clone(),
    ];
    let want: Vec<Vec<f32>> = segments
        .iter()
        .zip(&mut solo)
        .map(|(s, c)| model.forward(s, c, Logits::Last, None).unwrap())
        .collect();
    let refs: Vec<&[u32]> = segments.iter().map(Vec::as_slice).collect();
    let mut caches: Vec<&mut KvCache> = mixed.iter_mut().collect();
    let got = model.forward_segments(&refs, &mut caches).unwrap();
    for (s, (a, b)) in want.iter().zip(&got).enumerate() {
        let d = max_diff(a, b);
        assert_eq!(d, 0.0, "sequence {s}: max |diff| {d}");
    }
    for (a, b) in solo.iter().zip(&mixed) {
        assert_eq!(a.len(), b.len());
    }
}

#[test]
fn batched_decode_refuses_mismatched_or_overflowing_input_without_touching_caches() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let model = Transformer::from_hf_dir(&dir).unwrap();
    let mut a = model.new_cache();
    let mut b = model.new_cache();
    assert!(model.forward_batch(&[1, 2], &mut [&mut a]).is_err());
    let full: Vec<u32> = vec![1; model.config.context_length];
    model.forward(&full, &mut b, Logits::Last, None).unwrap();
    let err = model.forward_batch(&[1, 2], &mut [&mut a, &mut b]);
    assert!(matches!(err, Err(gpt::Error::ContextOverflow { .. })));
    assert_eq!((a.len(), b.len()), (0, model.config.context_length));
}

/// Not a check: prints the time of one batched decode step for several batch sizes
/// (`cargo test --release -p gpt --test batch_decode -- --ignored --nocapture`).
#[test]
#[ignore]
fn batched_decode_step_time_by_batch_size() {
    // Inside the pool, as the server's scheduler runs (see gpt::kernels on foreign threads).
    rayon::ThreadPoolBuilder::new()
        .build()
        .unwrap()
        .install(step_times);
}

fn step_times() {
    let path = gpt::hub::resolve(gpt::hub::DEFAULT_MODEL, &mut |_, _, _| {}).expect("the model");
    let m = gpt::LoadedModel::open(&path).unwrap();
    let t = &m.transformer;
    for b in [1usize, 2, 4, 6, 8, 12, 16, 32] {
        let mut caches: Vec<KvCache> = (0..b).map(|_| t.new_cache()).collect();
        for c in &mut caches {
            t.forward(&[1, 2, 3, 4, 5, 6, 7, 8], c, Logits::Last, None)
                .unwrap();
        }
        let steps = 16;
        let t0 = std::time::Instant::now();
        for s in 0..steps {
            let ids: Vec<u32> = (0..b as u32).map(|i| 100 + i + s).collect();
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            t.forward_batch(&ids, &mut refs).unwrap();
        }
        let per = t0.elapsed().as_secs_f64() / steps as f64;
        eprintln!(
            "B = {b:>2}: {:6.1} ms per step, {:6.1} tokens/s",
            per * 1e3,
            b as f64 / per
        );
    }
    let logits = t
        .forward(&[1, 2, 3], &mut t.new_cache(), Logits::Last, None)
        .unwrap();
    let mut s = gpt::infer::Sampler::new(gpt::infer::SamplingParams {
        temperature: 0.8,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    for _ in 0..100 {
        s.sample(&logits, &[]);
    }
    eprintln!(
        "sampling over the whole vocabulary: {:.2} ms",
        t0.elapsed().as_secs_f64() * 10.0
    );
}
