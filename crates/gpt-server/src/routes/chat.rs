//! `POST /v1/chat/completions`: the conversation through the model's chat template, answered
//! as a chat completion or its chunks.

use super::stream::{respond, Collected, Shape};
use super::*;
use crate::api::*;
use crate::scheduler::TokenLogprob;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gpt::infer::FinishReason;

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
    let include_usage = f.stream_options.is_some_and(|o| o.include_usage);
    let shape = ChatShape {
        id: format!("chatcmpl-{:016x}", next_id()),
        created: unix_now(),
        logprobs: top.is_some(),
        state,
    };
    respond(rx, f.stream, include_usage, shape).await
}

/// A chat completion's chunks and answer.
struct ChatShape {
    state: AppState,
    id: String,
    created: u64,
    logprobs: bool,
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
        };
        vec![self.chunk(role, None, None, None)]
    }

    fn token(&mut self, id: u32, text: String, logprob: Option<TokenLogprob>) -> Option<String> {
        let lp = logprob.map(|lp| ChatLogprobs {
            content: vec![chat_logprob(&self.state, id, &lp)],
        });
        if text.is_empty() && lp.is_none() {
            return None;
        }
        let delta = Delta {
            role: None,
            content: Some(text),
        };
        Some(self.chunk(delta, lp, None, None))
    }

    fn finish(&mut self, finish: FinishReason) -> String {
        self.chunk(Delta::default(), None, Some(finish.as_str()), None)
    }

    fn usage(&mut self, usage: Usage) -> String {
        self.chunk(Delta::default(), None, None, Some(usage))
    }

    fn whole(self, c: Collected) -> Response {
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
                    content: c.text,
                },
                logprobs,
                finish_reason: c.finish.as_str(),
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
