use crate::common::{load, ModelArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt serve                                   (the default model on http://127.0.0.1:8080)\n  gpt serve --model model.gguf --port 9000 --parallel 8 --ctx 4096\n  gpt serve --host 0.0.0.0 --api-key \"$KEY\"\n\nOpenAI-compatible: POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models;\nPOST /tokenize, /detokenize; GET /health. Open http://HOST:PORT/ in a browser to chat and see\nthe next-token probabilities and attention patterns. SIGINT/SIGTERM finish running requests."
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The address to listen on (loopback by default: not reachable from other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every /v1 call (or set GPT_RS_API_KEY, which
    /// keeps the key out of the process list).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Requests generating at the same time (one KV cache slot each), batched into one forward
    /// pass per decode step.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Context window of each slot (prompt + completion tokens; capped by the model's).
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Requests that may wait for a free slot; beyond, the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// MiB of keys and values kept from ended requests, so that a prompt starting with the same
    /// tokens (the next chat turn, a shared system prompt) runs only its new part; least
    /// recently used first out; 0 turns the prompt cache off.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub cache_ram: usize,
    /// The most tokens one request may generate.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// Connections served at once; beyond, a new one gets a 503 and is closed.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers, or idle between requests,
    /// before it is closed.
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub header_timeout: u64,
    /// Seconds a client may take to send a request's body once its headers are in (408 and
    /// close beyond).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub body_timeout: u64,
    /// The largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 2 << 20)]
    pub max_body: usize,
    /// The model name clients send (default: the --model argument's name).
    #[arg(long)]
    pub model_id: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let m = load(&a.model)?;
    let model_id = a.model_id.clone().unwrap_or_else(|| {
        std::path::Path::new(&a.model.model)
            .file_stem()
            .map_or(a.model.model.clone(), |s| s.to_string_lossy().into_owned())
    });
    let opts = gpt_server::Options {
        api_key: a
            .api_key
            .or_else(|| std::env::var("GPT_RS_API_KEY").ok())
            .filter(|k| !k.is_empty()),
        parallel: a.parallel.max(1),
        ctx: a.ctx,
        queue: a.queue,
        prompt_cache_bytes: a.cache_ram.saturating_mul(1 << 20),
        max_tokens: a.max_tokens,
        max_body_bytes: a.max_body,
        max_connections: a.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs(a.header_timeout.max(1)),
        body_timeout: std::time::Duration::from_secs(a.body_timeout.max(1)),
        threads: a.model.threads,
        ..gpt_server::Options::new(&model_id)
    };
    gpt_server::run(m, opts, &a.host, a.port)
}
