//! Continuous batching: one thread owns the model and serves every request.
//!
//! Each generating request holds a slot: its own KV cache, taken from a pool of `parallel`
//! caches (cleared, not freed, between requests, so memory stays bounded by
//! `parallel` x the context per slot). Every iteration of the loop
//! 1. admits waiting jobs while slots are free (an inspect job runs at once; an embeddings
//!    request joins the embedding queue; a generation takes a slot);
//! 2. drops the requests whose client has gone (the receiver of their event channel was
//!    dropped: a closed connection drops the response stream), which frees their slots at once,
//!    and runs one chunk (at most [`PREFILL_CHUNK`] tokens) of the oldest embeddings request;
//! 3. runs ONE forward pass over every request holding a slot
//!    ([`Transformer::forward_segments`]): the prompts of newly admitted requests (prefill, in
//!    chunks of at most [`PREFILL_CHUNK`] tokens per pass so that a long prompt does not stall
//!    the others for long) and one decode token for each running request, stacked row-wise.
//!    The weights are read from memory once for all of them, which is where batching wins on a
//!    CPU whose decode speed is bound by memory bandwidth; attention keeps each sequence to its
//!    own cache. Each request then samples its next token from its own logits. A request that
//!    finishes leaves the batch; a new one joins it at the next iteration, without waiting for
//!    the others to end.
//!
//! Prompt caching: when a request ends, its KV cache goes to a [`PromptCache`] (bounded in
//! bytes, least recently used first out) with the tokens its positions hold; a new request
//! whose prompt starts with kept tokens starts from a copy of them and runs only the rest.
//! Exact: the logits are those the whole prompt would give (see [`gpt::kernels::attend_block`]).
//!
//! Waiting jobs sit in a bounded channel: when it is full, [`SchedulerHandle::submit`] refuses
//! at once (the HTTP layer answers 503 with Retry-After) instead of queueing without limit.
//!
//! [`Transformer::forward_segments`]: gpt::model::Transformer::forward_segments

use crate::errors::ApiError;
use crate::metrics::Metrics;
use gpt::infer::{FinishReason, GenerateOptions, KvCache, PromptCache, Sequence};
use gpt::inspect::capture::Capture;
use gpt::model::Logits;
use gpt::LoadedModel;
use rayon::prelude::*;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

/// A generation to run.
pub struct GenRequest {
    pub prompt_ids: Vec<u32>,
    pub options: GenerateOptions,
    /// `Some(k)`: report each token's log-probability and its k most likely alternatives.
    pub logprobs: Option<usize>,
    /// Where the tokens go; dropping the receiver cancels the request.
    pub events: UnboundedSender<Event>,
    /// When the request arrived (its time to first token counts from here).
    pub arrived: Instant,
}

/// A token's log-probability under the model's distribution (softmax of the raw logits, before
/// temperature or top-p: what the model thinks, whatever the sampler then did).
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// The most likely tokens at this step, best first: (id, log-probability).
    pub top: Vec<(u32, f32)>,
    /// Under a grammar: what its mask did at this step.
    pub mask: Option<MaskEffect>,
}

/// What a constraint's mask did to one step's distribution.
#[derive(Debug, Clone)]
pub struct MaskEffect {
    /// The model's probability (softmax of the raw logits) of every token the mask forbade.
    pub removed: f32,
    /// For each of `top`, whether the mask allowed it.
    pub allowed: Vec<bool>,
}

/// What a generating request receives, in order: tokens, then `Done` or `Error`.
#[derive(Debug)]
pub enum Event {
    /// One generated token and the text it completes (often the token's text; empty while a
    /// character or a possible stop string is incomplete).
    Token {
        id: u32,
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        /// Prompt tokens whose keys and values came from the prompt cache.
        cached_tokens: usize,
        completion_tokens: usize,
    },
    Error(String),
}

/// Work for the model thread.
pub enum Job {
    Generate(Box<GenRequest>),
    /// One pooled vector (C) per input (see [`embed`]).
    Embed {
        inputs: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
    },
    /// A look inside the model (`/inspect/...`, the page's attention view): runs with the
    /// model between two decode steps and sends its own answer (a panic drops it, which the
    /// handler answers with a 500).
    Inspect(Box<dyn FnOnce(&LoadedModel) + Send>),
}

/// Live counts, for /health and the tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests holding a slot.
    pub processing: AtomicUsize,
    /// Jobs waiting in the queue.
    pub queued: AtomicUsize,
    /// Forward passes that produced tokens, and the tokens they produced (for the mean batch
    /// size).
    pub decode_steps: AtomicUsize,
    pub decode_tokens: AtomicUsize,
    /// Prompt tokens run.
    pub prompt_tokens: AtomicUsize,
    /// Positions held in the KV caches of the requests holding a slot.
    pub kv_tokens: AtomicUsize,
    /// The prompt cache: bytes and sequences held, requests that reused a prefix of it, and
    /// the prompt tokens so reused.
    pub prompt_cache_bytes: AtomicUsize,
    pub prompt_cache_entries: AtomicUsize,
    pub prompt_cache_hits: AtomicUsize,
    pub prompt_cache_tokens: AtomicUsize,
    /// Model steps that panicked (their requests failed; the thread went on), and the last
    /// panic's message.
    pub faults: AtomicUsize,
    pub last_fault: std::sync::Mutex<Option<String>>,
}

/// The handle the HTTP layer holds.
pub struct SchedulerHandle {
    tx: SyncSender<Job>,
    pub stats: Arc<Stats>,
    /// Counters and latency histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Set to end every running request with an error (the end of the shutdown grace period).
    pub abort: Arc<AtomicBool>,
    pub parallel: usize,
    /// Cleared when the model thread ends, however it ends.
    alive: Arc<AtomicBool>,
}

impl SchedulerHandle {
    /// Whether the model thread is still running (it stops only once every handle is gone, or
    /// on a panic outside a model step, which would be a bug here).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Queues a job, or refuses at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => ApiError::overloaded(
                        "The server is busy: every slot is generating and the queue is full. Retry shortly.",
                    ),
                    TrySendError::Disconnected(_) => {
                        ApiError::overloaded("The model thread has stopped.")
                    }
                })
            }
        }
    }
}

/// Starts the model thread: `parallel` slots, a queue of `queue` waiting jobs, a prompt cache
/// of `prompt_cache_bytes` (0: none), matmuls on `threads` threads (all cores if `None`). The
/// thread ends when every handle is dropped and the last running request has finished.
pub fn start(
    model: Arc<LoadedModel>,
    parallel: usize,
    queue: usize,
    prompt_cache_bytes: usize,
    threads: Option<usize>,
    fault_marker: Option<String>,
) -> anyhow::Result<(SchedulerHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(queue);
    let stats = Arc::new(Stats::default());
    let metrics = Arc::new(Metrics::default());
    let abort = Arc::new(AtomicBool::new(false));
    // The kernels run best called from inside the rayon pool (see gpt::kernels): the loop runs
    // on one of the pool's threads.
    let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("gpt-model-{i}"));
    if let Some(n) = threads {
        pool = pool.num_threads(n.max(1));
    }
    let pool = pool.build()?;
    let mut s = Scheduler {
        slots: (0..parallel)
            .map(|_| model.transformer.new_cache())
            .collect(),
        model,
        prompt_cache: PromptCache::new(prompt_cache_bytes),
        running: Vec::new(),
        embeddings: std::collections::VecDeque::new(),
        stats: stats.clone(),
        metrics: metrics.clone(),
        abort: abort.clone(),
        fault_marker,
    };
    let alive = Arc::new(AtomicBool::new(true));
    /// Clears `alive` when dropped: at the thread's end, or while a panic unwinds it.
    struct Alive(Arc<AtomicBool>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let guard = Alive(alive.clone());
    let thread = std::thread::Builder::new()
        .name("gpt-scheduler".into())
        .spawn(move || {
            let _alive = guard;
            pool.install(|| s.run(rx))
        })?;
    Ok((
        SchedulerHandle {
            tx,
            stats,
            metrics,
            abort,
            parallel,
            alive,
        },
        thread,
    ))
}

/// The most prompt tokens of one request in one forward pass: a long prompt is run over
/// several passes, so the requests already generating wait at most one chunk's time for their
/// next token.
pub const PREFILL_CHUNK: usize = 256;

/// A request holding a slot.
struct Running {
    req: Box<GenRequest>,
    seq: Sequence,
    cache: KvCache,
    /// Prompt tokens already run (or taken from the prompt cache).
    fed: usize,
    /// Prompt tokens taken from the prompt cache.
    cached: usize,
    /// The token sampled last, to run at the next pass.
    next: u32,
    /// When the last token was sent (None before the first).
    last_token: Option<Instant>,
}

impl Running {
    /// The tokens this request runs in the next pass: a chunk of its prompt, or its last token.
    fn input(&self) -> &[u32] {
        let p = &self.req.prompt_ids;
        if self.fed < p.len() {
            &p[self.fed..p.len().min(self.fed + PREFILL_CHUNK)]
        } else {
            std::slice::from_ref(&self.next)
        }
    }
}

struct Scheduler {
    model: Arc<LoadedModel>,
    /// Free KV caches.
    slots: Vec<KvCache>,
    /// The caches of ended requests, for later prompts that start the same way.
    prompt_cache: PromptCache,
    running: Vec<Running>,
    /// Embedding requests, first come first served: the front one runs one chunk per loop.
    embeddings: std::collections::VecDeque<Embedding>,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    abort: Arc<AtomicBool>,
    /// Fault injection for tests ([`crate::Options::fault_marker`]).
    fault_marker: Option<String>,
}

impl Scheduler {
    fn run(&mut self, rx: Receiver<Job>) {
        let mut open = true;
        loop {
            if self.abort.load(Ordering::SeqCst) {
                self.abort_all(&rx);
            }
            // 1. Admit: block while idle, otherwise take what is waiting while slots are free.
            if self.running.is_empty() && self.embeddings.is_empty() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(job) => self.admit_guarded(job),
                    Err(_) => return,
                }
            }
            while open && !self.slots.is_empty() {
                match rx.try_recv() {
                    Ok(job) => self.admit_guarded(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            // 2. Free the slots of clients that have gone.
            self.release_where(|r| r.req.events.is_closed(), true);
            // 2b. One chunk of the oldest embedding request, between two decode steps.
            self.embed_chunk();
            // 3. One forward pass: new prompts and one decode token per running request. A
            // panic fails the requests of that step, not the server.
            if !self.running.is_empty() {
                if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| self.step())) {
                    let msg = self.fault(p);
                    for r in &self.running {
                        let _ = r.req.events.send(Event::Error(msg.clone()));
                    }
                    self.release_where(|_| true, false);
                }
            }
        }
    }

    /// [`admit`](Self::admit), surviving a panic of an embedding or inspect job (whose
    /// reply is dropped, which its handler answers with a 500).
    fn admit_guarded(&mut self, job: Job) {
        if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| self.admit(job))) {
            self.fault(p);
        }
    }

    /// Counts a panic of a model step and returns the error its requests get.
    fn fault(&self, panic: Box<dyn std::any::Any + Send>) -> String {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!("a model step panicked: {what}");
        self.stats.faults.fetch_add(1, Ordering::SeqCst);
        *self
            .stats
            .last_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(what.clone());
        format!("internal error in the model step: {what}")
    }

    fn admit(&mut self, job: Job) {
        self.stats.queued.fetch_sub(1, Ordering::SeqCst);
        match job {
            Job::Generate(req) => {
                if req.events.is_closed() {
                    return;
                }
                let Some(mut cache) = self.slots.pop() else {
                    let _ = req.events.send(Event::Error("no free slot".into()));
                    return;
                };
                cache.clear();
                let cached = self.prompt_cache.lookup(&req.prompt_ids, &mut cache);
                if cached > 0 {
                    self.stats.prompt_cache_hits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .prompt_cache_tokens
                        .fetch_add(cached, Ordering::Relaxed);
                }
                let seq = Sequence::new(&req.prompt_ids, &req.options);
                self.running.push(Running {
                    req,
                    seq,
                    cache,
                    fed: cached,
                    cached,
                    next: 0,
                    last_token: None,
                });
                self.stats.processing.fetch_add(1, Ordering::SeqCst);
            }
            Job::Embed { inputs, reply } => self.embeddings.push_back(Embedding {
                cache: self.model.transformer.new_cache(),
                sum: vec![0.0; self.model.transformer.config.d_model],
                inputs,
                reply,
                done: Vec::new(),
                fed: 0,
            }),
            Job::Inspect(f) => f(&self.model),
        }
    }

    /// Runs at most [`PREFILL_CHUNK`] tokens of the front embedding request (a panic fails
    /// that request, not the server); replies when its last input is done or the client left.
    fn embed_chunk(&mut self) {
        let Some(e) = self.embeddings.front_mut() else {
            return;
        };
        if e.reply.is_closed() {
            self.embeddings.pop_front();
            return;
        }
        let model = self.model.clone();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| e.advance(&model)));
        let outcome = match r {
            Ok(Ok(true)) => Some(Ok(())),
            Ok(Ok(false)) => None,
            Ok(Err(msg)) => Some(Err(msg)),
            Err(p) => Some(Err(self.fault(p))),
        };
        if let Some(outcome) = outcome {
            if let Some(e) = self.embeddings.pop_front() {
                let _ = e.reply.send(outcome.map(|()| e.done));
            }
        }
    }

    fn step(&mut self) {
        if let Some(marker) = &self.fault_marker {
            let tok = &self.model.tokenizer;
            if self.running.iter().any(|r| {
                r.fed == r.cached && tok.decode(&r.req.prompt_ids).contains(marker.as_str())
            }) {
                panic!("injected fault: a prompt contains {marker:?}");
            }
        }
        let inputs: Vec<Vec<u32>> = self.running.iter().map(|r| r.input().to_vec()).collect();
        let segments: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut caches: Vec<&mut KvCache> = self.running.iter_mut().map(|r| &mut r.cache).collect();
        match self
            .model
            .transformer
            .forward_segments(&segments, &mut caches)
        {
            Ok(logits) => {
                // Sampling is per sequence and costs about a millisecond over a large
                // vocabulary: spread it over the pool's threads.
                let (model, metrics) = (&self.model, &*self.metrics);
                let outcome: Vec<(bool, bool)> = self
                    .running
                    .par_iter_mut()
                    .zip(&logits)
                    .map(|(r, l)| {
                        let in_prompt = r.fed < r.req.prompt_ids.len();
                        if in_prompt {
                            r.fed += r.input().len();
                            if r.fed < r.req.prompt_ids.len() {
                                return (false, false); // more prompt to run
                            }
                        }
                        (!emit(model, metrics, r, l), !in_prompt)
                    })
                    .collect();
                let prompt: usize = self
                    .running
                    .iter()
                    .zip(&inputs)
                    .zip(&outcome)
                    .filter(|(_, (_, decoded))| !decoded)
                    .map(|((_, i), _)| i.len())
                    .sum();
                let decoded = outcome.iter().filter(|(_, d)| *d).count();
                self.stats
                    .prompt_tokens
                    .fetch_add(prompt, Ordering::Relaxed);
                self.metrics
                    .prompt_tokens
                    .fetch_add(prompt as u64, Ordering::Relaxed);
                if decoded > 0 {
                    self.stats.decode_steps.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .decode_tokens
                        .fetch_add(decoded, Ordering::Relaxed);
                }
                let mut i = 0;
                self.release_where(
                    |_| {
                        i += 1;
                        outcome[i - 1].0
                    },
                    true,
                );
            }
            Err(e) => {
                let msg = e.to_string();
                for r in &self.running {
                    let _ = r.req.events.send(Event::Error(msg.clone()));
                }
                self.release_where(|_| true, false);
            }
        }
    }

    /// Removes the running requests for which `f` is true (called in order) and frees their
    /// slots. With `to_prompt_cache` (their caches hold what their tokens say: not after a
    /// failed step) their caches go to the prompt cache and the slots get new ones.
    fn release_where(&mut self, mut f: impl FnMut(&Running) -> bool, to_prompt_cache: bool) {
        let mut keep = Vec::with_capacity(self.running.len());
        for r in self.running.drain(..) {
            if f(&r) {
                if to_prompt_cache && !r.cache.is_empty() {
                    // The positions hold the prompt, then each generated token but the last. The
                    // prompt cache keeps a copy: the slot keeps its memory, already mapped, for
                    // the next request (fresh memory cost a first turn ~10%).
                    let mut tokens = r.req.prompt_ids;
                    tokens.extend_from_slice(&r.seq.ids);
                    self.prompt_cache.insert(tokens, &r.cache);
                }
                self.slots.push(r.cache);
                self.stats.processing.fetch_sub(1, Ordering::SeqCst);
            } else {
                keep.push(r);
            }
        }
        self.running = keep;
        self.stats
            .prompt_cache_bytes
            .store(self.prompt_cache.bytes(), Ordering::Relaxed);
        self.stats
            .prompt_cache_entries
            .store(self.prompt_cache.len(), Ordering::Relaxed);
        let held = self.running.iter().map(|r| r.cache.len()).sum();
        self.stats.kv_tokens.store(held, Ordering::Relaxed);
    }

    /// Ends every running and waiting request with an error (shutdown after the grace period).
    fn abort_all(&mut self, rx: &Receiver<Job>) {
        for r in &self.running {
            let _ = r
                .req
                .events
                .send(Event::Error("the server is shutting down".into()));
        }
        self.release_where(|_| true, false);
        for e in self.embeddings.drain(..) {
            let _ = e.reply.send(Err("the server is shutting down".into()));
        }
        while let Ok(job) = rx.try_recv() {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            let msg = "the server is shutting down".to_string();
            match job {
                Job::Generate(req) => {
                    let _ = req.events.send(Event::Error(msg));
                }
                Job::Embed { reply, .. } => {
                    let _ = reply.send(Err(msg));
                }
                // Dropping the job drops its reply: the handler answers with an error.
                Job::Inspect(_) => {}
            }
        }
    }
}

/// Samples the request's next token from `logits` (V) and sends it. Returns whether the
/// request goes on (false: finished, or its client has gone).
fn emit(model: &LoadedModel, metrics: &Metrics, r: &mut Running, logits: &[f32]) -> bool {
    // The distribution's parts once per step (log-sum-exp, top k); under a grammar, what its
    // mask does to this step, read before the step advances the grammar.
    let parts = r.req.logprobs.map(|k| {
        let (lse, top) = distribution(logits, k);
        let seq = &r.seq;
        let mask = seq.constraint_allows(0).is_some().then(|| {
            mask_effect(logits, lse, &top, |id| {
                seq.constraint_allows(id) == Some(true)
            })
        });
        (lse, top, mask)
    });
    let step = r.seq.step(logits, &model.tokenizer);
    let logprob = parts.map(|(lse, top, mask)| TokenLogprob {
        logprob: logprob_of(logits, step.id, lse),
        top,
        mask,
    });
    let sent = r.req.events.send(Event::Token {
        id: step.id,
        text: step.text,
        logprob,
    });
    if sent.is_err() {
        return false;
    }
    let now = Instant::now();
    match r.last_token {
        None => metrics.time_to_first_token.observe(now - r.req.arrived),
        Some(t) => metrics.inter_token.observe(now - t),
    }
    r.last_token = Some(now);
    metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
    if let Some(finish) = step.finish {
        let _ = r.req.events.send(Event::Done {
            finish,
            prompt_tokens: r.req.prompt_ids.len(),
            cached_tokens: r.cached,
            completion_tokens: r.seq.ids.len(),
        });
        return false;
    }
    r.next = step.id;
    true
}

/// log Σ exp(logits), the sum in f64: 49152 terms of very different sizes.
fn lse(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// The probability mass of the tokens `allowed` rejects, and which of `top` it allows.
fn mask_effect(
    logits: &[f32],
    lse: f32,
    top: &[(u32, f32)],
    allowed: impl Fn(u32) -> bool,
) -> MaskEffect {
    let removed: f64 = logits
        .iter()
        .enumerate()
        .filter(|&(id, _)| !allowed(id as u32))
        .map(|(_, &l)| ((l - lse) as f64).exp())
        .sum();
    MaskEffect {
        removed: removed.min(1.0) as f32,
        allowed: top.iter().map(|&(id, _)| allowed(id)).collect(),
    }
}

/// The log-probability of `id` and the `k` most likely tokens under softmax(logits).
pub fn logprobs(logits: &[f32], id: u32, k: usize) -> TokenLogprob {
    let (lse, top) = distribution(logits, k);
    TokenLogprob {
        logprob: logprob_of(logits, id, lse),
        top,
        mask: None,
    }
}

/// log Σ exp(logits) and the `k` most likely tokens with their log-probabilities.
fn distribution(logits: &[f32], k: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = lse(logits);
    let top = if k == 0 {
        Vec::new()
    } else {
        gpt::infer::sampling::top_k(logits, k)
            .into_iter()
            .map(|c| (c.id, c.score - lse))
            .collect()
    };
    (lse, top)
}

fn logprob_of(logits: &[f32], id: u32, lse: f32) -> f32 {
    logits
        .get(id as usize)
        .map_or(f32::NEG_INFINITY, |l| l - lse)
}

/// Keeps the residual stream after the last block.
struct LastResidual {
    layer: usize,
    x: Vec<f32>,
}

impl Capture for LastResidual {
    fn wants_residual(&self) -> bool {
        true
    }
    fn residual(&mut self, layer: usize, x: &[f32]) {
        if layer == self.layer {
            self.x = x.to_vec();
        }
    }
}

/// An embeddings request in progress. Document embeddings: for each input, the mean over its
/// positions of the final-norm hidden states (the vectors the unembedding reads, after the
/// model's final norm), scaled to unit length so that a dot product is the cosine similarity.
/// Mean pooling because a causal model's last position alone weighs the end of the text most.
/// An input runs in chunks of [`PREFILL_CHUNK`] tokens through a KV cache, one chunk per
/// scheduler loop, so a long input delays the streams by one chunk per step, not by all of it.
struct Embedding {
    inputs: Vec<Vec<u32>>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
    /// The finished vectors (C), one per input done.
    done: Vec<Vec<f32>>,
    /// The current input's cache, its tokens run so far, and the sum of their hidden states.
    cache: KvCache,
    fed: usize,
    sum: Vec<f32>,
}

impl Embedding {
    /// Runs the next chunk; true when every input is done.
    fn advance(&mut self, model: &LoadedModel) -> Result<bool, String> {
        let t = &model.transformer;
        let Some(ids) = self.inputs.get(self.done.len()) else {
            return Ok(true);
        };
        if ids.is_empty() {
            return Err("an input of no tokens has no embedding".into());
        }
        let chunk = &ids[self.fed..ids.len().min(self.fed + PREFILL_CHUNK)];
        let mut cap = LastResidual {
            layer: t.config.n_layer - 1,
            x: Vec::new(),
        };
        t.forward(chunk, &mut self.cache, Logits::Last, Some(&mut cap))
            .map_err(|e| e.to_string())?;
        let h = t.final_norm.forward(&cap.x); // (chunk, C)
        for row in h.chunks_exact(self.sum.len()) {
            for (a, b) in self.sum.iter_mut().zip(row) {
                *a += b;
            }
        }
        self.fed += chunk.len();
        if self.fed == ids.len() {
            let mut v = std::mem::replace(&mut self.sum, vec![0.0; t.config.d_model]);
            let norm = v
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            v.iter_mut().for_each(|x| *x /= norm);
            self.done.push(v);
            self.cache.clear();
            self.fed = 0;
        }
        Ok(self.done.len() == self.inputs.len())
    }
}
