//! `gpt export`: a Hugging Face folder (config.json, safetensors, a byte-level BPE tokenizer; what
//! `gpt train` writes, and the Llama-family folders people download) to a GGUF file that llama.cpp
//! and Ollama run. The file is what llama.cpp's `convert_hf_to_gguf.py` writes from the same
//! folder: its tensor names (the architecture table's, [`crate::model::arch`], read backwards),
//! GPT-2's Conv1D weights transposed, Llama's Q/K rows permuted for llama.cpp's adjacent-pair
//! RoPE, Llama 3.1's frequency factors as `rope_freqs.weight`, 2-D weights in the chosen float
//! type and vectors in F32, and the metadata keys llama.cpp reads (the reader's own list,
//! [`Config::gguf_metadata`], and the tokenizer's, [`crate::tokenizer::io::gguf_metadata`]).

use crate::formats::gguf::{GgufWriter, Value};
use crate::formats::hf_config::HfConfig;
use crate::formats::safetensors::SafetensorsModel;
use crate::model::arch::Positions;
use crate::model::config::Config;
use crate::model::rope::RopePairs;
use crate::tensor::{DType, Matrix};
use crate::{Error, Result};
use half::{bf16, f16};
use std::path::Path;

/// The float types a weight matrix can be exported in (vectors are always F32), with
/// llama.cpp's `general.file_type` for each.
pub const FLOAT_TYPES: [(DType, u32); 3] = [(DType::F32, 0), (DType::F16, 1), (DType::BF16, 32)];

/// A Hugging Face folder as an in-memory GGUF file: matrices in `dtype` (F32, F16 or BF16).
pub fn hf_to_gguf(dir: &Path, dtype: DType) -> Result<GgufWriter> {
    let file_type = FLOAT_TYPES
        .iter()
        .find(|(t, _)| *t == dtype)
        .map(|&(_, f)| f)
        .ok_or_else(|| Error::Invalid(format!("export: {dtype} is not F32, F16 or BF16")))?;
    let hf = HfConfig::from_file(&dir.join("config.json"))?;
    let c = &hf.config;
    let spec = c.arch.spec();
    // Mistral goes through llama.cpp's Llama converter, as `llama` (without its window).
    let arch_name = *spec.gguf_names.first().unwrap_or(&"llama");
    let st = SafetensorsModel::open_dir(dir)?;
    let mut w = GgufWriter::new();
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
    w.add_metadata("general.architecture", Value::String(arch_name.into()));
    w.add_metadata("general.type", Value::String("model".into()));
    w.add_metadata("general.name", Value::String(name));
    for (k, v) in c.gguf_metadata(arch_name) {
        w.add_metadata(k, v);
    }
    w.add_metadata("general.file_type", Value::U32(file_type));
    w.add_metadata("general.quantization_version", Value::U32(2));
    for (k, v) in tokenizer_metadata(dir)? {
        w.add_metadata(k, v);
    }

    let names = spec.hf_names;
    let permute = matches!(
        spec.positions,
        Positions::Rope {
            gguf_pairs: RopePairs::Adjacent
        }
    );
    for gguf in gguf_tensor_names(c) {
        if hf.tied && gguf == "output.weight" {
            continue;
        }
        let Some(hf_name) = names.translate(&gguf).and_then(|n| {
            [format!("{}{n}", names.optional_prefix), n]
                .into_iter()
                .find(|n| st.contains(n))
        }) else {
            continue;
        };
        let e = &st.tensors[&hf_name];
        let n: usize = e.shape.iter().product();
        let mut x = Matrix::vector_f32(&hf_name, e.dtype, n, e.data.clone())?;
        // GGUF dims are innermost first: a (rows, cols) matrix is [cols, rows].
        let mut dims: Vec<u64> = e.shape.iter().rev().map(|&d| d as u64).collect();
        if names.conv1d && e.shape.len() == 2 && gguf.starts_with("blk.") {
            // Conv1D stores (in, out): transposed to (out, in).
            let (rows_in, cols_out) = (e.shape[0], e.shape[1]);
            x = (0..cols_out * rows_in)
                .map(|i| x[(i % rows_in) * cols_out + i / rows_in])
                .collect();
            dims = vec![rows_in as u64, cols_out as u64];
        }
        let role = gguf.split('.').rev().nth(1).unwrap_or_default();
        if permute && (role == "attn_q" || role == "attn_k") {
            let heads = if role == "attn_q" {
                c.n_head
            } else {
                c.n_kv_head
            };
            x = crate::model::rope::halves_to_adjacent(&x, heads, n / e.shape[0]);
        }
        if spec.hf_norm_plus_one && role.ends_with("norm") {
            // In the stored type, as the converter adds it.
            x.iter_mut().for_each(|v| *v = round_to(e.dtype, *v + 1.0));
        }
        let ty = if dims.len() >= 2 { dtype } else { DType::F32 };
        w.add_tensor(gguf, &dims, ty, encode(ty, &x));
    }
    if let Some(f) = &c.rope_freq_factors {
        w.add_tensor(
            "rope_freqs.weight",
            &[f.len() as u64],
            DType::F32,
            encode(DType::F32, f),
        );
    }
    Ok(w)
}

/// Writes [`hf_to_gguf`] of `dir` to `out` atomically (a temporary file beside it, renamed
/// when complete).
pub fn export(dir: &Path, out: &Path, dtype: DType) -> Result<()> {
    write_atomic(&hf_to_gguf(dir, dtype)?, out)
}

/// Writes a GGUF file to a temporary file beside `out`, renamed to `out` once complete: a
/// reader never sees half a file, and a failed write leaves none.
pub fn write_atomic(w: &GgufWriter, out: &Path) -> Result<()> {
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map_or("model.gguf".into(), |n| n.to_string_lossy())
    ));
    let written = w
        .write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Every tensor name the loader may ask for, in GGUF's naming: the architecture's roles, per
/// layer where they repeat, with `.weight` and `.bias`.
fn gguf_tensor_names(c: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let table = c.arch.spec().hf_names.names;
    for suffix in ["weight", "bias"] {
        for &(role, _) in table.iter().filter(|(_, hf)| !hf.contains("{l}")) {
            out.push(format!("{role}.{suffix}"));
        }
    }
    for l in 0..c.n_layer {
        for &(role, _) in table.iter().filter(|(_, hf)| hf.contains("{l}")) {
            for suffix in ["weight", "bias"] {
                out.push(format!("blk.{l}.{role}.{suffix}"));
            }
        }
    }
    out
}

/// `v` rounded to the float type `dtype` stores (f32 for anything else).
fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F16 => f16::from_f32(v).to_f32(),
        DType::BF16 => bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Values as GGUF bytes of a float type (round to nearest even, as numpy's `astype`).
fn encode(dtype: DType, x: &[f32]) -> Vec<u8> {
    match dtype {
        DType::F16 => x
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 => x
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => x.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

/// The folder's tokenizer (tokenizer.json, byte-level BPE) as GGUF metadata, with the special
/// ids tokenizer_config.json and config.json name, and its chat template.
fn tokenizer_metadata(dir: &Path) -> Result<Vec<(String, Value)>> {
    use crate::tokenizer::TokenizerModel;
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no tokenizer.json (export writes byte-level BPE vocabularies from it)",
            dir.display()
        )));
    }
    let parsed = crate::tokenizer::io::tokenizer_json_spec(&path)?;
    if parsed.spec.model != TokenizerModel::ByteLevelBpe {
        return Err(Error::Invalid(format!(
            "{}: a SentencePiece-style vocabulary; export writes byte-level BPE ones only",
            path.display()
        )));
    }
    let read_json = |f: &str| -> serde_json::Value {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    };
    let (config, tok_config) = (read_json("config.json"), read_json("tokenizer_config.json"));
    let mut spec = parsed.spec;
    let n = spec.tokens.len();
    // tokenizer_config.json names special tokens; config.json gives ids (an id or a list: the
    // first).
    let id_of = |key: &str| -> Option<u32> {
        let text = crate::tokenizer::io::special_token_text(&tok_config, &format!("{key}_token"));
        let by_text = text.and_then(|s| spec.tokens.iter().position(|x| x == s));
        let v = &config[format!("{key}_token_id")];
        let by_id = v.as_u64().or_else(|| v[0].as_u64()).map(|i| i as usize);
        by_text.or(by_id).filter(|&i| i < n).map(|i| i as u32)
    };
    let (bos, eos, unk, pad) = (id_of("bos"), id_of("eos"), id_of("unk"), id_of("pad"));
    // GPT-2's own convention (and `gpt train`'s BPE vocabularies): `<|endoftext|>` begins and
    // ends texts. A file without an EOS id would get llama.cpp's default for GPT-2-style
    // vocabularies, id 11 (a comma in GPT-2's), and stop there.
    let endoftext = spec
        .tokens
        .iter()
        .position(|t| t == "<|endoftext|>")
        .map(|i| i as u32);
    spec.bos_id = bos.or(spec.bos_id).or(endoftext);
    spec.eos_id = eos.or(spec.eos_id).or(endoftext);
    if spec.eos_id.is_none() {
        tracing::warn!(
            "{}: the vocabulary has no end-of-text token; llama.cpp will take token 11 ({:?}) for one",
            path.display(),
            spec.tokens.get(11).map_or("", String::as_str)
        );
    }
    spec.unk_id = unk.or(spec.unk_id);
    spec.pad_id = pad.or(spec.pad_id);
    let mut m = crate::tokenizer::io::gguf_metadata(&spec, parsed.pre);
    if let Some(t) = tok_config["chat_template"].as_str() {
        m.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    Ok(m)
}
