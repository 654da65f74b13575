use anyhow::{Context, Result};
use gpt::quantize::Scheme;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  gpt quantize model-f16.gguf model-q8_0.gguf Q8_0
  gpt quantize model-f32.gguf model-q4_0.gguf q4_0

Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, with ggml's quantizers (the bytes llama-quantize
writes without an importance matrix), as `llama-quantize --pure`: every weight matrix gets the
type; norms, biases and other vectors stay as they are. Q4_K_M and Q5_K_M: llama.cpp's mixes
(Q6_K for the output matrix and for some value and ffn_down matrices, as llama-quantize picks). Metadata and the tokenizer are carried
over. The output is written to a temporary file beside OUT and renamed when complete.")]
pub struct Args {
    /// A GGUF file of F32, F16 or BF16 weights, a Hugging Face folder (exported as F32 first),
    /// or a known model name.
    pub input: String,
    /// The GGUF file to write.
    pub output: std::path::PathBuf,
    /// The weight type to write, or a mix (Q4_K_M, Q5_K_M).
    #[arg(value_parser = parse_type)]
    pub scheme: Scheme,
    /// Quantize tensors that are already quantized (dequantized first; loses more).
    #[arg(long)]
    pub allow_requantize: bool,
}

fn parse_type(s: &str) -> Result<Scheme, String> {
    Scheme::parse(s).ok_or_else(|| format!("unknown type '{s}' ({})", gpt::quantize::TARGET_NAMES))
}

pub fn run(a: Args) -> Result<()> {
    let mut fetch = crate::common::progress_bar();
    let input = gpt::hub::resolve(&a.input, &mut fetch)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("tensors [{bar:40}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let t0 = std::time::Instant::now();
    gpt::quantize::quantize_file(
        &input,
        &a.output,
        a.scheme,
        a.allow_requantize,
        |done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        },
    )
    .with_context(|| format!("quantizing {}", input.display()))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let size =
        |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;
    println!(
        "{} ({:.1} MiB) -> {} ({:.1} MiB, {}) in {:.1} s",
        input.display(),
        size(&input),
        a.output.display(),
        size(&a.output),
        a.scheme,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
