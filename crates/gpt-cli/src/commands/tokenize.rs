use crate::common::progress_bar;
use anyhow::{bail, Context, Result};
use gpt::inspect::charts::token_label;
use gpt::tokenizer::Tokenizer;
use std::path::Path;

/// Where the tokenizer comes from.
#[derive(clap::Args, Debug)]
pub struct TokenizerSource {
    /// A known model name or a GGUF file, whose tokenizer is used.
    #[arg(long, short = 'm', default_value = gpt::hub::DEFAULT_MODEL)]
    pub model: String,
    /// A tokenizer instead of a model's: a GGUF file, a tokenizer.json, or a folder with
    /// tokenizer.json or encoder.json + vocab.bpe.
    #[arg(long)]
    pub tokenizer: Option<String>,
}

impl TokenizerSource {
    pub fn load(&self) -> Result<Tokenizer> {
        let path = match &self.tokenizer {
            Some(p) => Path::new(p).to_path_buf(),
            None => gpt::hub::resolve(&self.model, &mut progress_bar())?,
        };
        load_tokenizer(&path)
            .with_context(|| format!("loading the tokenizer of {}", path.display()))
    }
}

/// A folder's tokenizer.json is preferred to its encoder.json + vocab.bpe: it also records the
/// split pattern and all special tokens.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        let json = path.join("tokenizer.json");
        if json.exists() {
            return Ok(Tokenizer::from_tokenizer_json(&json)?);
        }
        let (enc, bpe) = (path.join("encoder.json"), path.join("vocab.bpe"));
        if enc.exists() && bpe.exists() {
            return Ok(Tokenizer::from_gpt2_files(&enc, &bpe)?);
        }
        bail!(
            "{}: no tokenizer.json or encoder.json + vocab.bpe in this folder",
            path.display()
        );
    }
    if path.extension().is_some_and(|e| e == "json") {
        return Ok(Tokenizer::from_tokenizer_json(path)?);
    }
    // Metadata only: the tokenizer needs no tensors, so any GGUF file's vocabulary loads.
    let g = gpt::formats::gguf::GgufFile::open_metadata(path)?;
    Ok(Tokenizer::from_gguf(&g)?)
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt tokenize \"Tokens are not words.\"\n  gpt tokenize \"<|im_start|>user\" --json\n  gpt tokenize \"Hello world\" --tokenizer path/to/gpt2-folder"
)]
pub struct Args {
    pub text: String,
    #[command(flatten)]
    pub source: TokenizerSource,
    /// Treat special-token text (e.g. <|im_start|>) as plain text.
    #[arg(long)]
    pub no_special: bool,
    /// Print {"ids": [..], "tokens": [..]} (tokens as the vocabulary stores them).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let tok = a.source.load()?;
    // The ids the model sees: BOS (and EOS) where the vocabulary says so, as llama-tokenize.
    let ids = tok.encode_for_model(&a.text, !a.no_special);
    if a.json {
        let tokens: Vec<&str> = ids
            .iter()
            .map(|&i| tok.token_str(i).unwrap_or(""))
            .collect();
        println!("{}", serde_json::json!({"ids": ids, "tokens": tokens}));
        return Ok(());
    }
    println!("{:>8}  token", "id");
    for &id in &ids {
        let b = tok.token_bytes(id).unwrap_or(&[]);
        let special = if tok.is_special(id) {
            "  (special)"
        } else {
            ""
        };
        println!("{id:>8}  {}{special}", token_label(b));
    }
    let words = a.text.split_whitespace().count();
    println!(
        "{} tokens for {} bytes and {} whitespace-separated words",
        ids.len(),
        a.text.len(),
        words
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt detokenize 504 2342 3112\n  gpt detokenize 19556 905 --tokenizer path/to/gpt2-folder"
)]
pub struct DetokArgs {
    /// Token ids.
    #[arg(required = true)]
    pub ids: Vec<u32>,
    #[command(flatten)]
    pub source: TokenizerSource,
}

pub fn run_detok(a: DetokArgs) -> Result<()> {
    let tok = a.source.load()?;
    if let Some(bad) = a.ids.iter().find(|&&i| i as usize >= tok.vocab_size()) {
        bail!(
            "token id {bad} is outside the vocabulary (size {})",
            tok.vocab_size()
        );
    }
    println!("{}", tok.decode(&a.ids));
    Ok(())
}
