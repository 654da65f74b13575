//! The endpoints: each checks its request, turns it into a scheduler job, and turns the job's
//! events into OpenAI's response (one JSON object, or server-sent events ending with
//! `data: [DONE]`).

use crate::api::*;
use crate::errors::ApiError;
use crate::scheduler::{Event, GenRequest, Job, TokenLogprob};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gpt::infer::chat_template::Message;
use gpt::infer::{FinishReason, GenerateOptions, SamplingParams};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// OpenAI caps `top_logprobs` at 20.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// OpenAI accepts up to 4 stop sequences.
pub const MAX_STOPS: usize = 4;
/// Inputs per embeddings request: each is a forward pass, run while generations wait.
pub const MAX_EMBEDDING_INPUTS: usize = 256;
/// Tokens per embeddings request, all inputs together: about a minute of prompt processing for
/// a small model on 2 cores, during which the generations wait.
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
    })
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
    state.scheduler.submit(Job::Generate(GenRequest {
        prompt_ids,
        options,
        logprobs,
        events: tx,
        arrived: std::time::Instant::now(),
    }))?;
    Ok(rx)
}

/// A whole generation, gathered for a non-streaming answer.
struct Collected {
    text: String,
    tokens: Vec<(u32, Option<TokenLogprob>)>,
    finish: FinishReason,
    usage: Usage,
}

async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    loop {
        match rx.recv().await {
            Some(Event::Token {
                id,
                text: t,
                logprob,
            }) => {
                text.push_str(&t);
                tokens.push((id, logprob));
            }
            Some(Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                return Ok(Collected {
                    text,
                    tokens,
                    finish,
                    usage: Usage::new(prompt_tokens, completion_tokens),
                })
            }
            Some(Event::Error(m)) => return Err(ApiError::internal(m)),
            None => return Err(ApiError::internal("the model thread stopped")),
        }
    }
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

fn chat_logprob(state: &AppState, id: u32, lp: &TokenLogprob) -> TokenLogprobJson {
    let (token, bytes) = token_text(state, id);
    TokenLogprobJson {
        token,
        logprob: lp.logprob,
        bytes,
        top_logprobs: lp
            .top
            .iter()
            .map(|&(tid, logprob)| {
                let (token, bytes) = token_text(state, tid);
                TopLogprob {
                    token,
                    logprob,
                    bytes,
                }
            })
            .collect(),
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

/// Server-sent events from a generation: `first` before anything else, then what `map` makes
/// of each event, then `data: [DONE]`. Dropping the stream (the client closed the connection)
/// drops `rx`, which tells the scheduler to free the slot.
fn sse<M>(rx: UnboundedReceiver<Event>, first: Vec<String>, map: M) -> Response
where
    M: FnMut(Event) -> Vec<String> + Send + 'static,
{
    struct St<M> {
        rx: UnboundedReceiver<Event>,
        queue: VecDeque<String>,
        finished: bool,
        map: M,
    }
    let st = St {
        rx,
        queue: first.into(),
        finished: false,
        map,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(d) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(d)), st));
            }
            if st.finished {
                return None;
            }
            let ev = st.rx.recv().await;
            let last = !matches!(ev, Some(Event::Token { .. }));
            match ev {
                Some(ev) => {
                    let data = (st.map)(ev);
                    st.queue.extend(data);
                }
                None => st
                    .queue
                    .push_back(ApiError::internal("the model thread stopped").json()),
            }
            if last {
                st.queue.push_back("[DONE]".into());
                st.finished = true;
            }
        }
    });
    Sse::new(stream).into_response()
}

pub async fn chat_completions(State(state): State<AppState>, body: Bytes) -> Response {
    chat(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn chat(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body)?;
    check_model(&state, req.model.as_deref())?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must hold at least one message",
            Some("messages"),
        ));
    }
    let top = match (req.logprobs, req.top_logprobs) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                format!("top_logprobs must be at most {MAX_TOP_LOGPROBS}"),
                Some("top_logprobs"),
            ))
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs needs logprobs: true",
                Some("top_logprobs"),
            ))
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let messages = to_messages(&req.messages);
    let ids = encode_chat(&state, &messages, true)?;
    let f = req.sampling();
    let opts = generate_options(&state, ids.len(), &f, state.max_tokens, "messages")?;
    let rx = start_generation(&state, ids, opts, top)?;
    let id = format!("chatcmpl-{:016x}", next_id());
    let created = unix_now();
    if f.stream {
        let include_usage = f.stream_options.is_some_and(|o| o.include_usage);
        let chunk = {
            let (model, id) = (state.model_id.clone(), id.clone());
            move |delta: Delta,
                  logprobs: Option<ChatLogprobs>,
                  finish: Option<&'static str>,
                  usage: Option<Usage>| {
                serde_json::to_string(&ChatChunk {
                    id: id.clone(),
                    object: "chat.completion.chunk",
                    created,
                    model: model.clone(),
                    choices: if usage.is_some() {
                        Vec::new()
                    } else {
                        vec![ChatChunkChoice {
                            index: 0,
                            delta,
                            logprobs,
                            finish_reason: finish,
                        }]
                    },
                    usage,
                    system_fingerprint: FINGERPRINT,
                })
                .unwrap_or_default()
            }
        };
        let first = chunk(
            Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            },
            None,
            None,
            None,
        );
        let st = state.clone();
        return Ok(sse(rx, vec![first], move |ev| match ev {
            Event::Token { id, text, logprob } => {
                let lp = logprob.map(|lp| ChatLogprobs {
                    content: vec![chat_logprob(&st, id, &lp)],
                });
                if text.is_empty() && lp.is_none() {
                    return Vec::new();
                }
                let delta = Delta {
                    role: None,
                    content: Some(text),
                };
                vec![chunk(delta, lp, None, None)]
            }
            Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                let mut out = vec![chunk(Delta::default(), None, Some(finish.as_str()), None)];
                if include_usage {
                    let usage = Usage::new(prompt_tokens, completion_tokens);
                    out.push(chunk(Delta::default(), None, None, Some(usage)));
                }
                out
            }
            Event::Error(m) => vec![ApiError::internal(m).json()],
        }));
    }
    let c = collect(rx).await?;
    let logprobs = top.map(|_| ChatLogprobs {
        content: c
            .tokens
            .iter()
            .filter_map(|(id, lp)| lp.as_ref().map(|lp| chat_logprob(&state, *id, lp)))
            .collect(),
    });
    Ok(Json(ChatResponse {
        id,
        object: "chat.completion",
        created,
        model: state.model_id.clone(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: c.text,
            },
            logprobs,
            finish_reason: c.finish.as_str(),
        }],
        usage: c.usage,
        system_fingerprint: FINGERPRINT,
    })
    .into_response())
}

/// The conversation as the chat template reads it: text parts joined, no content as "".
pub fn to_messages(messages: &[ChatMessage]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(s)) => s.clone(),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text.as_deref())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            Message::new(&m.role, &content)
        })
        .collect()
}

pub async fn completions(State(state): State<AppState>, body: Bytes) -> Response {
    complete(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn complete(state: AppState, body: Bytes) -> Result<Response, ApiError> {
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
    let id = format!("cmpl-{:016x}", next_id());
    let created = unix_now();
    let chunk = {
        let (model, id) = (state.model_id.clone(), id.clone());
        move |text: String, logprobs, finish: Option<&'static str>, usage: Option<Usage>| {
            CompletionResponse {
                id: id.clone(),
                object: "text_completion",
                created,
                model: model.clone(),
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
    };
    if f.stream {
        let include_usage = f.stream_options.is_some_and(|o| o.include_usage);
        let first = if echo.is_empty() {
            Vec::new()
        } else {
            vec![serde_json::to_string(&chunk(echo, None, None, None)).unwrap_or_default()]
        };
        let st = state.clone();
        let mut offset = 0;
        return Ok(sse(rx, first, move |ev| {
            let json = |r: CompletionResponse| serde_json::to_string(&r).unwrap_or_default();
            match ev {
                Event::Token { id, text, logprob } => {
                    let lp = logprob.map(|lp| {
                        let mut out = CompletionLogprobs::default();
                        offset = push_completion_logprob(&st, &mut out, id, &lp, offset);
                        out
                    });
                    if text.is_empty() && lp.is_none() {
                        return Vec::new();
                    }
                    vec![json(chunk(text, lp, None, None))]
                }
                Event::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    let mut out = vec![json(chunk(
                        String::new(),
                        None,
                        Some(finish.as_str()),
                        None,
                    ))];
                    if include_usage {
                        let usage = Usage::new(prompt_tokens, completion_tokens);
                        out.push(json(chunk(String::new(), None, None, Some(usage))));
                    }
                    out
                }
                Event::Error(m) => vec![ApiError::internal(m).json()],
            }
        }));
    }
    let c = collect(rx).await?;
    let logprobs = top.map(|_| {
        let mut out = CompletionLogprobs::default();
        let mut offset = echo.chars().count();
        for (id, lp) in &c.tokens {
            if let Some(lp) = lp {
                offset = push_completion_logprob(&state, &mut out, *id, lp, offset);
            }
        }
        out
    });
    Ok(Json(chunk(
        echo + &c.text,
        logprobs,
        Some(c.finish.as_str()),
        Some(c.usage),
    ))
    .into_response())
}

pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![card(&state)],
    })
}

fn card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.model_id.clone(),
        object: "model",
        created: state.started,
        owned_by: "gpt-rs",
        max_model_len: state.ctx,
    }
}

pub async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    check_model(&state, Some(&id))?;
    Ok(Json(card(&state)))
}

pub async fn embeddings(State(state): State<AppState>, body: Bytes) -> Response {
    embed(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn embed(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = parse(&body)?;
    check_model(&state, req.model.as_deref())?;
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
    check_open(&state)?;
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

pub async fn tokenize(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<TokenizeResponse>, ApiError> {
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

/// Liveness and load: 200 while serving, 503 while shutting down.
pub async fn health(State(state): State<AppState>) -> Response {
    let s = &state.scheduler.stats;
    let processing = s.processing.load(Ordering::SeqCst);
    let down = state.shutting_down.load(Ordering::SeqCst);
    let faults = s.faults.load(Ordering::SeqCst);
    let last_fault = s
        .last_fault
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let body = serde_json::json!({
        "status": if down { "shutting_down" } else if state.scheduler.is_alive() { "ok" } else { "error" },
        "model_thread": if state.scheduler.is_alive() { "running" } else { "stopped" },
        "faults": faults,
        "last_fault": last_fault,
        "slots_idle": state.scheduler.parallel.saturating_sub(processing),
        "slots_processing": processing,
        "queued": s.queued.load(Ordering::SeqCst),
        "decode_steps": s.decode_steps.load(Ordering::Relaxed),
        "decode_tokens": s.decode_tokens.load(Ordering::Relaxed),
        "prompt_tokens": s.prompt_tokens.load(Ordering::Relaxed),
    });
    let status = if down || !state.scheduler.is_alive() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus' text format ([`crate::metrics`]).
pub async fn metrics(State(state): State<AppState>) -> Response {
    let s = &state.scheduler.stats;
    let slots = state.scheduler.parallel;
    let gauges = crate::metrics::Gauges {
        queued: s.queued.load(Ordering::SeqCst),
        running: s.processing.load(Ordering::SeqCst),
        slots,
        kv_tokens: s.kv_tokens.load(Ordering::Relaxed),
        kv_capacity: slots * state.ctx,
    };
    let body = state.scheduler.metrics.render(&gauges);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Counts every answered request for `/metrics`, by endpoint and final status.
pub async fn count_requests(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    state
        .scheduler
        .metrics
        .count_request(&path, res.status().as_u16());
    res
}

pub async fn not_found() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND)
}

/// Renders messages through the model's chat template and encodes them, the messages' contents
/// as text (never control tokens); a base model has no template, and says so.
pub(crate) fn encode_chat(
    state: &crate::Shared,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ApiError> {
    let template = state.template.as_ref().ok_or_else(|| {
        ApiError::invalid(
            "this model has no chat template (it is a base model): use /v1/completions",
            Some("messages"),
        )
    })?;
    template
        .encode(&state.model.tokenizer, messages, add_generation_prompt)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))
}
