//! `GET /health`, `GET /metrics`, and the layer that counts every request for the latter.

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;

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
        "prompt_cache_bytes": s.prompt_cache_bytes.load(Ordering::Relaxed),
        "prompt_cache_hits": s.prompt_cache_hits.load(Ordering::Relaxed),
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
        prompt_cache_bytes: s.prompt_cache_bytes.load(Ordering::Relaxed),
        prompt_cache_entries: s.prompt_cache_entries.load(Ordering::Relaxed),
        prompt_cache_hits: s.prompt_cache_hits.load(Ordering::Relaxed),
        prompt_cache_tokens: s.prompt_cache_tokens.load(Ordering::Relaxed),
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
