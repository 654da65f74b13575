use anyhow::Result;
use gpt::train::trainer::{self, TrainConfig, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt train configs/shakespeare-char.toml\n  gpt train configs/shakespeare-char.toml --resume\n  gpt generate \"ROMEO:\" --model out/shakespeare-char/latest\n\nThe config names the model size, the data (text files and a tokenizer: \"char\", or a folder\nwith tokenizer.json or encoder.json + vocab.bpe), and the loop (batch, steps, learning rate,\nevaluation, samples, checkpoints). Paths in it are relative to its own folder. Checkpoints are\nHugging Face GPT-2 folders under OUT/checkpoints; OUT/latest links to the newest; OUT/loss.svg\nis the loss curve."
)]
pub struct Args {
    pub config: PathBuf,
    /// Continue from the newest checkpoint (exactly: the same losses as an uninterrupted run).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start a new run in an output folder that holds an earlier run's checkpoints (they are
    /// kept; only this run's own are pruned).
    #[arg(long)]
    pub force: bool,
    /// Start from this model's weights and tokenizer (a GGUF file of any type, a Hugging Face
    /// folder, or a known model name) to fine-tune it; the config then gives only block_size,
    /// the data files and the loop. Checkpoints are folders of the model's architecture.
    #[arg(long, value_name = "MODEL")]
    pub init: Option<String>,
    /// Threads (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
}

struct Progress {
    bar: Option<ProgressBar>,
    tty: bool,
}

impl Progress {
    fn say(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }
}

impl TrainObserver for Progress {
    fn start(&mut self, from: usize, max: usize) {
        if self.tty {
            let b = ProgressBar::new(max as u64);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} (ETA {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(from as u64);
            self.bar = Some(b);
        }
    }
    fn step(&mut self, step: usize, loss: f32, lr: f32, tps: f64) {
        match &self.bar {
            Some(b) => {
                b.set_position(step as u64);
                b.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s"));
            }
            None if step.is_multiple_of(10) || step == 1 => {
                eprintln!("step {step}: loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s")
            }
            None => {}
        }
    }
    fn eval(&mut self, step: usize, v: f32) {
        self.say(&format!("step {step}: validation loss {v:.4}"));
    }
    fn sample(&mut self, step: usize, text: &str) {
        self.say(&format!("--- sample at step {step} ---\n{text}\n---"));
    }
    fn checkpoint(&mut self, step: usize, dir: &Path) {
        self.say(&format!("step {step}: checkpoint {}", dir.display()));
    }
    fn message(&mut self, text: &str) {
        self.say(text);
    }
    fn progress(&mut self, _what: &str, _done: u64, _total: u64) {}
}

pub fn run(a: Args) -> Result<()> {
    crate::common::init_threads(a.threads);
    let config = TrainConfig::from_file_init(&a.config, a.init.as_deref())?;
    let mut p = Progress {
        bar: None,
        tty: std::io::stderr().is_terminal(),
    };
    let start = match (a.resume, a.force) {
        (true, _) => trainer::Start::Resume,
        (false, true) => trainer::Start::Force,
        (false, false) => trainer::Start::New,
    };
    let state = trainer::run(&config, start, &mut p)?;
    if let Some(b) = &p.bar {
        b.finish();
    }
    let last = state.train_losses.last().map_or(f32::NAN, |l| l.1);
    let val = state.val_losses.last().map_or(f32::NAN, |l| l.1);
    println!(
        "step {}: train loss {last:.4}, validation loss {val:.4}",
        state.step
    );
    Ok(())
}
