//! Constrained decoding: a grammar (a JSON schema, a Lark grammar, a regular expression) decides
//! which tokens may come next. It is one step of the sampling chain: before the sampler runs,
//! every token the grammar forbids gets the logit -inf, so temperature, top-k and top-p act on
//! what is left.
//!
//! The token masks come from llguidance, the library llama.cpp and mistral.rs use: it walks a
//! trie of the vocabulary's byte strings against the grammar's lexer and parser. This file
//! connects it to our tokenizer: every token's bytes, with control tokens (BOS, `<|im_end|>`,
//! `<start_of_turn>`) marked so that no grammar over text can produce them. The end of the
//! output is the model's own end: when the grammar may stop, the sequence's stop ids are
//! allowed; when it must stop, only they are.

use crate::tokenizer::{Tokenizer, TokenizerModel};
use crate::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

/// What the generated text must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON Schema (the draft 2020-12 subset llguidance takes: see its docs/json_schema.md).
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (`start: ...`, regex terminals, `%json {...}`).
    Lark(String),
    /// A regular expression the whole text must match.
    Regex(String),
}

impl Grammar {
    /// llguidance's form. JSON is written as Python's `json.dumps` writes it (`", "`, `": "`,
    /// no other whitespace), unless the schema sets its own `x-guidance` options: free
    /// whitespace lets a small model pad with newlines until its budget runs out.
    fn top_level(&self) -> TopLevelGrammar {
        let json = |mut schema: serde_json::Value| {
            if let Some(o) = schema.as_object_mut() {
                o.entry("x-guidance").or_insert_with(|| {
                    serde_json::json!({
                        "whitespace_flexible": false,
                        "item_separator": ", ",
                        "key_separator": ": ",
                    })
                });
            }
            TopLevelGrammar::from_json_schema(schema)
        };
        match self {
            Grammar::JsonObject => json(serde_json::json!({"type": "object"})),
            Grammar::JsonSchema(s) => json(s.clone()),
            Grammar::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Grammar::Regex(r) => TopLevelGrammar::from_regex(r),
        }
    }
}

/// A model's vocabulary as llguidance sees it: built once per model, shared by every request.
#[derive(Clone)]
pub struct ConstraintFactory {
    factory: Arc<ParserFactory>,
    /// The id the trie calls end-of-sequence (one past the logits); stands for every stop id of
    /// a sequence.
    eos: u32,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory")
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

/// Our tokenizer behind llguidance's interface.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Text the grammar forces is tokenized as the model would see it where our tokenizer
    /// maps bytes to tokens exactly (byte-level BPE); SentencePiece-style vocabularies add a
    /// leading space to text, so there (and for bytes that are not UTF-8) the trie's greedy
    /// tokenization stands in.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        match (self.tokenizer.model(), std::str::from_utf8(s)) {
            (TokenizerModel::ByteLevelBpe, Ok(text)) => self.tokenizer.encode(text, false),
            _ => self.trie.greedy_tokenize(s),
        }
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.tokenizer.model() == TokenizerModel::ByteLevelBpe
    }
}

impl ConstraintFactory {
    /// The vocabulary of `tokenizer` for a model with `vocab_size` logits. The trie gets one
    /// more token, past the logits, as its end-of-sequence: it stands for whichever stop ids a
    /// sequence has, so the model's own EOS stays a control token like the others.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize) -> Result<ConstraintFactory> {
        let eos = vocab_size as u32;
        let mut words: Vec<Vec<u8>> = (0..eos)
            .map(|id| match tokenizer.token_bytes(id) {
                // Control and user-defined tokens are whole symbols, never text.
                Some(_) if tokenizer.is_special(id) || Some(id) == tokenizer.eos_id() => {
                    let name = tokenizer.token_str(id).unwrap_or_default();
                    [&[TokTrie::SPECIAL_TOKEN_MARKER], name.as_bytes()].concat()
                }
                Some(b) => b.to_vec(),
                None => Vec::new(),
            })
            .collect();
        words.push([&[TokTrie::SPECIAL_TOKEN_MARKER], &b"<end>"[..]].concat());
        let info = TokRxInfo::new(eos + 1, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::Invalid(format!("constrained decoding: {e}")))?;
        factory.set_stderr_log_level(0);
        // Errors go back to users: the message, not the parser's state and the whole grammar.
        factory.limits_mut().verbose_errors = false;
        Ok(ConstraintFactory {
            factory: Arc::new(factory),
            eos,
        })
    }

    /// Compiles a grammar for one sequence. A grammar llguidance cannot compile (a bad regex, a
    /// schema it does not support, one over its size limits) is an error naming the problem.
    pub fn constraint(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar.top_level())
            .map_err(|e| Error::Invalid(format!("grammar: {e}")))?;
        let mut c = Constraint {
            matcher: Box::new(Matcher::new(Ok(parser))),
            eos: self.eos,
            next: SimpleVob::new(),
            error: None,
        };
        c.compute();
        if c.error.take().is_some() || c.next.is_zero() {
            return Err(Error::Invalid(
                "grammar: no token of this model's vocabulary can begin a text it allows".into(),
            ));
        }
        Ok(c)
    }
}

/// One sequence's grammar state: the mask of the next token, computed as soon as the previous
/// token is known (so that a complete grammar ends the sequence without one more step).
#[derive(Clone)]
pub struct Constraint {
    /// Boxed: the parser state is large, and options holding it are moved around.
    matcher: Box<Matcher>,
    eos: u32,
    next: SimpleVob,
    /// Why the constraint gave up (an internal error of the matcher), if it did.
    pub error: Option<String>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("allowed", &self.next.num_set())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Whether the grammar allows `id` next (an empty mask, after an error, allows nothing).
    fn allowed(&self, id: u32) -> bool {
        (id as usize / 32) < self.next.as_slice().len() && self.next.is_allowed(id)
    }

    fn compute(&mut self) {
        match self.matcher.compute_mask_or_eos() {
            Ok(m) => self.next = m,
            Err(e) => {
                self.error = Some(e.to_string());
                self.next = SimpleVob::new();
            }
        }
    }

    /// Sets the logits (V) of every token the grammar forbids next to -inf. The stop ids keep
    /// their logits where the grammar may end here (and are all that is left where it must).
    pub fn mask(&self, logits: &mut [f32], stop_ids: &[u32]) {
        let may_end = self.allowed(self.eos);
        let kept: Vec<(usize, f32)> = stop_ids
            .iter()
            .filter_map(|&s| logits.get(s as usize).map(|&l| (s as usize, l)))
            .collect();
        for (id, l) in logits.iter_mut().enumerate() {
            if !self.allowed(id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        if may_end {
            for (s, l) in kept {
                logits[s] = l;
            }
        }
    }

    /// Whether the grammar allows `id` next, as [`Self::mask`] decides it (a stop id where the
    /// grammar may end).
    pub fn allows(&self, id: u32, stop_ids: &[u32]) -> bool {
        if stop_ids.contains(&id) {
            self.allowed(self.eos)
        } else {
            self.allowed(id)
        }
    }

    /// Advances the grammar past a sampled token (not a stop id: those end the sequence) and
    /// computes the next mask.
    pub fn accept(&mut self, id: u32) {
        match self.matcher.consume_token(id) {
            Ok(()) => self.compute(),
            Err(e) => {
                self.error = Some(e.to_string());
                self.next = SimpleVob::new();
            }
        }
    }

    /// Nothing but the end may follow (the grammar is complete, or the matcher failed): the
    /// sequence ends here.
    pub fn complete(&self) -> bool {
        self.next.num_set() == usize::from(self.allowed(self.eos))
    }
}
