use anyhow::Result;
use gpt::train::trainer::{self, TrainConfig, TrainObserver};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt train configs/shakespeare-char.toml\n  gpt train configs/shakespeare-char.toml --resume\n  gpt generate \"ROMEO:\" --model out/shakespeare-char/latest\n  gpt train configs/finetune-smollm2-shakespeare.toml   (from the default model)\n  mpirun -np 2 gpt train CONFIG   (built with --features mpi)\n\nThe config names the model size, the data (text files and a tokenizer: \"char\", or a folder\nwith tokenizer.json or encoder.json + vocab.bpe), and the loop (batch, steps, learning rate,\nevaluation, samples, checkpoints). Paths in it are relative to its own folder. Checkpoints are\nHugging Face folders of the model's architecture under OUT/checkpoints; OUT/latest links to the newest; OUT/loss.svg\nis the loss curve."
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

/// What the other ranks of a data-parallel run report: nothing (rank 0 speaks for the run).
struct Silent;

impl TrainObserver for Silent {}

/// The first of these environment variables that holds a number.
fn env_count(vars: &[&str]) -> Option<usize> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The threads of each rank when --threads does not say: a rank bound to some cores (OpenMPI
/// binds each of 2 ranks to a core by default) uses them all; unbound ranks share the machine.
fn threads_per_rank(local_ranks: usize) -> usize {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: sysconf only reads a system value.
    let online =
        usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(usable);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let online = usable;
    if usable < online {
        usable
    } else {
        (usable / local_ranks.max(1)).max(1)
    }
}

pub fn run(a: Args) -> Result<()> {
    use gpt::train::distributed::{Collective, SingleProcess};
    let world = env_count(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]).filter(|&n| n > 1);
    if cfg!(not(feature = "mpi")) && world.is_some() {
        anyhow::bail!(
            "started by an MPI launcher, but this gpt was built without MPI: build it with `cargo build --release -p gpt-cli --features mpi`"
        );
    }
    #[cfg(feature = "mpi")]
    let mpi = gpt::train::distributed::Mpi::join();
    #[cfg(feature = "mpi")]
    let comm: &dyn Collective = match &mpi {
        Some(m) => m,
        None => &SingleProcess,
    };
    #[cfg(not(feature = "mpi"))]
    let comm: &dyn Collective = &SingleProcess;
    let local = env_count(&["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]);
    crate::common::init_threads(
        a.threads
            .or(world.map(|_| threads_per_rank(local.unwrap_or(1)))),
    );
    let leader = comm.rank() == 0;
    let mut p = Progress {
        bar: None,
        tty: std::io::stderr().is_terminal(),
    };
    let start = match (a.resume, a.force) {
        (true, _) => trainer::Start::Resume,
        (false, true) => trainer::Start::Force,
        (false, false) => trainer::Start::New,
    };
    if leader && comm.size() > 1 {
        p.say(&format!(
            "{} ranks, {} threads each",
            comm.size(),
            rayon::current_num_threads()
        ));
    }
    let obs: &mut dyn TrainObserver = if leader { &mut p } else { &mut Silent };
    // Any failure of one rank, even a panic, ends the whole launch: the other ranks would wait
    // for it in a collective forever.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let config = TrainConfig::from_file_init(&a.config, a.init.as_deref())?;
        trainer::run_on(&config, start, obs, comm)
    }));
    let state = match outcome {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if comm.size() > 1 => comm.abort(&format!("error: {e}")),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) if comm.size() > 1 => comm.abort("panicked (see above)"),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if let Some(b) = &p.bar {
        b.finish();
    }
    if leader {
        let last = state.train_losses.last().map_or(f32::NAN, |l| l.1);
        let val = state.val_losses.last().map_or(f32::NAN, |l| l.1);
        println!(
            "step {}: train loss {last:.4}, validation loss {val:.4}",
            state.step
        );
    }
    Ok(())
}
