//! What the generating endpoints share: a generation's events (tokens, then done or an error)
//! turned into OpenAI's answer, streamed as server-sent events or gathered into one JSON
//! object. Each endpoint says only how its chunks and its answer look ([`Shape`]).

use crate::api::Usage;
use crate::errors::ApiError;
use crate::scheduler::{Event, TokenLogprob};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use gpt::infer::FinishReason;
use std::collections::VecDeque;
use std::convert::Infallible;
use tokio::sync::mpsc::UnboundedReceiver;

/// How one endpoint shapes a generation: its chunks while streaming, its answer otherwise.
pub(crate) trait Shape: Send + 'static {
    /// Chunks sent before the first token (chat: the assistant's role; completions: the echo).
    fn opening(&mut self) -> Vec<String>;
    /// The chunk of one token, or None while there is nothing to send.
    fn token(&mut self, id: u32, text: String, logprob: Option<TokenLogprob>) -> Option<String>;
    /// The chunks that end the answer: anything held back (a chat's tool calls), then the one
    /// that carries the finish reason.
    fn finish(&mut self, finish: FinishReason) -> Vec<String>;
    /// The usage-only chunk (`stream_options.include_usage`).
    fn usage(&mut self, usage: Usage) -> String;
    /// The whole answer, when not streaming.
    fn whole(self, c: Collected) -> Response;
}

/// The answer to a generation: server-sent events if `stream` (with a usage chunk at the end
/// if `include_usage`), else one JSON object once it is complete.
pub(crate) async fn respond<S: Shape>(
    rx: UnboundedReceiver<Event>,
    stream: bool,
    include_usage: bool,
    mut shape: S,
) -> Result<Response, ApiError> {
    if !stream {
        return Ok(shape.whole(collect(rx).await?));
    }
    let first = shape.opening();
    Ok(sse(rx, first, move |ev| match ev {
        Event::Token { id, text, logprob } => shape.token(id, text, logprob).into_iter().collect(),
        Event::Done {
            finish,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
        } => {
            let mut out = shape.finish(finish);
            if include_usage {
                out.push(shape.usage(Usage::new(prompt_tokens, cached_tokens, completion_tokens)));
            }
            out
        }
        Event::Error(m) => vec![ApiError::internal(m).json()],
    }))
}

/// A whole generation, gathered for a non-streaming answer.
pub(crate) struct Collected {
    pub text: String,
    pub tokens: Vec<(u32, Option<TokenLogprob>)>,
    pub finish: FinishReason,
    pub usage: Usage,
}

pub(crate) async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
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
                cached_tokens,
                completion_tokens,
            }) => {
                return Ok(Collected {
                    text,
                    tokens,
                    finish,
                    usage: Usage::new(prompt_tokens, cached_tokens, completion_tokens),
                })
            }
            Some(Event::Error(m)) => return Err(ApiError::internal(m)),
            None => return Err(ApiError::internal("the model thread stopped")),
        }
    }
}

/// Server-sent events from a generation: `first` before anything else, then what `map` makes
/// of each event, then `data: [DONE]`. Dropping the stream (the client closed the connection)
/// drops `rx`, which tells the scheduler to free the slot.
pub(crate) fn sse<M>(rx: UnboundedReceiver<Event>, first: Vec<String>, map: M) -> Response
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
