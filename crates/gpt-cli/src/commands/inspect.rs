//! `gpt inspect`: look inside the model. Each subcommand is wiring and presentation over
//! `gpt::inspect`; the logic lives in the library.

mod attention;
mod embed;
mod lens;
mod params;
mod temperature;

use crate::common::{load, ModelArgs};
use anyhow::{bail, Context, Result};
use gpt::inspect::render::{Figure, ImageFormat};
use gpt::model::Logits;
use gpt::LoadedModel;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// The next-token distribution at the last position of a prompt.
    #[command(
        after_help = "Examples:\n  gpt inspect logits \"The capital of France is\"\n  gpt inspect logits \"1, 2, 3,\" --top 5 --json"
    )]
    Logits(LogitsArgs),
    /// Attention patterns of one layer: one head, or every head with --all-heads.
    #[command(after_help = attention::EXAMPLES)]
    Attention(attention::Args),
    /// Where the parameters are: by part, per layer and in total, for a model or a preset.
    #[command(after_help = params::EXAMPLES)]
    Params(params::Args),
    /// Embedding geometry: similarity, neighbours, analogies, projections onto a direction.
    #[command(after_help = embed::EXAMPLES)]
    Embed(embed::Args),
    /// The next-token probabilities at several temperatures.
    #[command(after_help = temperature::EXAMPLES)]
    Temperature(temperature::Args),
    /// The logit lens: the top next-token prediction after every layer.
    #[command(after_help = lens::EXAMPLES)]
    Lens(lens::Args),
}

#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many of the most likely tokens to show.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Print {"ids", "top": [{"id","token","logit","prob"}], "logsumexp"}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    match a.what {
        What::Logits(a) => logits(a),
        What::Attention(a) => attention::run(a),
        What::Params(a) => params::run(a),
        What::Embed(a) => embed::run(a),
        What::Temperature(a) => temperature::run(a),
        What::Lens(a) => lens::run(a),
    }
}

/// What `--out FILE` writes, by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutKind {
    Picture,
    Json,
}

/// Checks `--out`'s extension before any work is done.
fn out_kind(path: &Path) -> Result<OutKind> {
    if ImageFormat::from_path(path).is_some() {
        return Ok(OutKind::Picture);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("json") => Ok(OutKind::Json),
        _ => bail!("{}: --out takes a .png, .svg or .json file", path.display()),
    }
}

/// Writes the picture or the JSON to `path` and says so on stderr.
fn write_out(
    path: &Path,
    figure: impl FnOnce() -> Result<Figure>,
    json: impl FnOnce() -> Result<serde_json::Value>,
) -> Result<()> {
    match out_kind(path)? {
        OutKind::Picture => figure()?
            .save(path)
            .with_context(|| format!("writing {}", path.display()))?,
        OutKind::Json => std::fs::write(path, serde_json::to_string(&json()?)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
    }
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The vocabulary strings of `ids` (as `gpt tokenize --json` prints them).
fn token_strs(m: &LoadedModel, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| m.tokenizer.token_str(i).unwrap_or("").to_string())
        .collect()
}

/// Readable labels of `ids`: their text, spaces shown as '␣'.
fn labels(m: &LoadedModel, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&i| {
            let l = gpt::inspect::charts::token_label(m.tokenizer.token_bytes(i).unwrap_or(&[]));
            // A token with no visible text (e.g. a zero-width character) is shown by its id.
            if l.chars().all(|c| c.is_whitespace() || c.is_control()) || l.is_empty() {
                format!("#{i}")
            } else {
                l
            }
        })
        .collect()
}

/// Encodes a prompt (BOS only if the model asks for it), refusing an empty one.
fn encode(m: &LoadedModel, prompt: &str) -> Result<Vec<u32>> {
    let ids = m.encode_prompt(prompt, true);
    if ids.is_empty() {
        bail!("the prompt is empty: there is nothing to look at");
    }
    Ok(ids)
}

/// 1234567 -> "1,234,567"
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn logits(a: LogitsArgs) -> Result<()> {
    let m = load(&a.model)?;
    let ids = m.encode_prompt(&a.prompt, true);
    let mut cache = m.transformer.new_cache();
    let logits = m
        .transformer
        .forward(&ids, &mut cache, Logits::Last, None)?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let top = gpt::infer::sampling::top_k(&logits, a.top);
    if a.json {
        let top: Vec<_> = top
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "token": m.tokenizer.token_str(c.id).unwrap_or(""),
                    "logit": c.score,
                    "prob": (c.score as f64 - lse).exp(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"ids": ids, "top": top, "logsumexp": lse})
        );
        return Ok(());
    }
    println!(
        "{} prompt tokens; next-token distribution at the last position:",
        ids.len()
    );
    println!(
        "{:>4}  {:>8}  {:>9}  {:>7}  token",
        "rank", "id", "logit", "prob"
    );
    for (r, c) in top.iter().enumerate() {
        let p = (c.score as f64 - lse).exp();
        let bar = "#".repeat((p * 40.0).round() as usize);
        let text = gpt::inspect::charts::token_label(m.tokenizer.token_bytes(c.id).unwrap_or(&[]));
        println!(
            "{:>4}  {:>8}  {:>9.4}  {:>6.2}%  {:<16} {bar}",
            r + 1,
            c.id,
            c.score,
            p * 100.0,
            text
        );
    }
    Ok(())
}
