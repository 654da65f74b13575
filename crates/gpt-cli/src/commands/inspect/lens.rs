//! `gpt inspect lens`: the logit lens, the top next-token prediction after every layer.

use super::{encode, labels, out_kind, write_out};
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::inspect::logit_lens::LogitLens;
use std::path::PathBuf;

pub const EXAMPLES: &str = "Examples:
  gpt inspect lens \"The capital of France is\"
  gpt inspect lens \"The capital of France is\" --top 3 --json
  gpt inspect lens \"The capital of France is\" --out lens.png

After each block, the residual stream at the last position goes through the model's final norm
and unembedding: what the model would say if it stopped there. The last layer's row is the
model's real prediction. JSON: {\"ids\":[..],\"layers\":[{\"layer\":l,\"top\":[{\"id\",\"token\",\"logit\",\"prob\"}]}]}";

#[derive(clap::Args, Debug)]
pub struct Args {
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// How many tokens to show per layer.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    #[arg(long)]
    pub json: bool,
    /// Write a heatmap (.png, .svg) or the JSON (.json) to this file.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(p) = &a.out {
        out_kind(p)?;
    }
    let m = load(&a.model)?;
    let ids = encode(&m, &a.prompt)?;
    let lens = LogitLens::new(&m.transformer, &ids, a.top)?;
    let json = || Ok(gpt::inspect::report::lens(&m, &ids, a.top)?);
    if let Some(path) = &a.out {
        let names = labels(&m, &lens.tracked);
        let notes: Vec<String> = lens
            .top
            .iter()
            .map(|t| {
                let name = labels(&m, &[t[0].id]).remove(0);
                format!("{name} {:.2}", t[0].prob)
            })
            .collect();
        let title = format!("Logit lens: \"{}\"", a.prompt);
        write_out(path, || Ok(lens.figure(&title, &names, &notes)), json)?;
        if !a.json {
            return Ok(());
        }
    }
    if a.json {
        println!("{}", json()?);
        return Ok(());
    }
    println!(
        "top {} next tokens after each layer ({} prompt tokens; the last layer is the model's output):",
        a.top.max(1),
        ids.len()
    );
    for (l, top) in lens.top.iter().enumerate() {
        let cells: Vec<String> = top
            .iter()
            .map(|c| {
                format!(
                    "{:<14} {:>6.2}%",
                    labels(&m, &[c.id]).remove(0),
                    c.prob * 100.0
                )
            })
            .collect();
        println!("layer {l:>3}  {}", cells.join("  "));
    }
    Ok(())
}
