//! Tokenization: text -> token ids and back. Byte-level BPE (GPT-2 style).
//! STUB: the API below is the contract; the implementation is being written.

use crate::Result;
use std::path::Path;

/// Everything a byte-level BPE tokenizer is built from, whatever file it came from
/// (GGUF metadata, GPT-2's encoder.json + vocab.bpe, a tokenizer.json).
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    /// Token strings in GPT-2's byte-to-unicode alphabet (e.g. "Ġthe"), indexed by id.
    pub tokens: Vec<String>,
    /// GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte),
    /// if known. Control and user-defined tokens are matched as special tokens.
    pub token_types: Option<Vec<i32>>,
    /// Merge rules "a b" in priority order (rank 0 first).
    pub merges: Vec<String>,
    /// Pre-tokenizer name as in GGUF's `tokenizer.ggml.pre` ("gpt2", "smollm", "llama-bpe", ...).
    pub pre: String,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Whether a BOS id is prepended when encoding a prompt.
    pub add_bos: bool,
}

pub struct Tokenizer {}

impl Tokenizer {
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer> {
        todo!()
    }
    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer> {
        todo!()
    }
    /// Encodes `text`. With `allow_special`, the text of a special token (e.g. `<|im_start|>`)
    /// becomes its id; without, it is encoded as ordinary text. Never adds BOS.
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        todo!()
    }
    /// The exact bytes of a sequence of ids (special tokens as their text). Unknown ids are skipped.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        todo!()
    }
    /// [`Self::decode_bytes`] as a string, invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        todo!()
    }
    /// The bytes one token stands for.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        todo!()
    }
    /// The vocabulary string of a token as stored (e.g. "Ġthe").
    pub fn token_str(&self, id: u32) -> Option<&str> {
        todo!()
    }
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        todo!()
    }
    pub fn vocab_size(&self) -> usize {
        todo!()
    }
    pub fn bos_id(&self) -> Option<u32> {
        todo!()
    }
    pub fn eos_id(&self) -> Option<u32> {
        todo!()
    }
    pub fn add_bos(&self) -> bool {
        todo!()
    }
    pub fn is_special(&self, id: u32) -> bool {
        todo!()
    }
}

/// Turns a stream of ids into text without ever emitting a broken UTF-8 character: bytes of an
/// incomplete character are held back until the tokens that complete it arrive.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Returns the text that is complete after `id`.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        todo!()
    }
    /// Flushes what is left (invalid bytes as U+FFFD).
    pub fn finish(&mut self) -> String {
        todo!()
    }
}
