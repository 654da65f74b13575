//! The endpoints, one file each: each checks its request, turns it into a scheduler job, and
//! turns the job's events into OpenAI's response (one JSON object, or server-sent events ending
//! with `data: [DONE]`). What they share: parsing and checking requests, and ([`stream`]) turning
//! a generation's events into chunks or a whole answer.

mod chat;
mod completions;
mod embeddings;
mod health;
pub mod inspect;
mod models;
pub(crate) mod stream;
mod tokenize;

pub use chat::{chat_completions, to_messages};
pub use completions::completions;
pub use embeddings::embeddings;
pub use health::{count_requests, health, metrics};
pub use models::{model, models};
pub use tokenize::{detokenize, tokenize};

use crate::api::*;
use crate::errors::ApiError;
use crate::scheduler::{Event, GenRequest, Job};
use crate::AppState;
use axum::http::StatusCode;
use gpt::infer::chat_template::Message;
use gpt::infer::{GenerateOptions, SamplingParams};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// A queued generation: its events, whether to stream, whether to end with usage, its shape.
pub(crate) type Started<S> = (UnboundedReceiver<Event>, bool, bool, S);

/// Runs CPU work of a request (parsing, templates, tokenization) on tokio's blocking threads, so
/// that the async workers keep streaming tokens and answering `/health` meanwhile.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::internal(format!(
            "request preparation failed: {e}"
        )))
    })
}

/// OpenAI caps `top_logprobs` at 20.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// OpenAI accepts up to 4 stop sequences.
pub const MAX_STOPS: usize = 4;
/// Inputs per embeddings request: each is a forward pass, run while generations wait.
pub const MAX_EMBEDDING_INPUTS: usize = 256;
/// Tokens per embeddings request, all inputs together: about a minute of prompt processing for
/// a small model on 2 cores (run a chunk at a time between decode steps, so generations slow
/// down meanwhile but do not stop).
pub const MAX_EMBEDDING_TOKENS: usize = 16384;
/// The legacy completions API's default `max_tokens`.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: usize = 16;
/// Reported in every response, as OpenAI does, so clients can tell backends apart.
pub const FINGERPRINT: &str = "gpt-rs";

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id for a response, and a seed for requests that give none.
fn next_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // SplitMix64 of time and counter: distinct and well spread.
    gpt::infer::sampling::Rng::new(t ^ n.rotate_left(32)).next_u64()
}

/// Parses a JSON body: a syntax error and a field of the wrong type are both 400s, with
/// serde's message (which names the field and the position).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(format!("Invalid request body: {e}"), None),
            _ => ApiError::invalid(
                format!("We could not parse the JSON body of your request: {e}"),
                None,
            ),
        }
    })
}

fn check_model(state: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if m != state.model_id => Err(ApiError::unknown_model(m, &state.model_id)),
        _ => Ok(()),
    }
}

fn check_open(state: &AppState) -> Result<(), ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::overloaded("The server is shutting down."));
    }
    Ok(())
}

/// The generation options of a request, checked against the limits: sampling ranges, n = 1,
/// the prompt and completion within the slot's context, max_tokens within the server's cap.
fn generate_options(
    state: &AppState,
    prompt_len: usize,
    f: &SamplingFields,
    default_max_tokens: usize,
    prompt_param: &'static str,
) -> Result<GenerateOptions, ApiError> {
    if f.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("Only n = 1 is supported.", Some("n")));
    }
    let temperature = f.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and 2, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_p = f.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            format!("top_p must be in (0, 1], got {top_p}"),
            Some("top_p"),
        ));
    }
    let stop: Vec<String> = f
        .stop
        .clone()
        .map(Stop::into_vec)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if stop.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            format!("at most {MAX_STOPS} stop sequences"),
            Some("stop"),
        ));
    }
    let ctx = state.ctx;
    if prompt_len == 0 {
        return Err(ApiError::invalid(
            "The prompt is empty: there is no token to continue.",
            Some(prompt_param),
        ));
    }
    if prompt_len >= ctx {
        return Err(ApiError::context_exceeded(format!(
            "This model's maximum context length is {ctx} tokens. However, your prompt is \
             {prompt_len} tokens, which leaves no room for a completion."
        )));
    }
    let room = ctx - prompt_len;
    let max_tokens = match f.max_tokens.map(|m| m as usize) {
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ))
        }
        Some(m) if m > state.max_tokens => {
            return Err(ApiError::invalid(
                format!(
                    "max_tokens is {m}, but this server generates at most {} tokens per request",
                    state.max_tokens
                ),
                Some("max_tokens"),
            ))
        }
        Some(m) if m > room => {
            return Err(ApiError::context_exceeded(format!(
                "This model's maximum context length is {ctx} tokens. However, you requested \
                 {} tokens ({prompt_len} in the prompt, {m} for the completion).",
                prompt_len + m
            )))
        }
        Some(m) => m,
        None => default_max_tokens.min(room).min(state.max_tokens),
    };
    Ok(GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            temperature,
            // OpenAI's sampler has no top-k or min-p: off.
            top_k: 0,
            top_p,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: f.seed.map_or_else(next_id, |s| s as u64),
        },
        stop,
        stop_ids: state.model.stop_ids.clone(),
        slide: false,
        constraint: constraint(state, &f.constraint)?,
    })
}

/// The grammar a request asks for, compiled for the model's vocabulary: a 400 naming the field
/// when it does not compile.
fn constraint(
    state: &AppState,
    c: &ConstraintFields,
) -> Result<Option<gpt::infer::Constraint>, ApiError> {
    use gpt::infer::Grammar;
    let mut asked: Vec<(&'static str, Grammar)> = Vec::new();
    match &c.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => asked.push(("response_format", Grammar::JsonObject)),
        Some(ResponseFormat::JsonSchema { json_schema }) => asked.push((
            "response_format",
            Grammar::JsonSchema(
                json_schema
                    .schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({})),
            ),
        )),
    }
    if let Some(g) = &c.grammar {
        asked.push(("grammar", Grammar::Lark(g.clone())));
    }
    if let Some(r) = &c.regex {
        asked.push(("regex", Grammar::Regex(r.clone())));
    }
    if asked.len() > 1 {
        return Err(ApiError::invalid(
            "give at most one of response_format (json), grammar and regex",
            Some(asked[1].0),
        ));
    }
    match asked.pop() {
        Some((field, grammar)) => compile(state, &grammar, field).map(Some),
        None => Ok(None),
    }
}

/// A grammar compiled for the model's vocabulary (built by the first request that needs it); a
/// 400 naming `field` when it does not compile.
pub(crate) fn compile(
    state: &AppState,
    grammar: &gpt::infer::Grammar,
    field: &'static str,
) -> Result<gpt::infer::Constraint, ApiError> {
    let factory = state
        .constraints
        .get_or_init(|| state.model.constraint_factory().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ApiError::invalid(e.clone(), Some(field)))?;
    factory
        .constraint(grammar)
        .map_err(|e| ApiError::invalid(e.to_string(), Some(field)))
}

/// Queues a generation and returns the channel of its events.
fn start_generation(
    state: &AppState,
    prompt_ids: Vec<u32>,
    options: GenerateOptions,
    logprobs: Option<usize>,
) -> Result<UnboundedReceiver<Event>, ApiError> {
    check_open(state)?;
    let (tx, rx) = unbounded_channel();
    state.scheduler.submit(Job::Generate(Box::new(GenRequest {
        prompt_ids,
        options,
        logprobs,
        events: tx,
        arrived: std::time::Instant::now(),
    })))?;
    Ok(rx)
}

fn token_text(state: &AppState, id: u32) -> (String, Vec<u8>) {
    let bytes = state
        .model
        .tokenizer
        .token_bytes(id)
        .unwrap_or_default()
        .to_vec();
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

pub async fn not_found() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND)
}

/// Renders messages through the model's chat template and encodes them, the messages' contents
/// as text (never control tokens); a base model has no template, and says so. Tools go in
/// through the template's `tools` variable where it reads one, else as the Hermes-format system
/// text ([`gpt::infer::tools`]), which also writes earlier calls and tool results for templates
/// that know neither.
pub(crate) fn encode_chat(
    state: &crate::Shared,
    messages: &[Message],
    tools: &[gpt::infer::tools::Tool],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ApiError> {
    let template = state.template.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "this model has no chat template (it is a base model): use /v1/completions",
            Some("messages"),
        )
    })?;
    let tok = &state.model.tokenizer;
    let encoded = if template.reads_tools() {
        let json: Vec<serde_json::Value> = tools.iter().map(|t| t.to_json()).collect();
        let tools = (!json.is_empty()).then_some(&json[..]);
        template.encode_with_tools(tok, messages, tools, add_generation_prompt)
    } else {
        let messages = gpt::infer::tools::in_hermes_format(messages, tools);
        template.encode(tok, &messages, add_generation_prompt)
    };
    encoded.map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))
}
