//! `POST /v1/embeddings`: one pooled, unit-length vector per input.

use super::{blocking, check_model, check_open, parse, MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_TOKENS};
use crate::api::*;
use crate::errors::ApiError;
use crate::scheduler::Job;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub async fn embeddings(State(state): State<AppState>, body: Bytes) -> Response {
    embed(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn embed(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    // Parsing and tokenization: off the async workers.
    let s = state.clone();
    let (inputs, base64_format, prompt_tokens) = blocking(move || encode(&s, &body)).await?;
    check_open(&state)?;
    embed_inputs(state, inputs, base64_format, prompt_tokens).await
}

/// The request's inputs as token ids, checked: (inputs, base64 wanted, tokens in all).
fn encode(state: &AppState, body: &Bytes) -> Result<(Vec<Vec<u32>>, bool, usize), ApiError> {
    let req: EmbeddingRequest = parse(body)?;
    check_model(state, req.model.as_deref())?;
    let base64_format = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format must be 'float' or 'base64', got '{other}'"),
                Some("encoding_format"),
            ))
        }
    };
    let m = &state.model;
    let inputs: Vec<Vec<u32>> = match req.input {
        EmbeddingInput::Text(s) => vec![m.encode_prompt(&s, false)],
        EmbeddingInput::Texts(v) => v.iter().map(|s| m.encode_prompt(s, false)).collect(),
        EmbeddingInput::Ids(ids) => vec![ids],
        EmbeddingInput::IdLists(v) => v,
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid(
            format!("input must hold 1 to {MAX_EMBEDDING_INPUTS} items"),
            Some("input"),
        ));
    }
    let vocab = m.tokenizer.vocab_size() as u32;
    for ids in &inputs {
        if ids.is_empty() {
            return Err(ApiError::invalid("an input is empty", Some("input")));
        }
        if ids.len() > state.ctx {
            return Err(ApiError::context_exceeded(format!(
                "This model's maximum context length is {} tokens. However, an input is {} tokens.",
                state.ctx,
                ids.len()
            )));
        }
        if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
            return Err(ApiError::invalid(
                format!("token id {bad} is outside the vocabulary (size {vocab})"),
                Some("input"),
            ));
        }
    }
    let prompt_tokens: usize = inputs.iter().map(Vec::len).sum();
    if prompt_tokens > MAX_EMBEDDING_TOKENS {
        return Err(ApiError::invalid(
            format!(
                "the inputs hold {prompt_tokens} tokens; one request may hold at most \
                 {MAX_EMBEDDING_TOKENS}"
            ),
            Some("input"),
        ));
    }
    Ok((inputs, base64_format, prompt_tokens))
}

/// Runs the checked inputs through the model thread and answers with their vectors.
async fn embed_inputs(
    state: AppState,
    inputs: Vec<Vec<u32>>,
    base64_format: bool,
    prompt_tokens: usize,
) -> Result<Response, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    state.scheduler.submit(Job::Embed { inputs, reply: tx })?;
    let vectors = rx
        .await
        .map_err(|_| ApiError::internal("the model thread stopped"))?
        .map_err(ApiError::internal)?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding",
            index,
            embedding: if base64_format {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64(&bytes))
            } else {
                serde_json::json!(v)
            },
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data,
        model: state.model_id.clone(),
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    })
    .into_response())
}
