//! `/inspect/...`: the looks inside the model that `gpt inspect ... --json` prints, as JSON
//! endpoints (the walk-through page at `/explain` draws them; a notebook can call them too).
//! Each answers exactly what the CLI prints for the same prompt and options
//! ([`gpt::inspect::report`] builds both), attention patterns rounded to 4 decimals.
//!
//! | endpoint | body | CLI |
//! |---|---|---|
//! | `POST /inspect/tokens` | `{"prompt"}` | `gpt inspect tokens P --json` |
//! | `POST /inspect/embeddings` | `{"prompt"}` | `gpt inspect embed vectors P --json` |
//! | `POST /inspect/similarity` | `{"a", "b", "as_is"?}` | `gpt inspect embed similarity A B --json` |
//! | `POST /inspect/projection` | `{"direction", "words", "as_is"?}` | `gpt inspect embed project -d D W.. --json` |
//! | `POST /inspect/attention` | `{"prompt", "layer", "heads"?, "pool"?}` | `gpt inspect attention P -l L --all-heads --json` |
//! | `POST /inspect/lens` | `{"prompt", "top"?}` (3) | `gpt inspect lens P --top N --json` |
//! | `POST /inspect/logits` | `{"prompt", "top"?}` (10) | `gpt inspect logits P --top N --json` |
//! | `POST /inspect/temperature` | `{"prompt", "temperatures"?, "top"?}` ([0, 0.5, 1, 2], 8) | `gpt inspect temperature P --temperatures .. --top N --json` |
//! | `GET /inspect/params[?preset=NAME]` | | `gpt inspect params [--preset NAME] --json` |
//!
//! `pool` (thumbnails of long prompts, the page's small multiples) averages each pattern into
//! (pool, pool) blocks ([`pool_patterns`]); without it the patterns are the CLI's.
//!
//! Forward passes run on the model thread between decode steps; the rest (tokenizing, reading
//! embedding rows) on tokio's blocking threads.

use super::{blocking, check_open, parse};
use crate::errors::ApiError;
use crate::scheduler::Job;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Json, Response};
use gpt::inspect::probes::SpaceRule;
use gpt::inspect::report;
use gpt::LoadedModel;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Tokens a prompt may have here: attention answers n_head (T, T) patterns per layer.
pub const MAX_INSPECT_TOKENS: usize = 512;
/// Candidates a distribution may list: the page never gets the whole vocabulary.
pub const MAX_TOP: usize = 1000;
/// Temperatures per request, words per projection, characters per word or expression.
pub const MAX_TEMPERATURES: usize = 16;
pub const MAX_WORDS: usize = 64;
pub const MAX_WORD_CHARS: usize = 200;

fn answer(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A library error as the API's: what the request asked for that cannot be (bad input, a
/// prompt beyond the context window, a word the tokenizer refuses) is a 400; anything else a 500.
fn api_error(e: gpt::Error) -> ApiError {
    match e {
        gpt::Error::Invalid(m) => ApiError::invalid(m, None),
        e @ gpt::Error::ContextOverflow { .. } => ApiError::context_exceeded(e.to_string()),
        e @ gpt::Error::Tokenizer(_) => ApiError::invalid(e.to_string(), None),
        e => ApiError::internal(e.to_string()),
    }
}

/// Runs `f` with the model on the model thread and awaits its answer.
pub(crate) async fn on_model(
    state: &AppState,
    f: impl FnOnce(&LoadedModel) -> gpt::Result<Value> + Send + 'static,
) -> Result<Value, ApiError> {
    check_open(state)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.scheduler.submit(Job::Inspect(Box::new(move |m| {
        let _ = tx.send(f(m));
    })))?;
    rx.await
        .map_err(|_| ApiError::internal("the model thread dropped the request"))?
        .map_err(api_error)
}

/// Runs `f` with the model on a blocking thread (no forward pass).
async fn off_model(
    state: &AppState,
    f: impl FnOnce(&LoadedModel) -> gpt::Result<Value> + Send + 'static,
) -> Result<Value, ApiError> {
    let state = state.clone();
    blocking(move || f(&state.model).map_err(api_error)).await
}

/// A prompt's ids, as the CLI encodes them, within [`MAX_INSPECT_TOKENS`].
async fn prompt_ids(state: &AppState, prompt: String) -> Result<Vec<u32>, ApiError> {
    let state = state.clone();
    blocking(move || {
        let ids = report::encode(&state.model, &prompt).map_err(api_error)?;
        let most = MAX_INSPECT_TOKENS.min(state.model.transformer.config.context_length);
        if ids.len() > most {
            return Err(ApiError::invalid(
                format!(
                    "the prompt is {} tokens; these views take at most {most} (this model's context window is {})",
                    ids.len(),
                    state.model.transformer.config.context_length
                ),
                Some("prompt"),
            ));
        }
        Ok(ids)
    })
    .await
}

fn check_top(top: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match top.unwrap_or(default) {
        n @ 1..=MAX_TOP => Ok(n),
        n => Err(ApiError::invalid(
            format!("top is {n}; it must be 1 to {MAX_TOP}"),
            Some("top"),
        )),
    }
}

fn check_word(w: &str, field: &'static str) -> Result<(), ApiError> {
    if w.chars().count() > MAX_WORD_CHARS {
        return Err(ApiError::invalid(
            format!("{field} is longer than {MAX_WORD_CHARS} characters"),
            Some(field),
        ));
    }
    Ok(())
}

fn rule(as_is: bool) -> SpaceRule {
    if as_is {
        SpaceRule::AsIs
    } else {
        SpaceRule::Leading
    }
}

#[derive(Deserialize)]
struct Prompt {
    prompt: String,
    top: Option<usize>,
}

pub async fn tokens(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Prompt = parse(&body)?;
            let ids = prompt_ids(&state, req.prompt).await?;
            off_model(&state, move |m| Ok(report::tokens(m, &ids))).await
        }
        .await,
    )
}

pub async fn embeddings(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Prompt = parse(&body)?;
            let ids = prompt_ids(&state, req.prompt).await?;
            off_model(&state, move |m| report::embeddings(m, &ids)).await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct Similarity {
    a: String,
    b: String,
    #[serde(default)]
    as_is: bool,
}

pub async fn similarity(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Similarity = parse(&body)?;
            check_word(&req.a, "a")?;
            check_word(&req.b, "b")?;
            off_model(&state, move |m| {
                report::similarity(m, &req.a, &req.b, rule(req.as_is))
            })
            .await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct Projection {
    direction: String,
    words: Vec<String>,
    #[serde(default)]
    as_is: bool,
}

pub async fn projection(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Projection = parse(&body)?;
            check_word(&req.direction, "direction")?;
            if req.words.is_empty() || req.words.len() > MAX_WORDS {
                return Err(ApiError::invalid(
                    format!("send 1 to {MAX_WORDS} words"),
                    Some("words"),
                ));
            }
            for w in &req.words {
                check_word(w, "words")?;
            }
            off_model(&state, move |m| {
                report::projection(m, &req.direction, &req.words, rule(req.as_is))
            })
            .await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct Attention {
    prompt: String,
    layer: usize,
    #[serde(default)]
    heads: Vec<usize>,
    /// Thumbnails: patterns longer than this many tokens come pooled to (pool, pool).
    pool: Option<usize>,
}

/// Attention probabilities to 4 decimals: plenty for a heatmap, and a third of the JSON.
pub(crate) fn round_patterns(v: &mut Value) {
    if let Some(heads) = v.as_array_mut() {
        for h in heads {
            if let Some(rows) = h["pattern"].as_array_mut() {
                for p in rows.iter_mut().flat_map(|r| r.as_array_mut()).flatten() {
                    if let Some(x) = p.as_f64() {
                        *p = Value::from((x * 1e4).round() / 1e4);
                    }
                }
            }
        }
    }
}

pub async fn attention(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Attention = parse(&body)?;
            let c = &state.model.transformer.config;
            if req.layer >= c.n_layer {
                return Err(ApiError::invalid(
                    format!("layer must be below {}", c.n_layer),
                    Some("layer"),
                ));
            }
            if let Some(h) = req.heads.iter().find(|&&h| h >= c.n_head) {
                return Err(ApiError::invalid(
                    format!("head {h} is not below {}", c.n_head),
                    Some("heads"),
                ));
            }
            // Each head listed is a (T, T) pattern in the answer: each at most once.
            let mut heads = req.heads.clone();
            heads.sort_unstable();
            heads.dedup();
            if req
                .pool
                .is_some_and(|n| !(1..=MAX_INSPECT_TOKENS).contains(&n))
            {
                return Err(ApiError::invalid(
                    format!("pool must be 1 to {MAX_INSPECT_TOKENS}"),
                    Some("pool"),
                ));
            }
            let ids = prompt_ids(&state, req.prompt).await?;
            let mut v = on_model(&state, move |m| {
                report::attention(m, &ids, req.layer, &heads)
            })
            .await?;
            if let Some(n) = req.pool {
                pool_patterns(&mut v, n);
            }
            round_patterns(&mut v);
            Ok(v)
        }
        .await,
    )
}

pub async fn lens(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Prompt = parse(&body)?;
            let top = check_top(req.top, 3)?;
            let ids = prompt_ids(&state, req.prompt).await?;
            on_model(&state, move |m| report::lens(m, &ids, top)).await
        }
        .await,
    )
}

pub async fn logits(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Prompt = parse(&body)?;
            let top = check_top(req.top, 10)?;
            let ids = prompt_ids(&state, req.prompt).await?;
            on_model(&state, move |m| report::logits(m, &ids, top)).await
        }
        .await,
    )
}

#[derive(Deserialize)]
struct Temperature {
    prompt: String,
    temperatures: Option<Vec<f32>>,
    top: Option<usize>,
}

pub async fn temperature(State(state): State<AppState>, body: Bytes) -> Response {
    answer(
        async {
            let req: Temperature = parse(&body)?;
            let top = check_top(req.top, 8)?;
            let temps = req.temperatures.unwrap_or_else(|| vec![0.0, 0.5, 1.0, 2.0]);
            if temps.is_empty() || temps.len() > MAX_TEMPERATURES {
                return Err(ApiError::invalid(
                    format!("send 1 to {MAX_TEMPERATURES} temperatures"),
                    Some("temperatures"),
                ));
            }
            let ids = prompt_ids(&state, req.prompt).await?;
            on_model(&state, move |m| report::temperature(m, &ids, &temps, top)).await
        }
        .await,
    )
}

pub async fn params(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    answer(
        off_model(&state, move |m| match q.get("preset") {
            Some(name) => report::preset_params(name),
            None => Ok(report::params(m)),
        })
        .await,
    )
}

/// Patterns (T, T) longer than `n` averaged into (n, n) blocks, for thumbnails of long prompts:
/// block I holds rows I*T/n..(I+1)*T/n, and its entry for block J is the mean over those rows of
/// the attention they give to J's columns, so a pooled row still sums to 1 and the blocks above
/// the diagonal stay 0. Each head gains `"pooled_from": T`.
pub(crate) fn pool_patterns(v: &mut Value, n: usize) {
    let Some(heads) = v.as_array_mut() else {
        return;
    };
    for h in heads {
        let Ok(p) = serde_json::from_value::<Vec<Vec<f64>>>(h["pattern"].take()) else {
            continue;
        };
        let t = p.len();
        if t <= n {
            h["pattern"] = Value::from(p);
            continue;
        }
        let edge = |k: usize| k * t / n;
        let pooled: Vec<Vec<f64>> = (0..n)
            .map(|bi| {
                let rows = &p[edge(bi)..edge(bi + 1)];
                (0..n)
                    .map(|bj| {
                        let sum: f64 = rows
                            .iter()
                            .map(|r| r[edge(bj)..edge(bj + 1)].iter().sum::<f64>())
                            .sum();
                        sum / rows.len() as f64
                    })
                    .collect()
            })
            .collect();
        h["pattern"] = Value::from(pooled);
        h["pooled_from"] = Value::from(t);
    }
}
