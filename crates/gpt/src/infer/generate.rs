//! The generation loop: run the prompt through the model once (prefill), then repeatedly pick the
//! next token from the last position's logits, append it and run just that token (decode), until
//! an end-of-sequence token, a stop string or the token budget.

use super::kv_cache::KvCache;
use super::sampling::{Sampler, SamplingParams};
use crate::model::transformer::{Logits, Transformer};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The most tokens to generate.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Token ids that end generation (the model's end-of-sequence tokens); not part of the text.
    pub stop_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            stop_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// The token budget ran out.
    Length,
    /// The caller's callback asked to stop.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// The generated ids (including a final end-of-sequence id, if one ended generation).
    pub ids: Vec<u32>,
    /// The generated text (without end-of-sequence tokens, cut before a stop string).
    pub text: String,
    pub finish_reason: FinishReason,
    /// Seconds spent on the prompt and on generating.
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

/// Runs generations over one model; owns the KV cache.
pub struct Generator<'a> {
    pub model: &'a Transformer,
    pub tokenizer: &'a Tokenizer,
    pub cache: KvCache,
}

impl<'a> Generator<'a> {
    pub fn new(model: &'a Transformer, tokenizer: &'a Tokenizer) -> Self {
        Generator {
            model,
            tokenizer,
            cache: model.new_cache(),
        }
    }

    /// Generates after `prompt_ids`, calling `on_text` with each piece of text as soon as it is
    /// complete (never a broken UTF-8 character, never part of a stop string). `on_text` returns
    /// false to cancel.
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let context = self.model.config.context_length;
        let needed = prompt_ids.len() + opts.max_tokens;
        if needed > context {
            return Err(Error::ContextOverflow { needed, context });
        }
        if prompt_ids.is_empty() {
            return Err(Error::Invalid(
                "the prompt is empty: there is no token to continue".into(),
            ));
        }
        self.cache.clear();
        let mut sampler = Sampler::new(opts.sampling.clone());
        let mut history = prompt_ids.to_vec();
        let mut ids = Vec::new();
        let mut stream = StreamDecoder::new();
        let mut stops = StopStrings::new(&opts.stop);
        let mut finish = FinishReason::Length;

        let t0 = std::time::Instant::now();
        let mut logits = self
            .model
            .forward(prompt_ids, &mut self.cache, Logits::Last, None)?;
        let prefill_seconds = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        for step in 0..opts.max_tokens {
            let id = sampler.sample(&logits, &history);
            ids.push(id);
            history.push(id);
            if opts.stop_ids.contains(&id) {
                finish = FinishReason::Stop;
                break;
            }
            let piece = stream.push(self.tokenizer, id);
            let (ready, hit) = stops.push(&piece);
            if !ready.is_empty() && !on_text(&ready) {
                finish = FinishReason::Cancelled;
                break;
            }
            if hit {
                finish = FinishReason::Stop;
                break;
            }
            if step + 1 < opts.max_tokens {
                logits = self
                    .model
                    .forward(&[id], &mut self.cache, Logits::Last, None)?;
            }
        }
        if finish != FinishReason::Stop || !stops.hit {
            let (rest, _) = stops.push(&stream.finish());
            let rest = rest + &stops.flush();
            if !rest.is_empty() {
                on_text(&rest);
            }
        }
        Ok(Generation {
            prompt_ids: prompt_ids.to_vec(),
            ids,
            text: stops.text,
            finish_reason: finish,
            prefill_seconds,
            decode_seconds: t1.elapsed().as_secs_f64(),
        })
    }
}

/// Watches the generated text for stop strings, holding back any tail that could be the start
/// of one so that a stop string is never streamed.
struct StopStrings<'s> {
    stops: &'s [String],
    /// Everything released so far.
    text: String,
    held: String,
    hit: bool,
}

impl<'s> StopStrings<'s> {
    fn new(stops: &'s [String]) -> Self {
        StopStrings {
            stops,
            text: String::new(),
            held: String::new(),
            hit: false,
        }
    }

    /// Adds a piece; returns the text now safe to release and whether a stop string was found.
    fn push(&mut self, piece: &str) -> (String, bool) {
        if self.hit {
            return (String::new(), true);
        }
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.hit = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            self.text.push_str(&out);
            return (out, true);
        }
        // Keep the longest tail of `held` that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in self.stops {
            for (i, _) in self.held.char_indices() {
                let tail = &self.held[i..];
                if s.starts_with(tail) && tail.len() < s.len() {
                    keep = keep.max(tail.len());
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        self.text.push_str(&out);
        (out, false)
    }

    fn flush(&mut self) -> String {
        let out = std::mem::take(&mut self.held);
        self.text.push_str(&out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_never_released() {
        let stops = vec!["\nUser:".to_string()];
        let mut s = StopStrings::new(&stops);
        let mut out = String::new();
        for piece in ["Hello", " there", "\nUs", "er", ": hi"] {
            let (r, hit) = s.push(piece);
            out += &r;
            if hit {
                break;
            }
        }
        assert_eq!(out, "Hello there");
        assert!(s.hit);
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_complete() {
        let stops = vec!["END".to_string()];
        let mut s = StopStrings::new(&stops);
        let (a, _) = s.push("EN");
        assert_eq!(a, "");
        let (b, hit) = s.push("d of it");
        assert!(!hit);
        assert_eq!(a + &b + &s.flush(), "ENd of it");
    }
}
