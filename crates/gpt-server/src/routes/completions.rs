//! `POST /v1/completions`: a raw prompt continued, answered as a text completion or its chunks.

use super::stream::{respond, Collected, Shape};
use super::*;
use crate::api::*;
use crate::scheduler::TokenLogprob;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gpt::infer::FinishReason;

pub async fn completions(State(state): State<AppState>, body: Bytes) -> Response {
    complete(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn complete(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    // Parsing, tokenization and a grammar's compilation: off the async workers (see chat).
    let (rx, stream, include_usage, shape) =
        blocking(move || start_completion(state, body)).await?;
    respond(rx, stream, include_usage, shape).await
}

/// Checks the request, encodes the prompt and queues the generation.
fn start_completion(state: AppState, body: Bytes) -> Result<Started<CompletionShape>, ApiError> {
    let req: CompletionRequest = parse(&body)?;
    check_model(&state, req.model.as_deref())?;
    let one_prompt = || {
        ApiError::invalid(
            "Send one prompt per request (batches of prompts are not supported).",
            Some("prompt"),
        )
    };
    let vocab = state.model.tokenizer.vocab_size() as u32;
    let ids = match &req.prompt {
        Prompt::Text(s) => state.model.encode_prompt(s, true),
        Prompt::Texts(v) if v.len() == 1 => state.model.encode_prompt(&v[0], true),
        Prompt::Ids(ids) => ids.clone(),
        Prompt::IdLists(v) if v.len() == 1 => v[0].clone(),
        _ => return Err(one_prompt()),
    };
    if let Some(bad) = ids.iter().find(|&&i| i >= vocab) {
        return Err(ApiError::invalid(
            format!("token id {bad} is outside the vocabulary (size {vocab})"),
            Some("prompt"),
        ));
    }
    let top = match req.logprobs {
        Some(k) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                format!("logprobs must be at most {MAX_TOP_LOGPROBS}"),
                Some("logprobs"),
            ))
        }
        k => k.map(|k| k as usize),
    };
    let echo = if req.echo {
        state.model.tokenizer.decode(&ids)
    } else {
        String::new()
    };
    let f = req.sampling();
    let opts = generate_options(
        &state,
        ids.len(),
        &f,
        COMPLETIONS_DEFAULT_MAX_TOKENS,
        "prompt",
    )?;
    let rx = start_generation(&state, ids, opts, top)?;
    let include_usage = f.stream_options.is_some_and(|o| o.include_usage);
    let shape = CompletionShape {
        id: format!("cmpl-{:016x}", next_id()),
        created: unix_now(),
        logprobs: top.is_some(),
        echo,
        offset: 0,
        state,
    };
    Ok((rx, f.stream, include_usage, shape))
}

/// A text completion's chunks and answer.
struct CompletionShape {
    state: AppState,
    id: String,
    created: u64,
    logprobs: bool,
    /// The prompt's text, first in the answer (`echo`).
    echo: String,
    /// The character offset of the next streamed token (its logprobs' `text_offset`).
    offset: usize,
}

impl CompletionShape {
    fn response(
        &self,
        text: String,
        logprobs: Option<CompletionLogprobs>,
        finish: Option<&'static str>,
        usage: Option<Usage>,
    ) -> CompletionResponse {
        CompletionResponse {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.state.model_id.clone(),
            choices: if usage.is_some() && finish.is_none() {
                Vec::new()
            } else {
                vec![CompletionChoice {
                    index: 0,
                    text,
                    logprobs,
                    finish_reason: finish,
                }]
            },
            usage,
            system_fingerprint: FINGERPRINT,
        }
    }

    fn chunk(
        &self,
        text: String,
        logprobs: Option<CompletionLogprobs>,
        finish: Option<&'static str>,
        usage: Option<Usage>,
    ) -> String {
        serde_json::to_string(&self.response(text, logprobs, finish, usage)).unwrap_or_default()
    }
}

impl Shape for CompletionShape {
    fn opening(&mut self) -> Vec<String> {
        if self.echo.is_empty() {
            return Vec::new();
        }
        vec![self.chunk(self.echo.clone(), None, None, None)]
    }

    fn token(&mut self, id: u32, text: String, logprob: Option<TokenLogprob>) -> Option<String> {
        let lp = logprob.map(|lp| {
            let mut out = CompletionLogprobs::default();
            self.offset = push_completion_logprob(&self.state, &mut out, id, &lp, self.offset);
            out
        });
        if text.is_empty() && lp.is_none() {
            return None;
        }
        Some(self.chunk(text, lp, None, None))
    }

    fn finish(&mut self, finish: FinishReason) -> Vec<String> {
        vec![self.chunk(String::new(), None, Some(finish.as_str()), None)]
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(String::new(), None, None, Some(usage))
    }

    fn whole(self, c: Collected) -> Response {
        let logprobs = self.logprobs.then(|| {
            let mut out = CompletionLogprobs::default();
            let mut offset = self.echo.chars().count();
            for (id, lp) in &c.tokens {
                if let Some(lp) = lp {
                    offset = push_completion_logprob(&self.state, &mut out, *id, lp, offset);
                }
            }
            out
        });
        let text = self.echo.clone() + &c.text;
        Json(self.response(text, logprobs, Some(c.finish.as_str()), Some(c.usage))).into_response()
    }
}

/// Appends one token to the legacy logprobs object; `offset` is the token's character offset.
fn push_completion_logprob(
    state: &AppState,
    out: &mut CompletionLogprobs,
    id: u32,
    lp: &TokenLogprob,
    offset: usize,
) -> usize {
    let (token, _) = token_text(state, id);
    let len = token.chars().count();
    out.tokens.push(token);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs.push(
        lp.top
            .iter()
            .map(|&(tid, l)| (token_text(state, tid).0, serde_json::json!(l)))
            .collect(),
    );
    out.text_offset.push(offset);
    offset + len
}
