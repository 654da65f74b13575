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

/// Memory bandwidth in bytes/s: the pool's threads copying 256 MiB (past this machine's caches,
/// L3 included), counting bytes read + bytes written, best of 3: the ceiling generation runs
/// against.
fn copy_bandwidth() -> f64 {
    use rayon::prelude::*;
    const LEN: usize = 64 << 20; // f32s: 256 MiB each way
    const CHUNK: usize = 1 << 20;
    let src = vec![1f32; LEN];
    let mut dst = vec![0f32; LEN];
    (0..3)
        .map(|_| {
            let t0 = Instant::now();
            dst.par_chunks_mut(CHUNK)
                .zip(src.par_chunks(CHUNK))
                .for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&dst);
            (2 * LEN * 4) as f64 / t0.elapsed().as_secs_f64()
        })
        .fold(0f64, f64::max)
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
            "weights: {:.1} MiB in the file's matrices, {:.1} MiB repacked for the kernels",
            t.weight_bytes_per_token() as f64 / (1 << 20) as f64,
            t.packed_weight_bytes() as f64 / (1 << 20) as f64
        );
        println!(
            "{:>7}  {:>12}  {:>12}  {:>10}  {:>9}  {:>10}",
            "threads", "pp tok/s", "tg tok/s", "peak MiB", "copy GB/s", "tg share"
        );
    }
    let weight_bytes = t.weight_bytes_per_token();
    let read_bytes = t.bytes_read_per_token();
    let packed_bytes = t.packed_weight_bytes();
    let mut rows = Vec::new();
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
        rows.push((threads, pool, pp, tg, peak_rss().unwrap_or(0)));
    }
    // After every peak RSS is read: the copy's buffers (512 MiB, past the caches) would count.
    for (threads, pool, pp, tg, rss) in rows {
        let bandwidth = pool.install(copy_bandwidth);
        // Weights read per second while generating, as a share of what the copy reached.
        let share = tg * read_bytes as f64 / bandwidth;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"threads": threads, "pp_tokens_per_s": pp, "tg_tokens_per_s": tg, "peak_rss_bytes": rss,
                    "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "repeat": a.repeat,
                    "weight_bytes_per_token": weight_bytes, "bytes_read_per_token": read_bytes,
                    "packed_weight_bytes": packed_bytes, "copy_bandwidth_bytes_per_s": bandwidth,
                    "tg_bandwidth_share": share})
            );
        } else {
            println!(
                "{threads:>7}  {pp:>12.1}  {tg:>12.1}  {:>10.1}  {:>9.1}  {:>9.0}%",
                rss as f64 / (1 << 20) as f64,
                bandwidth / 1e9,
                100.0 * share
            );
        }
    }
    Ok(())
}
