//! Building a [`Transformer`] from a model file: a map from the file's tensor names to the
//! model's parts, with every shape checked.

use super::attention::Attention;
use super::config::{Arch, Config};
use super::embedding::Embedding;
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::Norm;
use super::rope::{Rope, RopePairs};
use super::transformer::{Block, Transformer};
use super::unembedding::Unembedding;
use crate::formats::gguf::GgufFile;
use crate::kernels::Precision;
use crate::tensor::Matrix;
use crate::{Error, Result};

/// Reads GGUF tensors by llama.cpp's names (`blk.N.attn_q.weight`, ...).
struct GgufTensors<'a> {
    g: &'a GgufFile,
}

impl GgufTensors<'_> {
    fn info(&self, name: &str) -> Result<&crate::formats::gguf::TensorInfo> {
        self.g.tensor_info(name).ok_or_else(|| Error::Tensor {
            name: name.into(),
            msg: format!("missing from {}", self.g.name),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.g.tensor_info(name).is_some()
    }

    /// A (rows, cols) matrix; GGUF lists dims innermost first, so its dims are [cols, rows].
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        let dims: Vec<u64> = info.dims.clone();
        if dims != [cols as u64, rows as u64] {
            return Err(Error::Tensor {
                name: name.into(),
                msg: format!(
                    "expected shape ({rows}, {cols}) but {} has {:?} (GGUF order, innermost first)",
                    self.g.name, dims
                ),
            });
        }
        Matrix::new(name, info.dtype, rows, cols, self.g.tensor_data(info))
    }

    /// A vector of `len` values, dequantized to f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let m = {
            let info = self.info(name)?;
            if info.dims.iter().product::<u64>() != len as u64 || info.dims[0] != len as u64 {
                return Err(Error::Tensor {
                    name: name.into(),
                    msg: format!(
                        "expected shape ({len}) but {} has {:?}",
                        self.g.name, info.dims
                    ),
                });
            }
            Matrix::vector_f32(name, info.dtype, len, self.g.tensor_data(info))
        };
        m
    }

    fn linear(&self, name: &str, rows: usize, cols: usize) -> Result<Linear> {
        let bias_name = name.replace(".weight", ".bias");
        let bias = if self.has(&bias_name) {
            Some(self.vector(&bias_name, rows)?)
        } else {
            None
        };
        Ok(Linear::new(self.matrix(name, rows, cols)?, bias))
    }

    fn norm(&self, prefix: &str, c: &Config) -> Result<Norm> {
        let weight = self.vector(&format!("{prefix}.weight"), c.d_model)?;
        Ok(match c.arch {
            Arch::Llama => Norm::Rms {
                weight,
                eps: c.norm_eps,
            },
            Arch::Gpt2 => Norm::Layer {
                weight,
                bias: self.vector(&format!("{prefix}.bias"), c.d_model)?,
                eps: c.norm_eps,
            },
        })
    }
}

/// Splits a fused (3C, C) QKV projection into its q, k and v row blocks.
fn split_rows(l: &Linear, parts: &[usize]) -> Result<Vec<Linear>> {
    let mut out = Vec::new();
    let mut r0 = 0;
    let row_bytes = l.weight.as_ref().row_bytes();
    for (i, &rows) in parts.iter().enumerate() {
        let data = l
            .weight
            .data
            .slice(r0 * row_bytes, rows * row_bytes)
            .ok_or_else(|| Error::Tensor {
                name: l.weight.name.clone(),
                msg: "fused matrix too small to split".into(),
            })?;
        let name = format!("{}[{}]", l.weight.name, ["q", "k", "v"][i.min(2)]);
        let w = Matrix::new(&name, l.weight.dtype, rows, l.weight.cols, data)?;
        let b = l.bias.as_ref().map(|b| b[r0..r0 + rows].to_vec());
        out.push(Linear::new(w, b));
        r0 += rows;
    }
    Ok(out)
}

impl Transformer {
    /// Builds the model from a parsed GGUF file (weights stay memory-mapped).
    pub fn from_gguf(g: &GgufFile) -> Result<Transformer> {
        let config = Config::from_gguf(g)?;
        let f = GgufTensors { g };
        let c = &config;
        let (dm, qd, kvd) = (c.d_model, c.n_head * c.head_dim, c.kv_dim());
        let token_embedding = Embedding {
            table: f.matrix("token_embd.weight", c.vocab_size, dm)?,
        };
        let position_embedding = match c.arch {
            Arch::Gpt2 => {
                let info = f.info("position_embd.weight")?;
                let n_pos = info.dims.get(1).copied().unwrap_or(0) as usize;
                Some(Embedding {
                    table: f.matrix("position_embd.weight", n_pos, dm)?,
                })
            }
            Arch::Llama => None,
        };
        let mut blocks = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("blk.{l}.{s}");
            let (wq, wk, wv) = if f.has(&p("attn_qkv.weight")) {
                let fused = f.linear(&p("attn_qkv.weight"), qd + 2 * kvd, dm)?;
                let mut parts = split_rows(&fused, &[qd, kvd, kvd])?.into_iter();
                (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                )
            } else {
                (
                    f.linear(&p("attn_q.weight"), qd, dm)?,
                    f.linear(&p("attn_k.weight"), kvd, dm)?,
                    f.linear(&p("attn_v.weight"), kvd, dm)?,
                )
            };
            let attn = Attention {
                wq,
                wk,
                wv,
                wo: f.linear(&p("attn_output.weight"), dm, qd)?,
                n_head: c.n_head,
                n_kv_head: c.n_kv_head,
                head_dim: c.head_dim,
                // GGUF's Q/K rows are permuted for llama.cpp's adjacent-pair rotation.
                rope: c
                    .rope_theta
                    .map(|th| Rope::new(c.rope_dim, th, RopePairs::Adjacent)),
            };
            let mlp = match c.arch {
                Arch::Llama => Mlp::SwiGlu {
                    gate: f.linear(&p("ffn_gate.weight"), c.d_ff, dm)?,
                    up: f.linear(&p("ffn_up.weight"), c.d_ff, dm)?,
                    down: f.linear(&p("ffn_down.weight"), dm, c.d_ff)?,
                },
                Arch::Gpt2 => Mlp::Gelu {
                    fc: f.linear(&p("ffn_up.weight"), c.d_ff, dm)?,
                    proj: f.linear(&p("ffn_down.weight"), dm, c.d_ff)?,
                },
            };
            blocks.push(Block {
                attn_norm: f.norm(&p("attn_norm"), c)?,
                attn,
                mlp_norm: f.norm(&p("ffn_norm"), c)?,
                mlp,
            });
        }
        let final_norm = f.norm("output_norm", c)?;
        let unembedding = if f.has("output.weight") {
            Unembedding {
                linear: f.linear("output.weight", c.vocab_size, dm)?,
                tied: false,
            }
        } else {
            Unembedding {
                linear: Linear::new(token_embedding.table.clone(), None),
                tied: true,
            }
        };
        Ok(Transformer {
            config,
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            unembedding,
            precision: Precision::default(),
        })
    }
}

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
    /// Opens a GGUF file, or a Hugging Face folder (config.json + model.safetensors + tokenizer).
    pub fn open(path: &std::path::Path) -> Result<LoadedModel> {
        if path.is_dir() {
            return Self::open_hf_dir(path);
        }
        let g = GgufFile::open(path)?;
        let transformer = Transformer::from_gguf(&g)?;
        let spec = crate::tokenizer::io::gguf_spec(&g)?;
        let tokenizer = crate::tokenizer::Tokenizer::from_spec(spec)?;
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
        // A special token in tokenizer_config.json is a string or {"content": ...}.
        let token_text = |k: &str| -> String {
            let v = &tok_config[k];
            v.as_str()
                .or_else(|| v["content"].as_str())
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

    /// Encodes a prompt as the model expects raw text: BOS first only if the tokenizer says so.
    pub fn encode_prompt(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos() {
            ids.extend(self.tokenizer.bos_id());
        }
        ids.extend(self.tokenizer.encode(text, allow_special));
        ids
    }
}

/// Reads Hugging Face GPT-2 tensors (`transformer.h.N.attn.c_attn.weight`, ...; the
/// `transformer.` prefix is optional, as in the original checkpoints).
struct HfTensors<'a> {
    st: &'a crate::formats::safetensors::SafetensorsModel,
    prefix: &'static str,
}

impl HfTensors<'_> {
    fn entry(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<&crate::formats::safetensors::TensorEntry> {
        self.st.get(&format!("{}{name}", self.prefix), shape)
    }

    /// A vector (len), as f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let e = self.entry(name, &[len])?;
        Matrix::vector_f32(name, e.dtype, len, e.data.clone())
    }

    /// An (out, in) matrix stored as such (nn.Linear, embeddings).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let e = self.entry(name, &[rows, cols])?;
        Matrix::new(name, e.dtype, rows, cols, e.data.clone())
    }

    /// A GPT-2 Conv1D weight, stored (in, out) and applied as x @ W: transposed once here to the
    /// (out, in) layout of every other linear layer.
    fn conv1d(&self, name: &str, n_in: usize, n_out: usize) -> Result<Linear> {
        let e = self.entry(&format!("{name}.weight"), &[n_in, n_out])?;
        let es = e.dtype.type_size();
        let mut t = vec![0u8; e.data.len()];
        for i in 0..n_in {
            for o in 0..n_out {
                let src = (i * n_out + o) * es;
                let dst = (o * n_in + i) * es;
                t[dst..dst + es].copy_from_slice(&e.data[src..src + es]);
            }
        }
        let w = Matrix::new(
            name,
            e.dtype,
            n_out,
            n_in,
            crate::tensor::Bytes::from_vec(t),
        )?;
        Ok(Linear::new(
            w,
            Some(self.vector(&format!("{name}.bias"), n_out)?),
        ))
    }

    fn layer_norm(&self, name: &str, c: &Config) -> Result<Norm> {
        Ok(Norm::Layer {
            weight: self.vector(&format!("{name}.weight"), c.d_model)?,
            bias: self.vector(&format!("{name}.bias"), c.d_model)?,
            eps: c.norm_eps,
        })
    }
}

impl Transformer {
    /// Builds a GPT-2 from a Hugging Face folder: config.json + model.safetensors (or shards).
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Transformer> {
        let hf = crate::formats::hf_config::HfConfig::from_file(&dir.join("config.json"))?;
        let st = crate::formats::safetensors::SafetensorsModel::open_dir(dir)?;
        if hf.config.arch == Arch::Llama {
            return Transformer::from_hf_llama(&hf, &st);
        }
        let prefix = if st.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        Transformer::from_hf_tensors(&hf, &st, prefix)
    }

    /// Builds a GPT-2 from tensors named `{prefix}wte.weight`, `{prefix}h.0.ln_1.weight`, ...
    pub fn from_hf_tensors(
        hf: &crate::formats::hf_config::HfConfig,
        st: &crate::formats::safetensors::SafetensorsModel,
        prefix: &'static str,
    ) -> Result<Transformer> {
        let f = HfTensors { st, prefix };
        let c = hf.config.clone();
        let dm = c.d_model;
        let token_embedding = Embedding {
            table: f.matrix("wte.weight", c.vocab_size, dm)?,
        };
        let position_embedding = Some(Embedding {
            table: f.matrix("wpe.weight", c.context_length, dm)?,
        });
        let mut blocks = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            let fused = f.conv1d(&p("attn.c_attn"), dm, 3 * dm)?;
            let [wq, wk, wv]: [Linear; 3] = split_rows(&fused, &[dm, dm, dm])?
                .try_into()
                .map_err(|_| Error::Invalid("c_attn split".into()))?;
            blocks.push(Block {
                attn_norm: f.layer_norm(&p("ln_1"), &c)?,
                attn: Attention {
                    wq,
                    wk,
                    wv,
                    wo: f.conv1d(&p("attn.c_proj"), dm, dm)?,
                    n_head: c.n_head,
                    n_kv_head: c.n_kv_head,
                    head_dim: c.head_dim,
                    rope: None,
                },
                mlp_norm: f.layer_norm(&p("ln_2"), &c)?,
                mlp: Mlp::Gelu {
                    fc: f.conv1d(&p("mlp.c_fc"), dm, c.d_ff)?,
                    proj: f.conv1d(&p("mlp.c_proj"), c.d_ff, dm)?,
                },
            });
        }
        let final_norm = f.layer_norm("ln_f", &c)?;
        // lm_head.weight is saved without the prefix; a tied checkpoint usually omits it.
        let unembedding = if !hf.tied && st.contains("lm_head.weight") {
            let e = st.get("lm_head.weight", &[c.vocab_size, dm])?;
            let w = Matrix::new("lm_head.weight", e.dtype, c.vocab_size, dm, e.data.clone())?;
            Unembedding {
                linear: Linear::new(w, None),
                tied: false,
            }
        } else {
            Unembedding {
                linear: Linear::new(token_embedding.table.clone(), None),
                tied: true,
            }
        };
        Ok(Transformer {
            config: c,
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            unembedding,
            precision: Precision::default(),
        })
    }
}

impl Transformer {
    /// An inference model over a copy of training parameters (f32), for samples and
    /// validation during training.
    pub fn from_gpt2_params(
        c: &Config,
        p: &crate::model::params::Parameters,
    ) -> Result<Transformer> {
        let v = p.views();
        let dm = c.d_model;
        let m =
            |name: &str, rows: usize, cols: usize, x: &[f32]| Matrix::from_f32(name, rows, cols, x);
        let lin = |name: &str, rows: usize, cols: usize, w: &[f32], b: &[f32]| -> Result<Linear> {
            Ok(Linear::new(m(name, rows, cols, w)?, Some(b.to_vec())))
        };
        let ln = |w: &[f32], b: &[f32]| Norm::Layer {
            weight: w.to_vec(),
            bias: b.to_vec(),
            eps: c.norm_eps,
        };
        let token_embedding = Embedding {
            table: m("wte", c.vocab_size, dm, v.wte)?,
        };
        let position_embedding = Some(Embedding {
            table: m("wpe", c.context_length, dm, v.wpe)?,
        });
        let mut blocks = Vec::with_capacity(c.n_layer);
        for (l, w) in v.layers.iter().enumerate() {
            let fused = lin(&format!("h.{l}.c_attn"), 3 * dm, dm, w.c_attn_w, w.c_attn_b)?;
            let [wq, wk, wv]: [Linear; 3] = split_rows(&fused, &[dm, dm, dm])?
                .try_into()
                .map_err(|_| Error::Invalid("c_attn split".into()))?;
            blocks.push(Block {
                attn_norm: ln(w.ln_1_w, w.ln_1_b),
                attn: Attention {
                    wq,
                    wk,
                    wv,
                    wo: lin(&format!("h.{l}.c_proj"), dm, dm, w.c_proj_w, w.c_proj_b)?,
                    n_head: c.n_head,
                    n_kv_head: c.n_kv_head,
                    head_dim: c.head_dim,
                    rope: None,
                },
                mlp_norm: ln(w.ln_2_w, w.ln_2_b),
                mlp: Mlp::Gelu {
                    fc: lin(&format!("h.{l}.c_fc"), c.d_ff, dm, w.c_fc_w, w.c_fc_b)?,
                    proj: lin(
                        &format!("h.{l}.mlp_proj"),
                        dm,
                        c.d_ff,
                        w.mlp_proj_w,
                        w.mlp_proj_b,
                    )?,
                },
            });
        }
        let unembedding = Unembedding {
            linear: Linear::new(token_embedding.table.clone(), None),
            tied: true,
        };
        Ok(Transformer {
            config: c.clone(),
            token_embedding,
            position_embedding,
            blocks,
            final_norm: ln(v.ln_f_w, v.ln_f_b),
            unembedding,
            precision: Precision::F32,
        })
    }
}

impl Transformer {
    /// A Llama-family model from Hugging Face tensors (`model.layers.N.self_attn.q_proj.weight`,
    /// ...). Hugging Face keeps Q and K rows unpermuted, so RoPE rotates halves (`rotate_half`).
    pub fn from_hf_llama(
        hf: &crate::formats::hf_config::HfConfig,
        st: &crate::formats::safetensors::SafetensorsModel,
    ) -> Result<Transformer> {
        let c = hf.config.clone();
        let (dm, qd, kvd) = (c.d_model, c.n_head * c.head_dim, c.kv_dim());
        let f = HfTensors { st, prefix: "" };
        let lin = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            Ok(Linear::new(f.matrix(name, rows, cols)?, None))
        };
        let rms = |name: &str| -> Result<Norm> {
            Ok(Norm::Rms {
                weight: f.vector(name, dm)?,
                eps: c.norm_eps,
            })
        };
        let token_embedding = Embedding {
            table: f.matrix("model.embed_tokens.weight", c.vocab_size, dm)?,
        };
        let mut blocks = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            blocks.push(Block {
                attn_norm: rms(&p("input_layernorm.weight"))?,
                attn: Attention {
                    wq: lin(&p("self_attn.q_proj.weight"), qd, dm)?,
                    wk: lin(&p("self_attn.k_proj.weight"), kvd, dm)?,
                    wv: lin(&p("self_attn.v_proj.weight"), kvd, dm)?,
                    wo: lin(&p("self_attn.o_proj.weight"), dm, qd)?,
                    n_head: c.n_head,
                    n_kv_head: c.n_kv_head,
                    head_dim: c.head_dim,
                    rope: c
                        .rope_theta
                        .map(|th| Rope::new(c.rope_dim, th, RopePairs::Halves)),
                },
                mlp_norm: rms(&p("post_attention_layernorm.weight"))?,
                mlp: Mlp::SwiGlu {
                    gate: lin(&p("mlp.gate_proj.weight"), c.d_ff, dm)?,
                    up: lin(&p("mlp.up_proj.weight"), c.d_ff, dm)?,
                    down: lin(&p("mlp.down_proj.weight"), dm, c.d_ff)?,
                },
            });
        }
        let unembedding = if !hf.tied && st.contains("lm_head.weight") {
            Unembedding {
                linear: lin("lm_head.weight", c.vocab_size, dm)?,
                tied: false,
            }
        } else {
            Unembedding {
                linear: Linear::new(token_embedding.table.clone(), None),
                tied: true,
            }
        };
        let final_norm = rms("model.norm.weight")?;
        Ok(Transformer {
            config: c,
            token_embedding,
            position_embedding: None,
            blocks,
            final_norm,
            unembedding,
            precision: Precision::default(),
        })
    }
}
