use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  gpt export runs/shakespeare/latest model.gguf
  gpt export my-llama-folder model-q8_0.gguf --type Q8_0

Writes what llama.cpp's convert_hf_to_gguf.py writes from the same folder: its tensor names, Llama's
Q/K rows permuted for llama.cpp's RoPE, GPT-2's Conv1D weights transposed, every metadata key llama.cpp
reads, and the byte-level BPE tokenizer (tokens, merges, pre-tokenizer name, special ids, chat
template). Architectures: GPT-2, Llama (and Mistral, as llama.cpp files it), Qwen2, Qwen3.
A quantized --type is the F32 export quantized as `gpt quantize` does. Written to a temporary
file beside OUT and renamed when complete.")]
pub struct Args {
    /// A Hugging Face folder: config.json, model.safetensors (or shards), tokenizer.json.
    pub input: std::path::PathBuf,
    /// The GGUF file to write.
    pub output: std::path::PathBuf,
    /// F32, F16 (default), BF16, or a type of `gpt quantize` (Q8_0, Q4_K_M, ...).
    #[arg(long = "type", default_value = "F16")]
    pub ty: String,
}

pub fn run(a: Args) -> Result<()> {
    let t0 = std::time::Instant::now();
    let float = gpt::export::FLOAT_TYPES
        .iter()
        .map(|&(t, _)| t)
        .find(|t| t.to_string().eq_ignore_ascii_case(&a.ty));
    match (float, gpt::quantize::Scheme::parse(&a.ty)) {
        (Some(t), _) => gpt::export::export(&a.input, &a.output, t),
        (None, Some(scheme)) => {
            gpt::quantize::quantize_file(&a.input, &a.output, scheme, false, |_, _| {})
        }
        (None, None) => anyhow::bail!(
            "unknown type '{}' (F32, F16, BF16, {})",
            a.ty,
            gpt::quantize::TARGET_NAMES
        ),
    }
    .with_context(|| format!("exporting {}", a.input.display()))?;
    let mib = std::fs::metadata(&a.output).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;
    println!(
        "{} -> {} ({mib:.1} MiB, {}) in {:.1} s",
        a.input.display(),
        a.output.display(),
        a.ty.to_uppercase(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
