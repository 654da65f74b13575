//! `gpt inspect embed`: the geometry of the token embedding matrix.

use super::{labels, out_kind, write_out};
use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::inspect::charts::{signed_bars, SignedBars};
use gpt::inspect::probes::{self, SpaceRule, WordVector};
use gpt::inspect::report;
use gpt::LoadedModel;
use std::path::PathBuf;

pub const EXAMPLES: &str = "Examples:
  gpt inspect embed similarity cat dog
  gpt inspect embed vectors \"The cat sat\" --json
  gpt inspect embed neighbours king --top 10
  gpt inspect embed analogy \"king - man + woman\"
  gpt inspect embed project --direction \"woman - man\" king queen man woman uncle aunt
  gpt inspect embed project --direction \"cats - cat\" student students dog dogs --out plural.png

Words: each word is encoded as \" \" + word (the form a word has inside a sentence, e.g. the
token \"Ġking\"); --as-is encodes it exactly as written. #ID names a token by its id. A word of
several tokens is the mean of their vectors and is flagged with '*'. In expressions, + and -
stand alone between spaces.";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: Probe,
}

/// Options every probe shares.
#[derive(clap::Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Encode words exactly as written (no leading space).
    #[arg(long)]
    pub as_is: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum Probe {
    /// Dot product and cosine similarity of two words or tokens.
    Similarity {
        a: String,
        b: String,
        #[command(flatten)]
        common: Common,
    },
    /// The tokens whose embeddings are closest (by cosine) to a word's.
    #[command(alias = "neighbors")]
    Neighbours {
        word: String,
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Vector arithmetic, e.g. "king - man + woman": the nearest tokens, inputs excluded.
    Analogy {
        expression: String,
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Each token of a prompt and its row of the embedding matrix (C numbers).
    Vectors {
        prompt: String,
        #[command(flatten)]
        common: Common,
    },
    /// Each word's coordinate along a direction given as a difference, e.g. "woman - man".
    Project {
        /// The direction, e.g. "woman - man" or "cats - cat".
        #[arg(long, short = 'd')]
        direction: String,
        /// The words to place along it.
        #[arg(required = true)]
        words: Vec<String>,
        /// Write a picture (.png, .svg) or the JSON (.json) to this file.
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn rule(c: &Common) -> SpaceRule {
    if c.as_is {
        SpaceRule::AsIs
    } else {
        SpaceRule::Leading
    }
}

/// "king" -> "king [␣king]", "unbelievable*" -> "unbelievable* [␣un|bel|ievable]"
fn describe(m: &LoadedModel, w: &WordVector) -> String {
    let star = if w.multi_token() { "*" } else { "" };
    format!("{}{star} [{}]", w.word, labels(m, &w.ids).join("|"))
}

fn neighbours_json(m: &LoadedModel, n: &[probes::Neighbour]) -> Vec<serde_json::Value> {
    n.iter()
        .map(|n| {
            serde_json::json!({
                "id": n.id,
                "token": m.tokenizer.token_str(n.id).unwrap_or(""),
                "cosine": n.cosine,
            })
        })
        .collect()
}

fn print_neighbours(m: &LoadedModel, n: &[probes::Neighbour]) {
    println!("{:>4}  {:>8}  {:>7}  token", "rank", "id", "cosine");
    for (r, n) in n.iter().enumerate() {
        println!(
            "{:>4}  {:>8}  {:>7.4}  {}",
            r + 1,
            n.id,
            n.cosine,
            labels(m, &[n.id]).remove(0)
        );
    }
}

fn multi_token_note(words: &[&WordVector]) {
    if words.iter().any(|w| w.multi_token()) {
        println!("* several tokens: the word's vector is the mean of its tokens' vectors");
    }
}

pub fn run(a: Args) -> Result<()> {
    match a.what {
        Probe::Vectors { prompt, common } => {
            let m = load(&common.model)?;
            let ids = super::encode(&m, &prompt)?;
            let v = report::embeddings(&m, &ids)?;
            if common.json {
                println!("{v}");
                return Ok(());
            }
            let c = m.transformer.config.d_model;
            println!(
                "{} tokens, each a row of {c} numbers (the first 8 shown):",
                ids.len()
            );
            let rows = v["vectors"].as_array().map_or(&[][..], Vec::as_slice);
            for ((&id, label), row) in ids.iter().zip(labels(&m, &ids)).zip(rows) {
                let first: Vec<String> = row
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .take(8)
                    .map(|x| format!("{:>7.3}", x.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                println!("{id:>8} {label:<16} {} ...", first.join(" "));
            }
        }
        Probe::Similarity { a, b, common } => {
            let m = load(&common.model)?;
            let table = &m.transformer.token_embedding.table;
            let (wa, wb) = (
                probes::word_vector(table, &m.tokenizer, &a, rule(&common))?,
                probes::word_vector(table, &m.tokenizer, &b, rule(&common))?,
            );
            let (dot, cos) = (
                probes::dot(&wa.vector, &wb.vector),
                probes::cosine(&wa.vector, &wb.vector),
            );
            if common.json {
                println!("{}", report::similarity(&m, &a, &b, rule(&common))?);
                return Ok(());
            }
            println!(
                "a: {}  |a| = {:.4}",
                describe(&m, &wa),
                probes::norm(&wa.vector)
            );
            println!(
                "b: {}  |b| = {:.4}",
                describe(&m, &wb),
                probes::norm(&wb.vector)
            );
            println!("dot product a·b = {dot:.4}");
            println!(
                "cosine similarity = {cos:.4}  (1: same direction, 0: perpendicular, -1: opposite)"
            );
            multi_token_note(&[&wa, &wb]);
        }
        Probe::Neighbours { word, top, common } => {
            let m = load(&common.model)?;
            let table = &m.transformer.token_embedding.table;
            let w = probes::word_vector(table, &m.tokenizer, &word, rule(&common))?;
            // The word's own token is its own nearest neighbour (cosine 1): skip it.
            let exclude = if w.multi_token() {
                vec![]
            } else {
                w.ids.clone()
            };
            let n = probes::nearest(table, &w.vector, top, &exclude)?;
            if common.json {
                println!(
                    "{}",
                    serde_json::json!({"word": report::word(&m, &w), "neighbours": neighbours_json(&m, &n)})
                );
                return Ok(());
            }
            println!("nearest tokens to {} by cosine:", describe(&m, &w));
            print_neighbours(&m, &n);
            multi_token_note(&[&w]);
        }
        Probe::Analogy {
            expression,
            top,
            common,
        } => {
            let m = load(&common.model)?;
            let table = &m.transformer.token_embedding.table;
            let e = probes::expression_vector(table, &m.tokenizer, &expression, rule(&common))?;
            let n = probes::nearest(table, &e.vector, top, &e.ids())?;
            let terms = e.terms;
            if common.json {
                let terms: Vec<_> = terms
                    .iter()
                    .map(|(s, w)| {
                        let mut j = report::word(&m, w);
                        j["sign"] = serde_json::json!(s);
                        j
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"expression": expression, "terms": terms, "neighbours": neighbours_json(&m, &n)})
                );
                return Ok(());
            }
            let desc: Vec<String> = terms
                .iter()
                .map(|(s, w)| format!("{} {}", if *s < 0.0 { "-" } else { "+" }, describe(&m, w)))
                .collect();
            println!("{}", desc.join(" "));
            println!("nearest tokens by cosine (the input tokens excluded):");
            print_neighbours(&m, &n);
            multi_token_note(&terms.iter().map(|t| &t.1).collect::<Vec<_>>());
        }
        Probe::Project {
            direction,
            words,
            out,
            common,
        } => {
            if let Some(p) = &out {
                out_kind(p)?;
            }
            let m = load(&common.model)?;
            let table = &m.transformer.token_embedding.table;
            let e = probes::expression_vector(table, &m.tokenizer, &direction, rule(&common))?;
            let (d, terms) = (e.vector, e.terms);
            let ws = words
                .iter()
                .map(|w| probes::word_vector(table, &m.tokenizer, w, rule(&common)))
                .collect::<gpt::Result<Vec<_>>>()?;
            let proj: Vec<f32> = ws
                .iter()
                .map(|w| probes::projection(&w.vector, &d))
                .collect();
            let cos: Vec<f32> = ws.iter().map(|w| probes::cosine(&w.vector, &d)).collect();
            let json = || Ok(report::projection(&m, &direction, &words, rule(&common))?);
            if let Some(path) = &out {
                let names: Vec<String> = ws
                    .iter()
                    .map(|w| format!("{}{}", w.word, if w.multi_token() { "*" } else { "" }))
                    .collect();
                let title = format!("Projection onto the direction {direction}");
                let caption = "bar: the word's coordinate along the direction (v·d / |d|); * = mean of several tokens";
                write_out(
                    path,
                    || {
                        Ok(signed_bars(&SignedBars {
                            title: &title,
                            labels: &names,
                            values: &proj,
                            caption,
                        }))
                    },
                    json,
                )?;
                if !common.json {
                    return Ok(());
                }
            }
            if common.json {
                println!("{}", json()?);
                return Ok(());
            }
            println!("direction d = {direction} (|d| = {:.4})", probes::norm(&d));
            let descs: Vec<String> = ws.iter().map(|w| describe(&m, w)).collect();
            let width = descs.iter().map(|d| d.chars().count()).max().unwrap_or(4);
            println!("{:<width$} {:>11} {:>8}", "word", "v·d/|d|", "cosine");
            let scale = proj.iter().map(|p| p.abs()).fold(0.0, f32::max).max(1e-12);
            for i in 0..ws.len() {
                let bar = "#".repeat((proj[i].abs() / scale * 20.0).round() as usize);
                let bar = if proj[i] < 0.0 {
                    format!("-{bar}")
                } else {
                    format!("+{bar}")
                };
                println!(
                    "{:<width$} {:>11.4} {:>8.4}  {bar}",
                    descs[i], proj[i], cos[i]
                );
            }
            multi_token_note(
                &ws.iter()
                    .chain(terms.iter().map(|t| &t.1))
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}
