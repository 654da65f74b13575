//! `POST /v1/chat/completions`: the conversation through the model's chat template, answered
//! as a chat completion or its chunks. With `tools`, the answer is parsed for calls
//! ([`gpt::infer::tools`]): they come back as `message.tool_calls` (streamed: one
//! `delta.tool_calls` chunk once the answer is complete) with `finish_reason: "tool_calls"`.

use super::stream::{respond, Collected, Shape};
use super::*;
use crate::api::*;
use crate::scheduler::TokenLogprob;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gpt::infer::tools::{self, Tool, ToolChoice};
use gpt::infer::FinishReason;

pub async fn chat_completions(State(state): State<AppState>, body: Bytes) -> Response {
    chat(state, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn chat(state: AppState, body: Bytes) -> Result<Response, ApiError> {
    // Parsing, the template, tokenization and a grammar's compilation are CPU work: off the
    // async workers, which must stay free to stream tokens and answer /health.
    let (rx, stream, include_usage, shape) = blocking(move || start_chat(state, body)).await?;
    respond(rx, stream, include_usage, shape).await
}

/// Checks the request, encodes the conversation and queues the generation.
fn start_chat(state: AppState, body: Bytes) -> Result<Started<ChatShape>, ApiError> {
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
    let (tools, choice) = tool_request(&req)?;
    let shown: &[Tool] = if choice == ToolChoice::None {
        &[]
    } else {
        &tools
    };
    let messages = to_messages(&req.messages);
    let ids = encode_chat(&state, &messages, shown, true)?;
    let f = req.sampling();
    let mut opts = generate_options(&state, ids.len(), &f, state.max_tokens, "messages")?;
    if let Some(g) = tools::grammar(shown, &choice) {
        if opts.constraint.is_some() {
            return Err(ApiError::invalid(
                "a required or named tool_choice cannot be combined with response_format, grammar or regex",
                Some("tool_choice"),
            ));
        }
        opts.constraint = Some(compile(&state, &g, "tools")?);
    }
    let rx = start_generation(&state, ids, opts, top)?;
    let include_usage = f.stream_options.is_some_and(|o| o.include_usage);
    let shape = ChatShape {
        id: format!("chatcmpl-{:016x}", next_id()),
        created: unix_now(),
        logprobs: top.is_some(),
        tools: !shown.is_empty(),
        held: String::new(),
        state,
    };
    Ok((rx, f.stream, include_usage, shape))
}

/// The tools of a request and the choice among them, checked: names unique and non-empty, a
/// named choice among them, `required` only with tools.
fn tool_request(req: &ChatRequest) -> Result<(Vec<Tool>, ToolChoice), ApiError> {
    let mut tools: Vec<Tool> = Vec::new();
    for t in req.tools.iter().flatten() {
        if t.kind != "function" {
            return Err(ApiError::invalid(
                format!(
                    "tools of type '{}' are not supported (only 'function')",
                    t.kind
                ),
                Some("tools"),
            ));
        }
        let name = &t.function.name;
        if name.is_empty() || tools.iter().any(|x| &x.name == name) {
            return Err(ApiError::invalid(
                format!("tool names must be non-empty and distinct: '{name}'"),
                Some("tools"),
            ));
        }
        tools.push(Tool {
            name: name.clone(),
            description: t.function.description.clone(),
            parameters: t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        });
    }
    let choice = match &req.tool_choice {
        None => ToolChoice::Auto,
        Some(ToolChoiceField::Mode(m)) => match m.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    format!(
                    "tool_choice must be 'auto', 'none', 'required' or a function, got '{other}'"
                ),
                    Some("tool_choice"),
                ))
            }
        },
        Some(ToolChoiceField::Named { function }) => ToolChoice::Named(function.name.clone()),
    };
    match &choice {
        ToolChoice::Required if tools.is_empty() => Err(ApiError::invalid(
            "tool_choice 'required' needs tools",
            Some("tool_choice"),
        )),
        ToolChoice::Named(n) if !tools.iter().any(|t| &t.name == n) => Err(ApiError::invalid(
            format!("tool_choice names '{n}', which is not among the tools"),
            Some("tool_choice"),
        )),
        _ => Ok((tools, choice)),
    }
}

/// A chat completion's chunks and answer.
struct ChatShape {
    state: AppState,
    id: String,
    created: u64,
    logprobs: bool,
    /// Tools were shown to the model: the answer is parsed for calls once complete, so its
    /// text is held back until then.
    tools: bool,
    held: String,
}

/// The answer's text and calls, OpenAI's way: content null when there are only calls.
fn split_calls(text: &str) -> (Option<String>, Option<Vec<ToolCallOut>>) {
    let (rest, calls) = tools::parse(text);
    if calls.is_empty() {
        return (Some(text.to_string()), None);
    }
    let calls = calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCallOut {
            index: Some(i as u32),
            id: format!("call_{:016x}", next_id()),
            kind: "function",
            function: FunctionCallOut {
                name: c.name,
                arguments: c.arguments.to_string(),
            },
        })
        .collect();
    (Some(rest).filter(|r| !r.is_empty()), Some(calls))
}

impl ChatShape {
    fn chunk(
        &self,
        delta: Delta,
        logprobs: Option<ChatLogprobs>,
        finish: Option<&'static str>,
        usage: Option<Usage>,
    ) -> String {
        serde_json::to_string(&ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.state.model_id.clone(),
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
}

impl Shape for ChatShape {
    fn opening(&mut self) -> Vec<String> {
        let role = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            tool_calls: None,
        };
        vec![self.chunk(role, None, None, None)]
    }

    fn token(&mut self, id: u32, text: String, logprob: Option<TokenLogprob>) -> Option<String> {
        let lp = logprob.map(|lp| ChatLogprobs {
            content: vec![chat_logprob(&self.state, id, &lp)],
        });
        let content = if self.tools {
            self.held.push_str(&text);
            None
        } else {
            Some(text).filter(|t| !t.is_empty())
        };
        if content.is_none() && lp.is_none() {
            return None;
        }
        let delta = Delta {
            content,
            ..Delta::default()
        };
        Some(self.chunk(delta, lp, None, None))
    }

    fn finish(&mut self, finish: FinishReason) -> Vec<String> {
        let mut out = Vec::new();
        let mut reason = finish.as_str();
        if self.tools {
            let (content, calls) = split_calls(&std::mem::take(&mut self.held));
            if calls.is_some() && finish != FinishReason::Cancelled {
                reason = "tool_calls";
            }
            let delta = Delta {
                content: content.filter(|c| !c.is_empty()),
                tool_calls: calls,
                ..Delta::default()
            };
            if delta.content.is_some() || delta.tool_calls.is_some() {
                out.push(self.chunk(delta, None, None, None));
            }
        }
        out.push(self.chunk(Delta::default(), None, Some(reason), None));
        out
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(Delta::default(), None, None, Some(usage))
    }

    fn whole(self, c: Collected) -> Response {
        let (content, mut tool_calls) = if self.tools {
            split_calls(&c.text)
        } else {
            (Some(c.text.clone()), None)
        };
        tool_calls.iter_mut().flatten().for_each(|t| t.index = None);
        let finish_reason = match (&tool_calls, c.finish) {
            (Some(_), f) if f != FinishReason::Cancelled => "tool_calls",
            (_, f) => f.as_str(),
        };
        let logprobs = self.logprobs.then(|| ChatLogprobs {
            content: c
                .tokens
                .iter()
                .filter_map(|(id, lp)| lp.as_ref().map(|lp| chat_logprob(&self.state, *id, lp)))
                .collect(),
        });
        Json(ChatResponse {
            id: self.id,
            object: "chat.completion",
            created: self.created,
            model: self.state.model_id.clone(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content,
                    tool_calls,
                },
                logprobs,
                finish_reason,
            }],
            usage: c.usage,
            system_fingerprint: FINGERPRINT,
        })
        .into_response()
    }
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
            .enumerate()
            .map(|(i, &(tid, logprob))| {
                let (token, bytes) = token_text(state, tid);
                TopLogprob {
                    token,
                    logprob,
                    bytes,
                    allowed: lp.mask.as_ref().and_then(|m| m.allowed.get(i).copied()),
                }
            })
            .collect(),
        removed_probability: lp.mask.as_ref().map(|m| m.removed),
    }
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
            Message {
                tool_calls: m.tool_calls.clone().map(serde_json::Value::Array),
                tool_call_id: m.tool_call_id.clone(),
                ..Message::new(&m.role, &content)
            }
        })
        .collect()
}
