use crate::common::{load, ModelArgs};
use anyhow::{Context, Result};
use gpt::infer::{GenerateOptions, Generator, Grammar, SamplingParams};
use gpt::LoadedModel;
use std::io::Write;
use std::path::PathBuf;

/// Sampling options shared by `generate` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// The most tokens to generate.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token every time (greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities sum to P (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than X times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize tokens seen in the last 64 (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Seed for the random draws (the same seed gives the same text).
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// When the context window fills, keep its last half and go on (for small trained models
    /// with short windows) instead of refusing a longer generation.
    #[arg(long)]
    pub slide: bool,
    /// Constrain the output to JSON valid under this JSON Schema file.
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to one JSON object.
    #[arg(long, group = "constraint")]
    pub json_object: bool,
    /// Constrain the output to this grammar file (Lark, in llguidance's dialect).
    #[arg(long, value_name = "FILE", group = "constraint")]
    pub grammar: Option<PathBuf>,
    /// Constrain the output to match this regular expression.
    #[arg(long, value_name = "RE", group = "constraint")]
    pub regex: Option<String>,
}

impl SamplingArgs {
    /// The grammar the flags ask for, with its file read (and a JSON Schema parsed).
    fn grammar(&self) -> Result<Option<Grammar>> {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(if let Some(p) = &self.json_schema {
            let schema = serde_json::from_str(&read(p)?)
                .with_context(|| format!("{}: not JSON", p.display()))?;
            Some(Grammar::JsonSchema(schema))
        } else if self.json_object {
            Some(Grammar::JsonObject)
        } else if let Some(p) = &self.grammar {
            Some(Grammar::Lark(read(p)?))
        } else {
            self.regex.clone().map(Grammar::Regex)
        })
    }

    pub fn options(&self, m: &LoadedModel) -> Result<GenerateOptions> {
        let constraint = match self.grammar()? {
            Some(g) => Some(m.constraint_factory()?.constraint(&g)?),
            None => None,
        };
        Ok(GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: 64,
                seed: self.seed,
            },
            stop: self.stop.clone(),
            stop_ids: m.stop_ids.clone(),
            slide: self.slide,
            constraint,
        })
    }
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt generate \"The cat sat on the\"\n  gpt generate \"Once upon a time\" --temperature 0 --max-tokens 32\n  gpt generate \"def fib(n):\" --model model.gguf --seed 7 --json\n  gpt generate \"A cat as JSON: \" --json-schema cat.schema.json --temperature 0\n  gpt generate \"Answer yes or no: is the sky blue? \" --regex \"(yes|no)\""
)]
pub struct Args {
    /// The prompt (raw text: no template; BOS only if the model's tokenizer adds one).
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Treat special-token text in the prompt (e.g. <|im_start|>) as plain text.
    #[arg(long)]
    pub no_special: bool,
    /// Print one JSON object {"prompt_ids", "ids", "text", "finish_reason", "prefill_seconds",
    /// "decode_seconds"} instead of streaming.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let m = load(&a.model)?;
    let prompt_ids = m.encode_prompt(&a.prompt, !a.no_special);
    let opts = a.sampling.options(&m)?;
    let mut g = Generator::new(&m.transformer, &m.tokenizer);
    let mut out = std::io::stdout().lock();
    if !a.json {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let json = a.json;
    let r = g.generate(&prompt_ids, &opts, &mut |piece| {
        if !json {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        }
        true
    })?;
    if json {
        let v = serde_json::json!({
            "prompt_ids": r.prompt_ids,
            "ids": r.ids,
            "text": r.text,
            "finish_reason": r.finish_reason.as_str(),
            "prefill_seconds": r.prefill_seconds,
            "decode_seconds": r.decode_seconds,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        tracing::info!(
            "{} prompt tokens in {:.2}s, {} generated at {:.1} tok/s ({})",
            r.prompt_ids.len(),
            r.prefill_seconds,
            r.ids.len(),
            r.ids.len() as f64 / r.decode_seconds.max(1e-9),
            r.finish_reason.as_str()
        );
    }
    Ok(())
}
