//! `gpt train --init MODEL`: a run that starts from a model's weights instead of random ones, to
//! fine-tune it on one's own text. MODEL is a GGUF file of any weight type (its tensors are
//! dequantized into f32 master weights) or a Hugging Face folder, of an architecture training
//! runs (GPT-2, Llama: SmolLM2 among them), or a known model name. Its tokenizer and special
//! tokens go into every checkpoint, so the result loads as the model it came from did.

use crate::formats::gguf::GgufFile;
use crate::formats::hf_config::HfConfig;
use crate::formats::safetensors::SafetensorsModel;
use crate::model::config::Config;
use crate::model::params::{layout, ParamSpec, Parameters};
use crate::tokenizer::TokenizerModel;
use crate::{Error, Result};
use std::path::Path;

/// The config and f32 parameters of the model at `path`.
pub fn load(path: &Path) -> Result<(Config, Parameters)> {
    let (config, params) = if path.is_dir() {
        let hf = HfConfig::from_file(&path.join("config.json"))?;
        let st = SafetensorsModel::open_dir(path)?;
        let params = Parameters::from_hf_model(&hf, &st)?;
        (hf.config, params)
    } else {
        Parameters::from_gguf(&GgufFile::open(path)?)?
    };
    check(path, &config)?;
    Ok((config, params))
}

/// The config and parameter layout of the model at `path`, without reading its weights (what
/// a resumed run checks its checkpoint against).
pub fn shape(path: &Path) -> Result<(Config, Vec<ParamSpec>)> {
    let (config, tied) = if path.is_dir() {
        let hf = HfConfig::from_file(&path.join("config.json"))?;
        (hf.config, hf.tied)
    } else {
        let g = GgufFile::open(path)?;
        let c = Config::from_gguf(&g)?;
        let tied = crate::model::params::gguf_ties(&c, &g);
        (c, tied)
    };
    check(path, &config)?;
    let specs = layout(&config, tied)?;
    Ok((config, specs))
}

/// What a checkpoint's config.json cannot say yet is refused before any step is taken.
fn check(path: &Path, c: &Config) -> Result<()> {
    if c.rope_freq_factors.is_some() || (c.rope_theta.is_some() && c.rope_scale != 1.0) {
        return Err(Error::Invalid(format!(
            "{}: its RoPE is scaled (Llama 3.1 factors or linear scaling), which gpt train's checkpoints cannot record yet",
            path.display()
        )));
    }
    Ok(())
}

/// Writes the tokenizer of the model at `path` into `dir`: `tokenizer.json`, and
/// `tokenizer_config.json` with its BOS and EOS tokens and chat template.
pub fn write_tokenizer(path: &Path, dir: &Path) -> Result<()> {
    let copy = |name: &str| -> Result<()> {
        let (from, to) = (path.join(name), dir.join(name));
        std::fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| Error::io(&from, e))
    };
    if path.is_dir() {
        if !path.join("tokenizer.json").exists() {
            return Err(Error::Invalid(format!(
                "{}: gpt train --init needs the folder's tokenizer.json",
                path.display()
            )));
        }
        copy("tokenizer.json")?;
        if path.join("tokenizer_config.json").exists() {
            copy("tokenizer_config.json")?;
        }
        return Ok(());
    }
    let g = GgufFile::open_metadata(path)?;
    let spec = crate::tokenizer::io::gguf_spec(&g)?;
    if spec.model != TokenizerModel::ByteLevelBpe {
        return Err(Error::Field {
            file: g.name.clone(),
            field: "tokenizer.ggml.model".into(),
            msg: "gpt train --init writes byte-level BPE tokenizers only (this one is SentencePiece-style); use the model's Hugging Face folder".into(),
        });
    }
    let text = |id: Option<u32>| id.and_then(|i| spec.tokens.get(i as usize)).cloned();
    let mut config = serde_json::json!({
        "bos_token": text(spec.bos_id),
        "eos_token": text(spec.eos_id),
        "add_bos_token": spec.add_bos,
        "add_eos_token": spec.add_eos,
    });
    if let Some(t) = g.get("tokenizer.chat_template").and_then(|v| v.as_str()) {
        config["chat_template"] = t.into();
    }
    crate::tokenizer::io::write_tokenizer_json(&spec, &dir.join("tokenizer.json"))?;
    let out = dir.join("tokenizer_config.json");
    let json = serde_json::to_string_pretty(&config).unwrap_or_default();
    std::fs::write(&out, json).map_err(|e| Error::io(&out, e))
}
