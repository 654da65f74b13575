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
use gpt::inspect::report;
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
    /// How a prompt is cut into tokens: ids, vocabulary strings and the text of each.
    #[command(
        after_help = "Examples:\n  gpt inspect tokens \"Tokens are not words.\"\n  gpt inspect tokens \"고양이\" --json\n\nJSON: {\"ids\":[..],\"tokens\":[..],\"pieces\":[..]} (BOS first if the model adds one)."
    )]
    Tokens(TokensArgs),
}

#[derive(clap::Args, Debug)]
pub struct TokensArgs {
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub json: bool,
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
        What::Tokens(a) => tokens(a),
    }
}

fn tokens(a: TokensArgs) -> Result<()> {
    let m = load(&a.model)?;
    let ids = encode(&m, &a.prompt)?;
    if a.json {
        println!("{}", report::tokens(&m, &ids));
        return Ok(());
    }
    let words = a.prompt.split_whitespace().count();
    println!("{} tokens for {words} words:", ids.len());
    println!("{:>4}  {:>8}  {:<20} text", "pos", "id", "token");
    for (i, (&id, label)) in ids.iter().zip(labels(&m, &ids)).enumerate() {
        println!(
            "{i:>4}  {id:>8}  {:<20} {label}",
            m.tokenizer.token_str(id).unwrap_or("")
        );
    }
    Ok(())
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
    Ok(report::encode(m, prompt)?)
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
    let ids = encode(&m, &a.prompt)?;
    if a.json {
        println!("{}", report::logits(&m, &ids, a.top)?);
        return Ok(());
    }
    let logits = report::last_logits(&m, &ids)?;
    let lse = report::logsumexp(&logits);
    let top = gpt::infer::sampling::top_k(&logits, a.top);
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
