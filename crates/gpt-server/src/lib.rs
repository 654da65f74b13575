//! The HTTP layer over `gpt`'s inference API: an OpenAI-compatible server with continuous
//! batching, and a web page that shows the model thinking.
//!
//! - [`api`]: the request and response bodies (OpenAI's shapes).
//! - [`errors`]: OpenAI's error JSON and status codes.
//! - [`auth`]: the optional API key.
//! - [`scheduler`]: the model thread: one KV cache slot per request, prefill of new requests,
//!   one batched decode step for all running ones per iteration.
//! - [`routes`]: the endpoints, turning requests into scheduler jobs and events into responses
//!   (JSON, or server-sent events).
//! - [`page`]: the page at `/` (one self-contained HTML file) and its data endpoints.
//! - [`metrics`]: `GET /metrics`, Prometheus' text format.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `POST /v1/embeddings`, `POST /tokenize`, `POST /detokenize`, `GET /health`, `GET /metrics`, `GET /`,
//! `GET /page/info`, `POST /page/attention`.

pub mod api;
pub mod auth;
pub mod errors;
pub mod metrics;
pub mod page;
pub mod routes;
pub mod scheduler;

use anyhow::{Context, Result};
use axum::routing::{get, post};
use axum::Router;
use gpt::infer::chat_template::ChatTemplate;
use gpt::LoadedModel;
use scheduler::SchedulerHandle;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The name clients use for the model (`model` in requests, `id` in /v1/models).
    pub model_id: String,
    pub api_key: Option<String>,
    /// Requests generating at the same time (KV cache slots).
    pub parallel: usize,
    /// The context window of each slot: prompt + completion tokens (capped by the model's).
    pub ctx: usize,
    /// Requests that may wait for a slot before the server answers 503.
    pub queue: usize,
    /// Bytes of keys and values the prompt cache keeps from ended requests (0: none).
    pub prompt_cache_bytes: usize,
    /// The most tokens one request may generate.
    pub max_tokens: usize,
    /// The largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Threads for the matrix products (all cores if `None`).
    pub threads: Option<usize>,
    /// After a shutdown signal, how long running requests may go on before they are ended
    /// with an error.
    pub shutdown_grace: Duration,
    /// Connections served at once; beyond, a new connection gets a 503 and is closed.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and may stay idle between
    /// requests, before it is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in: beyond, a
    /// 408 and the connection closes (so a half-sent body cannot hold a connection, nor delay a
    /// shutdown, for longer).
    pub body_timeout: Duration,
    /// Fault injection, for tests only (no command-line flag sets it): a model step that runs a
    /// prompt containing this text panics, as a bug in a kernel would.
    #[doc(hidden)]
    pub fault_marker: Option<String>,
}

impl Options {
    pub fn new(model_id: &str) -> Options {
        Options {
            model_id: model_id.into(),
            api_key: None,
            parallel: 4,
            ctx: 2048,
            queue: 64,
            prompt_cache_bytes: 1 << 30,
            max_tokens: 2048,
            max_body_bytes: 2 << 20,
            threads: None,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 512,
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            fault_marker: None,
        }
    }
}

/// What every handler shares.
pub struct Shared {
    pub model: Arc<LoadedModel>,
    pub model_id: String,
    /// The model's chat template; `None` for a base model (chat requests are refused with a
    /// clear error rather than guessed into a format the model never saw).
    pub template: Option<ChatTemplate>,
    /// Context window per slot (prompt + completion).
    pub ctx: usize,
    pub max_tokens: usize,
    pub api_key: Option<String>,
    pub scheduler: SchedulerHandle,
    /// Set once a shutdown signal arrived: new work is refused with 503.
    pub shutting_down: AtomicBool,
    /// Unix time the server started (`created` of the model card).
    pub started: u64,
    /// The vocabulary for constrained decoding, built by the first request that needs it.
    pub constraints: std::sync::OnceLock<Result<gpt::infer::ConstraintFactory, String>>,
}

pub type AppState = Arc<Shared>;

/// The routes, with the body limit and OpenAI-shaped errors for everything below the handlers.
pub fn router(state: AppState, max_body_bytes: usize, body_timeout: Duration) -> Router {
    let keyed = Router::new()
        .route("/v1/chat/completions", post(routes::chat_completions))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{*id}", get(routes::model))
        .route("/v1/embeddings", post(routes::embeddings))
        .route("/tokenize", post(routes::tokenize))
        .route("/detokenize", post(routes::detokenize))
        .route("/page/attention", post(page::attention))
        .route("/inspect/tokens", post(routes::inspect::tokens))
        .route("/inspect/embeddings", post(routes::inspect::embeddings))
        .route("/inspect/similarity", post(routes::inspect::similarity))
        .route("/inspect/projection", post(routes::inspect::projection))
        .route("/inspect/attention", post(routes::inspect::attention))
        .route("/inspect/lens", post(routes::inspect::lens))
        .route("/inspect/logits", post(routes::inspect::logits))
        .route("/inspect/temperature", post(routes::inspect::temperature))
        .route("/inspect/params", get(routes::inspect::params))
        .route("/metrics", get(routes::metrics))
        // Inside the key check: a client without the key never gets its body read.
        .route_layer(axum::middleware::from_fn(move |req, next| {
            read_body_within(body_timeout, req, next)
        }))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    Router::new()
        .route("/", get(page::index))
        .route("/explain", get(page::explain))
        .route("/health", get(routes::health))
        .route("/page/info", get(page::info))
        .merge(keyed)
        .fallback(routes::not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            max_body_bytes,
        ))
        .layer(axum::middleware::map_response(errors::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::count_requests,
        ))
        .with_state(state)
}

/// Reads a request's whole body within `deadline` before the handler runs (the header timeout
/// covers headers only): a 408 with `Connection: close` beyond it, a 413 when the body limit
/// (the layer outside this one) cuts the body off.
async fn read_body_within(
    deadline: Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, usize::MAX)).await {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Ok(Err(e)) => {
            let limit =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            let status = if limit {
                axum::http::StatusCode::PAYLOAD_TOO_LARGE
            } else {
                axum::http::StatusCode::BAD_REQUEST
            };
            errors::ApiError::from_status(status).into_response()
        }
        Err(_) => {
            let mut r = errors::ApiError::from_status(axum::http::StatusCode::REQUEST_TIMEOUT)
                .into_response();
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            r
        }
    }
}

/// Serves `model` on `listener` until `shutdown` completes, then stops accepting connections,
/// lets running requests finish (for up to `opts.shutdown_grace`, after which they end with an
/// error event) and returns once the model thread has stopped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    model: LoadedModel,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let model = Arc::new(model);
    let ctx = opts.ctx.clamp(1, model.transformer.config.context_length);
    let (scheduler, thread) = scheduler::start(
        model.clone(),
        opts.parallel.max(1),
        opts.queue,
        opts.prompt_cache_bytes,
        opts.threads,
        opts.fault_marker.clone(),
    )?;
    let template = model.chat_template.clone();
    if template.is_none() {
        tracing::warn!(
            "the model has no chat template: chat requests will be refused, completions work"
        );
    }
    let state: AppState = Arc::new(Shared {
        model,
        model_id: opts.model_id.clone(),
        template,
        ctx,
        max_tokens: opts.max_tokens.max(1),
        api_key: opts.api_key.clone().filter(|k| !k.is_empty()),
        scheduler,
        shutting_down: AtomicBool::new(false),
        started: routes::unix_now(),
        constraints: std::sync::OnceLock::new(),
    });
    let app = router(state.clone(), opts.max_body_bytes, opts.body_timeout);
    let on_signal = {
        let state = state.clone();
        let grace = opts.shutdown_grace;
        move || {
            tracing::info!("shutting down: finishing running requests");
            state.shutting_down.store(true, Ordering::SeqCst);
            let abort = state.scheduler.abort.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                abort.store(true, Ordering::SeqCst);
            });
        }
    };
    accept_connections(listener, app, &opts, shutdown, on_signal).await;
    // The last handle to the scheduler goes with the state: its thread then ends.
    drop(state);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .ok()
        .and_then(|r| r.ok())
        .context("the model thread panicked")?;
    Ok(())
}

/// Serves connections until `shutdown` completes, then calls `on_signal` and waits for the open
/// ones to finish their request (idle ones close at once) for at most the shutdown grace period
/// and a little more.
/// At most `max_connections` are served at once: another one gets a 503 and is closed, so a crowd
/// of idle clients cannot take every file descriptor. A connection that takes longer than
/// `header_timeout` to send its request's headers, or idles that long between requests, is
/// closed.
async fn accept_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    opts: &Options,
    shutdown: impl Future<Output = ()>,
    on_signal: impl FnOnce(),
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(opts.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    // New connections are refused from now on, not left waiting in the backlog until exit.
    drop(listener);
    on_signal();
    let limit = opts.shutdown_grace + Duration::from_secs(5);
    if tokio::time::timeout(limit, graceful.shutdown())
        .await
        .is_err()
    {
        // A client that sent half a request, say: its connection would hold the model (through
        // the router's state) until its header timeout.
        tracing::warn!("connections still open {limit:?} after the shutdown signal: closing them");
    }
    tasks.shutdown().await;
}

/// The answer to a connection beyond the cap: a 503 in OpenAI's error shape, then close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = errors::ApiError::overloaded(
        "Too many open connections: the server is at its connection limit. Retry shortly.",
    )
    .json();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Binds `host:port` and serves until SIGINT or SIGTERM (the `gpt serve` command).
pub fn run(model: LoadedModel, opts: Options, host: &str, port: u16) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("binding {host}:{port}"))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "gpt serve: {} on http://{addr} ({} slots, context {} per slot){}",
            opts.model_id,
            opts.parallel,
            opts.ctx.min(model.transformer.config.context_length),
            if opts.api_key.is_some() {
                ", API key required"
            } else {
                ""
            }
        );
        serve(listener, model, opts, shutdown_signal()).await
    })
}

/// A server running on a background thread (for tests and embedding): bound to a loopback
/// port, stopped by [`Background::stop`].
pub struct Background {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Background {
    /// Starts `model` on 127.0.0.1 on a free port.
    pub fn start(model: LoadedModel, opts: Options) -> Result<Background> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                serve(listener, model, opts, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        Ok(Background {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Sends the shutdown signal and waits for the server to finish.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
