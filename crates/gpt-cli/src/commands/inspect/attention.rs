//! `gpt inspect attention`: one head's attention pattern (or every head's) as a table, JSON or
//! a heatmap.

use super::{encode, labels, out_kind, write_out};
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::inspect::attention_patterns::{check_index, LayerAttention};
use std::path::PathBuf;

pub const EXAMPLES: &str = "Examples:
  gpt inspect attention \"The fluffy blue creature roamed the verdant forest\" --layer 3 --head 2
  gpt inspect attention \"The cat sat on the mat\" --layer 0 --head 0 --json
  gpt inspect attention \"The cat sat on the mat\" --layer 5 --head 1 --out attention.png
  gpt inspect attention \"The cat sat on the mat\" --layer 5 --all-heads --out heads.svg

JSON: {\"layer\":L,\"head\":H,\"tokens\":[..],\"pattern\":[[..]]}, row = query position (the
softmax probabilities after the causal mask, recorded in the forward pass); with --all-heads, a
list of those objects, one per head.";

#[derive(clap::Args, Debug)]
pub struct Args {
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The layer (0-based).
    #[arg(long, short = 'l', default_value_t = 0)]
    pub layer: usize,
    /// The query head (0-based).
    #[arg(long, default_value_t = 0)]
    pub head: usize,
    /// Every head of the layer (a grid of heatmaps with --out FILE.png|.svg).
    #[arg(long)]
    pub all_heads: bool,
    /// Print the JSON contract instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a picture (.png, .svg) or the JSON (.json) to this file.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(p) = &a.out {
        out_kind(p)?;
    }
    let m = load(&a.model)?;
    let ids = encode(&m, &a.prompt)?;
    let att = LayerAttention::record(&m.transformer, &ids, a.layer)?;
    let heads: Vec<usize> = if a.all_heads {
        (0..att.n_head).collect()
    } else {
        check_index("head", a.head, att.n_head)?;
        vec![a.head]
    };
    let json = || -> Result<serde_json::Value> {
        let mut v = gpt::inspect::report::attention(&m, &ids, a.layer, &heads)?;
        Ok(if a.all_heads { v } else { v[0].take() })
    };
    let names = labels(&m, &ids);
    if let Some(path) = &a.out {
        write_out(
            path,
            || {
                Ok(if a.all_heads {
                    att.grid_figure(&names)?
                } else {
                    att.head_figure(a.head, &names)?
                })
            },
            json,
        )?;
        if !a.json {
            return Ok(());
        }
    }
    if a.json {
        println!("{}", json()?);
        return Ok(());
    }
    for &h in &heads {
        print_table(&att, h, &names)?;
    }
    Ok(())
}

/// Rows = query tokens, columns = key positions, values in percent.
fn print_table(att: &LayerAttention, head: usize, names: &[String]) -> Result<()> {
    let p = att.head(head)?;
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(1)
        .min(16);
    println!(
        "layer {} head {}: row = query (the token looking), column = key position; % of the row's attention",
        att.layer, head
    );
    print!("{:>3} {:<w$}", "", "");
    for j in 0..p.len() {
        print!(" {j:>4}");
    }
    println!();
    for (i, row) in p.iter().enumerate() {
        let name: String = names[i].chars().take(w).collect();
        print!("{i:>3} {name:<w$}");
        for (j, v) in row.iter().enumerate() {
            if j > i {
                print!(" {:>4}", "·");
            } else {
                print!(" {:>4.0}", v * 100.0);
            }
        }
        println!();
    }
    println!();
    Ok(())
}
