//! `gpt inspect params`: the parameter breakdown of a loaded model or of a preset.

use super::thousands;
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::inspect::params_table::{preset, Accounting, ParamTable};

pub const EXAMPLES: &str = "Examples:
  gpt inspect params                      # the default model, counted from its tensors
  gpt inspect params --model path/to/model.gguf --json
  gpt inspect params --preset gpt3-175b   # the seed's table: 175,181,291,520, attention ~1/3
  gpt inspect params --preset gpt2-124m

Presets (computed from their hyperparameters): gpt3-175b, gpt2-124m, gpt2-xl, smollm2-135m.
A preset shows two accountings: weight matrices only (the seed's, value split into value-down
and value-up) and every parameter (biases, norms, position embeddings). A loaded model is
counted from its tensors; a tied unembedding is counted once, in the token embedding.";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Compute the table from a preset's hyperparameters instead of loading a model.
    #[arg(long)]
    pub preset: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.json {
        let v = match &a.preset {
            Some(name) => gpt::inspect::report::preset_params(name)?,
            None => gpt::inspect::report::params(&load(&a.model)?),
        };
        println!("{v}");
        return Ok(());
    }
    let tables: Vec<ParamTable> = match &a.preset {
        Some(name) => {
            let p = preset(name)?;
            vec![
                p.table(Accounting::WeightMatrices),
                p.table(Accounting::Full),
            ]
        }
        None => {
            let m = load(&a.model)?;
            let title = format!("{} ({})", m.source.display(), m.description);
            vec![ParamTable::from_model(&m.transformer, &title)]
        }
    };
    for t in &tables {
        print_table(t);
    }
    Ok(())
}

fn print_table(t: &ParamTable) {
    println!("{}", t.title);
    println!("counting {}; {} layers", t.accounting.name(), t.n_layer);
    println!(
        "{:<20} {:<28} {:>15} {:>19} {:>7}",
        "part", "shape", "per layer", "total", "share"
    );
    for p in &t.parts {
        let per_layer = p.per_layer.map_or("-".to_string(), thousands);
        let (total, share) = if p.tied {
            match p.total {
                0 => ("tied".to_string(), "-".to_string()),
                n => (
                    format!("{} (tied)", thousands(n)),
                    format!("{:.2}%", t.share(p) * 100.0),
                ),
            }
        } else {
            (thousands(p.total), format!("{:.2}%", t.share(p) * 100.0))
        };
        println!(
            "{:<20} {:<28} {:>15} {:>19} {:>7}",
            p.part.name(),
            p.shape,
            per_layer,
            total,
            share
        );
    }
    let per_layer: u64 = t.parts.iter().filter_map(|p| p.per_layer).sum();
    println!(
        "{:<20} {:<28} {:>15} {:>19} {:>7}",
        "total",
        "",
        thousands(per_layer),
        thousands(t.total()),
        "100%"
    );
    let attention: Vec<&str> = t
        .parts
        .iter()
        .filter(|p| p.part.is_attention())
        .map(|p| p.part.name())
        .collect();
    println!(
        "attention ({}) is {:.1}% of the total\n",
        attention.join(", "),
        t.attention_share() * 100.0
    );
}
