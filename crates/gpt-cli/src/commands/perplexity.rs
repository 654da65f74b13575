use crate::common::{load, ModelArgs};
use anyhow::{Context, Result};
use gpt::infer::perplexity::{self, Method, Nll};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  gpt perplexity valid.txt
  gpt perplexity --model model.gguf --ctx 512 --json a.txt b.txt
  gpt perplexity --stride 256 --ctx 1024 valid.txt

By default, llama-perplexity's method: the text (BOS first where the model adds one) cut into
non-overlapping windows of --ctx tokens, each starting with BOS, only the second half of each
scored. --stride S: Hugging Face's sliding window instead (every token but the first scored
once, with up to --ctx tokens of context). Several files are scored as one text, in order (one
newline at its end dropped, as llama-perplexity does). llama-perplexity multiplies with one int8
plane per activation block: compare with --precision q8 for its numbers, the default fast for ours.")]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text files (UTF-8).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Hugging Face's sliding-window method, moving this many tokens per window.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Windows evaluated at once, one per thread (default: one window at a time, its matmuls
    /// on every thread).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut text = String::new();
    for f in &a.files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let s = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not UTF-8 text (invalid byte at offset {})",
                f.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        text.push_str(&s);
    }
    // llama-perplexity drops one newline at the end of its file.
    if text.ends_with('\n') {
        text.pop();
    }
    let m = load(&a.model)?;
    let tok = &m.tokenizer;
    // As llama-perplexity tokenizes: BOS where the vocabulary adds one, control-token text as
    // text, and no EOS (which it refuses to score).
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    let tokens: Vec<u32> = bos.into_iter().chain(tok.encode(&text, false)).collect();
    let method = match a.stride {
        Some(s) => Method::Stride(s),
        None => Method::Chunks,
    };
    let windows = perplexity::windows(tokens.len(), a.ctx, method, bos)?;
    let bar = (!a.json && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(windows.len() as u64);
        b.set_style(
            ProgressStyle::with_template("windows [{bar:40}] {pos}/{len} ({eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let t0 = std::time::Instant::now();
    let nll = perplexity::perplexity(
        &m.transformer,
        &tokens,
        &windows,
        a.batch,
        |done, _, nll: &Nll| {
            if let Some(b) = &bar {
                b.set_position(done as u64);
                b.set_message(format!("ppl {:.4}", nll.perplexity()));
            }
        },
    )?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let secs = t0.elapsed().as_secs_f64();
    let evaluated: usize = windows.iter().map(|w| w.end - w.start).sum();
    if a.json {
        let method = match method {
            Method::Chunks => serde_json::json!("chunks"),
            Method::Stride(s) => serde_json::json!({"stride": s}),
        };
        println!(
            "{}",
            serde_json::json!({
                "perplexity": nll.perplexity(), "stderr": nll.perplexity_stderr(),
                "mean_nll": nll.mean(), "scored_tokens": nll.count, "text_tokens": tokens.len(),
                "windows": windows.len(), "ctx": a.ctx, "method": method,
                "seconds": secs, "tokens_per_s": evaluated as f64 / secs,
            })
        );
    } else {
        println!(
            "{} tokens, {} windows of {} ({}), {} tokens scored",
            tokens.len(),
            windows.len(),
            a.ctx,
            match method {
                Method::Chunks => "llama-perplexity's method".to_string(),
                Method::Stride(s) => format!("sliding, stride {s}"),
            },
            nll.count
        );
        println!(
            "perplexity {:.4} +/- {:.5} (mean NLL {:.5}) in {secs:.1} s, {:.0} tokens/s",
            nll.perplexity(),
            nll.perplexity_stderr(),
            nll.mean(),
            evaluated as f64 / secs
        );
    }
    Ok(())
}
