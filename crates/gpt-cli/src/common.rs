//! What every subcommand shares: finding and loading the model, threads, logging.

use anyhow::{Context, Result};
use gpt::kernels::Precision;
use gpt::LoadedModel;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Options for choosing and loading a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A known model name (see `gpt models`), a GGUF file, or a model folder.
    #[arg(long, short = 'm', default_value = gpt::hub::DEFAULT_MODEL)]
    pub model: String,
    /// Threads for the matrix products (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// `fast` quantizes activations to two int8 planes against quantized weights (close to f32
    /// math); `q8` to one int8 plane (llama.cpp's scheme, fastest); `f32` multiplies dequantized
    /// weights with f32 activations (reference math).
    #[arg(long, default_value = "fast", value_parser = parse_precision)]
    pub precision: Precision,
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    match s {
        "fast" => Ok(Precision::Fast),
        "q8" => Ok(Precision::Q8),
        "f32" => Ok(Precision::F32),
        _ => Err(format!("unknown precision '{s}' (fast, q8, f32)")),
    }
}

/// The forward pass allocates its activations afresh (a prompt's are megabytes per layer), and
/// every training step frees and allocates again the same large buffers (the tape, the logits
/// and their gradients: gigabytes for a 135M model). glibc gives blocks that large back to the
/// kernel at once, and the next use faults every page in again, zeroed: on SmolLM2-135M that was
/// a third of a training step and 13% of a 512-token prompt (1040 -> 1200 tok/s, 2 threads).
/// Kept in the heap, they are reused; the process keeps the memory of its peak.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes glibc's allocator; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        // And the heap grows by a gigabyte of address space at a time (pages are still
        // touched only when used), not by each request.
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GPT_LOG")
        // usvg warns at every font fallback (Latin to a Hangul font, say): that is how mixed
        // scripts are meant to be drawn, not a problem; a glyph no font has is ours to report.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,usvg=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn init_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global();
    }
}

/// A progress callback drawing an indicatif bar on stderr when it is a terminal.
pub fn progress_bar() -> impl FnMut(&str, u64, u64) {
    let mut bar: Option<ProgressBar> = None;
    move |what: &str, done: u64, total: u64| {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_message(what.to_string());
            b
        });
        b.set_position(done);
        if done >= total {
            b.finish();
        }
    }
}

/// Resolves (fetching if needed) and loads the model.
pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
    init_threads(args.threads);
    let mut progress = progress_bar();
    let path = gpt::hub::resolve(&args.model, &mut progress)?;
    let mut m = LoadedModel::open(&path).with_context(|| format!("loading {}", path.display()))?;
    m.transformer.set_precision(args.precision);
    Ok(m)
}
