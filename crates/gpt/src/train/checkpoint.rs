//! Checkpoints: a Hugging Face GPT-2 folder (model.safetensors + config.json + tokenizer.json),
//! so `gpt generate --model DIR` and transformers load it, plus the optimizer state and the
//! training state beside it for an exact resume.
//!
//! Writes are atomic: everything goes into a temporary folder, each file is fsynced, the folder
//! is renamed into place, and only then does the `latest` link move to it. A process killed at
//! any moment leaves the previous checkpoint intact.

use crate::model::config::Config;
use crate::model::params::Parameters;
use crate::train::adamw::AdamW;
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of the link to the newest complete checkpoint, inside the output folder.
pub const LATEST: &str = "latest";

/// What the training loop needs to continue exactly where it stopped.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// (step, loss) of every step so far.
    pub train_losses: Vec<(usize, f32)>,
    /// (step, validation loss).
    pub val_losses: Vec<(usize, f32)>,
    /// Which run wrote the checkpoint (pruning keeps to its own run's); empty in checkpoints
    /// written before runs had ids.
    #[serde(default)]
    pub run: String,
}

/// An id for a new run: the time and the process, distinct for every run on a machine.
pub fn new_run_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{t:x}-{}", std::process::id())
}

/// What a new run in `out` would mix with: `Some("checkpoints")` when `out/checkpoints`
/// holds a `step-*` folder, `Some("a 'latest' link")` when only the link is there.
pub fn existing(out: &Path) -> Option<&'static str> {
    let steps = std::fs::read_dir(out.join("checkpoints"))
        .ok()
        .is_some_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
        });
    if steps {
        Some("checkpoints")
    } else if std::fs::symlink_metadata(out.join(LATEST)).is_ok() {
        Some("a 'latest' link")
    } else {
        None
    }
}

/// Hugging Face's config.json for a model of this shape: GPT-2's, or Llama's (`tied`: no
/// lm_head of its own).
pub fn hf_config(c: &Config, tied: bool) -> serde_json::Value {
    if c.arch != crate::model::config::Arch::Llama {
        return hf_gpt2_config(c);
    }
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": decimal(c.norm_eps),
        "rope_theta": c.rope_theta.unwrap_or(10000.0),
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
    })
}

/// An f32 as the shortest decimal that reads back as it (1e-5, not 9.999999747378752e-6).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Hugging Face's config.json for a GPT-2 of this shape.
pub fn hf_gpt2_config(c: &Config) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.context_length,
        "n_embd": c.d_model,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.d_ff,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": decimal(c.norm_eps),
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serializes named f32 tensors (name, shape, values) as safetensors.
fn safetensors_bytes(
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    meta: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map_err(|e| Error::Invalid(format!("tensor {n}: {e}")))?;
            Ok((n.clone(), view))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, meta).map_err(|e| Error::Invalid(format!("serializing: {e}")))
}

/// The tokenizer files every checkpoint of a run carries: `tokenizer.json`, and
/// `tokenizer_config.json` where the run has one (a run that began from a model: its special
/// tokens and chat template), with the ids of its BOS and EOS tokens for config.json.
pub struct TokenizerFiles {
    pub dir: PathBuf,
    /// `bos_token_id` and `eos_token_id`, where known.
    pub special_ids: serde_json::Map<String, serde_json::Value>,
}

impl TokenizerFiles {
    /// The files in `dir`; the special ids are those of tokenizer_config.json's `bos_token`
    /// and `eos_token` in `tok`.
    pub fn new(dir: &Path, tok: &crate::tokenizer::Tokenizer) -> TokenizerFiles {
        let config: serde_json::Value = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut special_ids = serde_json::Map::new();
        for (key, id_key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id")] {
            if let Some(id) = crate::tokenizer::io::special_token_text(&config, key)
                .and_then(|t| tok.token_to_id(t))
            {
                special_ids.insert(id_key.into(), id.into());
            }
        }
        TokenizerFiles {
            dir: dir.to_path_buf(),
            special_ids,
        }
    }
}

/// Writes the checkpoint of `step` under `out/checkpoints/step-NNNNNN` and points `out/latest`
/// at it; keeps the `keep` newest checkpoints. The tokenizer's files are copied in.
pub fn save(
    out: &Path,
    config: &Config,
    params: &Parameters,
    opt: &AdamW,
    state: &TrainState,
    tokenizer: &TokenizerFiles,
    keep: usize,
) -> Result<PathBuf> {
    let dir = out.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = format!("step-{:06}", state.step);
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;

    let model: Vec<_> = params
        .specs
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.hf_shape(),
                f32_bytes(&params.get_hf(&s.name).unwrap_or_default()),
            )
        })
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_file(
        &tmp.join("model.safetensors"),
        &safetensors_bytes(model, Some(meta))?,
    )?;
    let mut hf = hf_config(config, params.find(config, "output.weight").is_none());
    if let Some(m) = hf.as_object_mut() {
        m.extend(tokenizer.special_ids.clone());
    }
    write_file(
        &tmp.join("config.json"),
        serde_json::to_string_pretty(&hf)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        let from = tokenizer.dir.join(name);
        if name == "tokenizer.json" || from.exists() {
            let bytes = std::fs::read(&from).map_err(|e| Error::io(&from, e))?;
            write_file(&tmp.join(name), &bytes)?;
        }
    }
    let mut moments = Vec::new();
    for s in &params.specs {
        let r = s.offset..s.offset + s.len();
        moments.push((
            format!("m.{}", s.name),
            s.shape.clone(),
            f32_bytes(&opt.m[r.clone()]),
        ));
        moments.push((
            format!("v.{}", s.name),
            s.shape.clone(),
            f32_bytes(&opt.v[r]),
        ));
    }
    let meta = HashMap::from([("t".to_string(), opt.t.to_string())]);
    write_file(
        &tmp.join("optimizer.safetensors"),
        &safetensors_bytes(moments, Some(meta))?,
    )?;
    write_file(
        &tmp.join("train_state.json"),
        serde_json::to_string(state).unwrap_or_default().as_bytes(),
    )?;
    sync_dir(&tmp)?;

    let final_dir = dir.join(&name);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    sync_dir(&dir)?;
    // Move the link atomically: a new link under a temporary name, renamed over the old one.
    let link_tmp = out.join(format!(".{LATEST}.tmp"));
    let _ = std::fs::remove_file(&link_tmp);
    std::os::unix::fs::symlink(Path::new("checkpoints").join(&name), &link_tmp)
        .map_err(|e| Error::io(&link_tmp, e))?;
    std::fs::rename(&link_tmp, out.join(LATEST)).map_err(|e| Error::io(out.join(LATEST), e))?;
    sync_dir(out)?;
    prune(&dir, &name, &state.run, keep)?;
    Ok(final_dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The run id a checkpoint folder records (None if it cannot be read).
fn run_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("train_state.json")).ok()?;
    serde_json::from_str::<TrainState>(&text)
        .ok()
        .map(|s| s.run)
}

/// Keeps the `keep` newest checkpoints of run `run` (by step; `latest`, the folder named
/// `current`, always among them) and removes the rest of that run's; other runs' checkpoints
/// are left alone. Also removes what interrupted writes left (`.tmp-*` folders).
fn prune(dir: &Path, current: &str, run: &str, keep: usize) -> Result<()> {
    let mut mine = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let Ok(e) = e else { continue };
        let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
        if name.starts_with(".tmp-") {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        } else if name.starts_with("step-")
            && name != current
            && run_of(&path).as_deref() == Some(run)
        {
            mine.push(path);
        }
    }
    // By step number (names are step-NNNNNN, seven digits and more past a million).
    mine.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str()?.strip_prefix("step-")?.parse::<u64>().ok())
            .unwrap_or(0)
    });
    let drop = mine.len().saturating_sub(keep.max(1) - 1);
    for p in &mine[..drop] {
        std::fs::remove_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    Ok(())
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Config,
    pub params: Parameters,
    /// The optimizer moments and step count (the caller supplies the hyperparameters).
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub t: u64,
    pub state: TrainState,
}

/// Loads the checkpoint `out/latest` points at, if there is one. A link to nothing is an
/// error naming its target, never a silent fresh start.
pub fn load_latest(out: &Path) -> Result<Option<Checkpoint>> {
    let link = out.join(LATEST);
    if std::fs::symlink_metadata(&link).is_err() {
        return Ok(None);
    }
    let dir = std::fs::canonicalize(&link).map_err(|e| {
        let target = std::fs::read_link(&link).unwrap_or_default();
        Error::Invalid(format!(
            "{} points at {}, which is not there ({e}): point it at a checkpoint under {}/checkpoints, or remove it to start over",
            link.display(),
            target.display(),
            out.display()
        ))
    })?;
    load(&dir).map(Some)
}

pub fn load(dir: &Path) -> Result<Checkpoint> {
    use crate::formats::hf_config::HfConfig;
    use crate::formats::safetensors::SafetensorsModel;
    let hf = HfConfig::from_file(&dir.join("config.json"))?;
    let st = SafetensorsModel::open_dir(dir)?;
    let params = Parameters::from_hf_model(&hf, &st)?;
    let config = hf.config;
    let mut opt = SafetensorsModel::default();
    let opt_path = dir.join("optimizer.safetensors");
    opt.add_file(&opt_path)?;
    let (mut m, mut v) = (vec![0f32; params.len()], vec![0f32; params.len()]);
    for s in &params.specs {
        for (prefix, dst) in [("m", &mut m), ("v", &mut v)] {
            let e = opt.get(&format!("{prefix}.{}", s.name), &s.shape)?;
            for (d, c) in dst[s.offset..s.offset + s.len()]
                .iter_mut()
                .zip(e.data.chunks_exact(4))
            {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    let header = std::fs::read(&opt_path).map_err(|e| Error::io(&opt_path, e))?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&header).map_err(|e| Error::Format {
            file: opt_path.display().to_string(),
            msg: e.to_string(),
        })?;
    let t = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("t"))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| Error::Field {
            file: opt_path.display().to_string(),
            field: "t".into(),
            msg: "missing step count".into(),
        })?;
    let state_path = dir.join("train_state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| Error::Format {
        file: state_path.display().to_string(),
        msg: e.to_string(),
    })?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        config,
        params,
        m,
        v,
        t,
        state,
    })
}
