//! `gpt`: run, inspect and benchmark GPT models on the CPU.

mod commands;
mod common;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "gpt", version, about = "Run, train and explain GPT models on the CPU", long_about = None)]
#[command(
    after_help = "Examples:\n  gpt generate \"The cat sat on the\"\n  gpt chat --message \"What is the capital of France?\"\n  gpt tokenize \"Tokens are not words\"\n  gpt inspect logits \"The capital of France is\" --top 10\n  gpt bench --model smollm2-135m-instruct"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt, streaming tokens as they are generated.
    Generate(commands::generate::Args),
    /// Chat with an instruction-tuned model (interactive, or one-shot with --message).
    Chat(commands::chat::Args),
    /// Cut text into tokens: each piece with its id.
    Tokenize(commands::tokenize::Args),
    /// Turn token ids back into text.
    Detokenize(commands::tokenize::DetokArgs),
    /// Train a BPE tokenizer, or measure its speed.
    Tokenizer(commands::tokenizer::Args),
    /// Look inside the model.
    Inspect(commands::inspect::Args),
    /// Fetch a known model into the cache.
    Pull(commands::models::PullArgs),
    /// List the known models and whether they are cached.
    #[command(
        after_help = "Examples:\n  gpt models\n  gpt pull smollm2-135m-instruct\n\nAny other GGUF file or Hugging Face folder works with --model PATH."
    )]
    Models,
    /// Measure prompt processing and generation speed.
    Bench(commands::bench::Args),
    /// How well the model predicts a text: perplexity, as llama-perplexity measures it.
    Perplexity(commands::perplexity::Args),
    /// Write a GGUF file (or a Hugging Face folder) of float weights as a smaller quantized one
    /// (Q4_0 .. Q8_0, Q4_K .. Q6_K, Q4_K_M, Q5_K_M).
    Quantize(commands::quantize::Args),
    /// Write a Hugging Face folder (a `gpt train` checkpoint, a Llama-family model) as a GGUF
    /// file that llama.cpp and Ollama run.
    Export(commands::export::Args),
    /// Pre-train a GPT-2-style model from text (CONFIG.toml).
    Train(commands::train::Args),
    /// Serve the model over an OpenAI-compatible HTTP API, with a page that shows it thinking.
    Serve(commands::serve::Args),
}

fn main() {
    common::keep_freed_memory();
    common::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => commands::generate::run(a),
        Command::Chat(a) => commands::chat::run(a),
        Command::Tokenize(a) => commands::tokenize::run(a),
        Command::Detokenize(a) => commands::tokenize::run_detok(a),
        Command::Tokenizer(a) => commands::tokenizer::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Pull(a) => commands::models::pull(a),
        Command::Models => commands::models::list(),
        Command::Bench(a) => commands::bench::run(a),
        Command::Perplexity(a) => commands::perplexity::run(a),
        Command::Quantize(a) => commands::quantize::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Serve(a) => commands::serve::run(a),
    };
    if let Err(e) = result {
        let msg = format!("{e:#}");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
