//! `GET /metrics`: what the server has done, in Prometheus' text exposition format (version
//! 0.0.4), for a scraper or a dashboard.
//!
//! Counters: HTTP requests by endpoint and status, prompt tokens run, tokens generated.
//! Histograms: time to first token (from the request's arrival to its first token) and the
//! time between a request's successive tokens. Gauges: jobs waiting, sequences generating, the
//! KV cache positions they hold against the slots' capacity.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The endpoints counted by name; any other path counts as `other` (so that a client probing
/// random paths cannot grow the label set without bound).
const ENDPOINTS: [&str; 12] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/health",
    "/metrics",
    "/",
    "/page/info",
    "/page/attention",
    "/v1/models/{id}",
];

/// A histogram with fixed bucket bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most `bounds[i]` (not cumulative; made so when rendered), then the rest.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports but the gauges, which the scheduler's [`crate::scheduler::Stats`]
/// holds.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub time_to_first_token: Histogram,
    pub inter_token: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        const TTFT: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        const TOKEN: &[f64] = &[0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            time_to_first_token: Histogram::new(TTFT),
            inter_token: Histogram::new(TOKEN),
        }
    }
}

/// The gauges (and the prompt cache's counters), read from the scheduler when `/metrics` is
/// asked.
pub struct Gauges {
    pub queued: usize,
    pub running: usize,
    pub slots: usize,
    pub kv_tokens: usize,
    pub kv_capacity: usize,
    pub prompt_cache_bytes: usize,
    pub prompt_cache_entries: usize,
    pub prompt_cache_hits: usize,
    pub prompt_cache_tokens: usize,
}

impl Metrics {
    /// Counts one answered request to `path` with `status`.
    pub fn count_request(&self, path: &str, status: u16) {
        let endpoint = if path.starts_with("/v1/models/") {
            "/v1/models/{id}"
        } else {
            ENDPOINTS
                .iter()
                .copied()
                .find(|&e| e == path)
                .unwrap_or("other")
        };
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((endpoint, status)).or_insert(0) += 1;
    }

    /// The text exposition of every metric.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP gpt_requests_total HTTP requests answered, by endpoint and status.\n");
        out.push_str("# TYPE gpt_requests_total counter\n");
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "gpt_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "gpt_prompt_tokens_total",
            "Prompt tokens run through the model.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "gpt_generated_tokens_total",
            "Tokens generated (sampled and sent).",
            self.generated_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "gpt_prompt_cache_hits_total",
            "Generation requests that started from a prefix kept in the prompt cache.",
            g.prompt_cache_hits as u64,
        );
        counter(
            &mut out,
            "gpt_prompt_cache_tokens_total",
            "Prompt tokens taken from the prompt cache instead of run.",
            g.prompt_cache_tokens as u64,
        );
        self.time_to_first_token.render(
            &mut out,
            "gpt_time_to_first_token_seconds",
            "From a generation request's arrival to its first token.",
        );
        self.inter_token.render(
            &mut out,
            "gpt_inter_token_latency_seconds",
            "Between successive tokens of one generation.",
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "gpt_queue_depth",
            "Jobs waiting for the model thread.",
            g.queued,
        );
        gauge(
            &mut out,
            "gpt_running_sequences",
            "Generations holding a KV cache slot.",
            g.running,
        );
        gauge(
            &mut out,
            "gpt_slots",
            "KV cache slots (--parallel).",
            g.slots,
        );
        gauge(
            &mut out,
            "gpt_kv_cache_tokens",
            "Positions held in the KV caches of running generations.",
            g.kv_tokens,
        );
        gauge(
            &mut out,
            "gpt_kv_cache_capacity_tokens",
            "Positions all slots can hold (slots x context per slot).",
            g.kv_capacity,
        );
        gauge(
            &mut out,
            "gpt_prompt_cache_bytes",
            "Bytes of keys and values the prompt cache holds (--cache-ram bounds them).",
            g.prompt_cache_bytes,
        );
        gauge(
            &mut out,
            "gpt_prompt_cache_sequences",
            "Ended requests' sequences the prompt cache holds.",
            g.prompt_cache_entries,
        );
        out
    }
}
