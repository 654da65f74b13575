use super::tokenize::visible;
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::model::Logits;

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
    }
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
        let text = visible(m.tokenizer.token_bytes(c.id).unwrap_or(&[]));
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
