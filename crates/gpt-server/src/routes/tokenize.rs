//! `POST /tokenize` and `POST /detokenize`.

use super::{blocking, check_model, parse};
use crate::api::*;
use crate::errors::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::Json;

pub async fn tokenize(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<TokenizeResponse>, ApiError> {
    // A body of megabytes takes the tokenizer a while: off the async workers.
    blocking(move || {
        let req: TokenizeRequest = parse(&body)?;
        check_model(&state, req.model.as_deref())?;
        let tokens = if req.add_special_tokens {
            state.model.encode_prompt(&req.prompt, true)
        } else {
            state.model.tokenizer.encode(&req.prompt, true)
        };
        Ok(Json(TokenizeResponse {
            count: tokens.len(),
            tokens,
            max_model_len: state.ctx,
        }))
    })
    .await
}

pub async fn detokenize(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let req: DetokenizeRequest = parse(&body)?;
    check_model(&state, req.model.as_deref())?;
    let vocab = state.model.tokenizer.vocab_size() as u32;
    if let Some(bad) = req.tokens.iter().find(|&&i| i >= vocab) {
        return Err(ApiError::invalid(
            format!("token id {bad} is outside the vocabulary (size {vocab})"),
            Some("tokens"),
        ));
    }
    Ok(Json(DetokenizeResponse {
        prompt: state.model.tokenizer.decode(&req.tokens),
    }))
}
