use crate::common::{load, ModelArgs};
use anyhow::Result;
use gpt::model::Logits;
use std::time::Instant;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt bench\n  gpt bench --model model.gguf --threads 2 --prompt-tokens 128 --gen-tokens 128 --repeat 3 --json\n\nWithout --threads, runs with 1 thread and with all cores. Prompt processing (pp) runs P tokens\nin one forward pass; generation (tg) runs G tokens one at a time with the KV cache."
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, short = 'p', default_value_t = 128)]
    pub prompt_tokens: usize,
    #[arg(long, short = 'g', default_value_t = 128)]
    pub gen_tokens: usize,
    /// Repetitions; the median is reported.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub repeat: usize,
    /// One JSON object per thread count.
    #[arg(long)]
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: Args) -> Result<()> {
    let mut model_args = a.model.clone();
    let thread_counts: Vec<usize> = match model_args.threads.take() {
        Some(n) => vec![n],
        None => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            if n > 1 {
                vec![1, n]
            } else {
                vec![1]
            }
        }
    };
    let m = load(&model_args)?;
    let t = &m.transformer;
    let ctx = t.config.context_length;
    anyhow::ensure!(
        a.prompt_tokens + a.gen_tokens <= ctx,
        "prompt + gen tokens exceed the context window ({ctx})"
    );
    anyhow::ensure!(
        a.prompt_tokens > 0 && a.repeat > 0,
        "--prompt-tokens and --repeat must be positive"
    );
    // Token ids cycling through the vocabulary: speed does not depend on which tokens they are.
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|i| (1000 + 7 * i as u32) % t.config.vocab_size as u32)
        .collect();
    if !a.json {
        println!("{}", m.description);
        println!(
            "{:>7}  {:>12}  {:>12}  {:>10}",
            "threads", "pp tok/s", "tg tok/s", "peak MiB"
        );
    }
    for &threads in &thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let (pp, tg) = pool.install(|| -> Result<(f64, f64)> {
            let mut pp = Vec::new();
            let mut tg = Vec::new();
            for _ in 0..a.repeat {
                let mut cache = t.new_cache();
                let t0 = Instant::now();
                t.forward(&prompt, &mut cache, Logits::Last, None)?;
                pp.push(a.prompt_tokens as f64 / t0.elapsed().as_secs_f64());
                let mut cache = t.new_cache();
                let t0 = Instant::now();
                let mut id = prompt[0];
                for i in 0..a.gen_tokens {
                    let logits = t.forward(&[id], &mut cache, Logits::Last, None)?;
                    id = gpt::infer::sampling::argmax(&logits).max(i as u32 % 2);
                }
                if a.gen_tokens > 0 {
                    tg.push(a.gen_tokens as f64 / t0.elapsed().as_secs_f64());
                }
            }
            Ok((median(pp), if tg.is_empty() { 0.0 } else { median(tg) }))
        })?;
        let rss = peak_rss().unwrap_or(0);
        if a.json {
            println!(
                "{}",
                serde_json::json!({"threads": threads, "pp_tokens_per_s": pp, "tg_tokens_per_s": tg, "peak_rss_bytes": rss,
                    "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "repeat": a.repeat})
            );
        } else {
            println!(
                "{threads:>7}  {pp:>12.1}  {tg:>12.1}  {:>10.1}",
                rss as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(())
}
