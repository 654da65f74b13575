//! The training loop of `gpt train CONFIG.toml`: prepare the data once, then for each step draw
//! a batch, run the forward and backward passes (over `grad_accum` micro-batches), clip, take an
//! AdamW step with the scheduled learning rate; evaluate, sample and checkpoint on schedule.

use super::adamw::{clip_grad_norm, AdamW, AdamWConfig};
use super::checkpoint::{self, TokenizerFiles, TrainState};
use super::data::{self, TokenFile};
use super::distributed::{rows, Collective, SingleProcess};
use super::schedule::Schedule;
use crate::infer::sampling::Rng;
use crate::model::config::{Arch, Config};
use crate::model::params::Parameters;
use crate::model::training::Training;
use crate::tokenizer::io::write_tokenizer_json;
use crate::tokenizer::{Tokenizer, TokenizerSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A training run, as written in CONFIG.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: LoopConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Start from this model's weights, tokenizer and shape (a GGUF file, a Hugging Face
    /// folder, or a known model name; `gpt train --init`) instead of random weights: then the
    /// shape fields below are left out, and only `block_size` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// `gpt2` (LayerNorm, learned positions, GELU; the default) or `llama` (RMSNorm, RoPE,
    /// grouped-query attention, SwiGLU: SmolLM2's block).
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub n_layer: usize,
    #[serde(default)]
    pub n_head: usize,
    #[serde(default)]
    pub n_embd: usize,
    /// The context length T of training.
    pub block_size: usize,
    /// Llama: key/value heads (default n_head); each serves n_head / n_kv_head query heads.
    #[serde(default)]
    pub n_kv_head: Option<usize>,
    /// The MLP's hidden width (default 4 n_embd).
    #[serde(default)]
    pub d_ff: Option<usize>,
    /// Llama: RoPE's base frequency (default 10000).
    #[serde(default)]
    pub rope_theta: Option<f32>,
    /// Llama: the unembedding is the token embedding (default true; GPT-2 always ties).
    #[serde(default)]
    pub tie_embeddings: Option<bool>,
}

impl ModelConfig {
    fn arch(&self) -> &str {
        self.arch.as_deref().unwrap_or("gpt2")
    }

    fn tied(&self) -> bool {
        self.tie_embeddings.unwrap_or(true)
    }

    /// The model's hyperparameters, for a vocabulary of `vocab_size` (a model without `init`).
    pub fn config(&self, vocab_size: usize) -> Config {
        let llama = self.arch() == "llama";
        let head_dim = self.n_embd / self.n_head;
        Config {
            arch: if llama { Arch::Llama } else { Arch::Gpt2 },
            n_layer: self.n_layer,
            d_model: self.n_embd,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head.unwrap_or(self.n_head),
            head_dim,
            d_ff: self.d_ff.unwrap_or(4 * self.n_embd),
            vocab_size,
            context_length: self.block_size,
            norm_eps: 1e-5,
            rope_theta: llama.then(|| self.rope_theta.unwrap_or(10000.0)),
            rope_dim: if llama { head_dim } else { 0 },
            // No RoPE scaling (GPT-2 has no RoPE: 0 there, as the config.json reader leaves it,
            // so that a checkpoint's config compares equal).
            rope_scale: if llama { 1.0 } else { 0.0 },
            ..Config::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Text files, relative to the config file's folder.
    pub files: Vec<PathBuf>,
    /// "char" (one token per distinct byte of the corpus: per character for ASCII text),
    /// "bpe:N" (a byte-level BPE of N tokens trained on the training files first), or a folder
    /// with tokenizer.json or GPT-2's encoder.json + vocab.bpe (relative to the config). Left
    /// out when training starts from a model (`model.init`): its tokenizer is the model's.
    #[serde(default)]
    pub tokenizer: String,
    /// The share of each file (its end) held out for validation.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
}

fn default_val_fraction() -> f64 {
    0.1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Output folder (checkpoints, data, loss curve), relative to the config file's folder.
    pub out_dir: PathBuf,
    pub batch_size: usize,
    #[serde(default = "one")]
    pub grad_accum: usize,
    pub max_steps: usize,
    pub learning_rate: f32,
    #[serde(default)]
    pub min_lr: f32,
    #[serde(default)]
    pub warmup_steps: usize,
    #[serde(default = "default_wd")]
    pub weight_decay: f32,
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    #[serde(default = "default_beta2")]
    pub beta2: f32,
    /// Clip the global gradient norm to this (0 = off).
    #[serde(default = "one_f")]
    pub grad_clip: f32,
    #[serde(default = "default_every")]
    pub eval_every: usize,
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
    /// Print a sample every N steps (0 = never).
    #[serde(default)]
    pub sample_every: usize,
    #[serde(default = "default_sample_tokens")]
    pub sample_tokens: usize,
    #[serde(default = "default_every")]
    pub checkpoint_every: usize,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn one() -> usize {
    1
}
fn one_f() -> f32 {
    1.0
}
fn default_wd() -> f32 {
    0.1
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.95
}
fn default_every() -> usize {
    250
}
fn default_eval_batches() -> usize {
    20
}
fn default_sample_tokens() -> usize {
    200
}
fn default_keep() -> usize {
    2
}
fn default_seed() -> u64 {
    1337
}

impl TrainConfig {
    /// Reads CONFIG.toml; relative paths in it become relative to its folder.
    pub fn from_file(path: &Path) -> Result<TrainConfig> {
        Self::from_file_init(path, None)
    }

    /// [`from_file`](Self::from_file), the run starting from `init` (`gpt train --init`: a path
    /// relative to the working folder or a known model name) whatever `model.init` says.
    pub fn from_file_init(path: &Path, init: Option<&str>) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut c: TrainConfig = toml::from_str(&text).map_err(|e| {
            // toml's own Display draws the line in several lines: one line is the rule here.
            let at = e.span().map_or(String::new(), |r| {
                let before = &text[..r.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            });
            Error::Format {
                file: path.display().to_string(),
                msg: format!("{at}{}", e.message().trim().replace('\n', " ")),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in &mut c.data.files {
            *f = base.join(&*f);
        }
        if !c.data.tokenizer.is_empty()
            && c.data.tokenizer != "char"
            && !c.data.tokenizer.starts_with("bpe:")
        {
            c.data.tokenizer = base.join(&c.data.tokenizer).display().to_string();
        }
        c.train.out_dir = base.join(&c.train.out_dir);
        if let Some(m) = &mut c.model.init {
            if crate::hub::find(m).is_none() {
                *m = base.join(&*m).display().to_string();
            }
        }
        if let Some(m) = init {
            c.model.init = Some(m.to_string());
        }
        c.validate(&path.display().to_string())?;
        Ok(c)
    }

    fn validate(&self, file: &str) -> Result<()> {
        let bad = |field: &str, msg: &str| {
            Err(Error::Field {
                file: file.into(),
                field: field.into(),
                msg: msg.into(),
            })
        };
        let m = &self.model;
        if m.block_size == 0 {
            return bad("model.block_size", "must be positive");
        }
        if m.init.is_some() {
            let given = [
                ("arch", m.arch.is_some()),
                ("n_layer", m.n_layer > 0),
                ("n_head", m.n_head > 0),
                ("n_embd", m.n_embd > 0),
                ("n_kv_head", m.n_kv_head.is_some()),
                ("d_ff", m.d_ff.is_some()),
                ("rope_theta", m.rope_theta.is_some()),
                ("tie_embeddings", m.tie_embeddings.is_some()),
            ];
            if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
                return bad(
                    &format!("model.{field}"),
                    "the shape comes from the model training starts from (model.init or --init): leave it out",
                );
            }
            if !self.data.tokenizer.is_empty() {
                return bad(
                    "data.tokenizer",
                    "training that starts from a model uses its tokenizer: leave it out",
                );
            }
        } else {
            if self.data.tokenizer.is_empty() {
                return bad(
                    "data.tokenizer",
                    "name one: \"char\", \"bpe:N\" or a folder with tokenizer.json",
                );
            }
            self.validate_shape(&bad)?;
        }
        self.validate_loop(&bad)
    }

    fn validate_shape(&self, bad: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
        let m = &self.model;
        if m.n_layer == 0 || m.n_head == 0 || m.n_embd == 0 {
            return bad(
                "model",
                "n_layer, n_head and n_embd must be positive (or name a model to start from: model.init)",
            );
        }
        if !m.n_embd.is_multiple_of(m.n_head) {
            return bad("model.n_head", "must divide n_embd");
        }
        match m.arch() {
            "gpt2" => {
                if m.n_kv_head.is_some_and(|k| k != m.n_head) || m.rope_theta.is_some() {
                    return bad("model.arch", "gpt2 has neither n_kv_head nor rope_theta");
                }
                if !m.tied() {
                    return bad("model.tie_embeddings", "GPT-2 ties its embeddings");
                }
            }
            "llama" => {
                let kv = m.n_kv_head.unwrap_or(m.n_head);
                if kv == 0 || !m.n_head.is_multiple_of(kv) {
                    return bad("model.n_kv_head", "must divide n_head");
                }
                if !(m.n_embd / m.n_head).is_multiple_of(2) {
                    return bad(
                        "model.n_head",
                        "RoPE needs an even head size (n_embd / n_head)",
                    );
                }
                if m.rope_theta.is_some_and(|t| !(t.is_finite() && t > 1.0)) {
                    return bad("model.rope_theta", "must be a number above 1");
                }
            }
            other => {
                return bad(
                    "model.arch",
                    &format!("'{other}' is not one gpt train knows (gpt2, llama)"),
                )
            }
        }
        if m.d_ff == Some(0) {
            return bad("model.d_ff", "must be positive");
        }
        Ok(())
    }

    fn validate_loop(&self, bad: &dyn Fn(&str, &str) -> Result<()>) -> Result<()> {
        if self.train.batch_size == 0 || self.train.grad_accum == 0 {
            return bad(
                "train.batch_size",
                "batch_size and grad_accum must be positive",
            );
        }
        if self.data.files.is_empty() {
            return bad("data.files", "name at least one text file");
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return bad("data.val_fraction", "must be in [0, 1)");
        }
        let t = &self.train;
        if t.max_steps == 0 {
            return bad("train.max_steps", "must be positive");
        }
        // NaN fails every range check below: `contains` is false for it.
        if !(t.learning_rate > 0.0 && t.learning_rate.is_finite()) {
            return bad(
                "train.learning_rate",
                &format!("is {}; it must be a positive number", t.learning_rate),
            );
        }
        if !(0.0..=t.learning_rate).contains(&t.min_lr) {
            return bad(
                "train.min_lr",
                &format!("is {}; it must be in [0, learning_rate]", t.min_lr),
            );
        }
        for (field, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, &format!("is {v}; it must be in [0, 1)"));
            }
        }
        for (field, v) in [
            ("train.weight_decay", t.weight_decay),
            ("train.grad_clip", t.grad_clip),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(field, &format!("is {v}; it must be a number >= 0"));
            }
        }
        if t.eval_every > 0 && t.eval_batches == 0 {
            return bad("train.eval_batches", "must be positive when eval_every is");
        }
        Ok(())
    }
}

/// What the loop reports, for a progress bar and logs.
pub trait TrainObserver {
    fn start(&mut self, _from_step: usize, _max_steps: usize) {}
    fn step(&mut self, _step: usize, _loss: f32, _lr: f32, _tokens_per_s: f64) {}
    fn eval(&mut self, _step: usize, _val_loss: f32) {}
    fn sample(&mut self, _step: usize, _text: &str) {}
    fn checkpoint(&mut self, _step: usize, _dir: &Path) {}
    fn message(&mut self, _text: &str) {}
    fn progress(&mut self, _what: &str, _done: u64, _total: u64) {}
    /// Asked after each step (and its evaluation, sample and checkpoint): stop the run here.
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }
}

/// The batch of a step's micro-batch: a function of the seed and the position alone, so that a
/// resumed run draws the same batches.
fn batch_rng(seed: u64, step: usize, micro: usize) -> Rng {
    let mut r = Rng::new(seed ^ 0xB47C_4000_0000_0000);
    let skip = (step as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(micro as u64);
    Rng::new(
        r.next_u64()
            .wrapping_add(skip.wrapping_mul(0xD6E8_FEB8_6659_FD93)),
    )
}

/// Prepares (once) the tokenizer and token files under `out/data`.
/// `init`: the model the run starts from, whose tokenizer it uses.
fn prepare_data(
    c: &TrainConfig,
    init: Option<&Path>,
    obs: &mut dyn TrainObserver,
) -> Result<(Tokenizer, TokenizerFiles, TokenFile, TokenFile)> {
    let dir = c.train.out_dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tok_path = dir.join("tokenizer.json");
    let stamp_path = dir.join("source.json");
    let tokenizer = match init {
        Some(p) => format!("the tokenizer of {}", p.display()),
        None => c.data.tokenizer.clone(),
    };
    let stamp = serde_json::to_string(&serde_json::json!({"files": c.data.files, "tokenizer": tokenizer, "val_fraction": c.data.val_fraction}))
        .unwrap_or_default();
    let fresh = std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && dir.join("train.bin").exists()
        && dir.join("val.bin").exists()
        && tok_path.exists();
    if !fresh {
        let given = Path::new(&c.data.tokenizer).join("tokenizer.json");
        let _ = std::fs::remove_file(dir.join("tokenizer_config.json"));
        if let Some(model) = init {
            super::init::write_tokenizer(model, &dir)?;
        } else if c.data.tokenizer == "char" {
            write_tokenizer_json(&char_tokenizer_spec(&c.data.files)?, &tok_path)?;
        } else if let Some(n) = c.data.tokenizer.strip_prefix("bpe:") {
            let n: usize = n.parse().map_err(|_| {
                Error::Invalid(format!("data.tokenizer: '{n}' is not a vocabulary size"))
            })?;
            obs.message(&format!(
                "training a {n}-token byte-level BPE on the training files"
            ));
            let bpe = crate::tokenizer::train(
                &c.data.files,
                &crate::tokenizer::TrainConfig::gpt2(n),
                &mut |w, d, t| obs.progress(w, d, t),
            )?;
            write_tokenizer_json(&bpe.spec(), &tok_path)?;
        } else if given.exists() {
            std::fs::copy(&given, &tok_path).map_err(|e| Error::io(&given, e))?;
        } else {
            let d = Path::new(&c.data.tokenizer);
            let spec =
                crate::tokenizer::io::gpt2_spec(&d.join("encoder.json"), &d.join("vocab.bpe"))?;
            write_tokenizer_json(&spec, &tok_path)?;
        }
        let tok = Tokenizer::from_tokenizer_json(&tok_path)?;
        obs.message(&format!(
            "tokenizing {} file(s) with a {}-token vocabulary",
            c.data.files.len(),
            tok.vocab_size()
        ));
        let (nt, nv) = data::prepare(
            &c.data.files,
            &tok,
            &dir,
            c.data.val_fraction,
            &mut |w, d, t| obs.progress(w, d, t),
        )?;
        obs.message(&format!(
            "{nt} training and {nv} validation tokens in {}",
            dir.display()
        ));
        write_atomic(&stamp_path, stamp.as_bytes())?;
    }
    let tok = Tokenizer::from_tokenizer_json(&tok_path)?;
    let train = TokenFile::open(&dir.join("train.bin"))?;
    let val = TokenFile::open(&dir.join("val.bin"))?;
    let files = TokenizerFiles::new(&dir, &tok);
    Ok((tok, files, train, val))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A byte-level BPE with no merges whose vocabulary is the distinct bytes of the corpus, in
/// byte order: character-level for ASCII text (65 tokens for Tiny Shakespeare, as in nanoGPT),
/// written as a tokenizer.json that Hugging Face tokenizers loads too.
pub fn char_tokenizer_spec(files: &[PathBuf]) -> Result<TokenizerSpec> {
    use std::io::Read;
    let mut seen = [false; 256];
    for f in files {
        let mut r = std::io::BufReader::new(std::fs::File::open(f).map_err(|e| Error::io(f, e))?);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf).map_err(|e| Error::io(f, e))?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                seen[b as usize] = true;
            }
        }
    }
    let alphabet = crate::tokenizer::byte_level::BYTE_TO_CHAR;
    Ok(TokenizerSpec {
        tokens: (0..256)
            .filter(|&b| seen[b])
            .map(|b| alphabet[b].to_string())
            .collect(),
        pre: "gpt2".into(),
        ..Default::default()
    })
}

/// How a run begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run; refused if the output folder already holds checkpoints (or a `latest` link).
    New,
    /// A new run even so (`--force`): the earlier run's checkpoints stay, this run's go beside
    /// them (a step of the same number replaces it), and pruning only touches this run's.
    Force,
    /// Continue from the checkpoint `latest` names (from scratch if there is none).
    Resume,
}

/// Runs (or continues) the training described by `c` in this process. Returns the final state.
pub fn run(c: &TrainConfig, start: Start, obs: &mut dyn TrainObserver) -> Result<TrainState> {
    run_on(c, start, obs, &SingleProcess)
}

/// [`run`] as one rank of a data-parallel run over `comm` ([`super::distributed`]): this rank
/// takes its rows of every global batch; rank 0 evaluates, samples and writes checkpoints (its
/// state is the run's). Any number of ranks continues a run's checkpoint.
pub fn run_on(
    c: &TrainConfig,
    start: Start,
    obs: &mut dyn TrainObserver,
    comm: &dyn Collective,
) -> Result<TrainState> {
    let t0 = c.train.clone();
    let leader = comm.rank() == 0;
    if t0.batch_size < comm.size() {
        return Err(Error::Invalid(format!(
            "train.batch_size is {} but the run has {} ranks: each rank needs at least one sequence of every batch",
            t0.batch_size,
            comm.size()
        )));
    }
    let resume = start == Start::Resume;
    if start == Start::New {
        if let Some(what) = checkpoint::existing(&t0.out_dir) {
            return Err(Error::Invalid(format!(
                "{} already holds {what} of an earlier run: continue it with --resume, or start a new run beside it with --force",
                t0.out_dir.display()
            )));
        }
    }
    // Rank 0 fetches the model and writes the token files; the others read what it wrote.
    let prepare = |obs: &mut dyn TrainObserver| -> Result<_> {
        let init = c
            .model
            .init
            .as_deref()
            .map(|m| crate::hub::resolve(m, &mut |w, d, t| obs.progress(w, d, t)))
            .transpose()?;
        let data = prepare_data(c, init.as_deref(), obs)?;
        Ok((init, data))
    };
    let prepared = if leader { Some(prepare(obs)?) } else { None };
    comm.barrier();
    let (init, (tok, tok_files, train_data, val_data)) = match prepared {
        Some(p) => p,
        None => prepare(obs)?,
    };
    let m = &c.model;
    let (config, layout) = match &init {
        Some(path) => super::init::shape(path)?,
        None => {
            let config = m.config(tok.vocab_size());
            let layout = crate::model::params::layout(&config, m.tied())?;
            (config, layout)
        }
    };
    if tok.vocab_size() > config.vocab_size {
        return Err(Error::Invalid(format!(
            "the tokenizer has {} tokens but the model's vocabulary is {}",
            tok.vocab_size(),
            config.vocab_size
        )));
    }
    if init.is_some() && m.block_size > config.context_length {
        return Err(Error::Field {
            file: "the training config".into(),
            field: "model.block_size".into(),
            msg: format!(
                "{} is longer than the model's context ({} tokens)",
                m.block_size, config.context_length
            ),
        });
    }
    let adamw = AdamWConfig {
        beta1: t0.beta1,
        beta2: t0.beta2,
        eps: 1e-8,
        weight_decay: t0.weight_decay,
        decay_all: false,
    };
    // Only rank 0 reads the checkpoint or the model's weights: the others get them from it.
    let (mut model, mut opt, mut state) = match (leader && resume)
        .then(|| checkpoint::load_latest(&t0.out_dir))
        .transpose()?
        .flatten()
    {
        Some(ck) => {
            // A run from a model keeps that model's config; its checkpoint's config.json, read
            // back, may spell it otherwise (the shape is what must agree).
            if (init.is_none() && ck.config != config) || ck.params.specs != layout {
                return Err(Error::Invalid(format!(
                    "the checkpoint in {} has another model shape than the config",
                    ck.dir.display()
                )));
            }
            if let Some(name) = ck.params.first_non_finite() {
                return Err(Error::Invalid(format!(
                    "{}: tensor {name} holds NaN or infinite weights; resume from an earlier checkpoint",
                    ck.dir.display()
                )));
            }
            obs.message(&format!(
                "resuming from {} (step {})",
                ck.dir.display(),
                ck.state.step
            ));
            let mut opt = AdamW::new(adamw, ck.params.len());
            (opt.m, opt.v, opt.t) = (ck.m, ck.v, ck.t);
            (Training::new(config.clone(), ck.params), opt, ck.state)
        }
        None => {
            if resume {
                obs.message("no checkpoint to resume from: starting from scratch");
            }
            let params = match &init {
                _ if !leader => Parameters::with_specs(layout),
                Some(path) => {
                    obs.message(&format!(
                        "starting from the weights of {} (as f32)",
                        path.display()
                    ));
                    super::init::load(path)?.1
                }
                None => Parameters::init_specs(layout, &config, t0.seed),
            };
            let n = params.len();
            (
                Training::new(config.clone(), params),
                AdamW::new(adamw, n),
                TrainState {
                    step: 0,
                    train_losses: vec![],
                    val_losses: vec![],
                    run: checkpoint::new_run_id(),
                },
            )
        }
    };
    if comm.size() > 1 {
        // Rank 0's weights, optimizer state and step to every rank (as PyTorch's DDP sends its
        // state at the start): every rank starts from the same bits, and a resume needs the
        // checkpoint on rank 0's machine only.
        comm.broadcast(bytemuck::cast_slice_mut(&mut model.params.data[..]));
        comm.broadcast(bytemuck::cast_slice_mut(&mut opt.m[..]));
        comm.broadcast(bytemuck::cast_slice_mut(&mut opt.v[..]));
        let mut head = [opt.t, state.step as u64];
        comm.broadcast(bytemuck::cast_slice_mut(&mut head[..]));
        (opt.t, state.step) = (head[0], head[1] as usize);
    }
    let (lo, hi) = rows(t0.batch_size, comm.rank(), comm.size());
    let mut workers = DataParallel::new(&model, hi - lo)?;
    let schedule = Schedule {
        max_lr: t0.learning_rate,
        min_lr: t0.min_lr,
        warmup_steps: t0.warmup_steps,
        decay_steps: t0.max_steps,
    };
    let (b, t) = (t0.batch_size, m.block_size);
    obs.message(&format!(
        "{} parameters; {} tokens per step",
        model.params.len(),
        b * t * t0.grad_accum
    ));
    if leader && init.is_some() && state.step == 0 && t0.eval_every > 0 {
        // Where fine-tuning starts from: the model's own validation loss.
        let v = evaluate(&mut model, &val_data, b, t, t0.eval_batches, t0.seed)?;
        state.val_losses.push((0, v));
        obs.eval(0, v);
    }
    obs.start(state.step, t0.max_steps);
    while state.step < t0.max_steps {
        let step = state.step;
        let started = std::time::Instant::now();
        let lr = schedule.lr(step);
        model.zero_grad();
        let mut loss = 0f32;
        for micro in 0..t0.grad_accum {
            // The global batch; this rank's rows of it.
            let (x, y) = train_data.batch(b, t, &mut batch_rng(t0.seed, step, micro))?;
            let (x, y) = (&x[lo * t..hi * t], &y[lo * t..hi * t]);
            loss += workers.forward_backward(&mut model, x, y, hi - lo, t)?;
        }
        loss /= t0.grad_accum as f32;
        if t0.grad_accum > 1 {
            let s = 1.0 / t0.grad_accum as f32;
            model.grads.data.iter_mut().for_each(|g| *g *= s);
        }
        if comm.size() > 1 {
            // Each rank's loss and gradient are means over its rows: weighted by its share of
            // the batch, their sum over ranks is the batch's mean (as DataParallel sums threads;
            // the same float operations in the same order when grad_accum is 1: with more
            // micro-batches, threads sum per micro-batch and ranks once per step).
            let share = (hi - lo) as f32 / b as f32;
            model.grads.data.iter_mut().for_each(|g| *g *= share);
            let mut l = [loss * share];
            comm.sum_in_rank_order(&mut [&mut model.grads.data[..], &mut l[..]])?;
            loss = l[0];
        }
        if !loss.is_finite() {
            // Diverged: stop before a NaN reaches the weights or a checkpoint.
            return Err(Error::Invalid(format!(
                "step {}: the loss is {loss}: training diverged (lower train.learning_rate or set train.grad_clip); the last checkpoint is intact",
                step + 1
            )));
        }
        if t0.grad_clip > 0.0 {
            clip_grad_norm(&mut model.grads, t0.grad_clip);
        }
        opt.step(&mut model.params, &model.grads, lr);
        state.step += 1;
        state.train_losses.push((state.step, loss));
        let tps = (b * t * t0.grad_accum) as f64 / started.elapsed().as_secs_f64();
        obs.step(state.step, loss, lr, tps);
        let last = state.step == t0.max_steps;
        if leader && t0.eval_every > 0 && (state.step % t0.eval_every == 0 || last) {
            let v = evaluate(&mut model, &val_data, b, t, t0.eval_batches, t0.seed)?;
            state.val_losses.push((state.step, v));
            obs.eval(state.step, v);
        }
        if leader && t0.sample_every > 0 && (state.step % t0.sample_every == 0 || last) {
            obs.sample(
                state.step,
                &sample(&config, &model.params, &tok, t0.sample_tokens, t0.seed)?,
            );
        }
        if leader && t0.checkpoint_every > 0 && (state.step % t0.checkpoint_every == 0 || last) {
            let dir = checkpoint::save(
                &t0.out_dir,
                &config,
                &model.params,
                &opt,
                &state,
                &tok_files,
                t0.keep_checkpoints,
            )?;
            super::loss_curve::write(&t0.out_dir.join("loss.svg"), &state)?;
            obs.checkpoint(state.step, &dir);
        }
        // Rank 0's observer decides for the run: a rank that left alone would leave the others
        // waiting in the next step's collective.
        let mut stop = [u8::from(obs.should_stop(state.step))];
        comm.broadcast(&mut stop);
        if stop[0] != 0 {
            break;
        }
    }
    if leader {
        super::loss_curve::write(&t0.out_dir.join("loss.svg"), &state)?;
    }
    Ok(state)
}

/// The mean loss over `n` validation batches (the same batches at every evaluation).
fn evaluate(
    model: &mut Training,
    val: &TokenFile,
    b: usize,
    t: usize,
    n: usize,
    seed: u64,
) -> Result<f32> {
    let mut rng = Rng::new(seed ^ 0x5A11_DA7E);
    let mut sum = 0f32;
    for _ in 0..n.max(1) {
        let (x, y) = val.batch(b, t, &mut rng)?;
        sum += model.forward(&x, &y, b, t)?;
    }
    Ok(sum / n.max(1) as f32)
}

/// A sample from the current parameters, starting from the first token of the vocabulary's
/// newline (or token 0), at temperature 0.8.
fn sample(c: &Config, params: &Parameters, tok: &Tokenizer, n: usize, seed: u64) -> Result<String> {
    use crate::infer::{GenerateOptions, Generator, SamplingParams};
    let model = crate::model::Transformer::from_params(c, params)?;
    let start = tok.encode("\n", false).first().copied().unwrap_or(0);
    let opts = GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed,
            ..Default::default()
        },
        stop: vec![],
        stop_ids: vec![],
        slide: true,
        constraint: None,
    };
    let mut g = Generator::new(&model, tok);
    Ok(g.generate(&[start], &opts, &mut |_| true)?.text)
}

/// Data parallelism over the batch: each thread runs the forward and backward passes of its own
/// block of sequences with single-threaded kernels, and the gradients are summed once per
/// micro-batch. On a small model this beats splitting every matrix product across threads,
/// whose many short parallel regions cost more in wake-ups than they save. Blocks and the order
/// of the sums are fixed by the thread count, so a run is bit-identical for the same count.
struct DataParallel {
    /// One replica per thread (parameters copied in before each pass), with a one-thread pool.
    replicas: Vec<(Training, rayon::ThreadPool)>,
    /// With one thread: the pool the model's own passes run in. Run from the main thread, every
    /// parallel loop of the kernels would hand its work to a pool thread and sleep until it is
    /// done (a futex wake-up per op: 2.4 times slower than one replica per thread).
    solo: rayon::ThreadPool,
}

fn one_thread_pool() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Invalid(format!("thread pool: {e}")))
}

impl DataParallel {
    fn new(model: &Training, batch: usize) -> Result<DataParallel> {
        let n = rayon::current_num_threads().min(batch).max(1);
        let replicas = (0..if n > 1 { n } else { 0 })
            .map(|_| {
                let params = Parameters::zeros_like(&model.params);
                Ok((
                    Training::new(model.config.clone(), params),
                    one_thread_pool()?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(DataParallel {
            replicas,
            solo: one_thread_pool()?,
        })
    }

    /// Adds the gradient of the mean loss over inputs (B, T) to `model.grads`; returns the loss.
    fn forward_backward(
        &mut self,
        model: &mut Training,
        x: &[u32],
        y: &[u32],
        b: usize,
        t: usize,
    ) -> Result<f32> {
        use rayon::prelude::*;
        if self.replicas.is_empty() {
            return self.solo.install(|| {
                let loss = model.forward(x, y, b, t)?;
                model.backward()?;
                Ok(loss)
            });
        }
        let k = self.replicas.len();
        let part = |i: usize| rows(b, i, k); // sequences [lo, hi) of replica i
        let params = &model.params.data;
        let losses: Vec<Result<f32>> = self
            .replicas
            .par_iter_mut()
            .enumerate()
            .map(|(i, (r, pool))| {
                let (lo, hi) = part(i);
                pool.install(|| {
                    r.params.data.copy_from_slice(params);
                    r.zero_grad();
                    let loss = r.forward(&x[lo * t..hi * t], &y[lo * t..hi * t], hi - lo, t)?;
                    r.backward()?;
                    Ok(loss)
                })
            })
            .collect();
        let mut total = 0f32;
        for (i, (loss, (r, _))) in losses.into_iter().zip(&self.replicas).enumerate() {
            let (lo, hi) = part(i);
            let share = (hi - lo) as f32 / b as f32; // each replica's loss is a mean over its rows
            total += loss? * share;
            model
                .grads
                .data
                .par_iter_mut()
                .zip(&r.grads.data[..])
                .for_each(|(g, rg)| *g += rg * share);
        }
        Ok(total)
    }
}
