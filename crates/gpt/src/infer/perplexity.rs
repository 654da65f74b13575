//! Perplexity: how well a model predicts a text, e^(mean negative log-likelihood of each token
//! given the tokens before it).
//!
//! A text longer than the context window is scored in windows, by one of two methods:
//! - [`Method::Chunks`], llama.cpp's `llama-perplexity`: the tokens (BOS first where the model
//!   adds one) are cut into `n / ctx` non-overlapping windows of `ctx` tokens; each window's
//!   first token is replaced by BOS (where the model adds one), and only the tokens of its
//!   second half are scored (window positions ctx/2 + 1 .. ctx), so every scored token has at least
//!   ctx/2 tokens of context (ctx - ctx/2 - 1 tokens per window). A remainder shorter than a
//!   window is not scored.
//! - [`Method::Stride`], the sliding window of Hugging Face's perplexity guide: windows of up to
//!   `ctx` tokens start every `stride` tokens, and each scores only the tokens the previous
//!   window did not reach. With stride < ctx every token but the first is scored exactly once
//!   (with stride = ctx the windows do not overlap, and each one's first token goes unscored, as
//!   in the guide); no BOS is inserted per window. The result is the exact mean over scored
//!   tokens; the guide's code weights each window's mean by its target count minus one, which
//!   differs from it in the last digits.

use crate::kernels::team;
use crate::model::{Logits, Transformer};
use crate::{Error, Result};

/// How a text longer than one window is scored (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// llama.cpp's non-overlapping windows, second half scored.
    Chunks,
    /// Hugging Face's sliding window, moving this many tokens at a time.
    Stride(usize),
}

/// One forward pass: `tokens[start..end]` as input (its first id replaced by `bos`, if set),
/// scoring the tokens at input positions `score_from..` (each predicted from the position
/// before it; `score_from >= 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub score_from: usize,
    pub bos: Option<u32>,
}

/// The windows that score `n_tokens` tokens with a context of `ctx`. `bos` is the id the model
/// starts a sequence with, where its vocabulary says to add one.
pub fn windows(
    n_tokens: usize,
    ctx: usize,
    method: Method,
    bos: Option<u32>,
) -> Result<Vec<Window>> {
    if ctx < 2 {
        return Err(Error::Invalid(format!(
            "perplexity: a context of {ctx} tokens scores nothing (at least 2)"
        )));
    }
    match method {
        Method::Chunks if ctx < 3 => Err(Error::Invalid(format!(
            "perplexity: a context of {ctx} tokens scores nothing of each window's second half (at least 3)"
        ))),
        Method::Chunks => {
            if n_tokens < 2 * ctx {
                return Err(Error::Invalid(format!(
                    "perplexity: the text has {n_tokens} tokens; windows of {ctx} need at least {} (two windows), as llama-perplexity does",
                    2 * ctx
                )));
            }
            Ok((0..n_tokens / ctx)
                .map(|i| Window {
                    start: i * ctx,
                    end: (i + 1) * ctx,
                    score_from: ctx / 2 + 1,
                    bos,
                })
                .collect())
        }
        Method::Stride(stride) => {
            if stride == 0 || stride > ctx {
                return Err(Error::Invalid(format!(
                    "perplexity: --stride {stride} must be between 1 and the context ({ctx})"
                )));
            }
            if n_tokens < 2 {
                return Err(Error::Invalid(format!(
                    "perplexity: the text has {n_tokens} tokens; at least 2 are needed"
                )));
            }
            // Hugging Face's loop: each window scores the tokens past the previous window's end.
            let (mut out, mut prev_end, mut begin) = (Vec::new(), 0, 0);
            loop {
                let end = (begin + ctx).min(n_tokens);
                let score_from = (prev_end.max(begin + 1)) - begin;
                out.push(Window {
                    start: begin,
                    end,
                    score_from,
                    bos: None,
                });
                if end == n_tokens {
                    break;
                }
                prev_end = end;
                begin += stride;
            }
            Ok(out)
        }
    }
}

/// Running sums of the negative log-likelihoods (natural log) of scored tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Nll {
    pub sum: f64,
    pub sum_sq: f64,
    pub count: usize,
}

impl Nll {
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum_sq += nll * nll;
        self.count += 1;
    }

    pub fn merge(&mut self, o: &Nll) {
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.count += o.count;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// e^(mean NLL).
    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }

    /// The standard error of the perplexity, as llama-perplexity reports it: the standard error
    /// of the mean NLL, sqrt(var / (n - 1)), times the perplexity (its first-order propagation).
    pub fn perplexity_stderr(&self) -> f64 {
        let n = self.count as f64;
        let var = self.sum_sq / n - self.mean() * self.mean();
        if self.count < 2 || var <= 0.0 {
            return 0.0;
        }
        (var / (n - 1.0)).sqrt() * self.perplexity()
    }
}

/// -log softmax(logits)[target], with llama.cpp's arithmetic: f32 differences from the max,
/// their exponentials summed in f64.
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = logits.iter().map(|&v| ((v - max).exp()) as f64).sum();
    sum.ln() - (logits[target as usize] - max) as f64
}

/// Scores one window of `tokens`: the NLL of each scored token.
pub fn score_window(model: &Transformer, tokens: &[u32], w: &Window) -> Result<Nll> {
    let mut ids = tokens[w.start..w.end].to_vec();
    if let Some(b) = w.bos {
        ids[0] = b;
    }
    let v = model.config.vocab_size;
    let mut cache = model.new_cache();
    // Logits of the positions that predict scored tokens only: (len - score_from, V).
    let first = w.score_from - 1;
    let logits = model.forward(&ids, &mut cache, Logits::From(first), None)?;
    let targets = &ids[w.score_from..];
    // A row is a softmax over the whole vocabulary: rows go to the team.
    let nlls = team::parallel_map(targets.len(), |r| {
        token_nll(&logits[r * v..(r + 1) * v], targets[r])
    });
    let mut nll = Nll::default();
    for x in nlls {
        nll.add(x);
    }
    Ok(nll)
}

/// The perplexity of `tokens` (already with BOS first, where the model adds one) under
/// `model`. `batch` windows run at once, one per thread of the kernels' team (each window then
/// runs its matmuls on one thread); `progress(windows done, windows, running NLL)` is called
/// after each batch.
pub fn perplexity(
    model: &Transformer,
    tokens: &[u32],
    windows: &[Window],
    batch: usize,
    mut progress: impl FnMut(usize, usize, &Nll),
) -> Result<Nll> {
    let v = model.config.vocab_size;
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= v) {
        return Err(Error::Invalid(format!(
            "perplexity: token id {bad} is outside the vocabulary ({v})"
        )));
    }
    let ctx = model.config.context_length;
    for w in windows {
        if w.start >= w.end
            || w.end > tokens.len()
            || w.score_from < 1
            || w.score_from >= w.end - w.start
        {
            return Err(Error::Invalid(format!(
                "perplexity: window {w:?} does not fit {} tokens (start < end <= tokens, 1 <= score_from < its length)",
                tokens.len()
            )));
        }
        if w.end - w.start > ctx {
            return Err(Error::Invalid(format!(
                "perplexity: a window of {} tokens is longer than the model's context ({ctx})",
                w.end - w.start
            )));
        }
    }
    let mut total = Nll::default();
    for (b, group) in windows.chunks(batch.max(1)).enumerate() {
        let scores = if group.len() == 1 {
            vec![score_window(model, tokens, &group[0])]
        } else {
            team::parallel_map(group.len(), |i| score_window(model, tokens, &group[i]))
        };
        for s in scores {
            total.merge(&s?);
        }
        progress(
            (b * batch.max(1) + group.len()).min(windows.len()),
            windows.len(),
            &total,
        );
    }
    if total.count == 0 {
        return Err(Error::Invalid("perplexity: no token was scored".into()));
    }
    Ok(total)
}
