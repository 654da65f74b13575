//! `gpt tokenizer`: train a byte-level BPE tokenizer, and measure encoding speed.

use crate::commands::tokenize::load_tokenizer;
use anyhow::{bail, Context, Result};
use gpt::tokenizer::io::{write_gpt2_files, write_tokenizer_json};
use gpt::tokenizer::{Pretokenizer, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Learn a byte-level BPE vocabulary (GPT-2 style) from text files.
    Train(TrainArgs),
    /// Measure single-thread encoding speed (MB/s) of a tokenizer on a file.
    Bench(BenchArgs),
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Writes DIR/tokenizer.json (Hugging Face `tokenizers` loads it) and, for the gpt2 split,
DIR/encoder.json + DIR/vocab.bpe (GPT-2's original files). Ids 0..255 are the byte tokens in
GPT-2's order, then the merges in learned order, then the special tokens. Training is
deterministic: ties between equally frequent pairs go to the smallest (left id, right id).
The files must be UTF-8.

Examples:
  gpt tokenizer train --vocab-size 1024 --out my-tok input.txt
  gpt tokenizer train --vocab-size 8000 --out my-tok --special '<|endoftext|>' --special '<|pad|>' a.txt b.txt
  gpt tokenize \"To be, or not to be\" --tokenizer my-tok")]
pub struct TrainArgs {
    /// Final vocabulary size: 256 byte tokens + merges + special tokens.
    #[arg(long)]
    pub vocab_size: usize,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Split pattern: gpt2, smollm (digits one by one) or llama3.
    #[arg(long, default_value = "gpt2", value_parser = parse_pre)]
    pub pre: Pretokenizer,
    /// A special token (repeatable), appended after the merges. Default: <|endoftext|>.
    #[arg(long = "special", value_name = "TOKEN")]
    pub special: Vec<String>,
    /// Never merge a pair seen fewer times than this.
    #[arg(long, default_value_t = 1)]
    pub min_frequency: u64,
    /// Training text files (UTF-8), read as one corpus.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn parse_pre(s: &str) -> Result<Pretokenizer, String> {
    Pretokenizer::known(s).ok_or_else(|| format!("unknown split '{s}' (gpt2, smollm, llama3)"))
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Encodes the whole file in one call on one thread, REPEAT times, and reports the median speed
(loading the tokenizer and reading the file are not timed).

Examples:
  gpt tokenizer bench --tokenizer path/to/gpt2-folder input.txt
  gpt tokenizer bench --tokenizer my-tok input.txt --repeat 5 --json")]
pub struct BenchArgs {
    /// A folder with tokenizer.json or encoder.json + vocab.bpe, or a GGUF file.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// The text to encode (UTF-8).
    pub file: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print {"bytes":..,"tokens":..,"mb_per_s":..,"seconds":[..]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Train(a) => train(a),
        Command::Bench(a) => bench(a),
    }
}

/// Draws one indicatif bar per stage on stderr, only when it is a terminal.
fn stage_bars() -> impl FnMut(&str, u64, u64) {
    let mut current: Option<(String, ProgressBar)> = None;
    let tty = std::io::stderr().is_terminal();
    move |stage: &str, done: u64, total: u64| {
        if !tty {
            return;
        }
        if current.as_ref().map(|(s, _)| s.as_str()) != Some(stage) {
            if let Some((_, b)) = current.take() {
                b.finish();
            }
            let b = ProgressBar::new(total);
            let template = if stage == "reading" {
                "{msg:>8} [{bar:40}] {bytes}/{total_bytes} ({eta})"
            } else {
                "{msg:>8} [{bar:40}] {pos}/{len} ({eta})"
            };
            b.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_message(stage.to_string());
            current = Some((stage.to_string(), b));
        }
        if let Some((_, b)) = &current {
            b.set_length(total);
            b.set_position(done);
            if done >= total {
                b.finish();
            }
        }
    }
}

fn train(a: TrainArgs) -> Result<()> {
    let mut config = TrainConfig::gpt2(a.vocab_size);
    config.pre = a.pre;
    config.min_frequency = a.min_frequency;
    if !a.special.is_empty() {
        config.special_tokens = a.special;
    }
    let start = Instant::now();
    let bpe = gpt::tokenizer::train(&a.files, &config, &mut stage_bars())?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let spec = bpe.spec();
    let json = a.out.join("tokenizer.json");
    write_tokenizer_json(&spec, &json)?;
    let mut written = vec![json];
    if a.pre == Pretokenizer::Gpt2 {
        write_gpt2_files(&spec, &a.out)?;
        written.push(a.out.join("encoder.json"));
        written.push(a.out.join("vocab.bpe"));
    }
    if bpe.tokens.len() < a.vocab_size {
        eprintln!(
            "note: the corpus ran out of pairs to merge: {} tokens instead of {}",
            bpe.tokens.len(),
            a.vocab_size
        );
    }
    eprintln!(
        "trained {} tokens ({} merges, {} special) in {secs:.2} s",
        bpe.tokens.len(),
        bpe.merges.len(),
        bpe.num_special
    );
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let tok = load_tokenizer(&a.tokenizer)
        .with_context(|| format!("loading the tokenizer of {}", a.tokenizer.display()))?;
    let text = read_text(&a.file)?;
    let mut seconds = Vec::with_capacity(a.repeat);
    let mut tokens = 0;
    for _ in 0..a.repeat {
        let start = Instant::now();
        let ids = tok.encode(&text, false);
        seconds.push(start.elapsed().as_secs_f64());
        tokens = std::hint::black_box(ids).len();
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let mb_per_s = text.len() as f64 / 1e6 / median;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"bytes": text.len(), "tokens": tokens, "mb_per_s": mb_per_s,
                               "seconds": seconds})
        );
    } else {
        println!(
            "{}: {} bytes -> {tokens} tokens, {mb_per_s:.1} MB/s (median of {})",
            a.file.display(),
            text.len(),
            a.repeat
        );
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8", path.display()))
}
