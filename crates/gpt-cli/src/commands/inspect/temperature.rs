//! `gpt inspect temperature`: the top next-token probabilities at several temperatures.

use super::{encode, labels, out_kind, write_out};
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::inspect::temperature::TemperatureTable;
use gpt::model::Logits;
use std::path::PathBuf;

pub const EXAMPLES: &str = "Examples:
  gpt inspect temperature \"The cat sat on the\"
  gpt inspect temperature \"Once upon a time\" --temperatures 0,0.5,1,2,5 --top 5
  gpt inspect temperature \"The cat sat on the\" --out temperature.png
  gpt inspect temperature \"The cat sat on the\" --json

T = 0 is greedy decoding: the most likely token takes all the mass. JSON:
{\"ids\":[..],\"temperatures\":[..],\"tokens\":[{\"id\",\"token\",\"logit\",\"probs\":[one per T]}],\"rest\":[one per T]}";

#[derive(clap::Args, Debug)]
pub struct Args {
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Temperatures, comma-separated.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, default_values_t = vec![0.0, 0.5, 1.0, 2.0])]
    pub temperatures: Vec<f32>,
    /// How many of the most likely tokens to show.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    #[arg(long)]
    pub json: bool,
    /// Write a grouped bar chart (.png, .svg) or the JSON (.json) to this file.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(p) = &a.out {
        out_kind(p)?;
    }
    let m = load(&a.model)?;
    let ids = encode(&m, &a.prompt)?;
    let mut cache = m.transformer.new_cache();
    let logits = m
        .transformer
        .forward(&ids, &mut cache, Logits::Last, None)?;
    let t = TemperatureTable::new(&logits, &a.temperatures, a.top)?;
    let names = labels(&m, &t.ids);
    let json = || {
        Ok(gpt::inspect::report::temperature(
            &m,
            &ids,
            &a.temperatures,
            a.top,
        )?)
    };
    if let Some(path) = &a.out {
        let title = format!("Next token after \"{}\" at each temperature", a.prompt);
        write_out(path, || Ok(t.figure(&title, &names)), json)?;
        if !a.json {
            return Ok(());
        }
    }
    if a.json {
        println!("{}", json()?);
        return Ok(());
    }
    println!(
        "next-token probabilities after {} prompt tokens:",
        ids.len()
    );
    print!("{:<18} {:>9}", "token", "logit");
    for temp in &t.temperatures {
        print!(" {:>8}", format!("T={temp}"));
    }
    println!();
    for (i, name) in names.iter().enumerate() {
        print!("{:<18} {:>9.3}", name, t.logits[i]);
        for p in &t.probs {
            print!(" {:>7.2}%", p[i] * 100.0);
        }
        println!();
    }
    print!("{:<18} {:>9}", "(all others)", "");
    for s in 0..t.temperatures.len() {
        print!(" {:>7.2}%", t.rest(s) * 100.0);
    }
    println!();
    Ok(())
}
