//! Reusing the keys and values of a prompt prefix is exact: a position's logits do not depend on
//! how its sequence was cut into forward passes (one pass, chunks of any size, one token at a
//! time, a prefix kept from an earlier, longer sequence and truncated) or on which other
//! sequences share the pass. This is what lets a server keep a conversation's cache after a
//! request and serve the next turn from it with the same logits as without the cache.
//!
//! Data-driven: every model file of every folder in `tests/fixtures/arch/` (the sliding-window
//! fixture's window of 16 is far shorter than the prompts), the tiny GPT-2, and the two known
//! models. Compared bit for bit.

use gpt::infer::KvCache;
use gpt::model::{Logits, Transformer};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every model to check: (name, model).
fn models() -> Vec<(String, Transformer)> {
    let mut out = Vec::new();
    out.push((
        "gpt2-tiny".to_string(),
        Transformer::from_hf_dir(&fixtures().join("gpt2-tiny")).unwrap(),
    ));
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("arch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        files.sort();
        for f in files {
            let name = format!("{}", f.strip_prefix(fixtures()).unwrap().display());
            let gguf = gpt::formats::gguf::GgufFile::open(&f).unwrap();
            out.push((name, Transformer::from_gguf(&gguf).unwrap()));
        }
        if dir.join("hf/config.json").exists() {
            let name = format!("{}/hf", dir.file_name().unwrap().to_string_lossy());
            out.push((name, Transformer::from_hf_dir(&dir.join("hf")).unwrap()));
        }
    }
    for known in ["smollm2-135m-instruct", "gemma3-270m"] {
        let path = gpt::hub::resolve(known, &mut |_, _, _| {}).expect("fetching the model");
        let gguf = gpt::formats::gguf::GgufFile::open(&path).unwrap();
        let mut t = Transformer::from_gguf(&gguf).unwrap();
        t.pack_weights();
        out.push((known.to_string(), t));
    }
    out
}

/// A prompt of `n` ids spread over the vocabulary, different for each `seed`.
fn prompt(model: &Transformer, n: usize, seed: u32) -> Vec<u32> {
    let v = model.config.vocab_size as u32;
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 7) % v)
        .collect()
}

/// The last position's logits after running `ids` in passes of the given sizes (the last pass
/// takes the rest) into `cache`.
fn run(model: &Transformer, ids: &[u32], cuts: &[usize], cache: &mut KvCache) -> Vec<f32> {
    let mut at = cache.len();
    let mut logits = Vec::new();
    for &len in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        if at >= ids.len() {
            break;
        }
        let end = ids.len().min(at.saturating_add(len));
        logits = model
            .forward(&ids[at..end], cache, Logits::Last, None)
            .unwrap();
        at = end;
    }
    logits
}

#[test]
fn logits_do_not_depend_on_how_a_sequence_is_cut_into_passes() {
    let mut failed = Vec::new();
    for (name, model) in models() {
        let n = 90.min(model.config.context_length);
        let ids = prompt(&model, n, 1);
        let whole = run(&model, &ids, &[], &mut model.new_cache());
        let ways: [&[usize]; 6] = [
            &[1; 200],
            &[7, 1, 1, 30],
            &[16, 16, 16],
            &[64],
            &[63, 1, 1, 1, 1],
            &[89],
        ];
        for cuts in ways {
            let got = run(&model, &ids, cuts, &mut model.new_cache());
            check(
                &mut failed,
                got == whole,
                format!(
                    "{name}: passes of {:?} give other logits than one pass (max |diff| {:e})",
                    &cuts[..cuts.len().min(5)],
                    max_diff(&got, &whole)
                ),
            );
        }
    }
    assert!(failed.is_empty(), "{} cases failed", failed.len());
}

#[test]
fn a_truncated_cache_of_a_longer_sequence_serves_a_new_suffix_exactly() {
    let mut failed = Vec::new();
    for (name, model) in models() {
        let n = 100.min(model.config.context_length);
        let first = prompt(&model, n, 2);
        let mut checked = 0;
        // Shares of the prompt, inside the generated part, and just before its end (where a
        // sliding layer still holds what the next query sees).
        for keep in [1, n / 5, n * 2 / 3, n - 6, n - 2] {
            // The earlier request: its prompt in passes of 32, then a few decode steps.
            let mut cache = model.new_cache();
            run(&model, &first[..n - 8], &[32], &mut cache);
            run(&model, &first, &[1; 8], &mut cache);
            // The later request shares `keep` tokens with it.
            let mut second = first[..keep].to_vec();
            second.extend(prompt(&model, n, 3).iter().take((n - keep).max(2) - 1));
            let fresh = run(&model, &second, &[32], &mut model.new_cache());
            if !cache.can_truncate(keep) {
                continue; // a sliding layer has dropped what the suffix would need
            }
            cache.truncate(keep);
            assert_eq!(cache.len(), keep);
            checked += 1;
            let reused = run(&model, &second, &[32], &mut cache);
            check(
                &mut failed,
                reused == fresh,
                format!(
                    "{name}: reusing {keep} cached positions changes the logits (max |diff| {:e})",
                    max_diff(&reused, &fresh)
                ),
            );
        }
        assert!(
            checked >= 2,
            "{name}: only {checked} prefixes could be reused"
        );
    }
    assert!(failed.is_empty(), "{} cases failed", failed.len());
}

#[test]
fn logits_do_not_depend_on_the_other_sequences_of_a_pass() {
    let mut failed = Vec::new();
    for (name, model) in models() {
        let n = 50.min(model.config.context_length);
        let a = prompt(&model, n * 4 / 5, 4);
        let b = prompt(&model, n, 5);
        let (cut_a, cut_b) = (a.len() * 3 / 4, b.len() * 2 / 5);
        let alone_a = run(&model, &a, &[cut_a], &mut model.new_cache());
        let alone_b = run(&model, &b, &[cut_b], &mut model.new_cache());
        // The rest of a and of b in one stacked pass, after their first parts.
        let (mut ca, mut cb) = (model.new_cache(), model.new_cache());
        run(&model, &a[..cut_a], &[], &mut ca);
        run(&model, &b[..cut_b], &[], &mut cb);
        let both = model
            .forward_segments(&[&a[cut_a..], &b[cut_b..]], &mut [&mut ca, &mut cb])
            .unwrap();
        check(
            &mut failed,
            both[0] == alone_a && both[1] == alone_b,
            format!(
                "{name}: a stacked pass changes the logits (max |diff| {:e}, {:e})",
                max_diff(&both[0], &alone_a),
                max_diff(&both[1], &alone_b)
            ),
        );
    }
    assert!(failed.is_empty(), "{} cases failed", failed.len());
}

/// Notes a failed case, so that one run lists every model that fails.
fn check(failed: &mut Vec<String>, ok: bool, what: String) {
    if !ok {
        eprintln!("{what}");
        failed.push(what);
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
