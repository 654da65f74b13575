//! The generation loop: run the prompt through the model once (prefill), then repeatedly pick the
//! next token from the last position's logits, append it and run just that token (decode), until
//! an end-of-sequence token, a stop string or the token budget.

use super::constraint::Constraint;
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
    /// When the context window is full, keep its last half and go on (recomputing it, as
    /// nanoGPT's generate crops the context) instead of refusing a generation longer than the
    /// window. For small trained models whose window is a few dozen tokens.
    pub slide: bool,
    /// A grammar the generated text must match (JSON schema, Lark, regex), compiled for this
    /// model's vocabulary ([`super::constraint::ConstraintFactory::constraint`]).
    pub constraint: Option<Constraint>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            stop_ids: Vec::new(),
            slide: false,
            constraint: None,
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
        let needed = if opts.slide {
            prompt_ids.len()
        } else {
            // Saturating: `-n 18446744073709551615` must overflow the window, not wrap past it.
            prompt_ids.len().saturating_add(opts.max_tokens)
        };
        if needed > context {
            return Err(Error::ContextOverflow { needed, context });
        }
        if prompt_ids.is_empty() {
            return Err(Error::Invalid(
                "the prompt is empty: there is no token to continue".into(),
            ));
        }
        self.cache.clear();
        let mut seq = Sequence::new(prompt_ids, opts);

        let t0 = std::time::Instant::now();
        let mut logits = self
            .model
            .forward(prompt_ids, &mut self.cache, Logits::Last, None)?;
        let prefill_seconds = t0.elapsed().as_secs_f64();
        let t1 = std::time::Instant::now();
        for _ in 0..opts.max_tokens {
            let step = seq.step(&logits, self.tokenizer);
            if !step.text.is_empty() && !on_text(&step.text) {
                let rest = seq.cancel();
                if !rest.is_empty() {
                    on_text(&rest);
                }
                break;
            }
            if step.finish.is_some() {
                break;
            }
            if seq.ids.len() == opts.max_tokens {
                break;
            }
            logits = if self.cache.len() < context {
                self.model
                    .forward(&[step.id], &mut self.cache, Logits::Last, None)?
            } else {
                // The window is full (only with `slide`): restart it from its last half.
                let history: Vec<u32> = prompt_ids.iter().chain(&seq.ids).copied().collect();
                self.cache.clear();
                let keep = &history[history.len() - (context / 2).max(1)..];
                self.model
                    .forward(keep, &mut self.cache, Logits::Last, None)?
            };
        }
        Ok(Generation {
            prompt_ids: prompt_ids.to_vec(),
            finish_reason: seq.finish_reason().unwrap_or(FinishReason::Length),
            ids: seq.ids,
            text: seq.stops.text,
            prefill_seconds,
            decode_seconds: t1.elapsed().as_secs_f64(),
        })
    }
}

/// The state of one generation after its prompt: the sampler, the tokens so far, the text
/// decoder and the stop-string watch. [`Generator`] runs one at a time; a server runs many,
/// batching their forward passes ([`Transformer::forward_batch`]), and feeds each the logits of
/// its own sequence.
#[derive(Debug)]
pub struct Sequence {
    sampler: Sampler,
    /// The prompt and the generated ids (for penalties).
    history: Vec<u32>,
    /// The generated ids (including a final end-of-sequence id, if one ended generation).
    pub ids: Vec<u32>,
    stream: StreamDecoder,
    stops: StopStrings,
    max_tokens: usize,
    stop_ids: Vec<u32>,
    constraint: Option<Constraint>,
    finish: Option<FinishReason>,
    /// Whether the held-back text has been released (at the end).
    flushed: bool,
}

/// What one step of a [`Sequence`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The token picked.
    pub id: u32,
    /// The text that is complete now (possibly empty: part of a character, or of what might be
    /// a stop string, is held back).
    pub text: String,
    /// Set when generation ended with this step.
    pub finish: Option<FinishReason>,
}

impl Sequence {
    pub fn new(prompt_ids: &[u32], opts: &GenerateOptions) -> Sequence {
        Sequence {
            sampler: Sampler::new(opts.sampling.clone()),
            history: prompt_ids.to_vec(),
            ids: Vec::new(),
            stream: StreamDecoder::new(),
            stops: StopStrings::new(opts.stop.clone()),
            max_tokens: opts.max_tokens,
            stop_ids: opts.stop_ids.clone(),
            constraint: opts.constraint.clone(),
            finish: None,
            flushed: false,
        }
    }

    /// Picks the next token from the logits (V) of the sequence's last position and returns it
    /// with the text it completes and, if generation ends here, why: an end-of-sequence id (not
    /// part of the text), a stop string (cut, with everything after it), a grammar that is
    /// complete, or the token budget.
    pub fn step(&mut self, logits: &[f32], tokenizer: &Tokenizer) -> Step {
        let id = match &mut self.constraint {
            Some(c) => {
                let mut masked = logits.to_vec();
                c.mask(&mut masked, &self.stop_ids);
                self.sampler.sample(&masked, &self.history)
            }
            None => self.sampler.sample(logits, &self.history),
        };
        self.ids.push(id);
        self.history.push(id);
        let mut text = String::new();
        let stop_id = self.stop_ids.contains(&id);
        if let Some(c) = self.constraint.as_mut().filter(|_| !stop_id) {
            c.accept(id);
        }
        let complete = self.constraint.as_ref().is_some_and(|c| c.complete());
        if stop_id {
            self.finish = Some(FinishReason::Stop);
        } else {
            let piece = self.stream.push(tokenizer, id);
            let (ready, hit) = self.stops.push(&piece);
            text = ready;
            if hit || complete {
                self.finish = Some(FinishReason::Stop);
            } else if self.ids.len() >= self.max_tokens {
                self.finish = Some(FinishReason::Length);
            }
        }
        if self.finish.is_some() {
            text += &self.flush();
        }
        Step {
            id,
            text,
            finish: self.finish,
        }
    }

    /// Ends generation at the caller's request; returns the text still held back.
    pub fn cancel(&mut self) -> String {
        self.finish = Some(FinishReason::Cancelled);
        self.flush()
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Whether the sequence's grammar allows `id` as its next token; None without a grammar.
    pub fn constraint_allows(&self, id: u32) -> Option<bool> {
        self.constraint
            .as_ref()
            .map(|c| c.allows(id, &self.stop_ids))
    }

    /// Why the grammar gave up, if it did (an internal error of the matcher).
    pub fn constraint_error(&self) -> Option<&str> {
        self.constraint.as_ref().and_then(|c| c.error.as_deref())
    }

    /// The text released so far.
    pub fn text(&self) -> &str {
        &self.stops.text
    }

    /// Releases what the decoder and the stop-string watch hold back (nothing after a stop
    /// string: the text ends before it).
    fn flush(&mut self) -> String {
        if self.flushed || self.stops.hit {
            return String::new();
        }
        self.flushed = true;
        let (rest, _) = self.stops.push(&self.stream.finish());
        rest + &self.stops.flush()
    }
}

/// Watches the generated text for stop strings, holding back any tail that could be the start
/// of one so that a stop string is never streamed.
#[derive(Debug)]
struct StopStrings {
    stops: Vec<String>,
    /// Everything released so far.
    text: String,
    held: String,
    hit: bool,
}

impl StopStrings {
    fn new(stops: Vec<String>) -> Self {
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
        for s in &self.stops {
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
        let mut s = StopStrings::new(stops);
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
        let mut s = StopStrings::new(stops);
        let (a, _) = s.push("EN");
        assert_eq!(a, "");
        let (b, hit) = s.push("d of it");
        assert!(!hit);
        assert_eq!(a + &b + &s.flush(), "ENd of it");
    }
}
