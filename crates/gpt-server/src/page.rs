//! The page at `/`: a chat that shows the model thinking. One self-contained HTML file
//! (inline CSS and JS, no asset from another host), compiled into the binary.
//!
//! The chat streams from `/v1/chat/completions` with `logprobs` and `top_logprobs: 20`, so every
//! generated token arrives with the log-probabilities of its 20 most likely candidates.
//! A log-probability is the logit minus the log-sum-exp of all logits, a constant per step, so
//! softmax(logprob / T) over the candidates equals softmax(logit / T) over them: the page
//! redraws the bars for any temperature without asking the server. With a constraint chosen on
//! the page (a JSON object, a schema, a regex), each token's entry also says which candidates
//! the grammar's mask forbade and how much of the model's probability that was
//! (`removed_probability`): the bars strike those out. The attention heatmap comes
//! from `/page/attention`, which runs the conversation through the model with the library's
//! capture hook ([`gpt::inspect::report::attention`]). The walk-through at `/explain` is a second
//! self-contained file over the `/inspect/...` endpoints ([`crate::routes::inspect`]).

use crate::api::ChatMessage;
use crate::errors::ApiError;
use crate::routes::inspect::{on_model, round_patterns};
use crate::routes::{encode_chat, parse, to_messages};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Json, Response};
use serde::Deserialize;

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// Tokens an attention request may cover: the (T, T) pattern goes to the page as JSON.
pub const MAX_ATTENTION_TOKENS: usize = crate::routes::inspect::MAX_INSPECT_TOKENS;

/// The walk-through of the pipeline, step by step (tokens to sampling), drawn from the
/// `/inspect/...` endpoints.
pub const EXPLAIN: &str = include_str!("explain.html");

pub async fn index() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn explain() -> Html<&'static str> {
    Html(EXPLAIN)
}

/// What the page needs to build its controls.
pub async fn info(State(state): State<AppState>) -> Json<serde_json::Value> {
    let c = &state.model.transformer.config;
    Json(serde_json::json!({
        "model": state.model_id,
        "description": state.model.description,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "ctx": state.ctx,
        "max_attention_tokens": MAX_ATTENTION_TOKENS,
        "api_key_required": state.api_key.is_some(),
    }))
}

#[derive(Deserialize)]
struct AttentionRequest {
    /// The conversation, rendered with the chat template (no generation prompt)...
    messages: Option<Vec<ChatMessage>>,
    /// ...or raw text.
    text: Option<String>,
    layer: usize,
    head: usize,
}

/// `{"layer", "head", "tokens": [..], "pattern": [[..]]}` (row = query position), the shape of
/// `gpt inspect attention --out FILE.json`.
pub async fn attention(State(state): State<AppState>, body: Bytes) -> Response {
    attend(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn attend(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    let req: AttentionRequest = parse(&body)?;
    let c = &state.model.transformer.config;
    if req.layer >= c.n_layer {
        return Err(ApiError::invalid(
            format!("layer must be below {}", c.n_layer),
            Some("layer"),
        ));
    }
    if req.head >= c.n_head {
        return Err(ApiError::invalid(
            format!("head must be below {}", c.n_head),
            Some("head"),
        ));
    }
    let ids = match (req.messages, req.text) {
        (Some(m), _) if !m.is_empty() => encode_chat(&state, &to_messages(&m), &[], false)?,
        // Typed text is the user's own prompt, markup and all, as in /v1/completions.
        (_, Some(t)) => state.model.tokenizer.encode(&t, true),
        _ => return Err(ApiError::invalid("send messages or text", Some("messages"))),
    };
    if ids.is_empty() || ids.len() > MAX_ATTENTION_TOKENS {
        return Err(ApiError::invalid(
            format!(
                "the text is {} tokens; the attention view takes 1 to {MAX_ATTENTION_TOKENS}",
                ids.len()
            ),
            Some("messages"),
        ));
    }
    let (layer, head) = (req.layer, req.head);
    let at = ids.clone();
    let mut heads = on_model(&state, move |m| {
        gpt::inspect::report::attention(m, &at, layer, &[head])
    })
    .await?;
    round_patterns(&mut heads);
    let pattern = heads[0]["pattern"].take();
    let tokens: Vec<String> = ids
        .iter()
        .map(|&id| {
            String::from_utf8_lossy(state.model.tokenizer.token_bytes(id).unwrap_or_default())
                .into_owned()
        })
        .collect();
    Ok(Json(serde_json::json!({
        "layer": req.layer,
        "head": req.head,
        "tokens": tokens,
        "pattern": pattern,
    }))
    .into_response())
}
