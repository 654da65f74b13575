//! Reading tokenizer files into a [`TokenizerSpec`]: GPT-2's original `encoder.json` +
//! `vocab.bpe`, and Hugging Face's `tokenizer.json`. (GGUF vocabularies are read with the rest of
//! the GGUF metadata in `formats::gguf`.) Every problem is an [`Error::Tokenizer`] naming the file.

use super::spm::SpacePrefix;
use super::{
    Pretokenizer, TokenizerModel, TokenizerSpec, TOKEN_TYPE_BYTE, TOKEN_TYPE_CONTROL,
    TOKEN_TYPE_NORMAL, TOKEN_TYPE_USER_DEFINED,
};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// GPT-2's only special token; in `encoder.json` it is the last id, 50256.
pub const GPT2_END_OF_TEXT: &str = "<|endoftext|>";

fn file_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{}: {msg}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| file_err(path, format!("not UTF-8: {e}")))
}

/// Token strings indexed by id from `(string, id)` pairs, which must cover 0..n exactly once.
fn tokens_by_id(
    path: &Path,
    pairs: impl IntoIterator<Item = (String, u32)>,
) -> Result<Vec<String>> {
    let pairs: Vec<(String, u32)> = pairs.into_iter().collect();
    let mut slots: Vec<Option<String>> = Vec::new();
    for (tok, id) in pairs.iter().cloned() {
        let i = id as usize;
        // n pairs can cover at most 0..n: a larger id leaves a gap, so it is refused before
        // anything is sized by it.
        if i >= pairs.len() {
            return Err(file_err(
                path,
                format!(
                    "token {tok:?} has id {id}, but the file lists {} tokens (ids must run 0..{} without holes)",
                    pairs.len(),
                    pairs.len()
                ),
            ));
        }
        if i >= slots.len() {
            slots.resize(i + 1, None);
        }
        if let Some(prev) = &slots[i] {
            if *prev != tok {
                return Err(file_err(
                    path,
                    format!("id {id} is given to both {prev:?} and {tok:?}"),
                ));
            }
        }
        slots[i] = Some(tok);
    }
    if slots.is_empty() {
        return Err(file_err(path, "the vocabulary is empty"));
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.ok_or_else(|| file_err(path, format!("no token has id {i}"))))
        .collect()
}

/// GPT-2's `encoder.json` (token string -> id) and `vocab.bpe` (a `#version` line, then one merge
/// "a b" per line in rank order). `<|endoftext|>` is the special token and both BOS and EOS.
pub fn gpt2_spec(encoder_json: &Path, vocab_bpe: &Path) -> Result<TokenizerSpec> {
    let text = read_text(encoder_json)?;
    let map: HashMap<String, u32> = serde_json::from_str(&text).map_err(|e| {
        file_err(
            encoder_json,
            format!("expected a JSON object of token -> id: {e}"),
        )
    })?;
    let tokens = tokens_by_id(encoder_json, map)?;

    let text = read_text(vocab_bpe)?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.is_empty() {
            continue;
        }
        if line.split(' ').count() != 2 {
            return Err(file_err(
                vocab_bpe,
                format!("line {}: expected a merge \"a b\", found {line:?}", i + 1),
            ));
        }
        merges.push(line.to_owned());
    }

    let eot = tokens
        .iter()
        .position(|t| t == GPT2_END_OF_TEXT)
        .map(|i| i as u32);
    let token_types = tokens
        .iter()
        .map(|t| {
            if t == GPT2_END_OF_TEXT {
                TOKEN_TYPE_CONTROL
            } else {
                TOKEN_TYPE_NORMAL
            }
        })
        .collect();
    Ok(TokenizerSpec {
        tokens,
        token_types: Some(token_types),
        merges,
        pre: "gpt2".into(),
        bos_id: eot,
        eos_id: eot,
        unk_id: None,
        pad_id: None,
        add_bos: false,
        ..Default::default()
    })
}

/// What a `tokenizer.json` says beyond the spec.
pub(crate) struct TokenizerJson {
    pub spec: TokenizerSpec,
    pub pre: Pretokenizer,
    pub ignore_merges: bool,
    /// SentencePiece-style files: how Hugging Face runs them.
    pub spm: Option<super::HfSpmOptions>,
}

/// The Llama 3 split pattern as Hugging Face stores it.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Qwen2 split pattern as Hugging Face stores it (Llama 3's with `\p{N}` for `\p{N}{1,3}`).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A Hugging Face `tokenizer.json` with a BPE model: byte-level, or SentencePiece-style
/// (see [`spm_json_options`]).
pub(crate) fn tokenizer_json_spec(path: &Path) -> Result<TokenizerJson> {
    let text = read_text(path)?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| file_err(path, format!("invalid JSON: {e}")))?;
    let model = v
        .get("model")
        .ok_or_else(|| file_err(path, "no \"model\" section"))?;
    let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_type != "BPE" {
        return Err(file_err(
            path,
            format!("unsupported tokenizer.json model type {model_type} (only byte-level BPE)"),
        ));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(s) = model.get(key).and_then(Value::as_str) {
            if !s.is_empty() {
                return Err(file_err(
                    path,
                    format!("unsupported BPE option {key} = {s:?} (not byte-level BPE)"),
                ));
            }
        }
    }
    if let Some(prefix) = spm_json_options(path, &v)? {
        return spm_json_spec(path, &v, model, prefix);
    }
    let pre_tok = v.get("pre_tokenizer").unwrap_or(&Value::Null);
    let steps: Vec<&Value> = match pre_tok.get("type").and_then(Value::as_str) {
        Some("Sequence") => pre_tok
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre_tok],
        None => vec![],
    };
    if !steps
        .iter()
        .any(|s| s.get("type").and_then(Value::as_str) == Some("ByteLevel"))
    {
        return Err(file_err(
            path,
            "unsupported tokenizer.json: BPE without a ByteLevel pre-tokenizer \
             (SentencePiece-style BPE is not byte-level)",
        ));
    }
    if steps
        .iter()
        .any(|s| s.get("add_prefix_space").and_then(Value::as_bool) == Some(true))
    {
        return Err(file_err(
            path,
            "unsupported tokenizer.json: ByteLevel with add_prefix_space = true",
        ));
    }
    let pre = detect_pretokenizer(&steps).unwrap_or_else(|| {
        tracing::warn!(
            file = %path.display(),
            "unrecognised tokenizer.json pre_tokenizer; falling back to the GPT-2 split pattern"
        );
        Pretokenizer::Gpt2
    });

    let (tokens, types) = json_vocab(path, &v, model)?;
    let token_types = (0..tokens.len() as u32)
        .map(|id| types.get(&id).copied().unwrap_or(TOKEN_TYPE_NORMAL))
        .collect();
    let merges = json_merges(path, model)?;

    let unk_id = model
        .get("unk_token")
        .and_then(Value::as_str)
        .and_then(|u| tokens.iter().position(|t| t == u))
        .map(|i| i as u32);
    let ignore_merges = model
        .get("ignore_merges")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(TokenizerJson {
        spec: TokenizerSpec {
            tokens,
            token_types: Some(token_types),
            merges,
            pre: pre.name().into(),
            // BOS/EOS and add_bos live in tokenizer_config.json / the model config, not here.
            bos_id: None,
            eos_id: None,
            unk_id,
            pad_id: None,
            add_bos: false,
            ..Default::default()
        },
        pre,
        ignore_merges,
        spm: None,
    })
}

/// The steps of a normalizer or pre-tokenizer: a `Sequence`'s members, or the one step.
fn steps_of<'a>(v: &'a Value, list_key: &str) -> Vec<&'a Value> {
    match v.get("type").and_then(Value::as_str) {
        Some("Sequence") => v
            .get(list_key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![v],
        None => vec![],
    }
}

/// Whether a `tokenizer.json` is SentencePiece-style BPE (Llama 2, Mistral v0.1, Phi-3, Gemma):
/// spaces become `▁` by a normalizer `Replace(" ", "▁")` (with `Prepend("▁")` when a space is put
/// before the text) or by a `Metaspace` pre-tokenizer that does not split. Returns where the
/// file puts a `▁` before the text for such a file, `None` for a byte-level one.
fn spm_json_options(path: &Path, v: &Value) -> Result<Option<SpacePrefix>> {
    let ty = |s: &Value| {
        s.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let str_of = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
    let normalizer = steps_of(v.get("normalizer").unwrap_or(&Value::Null), "normalizers");
    let pre = steps_of(
        v.get("pre_tokenizer").unwrap_or(&Value::Null),
        "pretokenizers",
    );
    let replaces_space = normalizer.iter().any(|s| {
        ty(s) == "Replace"
            && s.get("pattern")
                .and_then(|p| p.get("String"))
                .and_then(Value::as_str)
                == Some(" ")
            && str_of(s, "content").as_deref() == Some(super::spm::SPACE_MARK)
    });
    let metaspace = pre.iter().find(|s| ty(s) == "Metaspace");
    let byte_fallback = v
        .get("model")
        .and_then(|m| m.get("byte_fallback"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !replaces_space && metaspace.is_none() {
        if byte_fallback {
            return Err(file_err(
                path,
                "unsupported tokenizer.json: BPE with byte_fallback but spaces are not replaced \
                 by \u{2581} (neither a Replace normalizer nor a Metaspace pre-tokenizer)",
            ));
        }
        return Ok(None);
    }
    if let Some(m) = metaspace {
        if pre.len() != 1 || m.get("split").and_then(Value::as_bool) == Some(true) {
            return Err(file_err(
                path,
                "unsupported tokenizer.json: a Metaspace pre-tokenizer that splits the text",
            ));
        }
        // Older files say only `add_prefix_space`, which meant "always".
        let legacy = m.get("add_prefix_space").and_then(Value::as_bool);
        let scheme = match legacy {
            Some(true) => "always".to_owned(),
            Some(false) => "never".to_owned(),
            None => str_of(m, "prepend_scheme").unwrap_or_else(|| "always".into()),
        };
        return match scheme.as_str() {
            "always" => Ok(Some(SpacePrefix::UnlessSpace)),
            "first" => Ok(Some(SpacePrefix::FirstUnlessSpace)),
            "never" => Ok(Some(SpacePrefix::Never)),
            other => Err(file_err(
                path,
                format!("unsupported Metaspace prepend_scheme {other:?}"),
            )),
        };
    }
    // Gemma's Split(" ") runs after the normalizer has replaced every space: it never splits.
    let splits_nothing = |s: &Value| {
        ty(s) == "Split"
            && s.get("pattern")
                .and_then(|p| p.get("String"))
                .and_then(Value::as_str)
                == Some(" ")
    };
    if replaces_space && pre.iter().all(|s| splits_nothing(s)) {
        // ok: no pre-tokenizer in effect
    } else if !pre.is_empty() {
        return Err(file_err(
            path,
            format!(
                "unsupported tokenizer.json: SentencePiece-style normalizer with a {} \
                 pre-tokenizer",
                ty(pre[0])
            ),
        ));
    }
    let prepends = normalizer.iter().any(|s| {
        ty(s) == "Prepend" && str_of(s, "prepend").as_deref() == Some(super::spm::SPACE_MARK)
    });
    Ok(Some(if prepends {
        SpacePrefix::EveryFragment
    } else {
        SpacePrefix::Never
    }))
}

/// Whether a `tokenizer.json` decoder drops one leading space (`Strip(" ", 1, 0)`, which
/// SentencePiece-style files put after `Fuse`).
fn json_decoder_strips_space(v: &Value) -> bool {
    let dec = v.get("decoder").unwrap_or(&Value::Null);
    steps_of(dec, "decoders").iter().any(|s| {
        s.get("type").and_then(Value::as_str) == Some("Strip")
            && s.get("content").and_then(Value::as_str) == Some(" ")
            && s.get("start").and_then(Value::as_u64) == Some(1)
    })
}

/// Tokens indexed by id and the token types of the added tokens (special -> control, else
/// user-defined), from `model.vocab` and `added_tokens`.
fn json_vocab(path: &Path, v: &Value, model: &Value) -> Result<(Vec<String>, HashMap<u32, i32>)> {
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| file_err(path, "model.vocab is not an object of token -> id"))?;
    let mut pairs = Vec::with_capacity(vocab.len());
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| file_err(path, format!("model.vocab[{tok:?}] is not a token id")))?;
        pairs.push((tok.clone(), id));
    }
    let mut types: HashMap<u32, i32> = HashMap::new();
    let mut added_ids = Vec::new();
    if let Some(added) = v.get("added_tokens").and_then(Value::as_array) {
        for (i, a) in added.iter().enumerate() {
            let id = a
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|i| u32::try_from(i).ok());
            let content = a.get("content").and_then(Value::as_str);
            let (Some(id), Some(content)) = (id, content) else {
                return Err(file_err(
                    path,
                    format!("added_tokens[{i}] lacks an id or content"),
                ));
            };
            let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
            types.insert(
                id,
                if special {
                    TOKEN_TYPE_CONTROL
                } else {
                    TOKEN_TYPE_USER_DEFINED
                },
            );
            added_ids.push((content.to_owned(), id));
        }
    }
    if !added_ids.is_empty() {
        let ids: std::collections::HashSet<u32> = added_ids.iter().map(|(_, id)| *id).collect();
        pairs.retain(|(_, j)| !ids.contains(j));
        pairs.extend(added_ids);
    }
    Ok((tokens_by_id(path, pairs)?, types))
}

/// `model.merges` as "a b" strings (older files write "a b", newer ones ["a", "b"]).
fn json_merges(path: &Path, model: &Value) -> Result<Vec<String>> {
    let merges_json = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| file_err(path, "model.merges is not a list"))?;
    let mut merges = Vec::with_capacity(merges_json.len());
    for (i, m) in merges_json.iter().enumerate() {
        let line = match m {
            Value::String(s) => s.clone(),
            Value::Array(a) => match (a.first().and_then(Value::as_str), a.get(1)) {
                (Some(l), Some(Value::String(r))) if a.len() == 2 => format!("{l} {r}"),
                _ => return Err(file_err(path, format!("model.merges[{i}] is not a pair"))),
            },
            _ => return Err(file_err(path, format!("model.merges[{i}] is not a merge"))),
        };
        merges.push(line);
    }
    Ok(merges)
}

/// The BOS id a `TemplateProcessing` post-processor puts before a single sequence, if any.
fn json_bos(v: &Value, tokens: &[String]) -> Option<u32> {
    let pp = v.get("post_processor")?;
    let steps = steps_of(pp, "processors");
    let tp = steps
        .iter()
        .find(|s| s.get("type").and_then(Value::as_str) == Some("TemplateProcessing"))?;
    let first = tp.get("single")?.as_array()?.first()?;
    let name = first.get("SpecialToken")?.get("id")?.as_str()?;
    tokens.iter().position(|t| t == name).map(|i| i as u32)
}

/// A SentencePiece-style `tokenizer.json`. It stores merges, not SentencePiece's scores; they
/// are run as Hugging Face runs them, by rank over token pairs (see [`super::spm`]). The scores
/// kept in the spec (minus the rank of the first merge that makes a piece; single characters 0;
/// -inf for longer pieces no merge makes) are for inspection only.
fn spm_json_spec(
    path: &Path,
    v: &Value,
    model: &Value,
    prefix: SpacePrefix,
) -> Result<TokenizerJson> {
    let (tokens, added) = json_vocab(path, v, model)?;
    let merges = json_merges(path, model)?;
    let index: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    let byte_fallback = model
        .get("byte_fallback")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut scores = vec![f32::NEG_INFINITY; tokens.len()];
    let mut types = vec![TOKEN_TYPE_NORMAL; tokens.len()];
    for (id, t) in tokens.iter().enumerate() {
        if let Some(&ty) = added.get(&(id as u32)) {
            types[id] = ty;
        } else if byte_fallback && super::spm::parse_byte_piece(t).is_some() {
            types[id] = TOKEN_TYPE_BYTE;
        }
        if t.chars().count() == 1 {
            scores[id] = 0.0;
        }
    }
    for (rank, line) in merges.iter().enumerate() {
        let Some((l, r)) = line.split_once(' ') else {
            return Err(file_err(
                path,
                format!("model.merges[{rank}] {line:?} is not two tokens"),
            ));
        };
        let Some(&id) = index.get(format!("{l}{r}").as_str()) else {
            return Err(file_err(
                path,
                format!("model.merges[{rank}] {line:?}: {l}{r:?} is not in the vocabulary"),
            ));
        };
        if scores[id as usize] == f32::NEG_INFINITY {
            scores[id as usize] = -(rank as f32) - 1.0;
        }
    }
    let unk_id = model
        .get("unk_token")
        .and_then(Value::as_str)
        .and_then(|u| index.get(u).copied());
    let bos_id = json_bos(v, &tokens);
    let fuse_unk = model
        .get("fuse_unk")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(TokenizerJson {
        spec: TokenizerSpec {
            model: TokenizerModel::SentencePiece,
            tokens,
            token_types: Some(types),
            scores: Some(scores),
            merges,
            bos_id,
            add_bos: bos_id.is_some(),
            unk_id,
            add_space_prefix: prefix != SpacePrefix::Never,
            ..Default::default()
        },
        pre: Pretokenizer::Gpt2,
        ignore_merges: false,
        spm: Some(super::HfSpmOptions {
            prefix,
            strip_space: json_decoder_strips_space(v),
            fuse_unk,
        }),
    })
}

/// Which of our split patterns a `tokenizer.json` pre-tokenizer sequence is, if any.
fn detect_pretokenizer(steps: &[&Value]) -> Option<Pretokenizer> {
    let ty = |s: &Value| {
        s.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let byte_level_regex = |s: &Value| s.get("use_regex").and_then(Value::as_bool).unwrap_or(true);
    let kinds: Vec<String> = steps.iter().map(|s| ty(s)).collect();
    match kinds.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["ByteLevel"] if byte_level_regex(steps[0]) => Some(Pretokenizer::Gpt2),
        ["Digits", "ByteLevel"]
            if steps[0].get("individual_digits").and_then(Value::as_bool) == Some(true)
                && byte_level_regex(steps[1]) =>
        {
            Some(Pretokenizer::Smollm)
        }
        ["Split", "ByteLevel"] if !byte_level_regex(steps[1]) => {
            let pattern = steps[0]
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Value::as_str)?;
            match pattern {
                LLAMA3_PATTERN => Some(Pretokenizer::Llama3),
                QWEN2_PATTERN => Some(Pretokenizer::Qwen2),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Writes `contents` to `path`, naming the file on failure.
fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The vocabulary as a JSON object `{"token": id, ...}` in id order, one entry per line (the
/// order a reader expects and diffs well; `serde_json`'s map would sort by key).
fn vocab_json(tokens: &[String], indent: &str) -> String {
    let mut out = String::from("{\n");
    for (id, t) in tokens.iter().enumerate() {
        let sep = if id + 1 < tokens.len() { "," } else { "" };
        out.push_str(&format!("{indent}  {}: {id}{sep}\n", json_str(t)));
    }
    out.push_str(indent);
    out.push('}');
    out
}

/// Whether the token with this id is matched as a special token.
fn is_special(spec: &TokenizerSpec, id: usize) -> bool {
    spec.token_types.as_ref().is_some_and(|t| {
        t.get(id)
            .is_some_and(|&t| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
    })
}

/// The `pre_tokenizer` of a `tokenizer.json` for our split patterns, in the forms
/// [`detect_pretokenizer`] recognises (and Hugging Face runs identically).
fn pre_tokenizer_json(pre: Pretokenizer) -> Value {
    let byte_level = |use_regex: bool| {
        serde_json::json!({
            "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": use_regex
        })
    };
    match pre {
        Pretokenizer::Gpt2 => byte_level(true),
        Pretokenizer::Smollm => serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]
        }),
        Pretokenizer::Llama3 | Pretokenizer::Qwen2 => serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split",
                 "pattern": {"Regex": if pre == Pretokenizer::Qwen2 { QWEN2_PATTERN } else { LLAMA3_PATTERN }},
                 "behavior": "Isolated", "invert": false},
                byte_level(false)
            ]
        }),
    }
}

/// The text of special token `key` (`"bos_token"`, `"eos_token"`, ...) in a parsed
/// tokenizer_config.json, which writes it as a string or as `{"content": ...}`.
pub fn special_token_text<'a>(tokenizer_config: &'a Value, key: &str) -> Option<&'a str> {
    let v = &tokenizer_config[key];
    v.as_str().or_else(|| v["content"].as_str())
}

/// Writes a byte-level BPE as a Hugging Face `tokenizer.json`: model BPE with the vocabulary and
/// merges ("a b" strings, which every version of `tokenizers` reads), the spec's split pattern
/// with a ByteLevel pre-tokenizer (`add_prefix_space` false) and a ByteLevel decoder; special
/// tokens are `added_tokens` (and in the vocabulary, as in GPT-2's own file).
pub fn write_tokenizer_json(spec: &TokenizerSpec, path: &Path) -> Result<()> {
    let pre = Pretokenizer::known(&spec.pre).ok_or_else(|| {
        file_err(
            path,
            format!("cannot write the unknown pre-tokenizer {:?}", spec.pre),
        )
    })?;
    let added: Vec<Value> = (0..spec.tokens.len())
        .filter(|&id| is_special(spec, id))
        .map(|id| {
            serde_json::json!({
                "id": id, "content": spec.tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            })
        })
        .collect();
    let merges: Vec<String> = spec.merges.iter().map(|m| json_str(m)).collect();
    let added_json = serde_json::to_string(&added)
        .map_err(|e| file_err(path, format!("cannot serialize: {e}")))?;
    let decoder = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
    });
    let unk = match spec.unk_id {
        Some(id) => json_str(&spec.tokens[id as usize]),
        None => "null".into(),
    };
    let text = format!(
        "{{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \
         \"added_tokens\": {added_json},\n  \"normalizer\": null,\n  \"pre_tokenizer\": {},\n  \
         \"post_processor\": null,\n  \"decoder\": {decoder},\n  \"model\": {{\n    \
         \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": {unk},\n    \
         \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n    \
         \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": {},\n    \
         \"vocab\": {},\n    \"merges\": [\n      {}\n    ]\n  }}\n}}\n",
        pre_tokenizer_json(pre),
        pre == Pretokenizer::Llama3,
        vocab_json(&spec.tokens, "    "),
        merges.join(",\n      "),
    );
    write_file(path, &text)
}

/// Writes GPT-2's original files into `dir`: `encoder.json` (token -> id) and `vocab.bpe`
/// (`#version: 0.2`, then one merge per line). These files cannot say which split pattern or which
/// special tokens a vocabulary has: loaders assume GPT-2's pattern and `<|endoftext|>`, so other
/// patterns are an error here (write `tokenizer.json` instead).
pub fn write_gpt2_files(spec: &TokenizerSpec, dir: &Path) -> Result<()> {
    let (encoder, vocab) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    if Pretokenizer::known(&spec.pre) != Some(Pretokenizer::Gpt2) {
        return Err(file_err(
            &encoder,
            format!(
                "GPT-2's files imply GPT-2's split pattern, not {:?}; use tokenizer.json",
                spec.pre
            ),
        ));
    }
    write_file(&encoder, &(vocab_json(&spec.tokens, "") + "\n"))?;
    let mut text = String::from("#version: 0.2\n");
    for m in &spec.merges {
        text.push_str(m);
        text.push('\n');
    }
    write_file(&vocab, &text)
}

/// A byte-level BPE vocabulary as GGUF metadata, the keys [`gguf_spec`] reads back
/// (`tokenizer.ggml.model = "gpt2"`, its pre-tokenizer's name, tokens, types, merges, the
/// special ids and whether BOS is added), as llama.cpp's converter writes them.
pub fn gguf_metadata(
    spec: &TokenizerSpec,
    pre: Pretokenizer,
) -> Vec<(String, crate::formats::gguf::Value)> {
    use crate::formats::gguf::Value as V;
    let strings = |v: &[String]| V::Array(v.iter().cloned().map(V::String).collect());
    let types = spec
        .token_types
        .clone()
        .unwrap_or_else(|| vec![super::TOKEN_TYPE_NORMAL; spec.tokens.len()]);
    let mut m = vec![
        ("tokenizer.ggml.model".to_string(), V::String("gpt2".into())),
        (
            "tokenizer.ggml.pre".to_string(),
            V::String(pre.name().into()),
        ),
        ("tokenizer.ggml.tokens".to_string(), strings(&spec.tokens)),
        (
            "tokenizer.ggml.token_type".to_string(),
            V::Array(types.into_iter().map(V::I32).collect()),
        ),
        ("tokenizer.ggml.merges".to_string(), strings(&spec.merges)),
    ];
    for (k, id) in [
        ("bos_token_id", spec.bos_id),
        ("eos_token_id", spec.eos_id),
        ("unknown_token_id", spec.unk_id),
        ("padding_token_id", spec.pad_id),
    ] {
        if let Some(id) = id {
            m.push((format!("tokenizer.ggml.{k}"), V::U32(id)));
        }
    }
    m.push(("tokenizer.ggml.add_bos_token".into(), V::Bool(spec.add_bos)));
    m
}

/// The tokenizer described by GGUF's `tokenizer.ggml.*` keys: `tokenizer.ggml.model` "gpt2"
/// (byte-level BPE with `tokenizer.ggml.merges` and a `tokenizer.ggml.pre` split pattern) or
/// "llama" (SentencePiece-style with `tokenizer.ggml.scores`). Defaults for absent keys are
/// llama.cpp's: for "llama", BOS 1, EOS 2, unknown 0, `add_bos_token` and `add_space_prefix`
/// true; for "gpt2", `add_bos_token` true only for the Llama 3 split.
pub fn gguf_spec(g: &crate::formats::gguf::GgufFile) -> Result<TokenizerSpec> {
    let field = |k: &str, msg: String| Error::Field {
        file: g.name.clone(),
        field: k.into(),
        msg,
    };
    let model_name = g.get_str("tokenizer.ggml.model")?;
    let model = match model_name {
        "gpt2" => TokenizerModel::ByteLevelBpe,
        "llama" => TokenizerModel::SentencePiece,
        other => {
            return Err(field(
                "tokenizer.ggml.model",
                format!(
                    "tokenizer model '{other}' is not supported (supported: gpt2, byte-level \
                     BPE; llama, SentencePiece-style BPE)"
                ),
            ))
        }
    };
    let tokens: Vec<String> = g
        .get_str_array("tokenizer.ggml.tokens")?
        .into_iter()
        .map(String::from)
        .collect();
    let n = tokens.len();
    let token_types = g.get_i32_array_opt("tokenizer.ggml.token_type")?;
    if let Some(types) = &token_types {
        if types.len() != n {
            return Err(field(
                "tokenizer.ggml.token_type",
                format!("{} token types for {n} tokens", types.len()),
            ));
        }
        if let Some((i, t)) = types
            .iter()
            .enumerate()
            .find(|(_, &t)| !(0..=TOKEN_TYPE_BYTE).contains(&t))
        {
            return Err(field(
                "tokenizer.ggml.token_type",
                format!("element {i}: {t} is not a token type (0..={TOKEN_TYPE_BYTE})"),
            ));
        }
    }
    let id = |k: &str| -> Result<Option<u32>> {
        match g.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                Some(i) if (i as usize) < n => Ok(Some(i)),
                _ => Err(field(
                    k,
                    format!("{v:?} is not a token id of the {n}-token vocabulary"),
                )),
            },
        }
    };
    let flag =
        |k: &str, default: bool| -> Result<bool> { Ok(g.get_bool_opt(k)?.unwrap_or(default)) };
    // llama.cpp's default ids for SentencePiece vocabularies, used only if in range.
    let default_id = |spm_default: u32| {
        (model == TokenizerModel::SentencePiece && (spm_default as usize) < n)
            .then_some(spm_default)
    };
    let (bos_id, eos_id, unk_id) = (
        id("tokenizer.ggml.bos_token_id")?.or(default_id(1)),
        id("tokenizer.ggml.eos_token_id")?.or(default_id(2)),
        id("tokenizer.ggml.unknown_token_id")?.or(default_id(0)),
    );
    let pad_id = id("tokenizer.ggml.padding_token_id")?;
    match model {
        TokenizerModel::SentencePiece => {
            let scores = g.get_f32_array_opt("tokenizer.ggml.scores")?;
            if let Some(s) = &scores {
                if s.len() != n {
                    return Err(field(
                        "tokenizer.ggml.scores",
                        format!("{} scores for {n} tokens", s.len()),
                    ));
                }
            }
            Ok(TokenizerSpec {
                model,
                tokens,
                token_types,
                scores,
                bos_id,
                eos_id,
                unk_id,
                pad_id,
                add_bos: flag("tokenizer.ggml.add_bos_token", true)?,
                add_eos: flag("tokenizer.ggml.add_eos_token", false)?,
                add_space_prefix: flag("tokenizer.ggml.add_space_prefix", true)?,
                ..Default::default()
            })
        }
        TokenizerModel::ByteLevelBpe => {
            let pre_name = g.get_str_opt("tokenizer.ggml.pre")?.unwrap_or("gpt2");
            let pre = Pretokenizer::known(pre_name).ok_or_else(|| {
                field(
                    "tokenizer.ggml.pre",
                    format!(
                        "pre-tokenizer '{pre_name}' is not supported (supported: {})",
                        Pretokenizer::SUPPORTED
                    ),
                )
            })?;
            Ok(TokenizerSpec {
                model,
                tokens,
                token_types,
                merges: g
                    .get_str_array("tokenizer.ggml.merges")?
                    .into_iter()
                    .map(String::from)
                    .collect(),
                pre: pre_name.to_string(),
                bos_id,
                eos_id,
                unk_id,
                pad_id,
                add_bos: flag("tokenizer.ggml.add_bos_token", pre == Pretokenizer::Llama3)?,
                add_eos: flag("tokenizer.ggml.add_eos_token", false)?,
                ..Default::default()
            })
        }
    }
}
