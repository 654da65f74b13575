//! A model ready to use: the transformer, its tokenizer, its chat template and the ids that end
//! a generation, opened from a GGUF file or a Hugging Face folder. The model itself is built by
//! [`crate::model::load`]; the tokenizer by [`crate::tokenizer`].

use crate::formats::gguf::GgufFile;
use crate::model::Transformer;
use crate::{Error, Result};

/// A model ready to use: the transformer, its tokenizer and its chat template.
pub struct LoadedModel {
    /// The file or folder it came from.
    pub source: std::path::PathBuf,
    pub transformer: Transformer,
    pub tokenizer: crate::tokenizer::Tokenizer,
    pub chat_template: Option<crate::infer::chat_template::ChatTemplate>,
    /// Ids that end generation (EOS, and end-of-turn where the file names one).
    pub stop_ids: Vec<u32>,
    /// Metadata for display (architecture, name, file type...).
    pub description: String,
}

impl LoadedModel {
    /// The vocabulary as constrained decoding needs it (a trie of every token's bytes; tens of
    /// milliseconds for a 50 000-token vocabulary: build it once per model).
    pub fn constraint_factory(&self) -> Result<crate::infer::ConstraintFactory> {
        crate::infer::ConstraintFactory::new(&self.tokenizer, self.transformer.config.vocab_size)
    }

    /// Opens a GGUF file, or a Hugging Face folder (config.json + model.safetensors + tokenizer).
    pub fn open(path: &std::path::Path) -> Result<LoadedModel> {
        if path.is_dir() {
            return Self::open_hf_dir(path);
        }
        let g = GgufFile::open(path)?;
        let transformer = Transformer::from_gguf(&g)?;
        let tokenizer = crate::tokenizer::Tokenizer::from_gguf(&g)?;
        if tokenizer.vocab_size() != transformer.config.vocab_size {
            return Err(Error::Field {
                file: g.name.clone(),
                field: "tokenizer.ggml.tokens".into(),
                msg: format!(
                    "{} tokens but the embedding has {} rows",
                    tokenizer.vocab_size(),
                    transformer.config.vocab_size
                ),
            });
        }
        let tok_text = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_str(i))
                .unwrap_or_default()
                .to_string()
        };
        let chat_template = g
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(|s| {
                crate::infer::chat_template::ChatTemplate::new(
                    s,
                    &tok_text(tokenizer.bos_id()),
                    &tok_text(tokenizer.eos_id()),
                )
            });
        let mut stop_ids: Vec<u32> = tokenizer.eos_id().into_iter().collect();
        if let Some(eot) = g
            .get("tokenizer.ggml.eot_token_id")
            .and_then(|v| v.as_u64())
        {
            if !stop_ids.contains(&(eot as u32)) {
                stop_ids.push(eot as u32);
            }
        }
        let c = &transformer.config;
        let name = g
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("unnamed");
        let description = format!(
            "{name} ({:?}, GGUF v{}): {} layers, d_model {}, {} heads ({} kv), vocab {}, context {}",
            c.arch, g.version, c.n_layer, c.d_model, c.n_head, c.n_kv_head, c.vocab_size, c.context_length
        );
        Ok(LoadedModel {
            source: path.to_path_buf(),
            transformer,
            tokenizer,
            chat_template,
            stop_ids,
            description,
        })
    }

    /// A Hugging Face folder: the weights, a tokenizer (tokenizer.json, vocab.json + merges.txt,
    /// or encoder.json + vocab.bpe), and tokenizer_config.json's chat template if it has one.
    fn open_hf_dir(dir: &std::path::Path) -> Result<LoadedModel> {
        use crate::tokenizer::Tokenizer;
        let transformer = Transformer::from_hf_dir(dir)?;
        let has = |f: &str| dir.join(f).exists();
        let tokenizer = if has("tokenizer.json") {
            Tokenizer::from_tokenizer_json(&dir.join("tokenizer.json"))?
        } else if has("vocab.json") && has("merges.txt") {
            Tokenizer::from_gpt2_files(&dir.join("vocab.json"), &dir.join("merges.txt"))?
        } else if has("encoder.json") && has("vocab.bpe") {
            Tokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))?
        } else {
            return Err(Error::Invalid(format!(
                "{}: no tokenizer (tokenizer.json, vocab.json + merges.txt, or encoder.json + vocab.bpe)",
                dir.display()
            )));
        };
        if tokenizer.vocab_size() > transformer.config.vocab_size {
            return Err(Error::Invalid(format!(
                "{}: the tokenizer has {} tokens but the model's vocabulary is {}",
                dir.display(),
                tokenizer.vocab_size(),
                transformer.config.vocab_size
            )));
        }
        let read_json = |f: &str| -> Option<serde_json::Value> {
            serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()
        };
        let config = read_json("config.json").unwrap_or_default();
        let tok_config = read_json("tokenizer_config.json").unwrap_or_default();
        // eos_token_id is an integer or a list of them.
        let mut stop_ids: Vec<u32> = match &config["eos_token_id"] {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            v => v.as_u64().map(|v| v as u32).into_iter().collect(),
        };
        if let Some(e) = tokenizer.eos_id().filter(|e| !stop_ids.contains(e)) {
            stop_ids.push(e);
        }
        let token_text = |k: &str| -> String {
            crate::tokenizer::io::special_token_text(&tok_config, k)
                .unwrap_or_default()
                .to_string()
        };
        let chat_template = tok_config["chat_template"].as_str().map(|t| {
            crate::infer::chat_template::ChatTemplate::new(
                t,
                &token_text("bos_token"),
                &token_text("eos_token"),
            )
        });
        let c = &transformer.config;
        let description = format!(
            "{} ({:?}, safetensors): {} layers, d_model {}, {} heads, vocab {}, context {}",
            dir.display(),
            c.arch,
            c.n_layer,
            c.d_model,
            c.n_head,
            c.vocab_size,
            c.context_length
        );
        Ok(LoadedModel {
            source: dir.to_path_buf(),
            transformer,
            tokenizer,
            chat_template,
            stop_ids,
            description,
        })
    }

    /// Encodes a prompt as the model expects raw text: BOS (and EOS) only where the tokenizer
    /// says so, as llama.cpp's `llama-tokenize` does.
    pub fn encode_prompt(&self, text: &str, allow_special: bool) -> Vec<u32> {
        self.tokenizer.encode_for_model(text, allow_special)
    }
}
