//! Tokenization: text -> token ids and back, by one of two algorithms behind one [`Tokenizer`]:
//! - byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen2), exactly as GPT-2's `encoder.py`, Hugging
//!   Face `tokenizers`, tiktoken and llama.cpp do it;
//! - SentencePiece-style BPE (Llama 2, Mistral v0.1, Phi-3, Gemma), as llama.cpp's
//!   `llm_tokenizer_spm` does it: see [`spm`].
//!
//! The byte-level pipeline, one file per step:
//! 1. [`special`]: special-token texts (`<|im_start|>`) are cut out first: user-defined tokens
//!    always, control tokens only with `allow_special` (as llama.cpp's `tokenizer_st_partition`).
//! 2. [`pretokenize`]: the rest is split into pieces by the model's pattern (`gpt2`, `smollm`,
//!    `llama3`, `qwen2`); no merge crosses a piece boundary.
//! 3. [`bpe`]: each piece's bytes are merged by rank into tokens. A piece that is itself a token
//!    (most words) is found by one hash lookup; a piece seen before in the same call is copied.
//!
//! The SentencePiece-style pipeline shares step 1 and then runs [`spm`] on each text fragment.
//!
//! Decoding maps ids back to bytes (byte-level: through [`byte_level`]'s alphabet;
//! SentencePiece: `▁` -> space, `<0xNN>` -> that byte); [`StreamDecoder`] does it incrementally
//! for generation. Files are read by [`io`] (GPT-2's `encoder.json` + `vocab.bpe`, Hugging
//! Face's `tokenizer.json`, GGUF's `tokenizer.ggml.*` metadata) into a [`TokenizerSpec`].
//!
//! Training ([`train`]) learns a new vocabulary from a corpus: [`word_count`] counts the
//! pre-tokens, [`train`] learns merges from the counts, and [`io`] writes `tokenizer.json` and
//! GPT-2's files that the loaders above read back.

pub mod bpe;
pub mod byte_level;
pub mod io;
pub mod pretokenize;
pub mod special;
pub mod spm;
mod stream;
pub mod train;
pub mod word_count;

pub use pretokenize::Pretokenizer;
pub use stream::StreamDecoder;
pub use train::{train, TrainConfig, TrainedBpe};

use crate::{Error, Result};
use bpe::{Bpe, FxHashMap, Merge, Scratch, NO_TOKEN};
use special::{Segment, SpecialMatcher};
use spm::{SpacePrefix, Spm, SpmScratch};
use std::collections::HashMap;
use std::path::Path;

// GGUF token types (llama.cpp's `llama_token_type`).
/// A token of no stated type.
pub const TOKEN_TYPE_UNDEFINED: i32 = 0;
/// An ordinary vocabulary token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// The unknown token (`<unk>`): matched in text only with `allow_special`.
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
/// Control tokens (`<|im_start|>`, `<bos>`): matched in text only with `allow_special`.
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// User-defined (added) tokens: always matched in text, before the model runs.
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// Reserved, unused tokens.
pub const TOKEN_TYPE_UNUSED: i32 = 5;
/// Byte-fallback tokens `<0xNN>` of SentencePiece vocabularies.
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// Which algorithm a vocabulary is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenizerModel {
    /// GPT-2's byte-level BPE with ranked merges (GGUF `tokenizer.ggml.model = "gpt2"`).
    #[default]
    ByteLevelBpe,
    /// SentencePiece-style BPE with piece scores and byte fallback (GGUF `"llama"`).
    SentencePiece,
}

/// Everything a tokenizer is built from, whatever file it came from (GGUF metadata, GPT-2's
/// encoder.json + vocab.bpe, a tokenizer.json).
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    pub model: TokenizerModel,
    /// Token strings indexed by id: byte-level BPE in GPT-2's byte-to-unicode alphabet ("Ġthe"),
    /// SentencePiece with `▁` for a space ("▁the") and `<0xNN>` byte pieces.
    pub tokens: Vec<String>,
    /// GGUF token types ([`TOKEN_TYPE_NORMAL`] ... [`TOKEN_TYPE_BYTE`]), if known.
    pub token_types: Option<Vec<i32>>,
    /// SentencePiece piece scores, one per token (higher merges first). Absent: all 0.
    pub scores: Option<Vec<f32>>,
    /// BPE merge rules "a b" in priority order (rank 0 first): byte-level BPE's, and those of a
    /// SentencePiece-style `tokenizer.json` (GGUF SentencePiece vocabularies have scores instead).
    pub merges: Vec<String>,
    /// Pre-tokenizer name as in GGUF's `tokenizer.ggml.pre` ("gpt2", "smollm", "llama-bpe", ...);
    /// unused by SentencePiece.
    pub pre: String,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pad_id: Option<u32>,
    /// Whether a BOS id is prepended when encoding a prompt.
    pub add_bos: bool,
    /// Whether an EOS id is appended when encoding a prompt.
    pub add_eos: bool,
    /// SentencePiece: a space is put before the text (and after every special token), as
    /// llama.cpp does with `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: bool,
}

/// The algorithm-specific half of a [`Tokenizer`].
#[derive(Clone)]
enum Model {
    ByteLevel {
        bpe: Bpe,
        /// Pieces that BPE turns into exactly one token, with that token: the fast path for the
        /// common case (a whole word is a token), exact because it stores BPE's own result.
        whole: FxHashMap<Box<[u8]>, u32>,
        /// Some of the 256 byte tokens are missing: pieces may need [`NO_TOKEN`] fixed up.
        missing_bytes: bool,
        pre: Pretokenizer,
    },
    SentencePiece {
        spm: Spm,
        /// Where a `▁` goes before a text fragment.
        prefix: SpacePrefix,
        /// Decoding drops one leading space (llama.cpp with `add_space_prefix`; a Hugging Face
        /// decoder ending in `Strip(" ", 1, 0)`).
        strip_space: bool,
    },
}

/// A tokenizer. Immutable once built, so one instance can be shared by threads.
#[derive(Clone)]
pub struct Tokenizer {
    /// Vocabulary strings as stored, indexed by id.
    tokens: Vec<String>,
    /// The bytes of every token, concatenated: token i is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    token_to_id: HashMap<String, u32>,
    /// Per id: its GGUF token type.
    types: Vec<i32>,
    /// Control, unknown and user-defined tokens, matched in text with `allow_special`.
    specials: SpecialMatcher,
    /// User-defined tokens only, matched in any text.
    user_defined: SpecialMatcher,
    model: Model,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
}

/// Choices a file format makes beyond what [`TokenizerSpec`] says. Kept private: the builders
/// below are the public way in.
struct BuildOptions {
    /// Hugging Face's `ignore_merges` (llama.cpp sets it for Llama 3): a piece that is in the
    /// vocabulary becomes that token without running the merges, even where the merges would
    /// split it differently.
    ignore_merges: bool,
}

/// How a SentencePiece-style vocabulary from a `tokenizer.json` runs: as Hugging Face's BPE model
/// and normalizer do, which is not llama.cpp's way for a GGUF (see [`spm`]).
pub(crate) struct HfSpmOptions {
    pub prefix: SpacePrefix,
    pub strip_space: bool,
    pub fuse_unk: bool,
}

/// Which part of a spec a build error is about, so a GGUF loader can name its key.
#[derive(Debug, Clone, Copy)]
enum Part {
    Tokens,
    Types,
    Scores,
    Merges,
    Pre,
    Id(&'static str),
}

impl Part {
    fn gguf_key(self) -> &'static str {
        match self {
            Part::Tokens => "tokenizer.ggml.tokens",
            Part::Types => "tokenizer.ggml.token_type",
            Part::Scores => "tokenizer.ggml.scores",
            Part::Merges => "tokenizer.ggml.merges",
            Part::Pre => "tokenizer.ggml.pre",
            Part::Id(k) => k,
        }
    }
}

type Built = std::result::Result<Tokenizer, (Part, String)>;

/// Whether a token of this type is matched in text as a whole (never by the model's merges).
fn is_special_type(t: i32) -> bool {
    matches!(
        t,
        TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_UNKNOWN
    )
}

impl Tokenizer {
    pub fn from_spec(spec: TokenizerSpec) -> Result<Tokenizer> {
        Self::build_spec(spec).map_err(|(_, msg)| Error::Tokenizer(msg))
    }

    fn build_spec(spec: TokenizerSpec) -> Built {
        match spec.model {
            TokenizerModel::ByteLevelBpe => {
                // The vocabulary's own problems come first: they are what a reader fixes first.
                Self::check_common(&spec)?;
                let pre = Pretokenizer::known(&spec.pre).ok_or_else(|| {
                    (
                        Part::Pre,
                        format!(
                            "unknown pre-tokenizer {:?} (supported: {})",
                            spec.pre,
                            Pretokenizer::SUPPORTED
                        ),
                    )
                })?;
                let ignore_merges = pre == Pretokenizer::Llama3;
                Self::build(spec, pre, BuildOptions { ignore_merges })
            }
            TokenizerModel::SentencePiece => Self::build_spm(spec, None),
        }
    }

    /// The tokenizer of a GGUF file (its `tokenizer.ggml.*` metadata; tensors are not needed,
    /// see [`crate::formats::gguf::GgufFile::open_metadata`]). Every problem names the key.
    pub fn from_gguf(g: &crate::formats::gguf::GgufFile) -> Result<Tokenizer> {
        let spec = io::gguf_spec(g)?;
        Self::build_spec(spec).map_err(|(part, msg)| Error::Field {
            file: g.name.clone(),
            field: part.gguf_key().into(),
            msg,
        })
    }

    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer> {
        Self::from_spec(io::gpt2_spec(encoder_json, vocab_bpe)?)
    }

    /// A Hugging Face `tokenizer.json` whose model is BPE: byte-level (GPT-2, SmolLM2, Llama 3,
    /// Qwen-style files) or SentencePiece-style with byte fallback (Llama 2, Mistral v0.1,
    /// Phi-3, Gemma). Other model types (WordPiece, Unigram, ...) are an error.
    pub fn from_tokenizer_json(path: &Path) -> Result<Tokenizer> {
        let parsed = io::tokenizer_json_spec(path)?;
        let built = match parsed.spec.model {
            TokenizerModel::SentencePiece => Self::build_spm(parsed.spec, parsed.spm.as_ref()),
            TokenizerModel::ByteLevelBpe => Self::build(
                parsed.spec,
                parsed.pre,
                BuildOptions {
                    ignore_merges: parsed.ignore_merges,
                },
            ),
        };
        built.map_err(|(_, msg)| Error::Tokenizer(format!("{}: {msg}", path.display())))
    }

    /// Checks what both algorithms share and returns the token types (all normal if absent).
    fn check_common(spec: &TokenizerSpec) -> std::result::Result<Vec<i32>, (Part, String)> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err((Part::Tokens, "the vocabulary is empty".into()));
        }
        // Two ids near u32::MAX are sentinels of the merge loop.
        if n >= (u32::MAX - 2) as usize {
            return Err((
                Part::Tokens,
                format!("the vocabulary has {n} tokens, too many"),
            ));
        }
        let types = match &spec.token_types {
            Some(types) => {
                if types.len() != n {
                    return Err((
                        Part::Types,
                        format!(
                            "{} token types for {n} tokens: the two lists must have the same \
                             length",
                            types.len()
                        ),
                    ));
                }
                if let Some((i, t)) = types
                    .iter()
                    .enumerate()
                    .find(|(_, &t)| !(TOKEN_TYPE_UNDEFINED..=TOKEN_TYPE_BYTE).contains(&t))
                {
                    return Err((
                        Part::Types,
                        format!(
                            "token {i} has type {t}, not one of 0..={TOKEN_TYPE_BYTE} (undefined, \
                             normal, unknown, control, user-defined, unused, byte)"
                        ),
                    ));
                }
                types.clone()
            }
            None => vec![TOKEN_TYPE_NORMAL; n],
        };
        for (name, key, id) in [
            ("BOS", "tokenizer.ggml.bos_token_id", spec.bos_id),
            ("EOS", "tokenizer.ggml.eos_token_id", spec.eos_id),
            ("unknown", "tokenizer.ggml.unknown_token_id", spec.unk_id),
            ("padding", "tokenizer.ggml.padding_token_id", spec.pad_id),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err((
                        Part::Id(key),
                        format!("the {name} token id {id} is outside the vocabulary of {n} tokens"),
                    ));
                }
            }
        }
        if spec.add_bos && spec.bos_id.is_none() {
            return Err((
                Part::Id("tokenizer.ggml.add_bos_token"),
                "add_bos is set but there is no BOS token id".into(),
            ));
        }
        if spec.add_eos && spec.eos_id.is_none() {
            return Err((
                Part::Id("tokenizer.ggml.add_eos_token"),
                "add_eos is set but there is no EOS token id".into(),
            ));
        }
        Ok(types)
    }

    /// The matchers of special-token text: every special token, and user-defined ones only.
    fn matchers(tokens: &[String], types: &[i32]) -> (SpecialMatcher, SpecialMatcher) {
        let pick = |keep: fn(i32) -> bool| {
            SpecialMatcher::new(
                tokens
                    .iter()
                    .enumerate()
                    .filter(|(id, _)| keep(types[*id]))
                    .map(|(id, t)| (t.as_str(), id as u32)),
            )
        };
        (
            pick(is_special_type),
            pick(|t| t == TOKEN_TYPE_USER_DEFINED),
        )
    }

    /// The id of each token string (the first id of equal strings).
    fn token_map(tokens: &[String]) -> HashMap<String, u32> {
        let mut map = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            map.entry(t.clone()).or_insert(id as u32);
        }
        map
    }

    /// A SentencePiece-style vocabulary: scores, `▁` for spaces, `<0xNN>` byte fallback. With
    /// `hf`, `spec.merges` are Hugging Face's merges, run by rank over token pairs.
    fn build_spm(spec: TokenizerSpec, hf: Option<&HfSpmOptions>) -> Built {
        let mut types = Self::check_common(&spec)?;
        let n = spec.tokens.len();
        if let Some(s) = &spec.scores {
            if s.len() != n {
                return Err((
                    Part::Scores,
                    format!(
                        "{} scores for {n} tokens: the two lists must have the same length",
                        s.len()
                    ),
                ));
            }
        }
        let score = |id: usize| spec.scores.as_ref().map_or(0.0, |s| s[id]);
        let token_to_id = Self::token_map(&spec.tokens);
        // Without types, `<0xNN>` pieces are the byte tokens (Hugging Face's ByteFallback).
        if spec.token_types.is_none() {
            for (id, t) in spec.tokens.iter().enumerate() {
                if spm::parse_byte_piece(t).is_some() {
                    types[id] = TOKEN_TYPE_BYTE;
                }
            }
        }

        // Byte fallback as llama.cpp's `byte_to_token`: the piece `<0xNN>`, else the byte itself
        // as a one-character piece. A vocabulary with byte tokens must cover all 256 bytes.
        let has_bytes = types.contains(&TOKEN_TYPE_BYTE);
        let byte_ids = if has_bytes {
            let mut ids = [0u32; 256];
            for (b, slot) in ids.iter_mut().enumerate() {
                let piece = spm::byte_piece(b as u8);
                let found = token_to_id.get(&piece).copied().or_else(|| {
                    (b < 0x80)
                        .then(|| token_to_id.get(&(b as u8 as char).to_string()).copied())
                        .flatten()
                });
                *slot = found.ok_or_else(|| {
                    (
                        Part::Tokens,
                        format!(
                            "byte fallback needs a token for every byte, but there is no {piece} \
                             (byte 0x{b:02X})"
                        ),
                    )
                })?;
            }
            Some(ids)
        } else {
            None
        };

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (id, t) in spec.tokens.iter().enumerate() {
            match types[id] {
                TOKEN_TYPE_BYTE => match spm::parse_byte_piece(t) {
                    Some(b) => bytes.push(b),
                    None => bytes.extend_from_slice(t.as_bytes()),
                },
                TOKEN_TYPE_NORMAL | TOKEN_TYPE_UNDEFINED | TOKEN_TYPE_UNUSED => {
                    for (i, part) in t.split(spm::SPACE_MARK).enumerate() {
                        if i > 0 {
                            bytes.push(b' ');
                        }
                        bytes.extend_from_slice(part.as_bytes());
                    }
                }
                // Control, unknown and user-defined tokens are their text, as llama.cpp renders them.
                _ => bytes.extend_from_slice(t.as_bytes()),
            }
            offsets.push(bytes.len());
        }

        let spm = Spm::new(
            spec.tokens
                .iter()
                .enumerate()
                // A score of -inf marks a piece no merge makes (see `io::spm_json_spec`).
                .filter(|(id, _)| {
                    !matches!(
                        types[*id],
                        TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN | TOKEN_TYPE_BYTE
                    ) && score(*id) != f32::NEG_INFINITY
                })
                .map(|(id, t)| (t.as_bytes(), id as u32, score(id))),
            byte_ids,
            spec.unk_id,
        );
        let (spm, prefix, strip_space) = match hf {
            None => {
                let prefix = if spec.add_space_prefix {
                    SpacePrefix::AfterSpecial
                } else {
                    SpacePrefix::Never
                };
                (spm, prefix, spec.add_space_prefix)
            }
            Some(o) => {
                let mut merges = Vec::with_capacity(spec.merges.len());
                for (rank, line) in spec.merges.iter().enumerate() {
                    let found = line.split_once(' ').and_then(|(l, r)| {
                        let id = |t: &str| token_to_id.get(t).copied();
                        Some(((id(l)?, id(r)?), id(&format!("{l}{r}"))?))
                    });
                    merges.push(found.ok_or_else(|| {
                        (
                            Part::Merges,
                            format!("merge {rank} {line:?}: a token is not in the vocabulary"),
                        )
                    })?);
                }
                (spm.with_merges(merges, o.fuse_unk), o.prefix, o.strip_space)
            }
        };
        let (specials, user_defined) = Self::matchers(&spec.tokens, &types);
        Ok(Tokenizer {
            tokens: spec.tokens,
            bytes,
            offsets,
            token_to_id,
            types,
            specials,
            user_defined,
            model: Model::SentencePiece {
                spm,
                prefix,
                strip_space,
            },
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            unk_id: spec.unk_id,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
        })
    }

    fn build(spec: TokenizerSpec, pre: Pretokenizer, opts: BuildOptions) -> Built {
        let types = Self::check_common(&spec)?;
        let n = spec.tokens.len();
        let special: Vec<bool> = types.iter().map(|&t| is_special_type(t)).collect();

        let token_to_id = Self::token_map(&spec.tokens);
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (id, t) in spec.tokens.iter().enumerate() {
            if special[id] {
                // Special tokens are stored as plain text, not in the byte alphabet.
                bytes.extend_from_slice(t.as_bytes());
            } else {
                bytes.extend_from_slice(&byte_level::token_str_to_bytes(t));
            }
            offsets.push(bytes.len());
        }

        // Merges and the byte tokens only ever name ordinary tokens: a special token that
        // happens to be spelled like one must not take part in BPE.
        let mut normal_ids: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (id, t) in spec.tokens.iter().enumerate() {
            if !special[id] {
                normal_ids.entry(t.as_str()).or_insert(id as u32);
            }
        }
        let normal_id = |s: &str| normal_ids.get(s).copied();

        let mut byte_ids = [NO_TOKEN; 256];
        let mut missing = 0;
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            match normal_id(byte_level::BYTE_TO_CHAR[b].encode_utf8(&mut [0; 4])) {
                Some(id) => *slot = id,
                None => missing += 1,
            }
        }
        if missing > 0 {
            tracing::debug!(
                missing,
                "the vocabulary lacks some of the 256 byte tokens; such bytes encode as the \
                 unknown token, or are dropped if there is none"
            );
        }

        let mut merges = Vec::with_capacity(spec.merges.len());
        for (rank, line) in spec.merges.iter().enumerate() {
            let Some((l, r)) = line.split_once(' ') else {
                return Err((
                    Part::Merges,
                    format!("merge {rank} {line:?}: expected two tokens separated by one space"),
                ));
            };
            let find = |s: &str| {
                normal_id(s).ok_or_else(|| {
                    (
                        Part::Merges,
                        format!("merge {rank} {line:?}: token {s:?} is not in the vocabulary"),
                    )
                })
            };
            let left = find(l)?;
            let right = find(r)?;
            let merged = find(&format!("{l}{r}"))?;
            merges.push((
                (left, right),
                Merge {
                    rank: rank as u32,
                    id: merged,
                },
            ));
        }
        let bpe = Bpe::new(byte_ids, merges);
        let (specials, user_defined) = Self::matchers(&spec.tokens, &types);

        let mut tok = Tokenizer {
            tokens: spec.tokens,
            bytes,
            offsets,
            token_to_id,
            types,
            specials,
            user_defined,
            model: Model::ByteLevel {
                bpe,
                whole: FxHashMap::default(),
                missing_bytes: missing > 0,
                pre,
            },
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            unk_id: spec.unk_id,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
        };
        let table = tok.whole_token_pieces(opts.ignore_merges);
        if let Model::ByteLevel { whole, .. } = &mut tok.model {
            *whole = table;
        }
        Ok(tok)
    }

    /// The fast-path table: byte strings that encode to one token. With `ignore_merges` every
    /// ordinary token's bytes map to it (Hugging Face and llama.cpp semantics); otherwise only
    /// those whose merges actually produce the token, so the table never changes a result.
    fn whole_token_pieces(&self, ignore_merges: bool) -> FxHashMap<Box<[u8]>, u32> {
        let Model::ByteLevel { bpe, .. } = &self.model else {
            return FxHashMap::default();
        };
        let mut whole = FxHashMap::default();
        whole.reserve(self.tokens.len());
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for id in 0..self.tokens.len() as u32 {
            if self.is_special(id) {
                continue;
            }
            let b = self.token_bytes(id).unwrap_or_default();
            if b.is_empty() || whole.contains_key(b) {
                continue;
            }
            if ignore_merges {
                whole.insert(b.into(), id);
                continue;
            }
            out.clear();
            bpe.encode_piece(b, &mut out, &mut scratch);
            if let [single] = out[..] {
                if single != NO_TOKEN {
                    whole.insert(b.into(), single);
                }
            }
        }
        whole
    }

    /// Encodes `text`. User-defined tokens in the text always become their ids; with
    /// `allow_special`, so do control tokens (e.g. `<|im_start|>`), which without it are encoded
    /// as ordinary text: text from users must never become control tokens. Never adds BOS or
    /// EOS (see [`Self::encode_for_model`]).
    pub fn encode(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut enc = Encoder::new(self, text.len());
        let matcher = if allow_special {
            &self.specials
        } else {
            &self.user_defined
        };
        if matcher.is_empty() {
            enc.text(text);
        } else {
            matcher.split(text, |seg| match seg {
                Segment::Text(t) => enc.text(t),
                Segment::Special(id) => enc.special(id),
            });
        }
        enc.out
    }

    /// `text` made safe to pass through a chat template into [`Self::encode_rendered`]: its
    /// control-token texts stay text (see [`special::SpecialMatcher::escape`]).
    pub fn escape_specials(&self, text: &str) -> String {
        self.specials.escape(text)
    }

    /// Encodes a rendered chat template whose messages were escaped with
    /// [`Self::escape_specials`]: the template's markup becomes control tokens, the messages'
    /// text is encoded as text, whatever it contains.
    pub fn encode_rendered(&self, rendered: &str) -> Vec<u32> {
        // (control token, or unescaped text) in order.
        let mut parts: Vec<(Option<u32>, std::borrow::Cow<str>)> = Vec::new();
        self.specials.split_escaped(rendered, |seg| match seg {
            Segment::Text(t) => parts.push((None, special::unescape(t))),
            Segment::Special(id) => parts.push((Some(id), "".into())),
        });
        let mut enc = Encoder::new(self, rendered.len());
        for (id, text) in &parts {
            match id {
                Some(id) => enc.special(*id),
                None if self.user_defined.is_empty() => enc.text(text),
                // As `encode` without `allow_special`: user-defined tokens still match.
                None => self.user_defined.split(text, |seg| match seg {
                    Segment::Text(t) => enc.text(t),
                    Segment::Special(id) => enc.special(id),
                }),
            }
        }
        enc.out
    }

    /// The ids a model sees for `text`: BOS first if the vocabulary says `add_bos`, then
    /// [`Self::encode`], then EOS if it says `add_eos` (llama.cpp's `add_special`).
    pub fn encode_for_model(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos_id);
        }
        ids.extend(self.encode(text, allow_special));
        if self.add_eos {
            ids.extend(self.eos_id);
        }
        ids
    }

    /// The algorithm behind this tokenizer.
    pub fn model(&self) -> TokenizerModel {
        match self.model {
            Model::ByteLevel { .. } => TokenizerModel::ByteLevelBpe,
            Model::SentencePiece { .. } => TokenizerModel::SentencePiece,
        }
    }

    /// The pre-tokenizer in use (byte-level BPE only).
    pub fn pretokenizer(&self) -> Option<Pretokenizer> {
        match self.model {
            Model::ByteLevel { pre, .. } => Some(pre),
            Model::SentencePiece { .. } => None,
        }
    }

    /// The exact bytes of a sequence of ids (special tokens as their text). Unknown ids are skipped.
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(b) = self.token_bytes(id) {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// [`Self::decode_bytes`] as a string, invalid UTF-8 replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }

    /// Text for a reader, as llama.cpp's `detokenize`: control and unknown tokens (BOS, EOS,
    /// `<start_of_turn>`) appear only if `render_special`; where the tokenizer put a space
    /// before the text (`add_space_prefix`, or a tokenizer.json decoder that strips it), that
    /// space is removed again from the first token.
    pub fn decode_text(&self, ids: &[u32], render_special: bool) -> String {
        let strip = matches!(
            self.model,
            Model::SentencePiece {
                strip_space: true,
                ..
            }
        );
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut first = true;
        for &id in ids {
            let t = self.token_type(id);
            if !render_special && matches!(t, Some(TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN)) {
                continue;
            }
            let Some(mut b) = self.token_bytes(id) else {
                continue;
            };
            if first && strip && t != Some(TOKEN_TYPE_CONTROL) {
                b = b.strip_prefix(b" ").unwrap_or(b);
            }
            first = false;
            out.extend_from_slice(b);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The bytes one token stands for.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (start, end) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        Some(&self.bytes[start..end])
    }

    /// The vocabulary string of a token as stored (e.g. "Ġthe", "▁the").
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The GGUF token type of an id ([`TOKEN_TYPE_NORMAL`], [`TOKEN_TYPE_CONTROL`], ...).
    pub fn token_type(&self, id: u32) -> Option<i32> {
        self.types.get(id as usize).copied()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.token_to_id.get(token).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Control, unknown or user-defined: a token matched in text as a whole.
    pub fn is_special(&self, id: u32) -> bool {
        self.token_type(id).is_some_and(is_special_type)
    }
}

/// A summary: the full vocabulary would print tens of thousands of entries.
impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model())
            .field("vocab_size", &self.tokens.len())
            .field(
                "special_tokens",
                &self.types.iter().filter(|&&t| is_special_type(t)).count(),
            )
            .field("pre", &self.pretokenizer())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// The state of one [`Tokenizer::encode`] call: the output, the merge loops' buffers and a cache
/// of the pieces already encoded in this text. The cache maps a piece (borrowed from the text, so
/// nothing is copied) to where its tokens already are in the output; repeated words in a long
/// text then cost one hash lookup. It lives for one call, so no lock is taken and memory is
/// returned when the call ends.
struct Encoder<'t, 'a> {
    tok: &'t Tokenizer,
    out: Vec<u32>,
    cache: FxHashMap<&'a [u8], (usize, usize)>,
    scratch: Scratch,
    spm: SpmScratch,
    /// The last segment was a special token (or there was none yet): llama.cpp then puts the
    /// SentencePiece space prefix before the next text.
    after_special: bool,
    /// No segment yet: the next text starts the whole text.
    first: bool,
}

impl<'t, 'a> Encoder<'t, 'a> {
    fn new(tok: &'t Tokenizer, text_len: usize) -> Self {
        Encoder {
            tok,
            // GPT-2 averages ~4 bytes per token on English text.
            out: Vec::with_capacity(text_len / 4 + 1),
            cache: FxHashMap::default(),
            scratch: Scratch::default(),
            spm: SpmScratch::default(),
            after_special: true,
            first: true,
        }
    }

    fn special(&mut self, id: u32) {
        self.out.push(id);
        self.after_special = true;
        self.first = false;
    }

    fn text(&mut self, text: &'a str) {
        if text.is_empty() {
            return;
        }
        let tok = self.tok;
        match &tok.model {
            Model::ByteLevel { pre, .. } => pre.split(text, |piece| self.piece(piece.as_bytes())),
            Model::SentencePiece { spm, prefix, .. } => spm.encode(
                text,
                prefix.applies(text, self.first, self.after_special),
                &mut self.out,
                &mut self.spm,
            ),
        }
        self.after_special = false;
        self.first = false;
    }

    #[inline]
    fn piece(&mut self, piece: &'a [u8]) {
        let Model::ByteLevel {
            bpe,
            whole,
            missing_bytes,
            ..
        } = &self.tok.model
        else {
            return;
        };
        if let Some(&id) = whole.get(piece) {
            self.out.push(id);
            return;
        }
        if let Some(&(start, len)) = self.cache.get(piece) {
            self.out.extend_from_within(start..start + len);
            return;
        }
        let start = self.out.len();
        bpe.encode_piece(piece, &mut self.out, &mut self.scratch);
        if *missing_bytes {
            self.fix_missing(start);
        }
        self.cache.insert(piece, (start, self.out.len() - start));
    }

    /// Bytes without a byte token become the unknown token, or vanish if there is none.
    #[cold]
    fn fix_missing(&mut self, start: usize) {
        let unk = self.tok.unk_id;
        let mut i = start;
        while i < self.out.len() {
            if self.out[i] == NO_TOKEN {
                match unk {
                    Some(u) => self.out[i] = u,
                    None => {
                        self.out.remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    fn gpt2() -> &'static Tokenizer {
        static TOK: OnceLock<Tokenizer> = OnceLock::new();
        TOK.get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tokenizer");
            Tokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))
                .expect("GPT-2 fixture loads")
        })
    }

    fn parts(tok: &Tokenizer) -> (&Bpe, Pretokenizer) {
        match &tok.model {
            Model::ByteLevel { bpe, pre, .. } => (bpe, *pre),
            Model::SentencePiece { .. } => panic!("not byte-level"),
        }
    }

    fn both_loops(tok: &Tokenizer, piece: &[u8]) -> (Vec<u32>, Vec<u32>) {
        let mut s = Scratch::default();
        let (mut simple, mut heap) = (Vec::new(), Vec::new());
        let (bpe, _) = parts(tok);
        bpe.merge_simple(piece, &mut simple, &mut s);
        bpe.merge_heap(piece, &mut heap, &mut s);
        (simple, heap)
    }

    #[test]
    fn heap_loop_agrees_with_simple_loop_on_long_pathological_pieces() {
        let tok = gpt2();
        for piece in [
            "a".repeat(5000),
            " ".repeat(3000),
            "ab".repeat(2000),
            "tokenizerquickbrownfox".repeat(200),
            "🍕é".repeat(500),
        ] {
            let (simple, heap) = both_loops(tok, piece.as_bytes());
            assert_eq!(simple, heap, "{:?}...", &piece[..20]);
        }
    }

    proptest! {
        #[test]
        fn heap_loop_agrees_with_simple_loop(piece in "[a-e ]{0,200}|\\PC{0,80}") {
            let (simple, heap) = both_loops(gpt2(), piece.as_bytes());
            prop_assert_eq!(simple, heap);
        }

        /// The whole-token table and the per-call cache are shortcuts: they must give what the
        /// merge loop gives for every piece.
        #[test]
        fn shortcuts_agree_with_the_merge_loop(text in "[a-z A-Z0-9'.\n]{0,300}") {
            let tok = gpt2();
            let mut want = Vec::new();
            let mut s = Scratch::default();
            let (bpe, pre) = parts(tok);
            pre.split(&text, |p| bpe.merge_simple(p.as_bytes(), &mut want, &mut s));
            prop_assert_eq!(tok.encode(&text, false), want);
        }
    }
}
