//! Building a [`Transformer`] from a model file: one builder for every architecture, driven by
//! the architecture's table ([`super::arch`]), over one of three sources of tensors: a GGUF file,
//! a Hugging Face folder, or the f32 parameters of a model in training. The builder asks for
//! every tensor by its GGUF name and checks every shape.

use super::arch::{MlpKind, NormKind, Positions};
use super::attention::Attention;
use super::config::Config;
use super::embedding::Embedding;
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::Norm;
use super::rope::{Rope, RopePairs};
use super::transformer::{Block, Transformer};
use super::unembedding::Unembedding;
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsModel;
use crate::kernels::Precision;
use crate::tensor::{Bytes, Matrix};
use crate::{Error, Result};

/// Where the builder's tensors come from, by GGUF name (`blk.0.attn_q.weight`).
trait Source {
    fn has(&self, name: &str) -> bool;
    /// A (rows, cols) matrix, in the file's storage type.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix>;
    /// A vector of `len` values as f32 (norm gains, biases).
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>>;
    /// The row count of a 2-D tensor, if it is one.
    fn rows(&self, name: &str) -> Option<usize>;
    /// RoPE's pairing of the Q/K rows this source stores.
    fn rope_pairs(&self, arch_pairs: RopePairs) -> RopePairs;
}

/// A GGUF file's tensors, by llama.cpp's names.
struct GgufSource<'a> {
    g: &'a GgufFile,
}

impl GgufSource<'_> {
    fn info(&self, name: &str) -> Result<&crate::formats::gguf::TensorInfo> {
        self.g.tensor_info(name).ok_or_else(|| Error::Tensor {
            name: name.into(),
            msg: format!("missing from {}", self.g.name),
        })
    }
}

impl Source for GgufSource<'_> {
    fn has(&self, name: &str) -> bool {
        self.g.tensor_info(name).is_some()
    }

    /// GGUF lists dims innermost first, so a (rows, cols) matrix has dims [cols, rows].
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        if info.dims != [cols as u64, rows as u64] {
            return Err(Error::Tensor {
                name: name.into(),
                msg: format!(
                    "expected shape ({rows}, {cols}) but {} has {:?} (GGUF order, innermost first)",
                    self.g.name, info.dims
                ),
            });
        }
        Matrix::new(name, info.dtype, rows, cols, self.g.tensor_data(info))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.dims != [len as u64] {
            return Err(Error::Tensor {
                name: name.into(),
                msg: format!(
                    "expected shape ({len}) but {} has {:?}",
                    self.g.name, info.dims
                ),
            });
        }
        Matrix::vector_f32(name, info.dtype, len, self.g.tensor_data(info))
    }

    fn rows(&self, name: &str) -> Option<usize> {
        let info = self.g.tensor_info(name)?;
        (info.dims.len() == 2).then(|| info.dims[1] as usize)
    }

    fn rope_pairs(&self, arch_pairs: RopePairs) -> RopePairs {
        arch_pairs
    }
}

/// A Hugging Face folder's tensors, found through the architecture's name table.
struct HfSource<'a> {
    st: &'a SafetensorsModel,
    names: &'static super::arch::HfNames,
    /// Tried in order before each name (GPT-2 checkpoints with and without `transformer.`).
    prefixes: Vec<String>,
    /// RMSNorm gains are stored as w - 1 (Gemma).
    norm_plus_one: bool,
}

impl HfSource<'_> {
    /// The folder's name for a GGUF name, and its tensor.
    fn find(&self, gguf: &str) -> Result<(String, &crate::formats::safetensors::TensorEntry)> {
        let hf = self.names.translate(gguf).ok_or_else(|| Error::Tensor {
            name: gguf.into(),
            msg: "this architecture has no such tensor in Hugging Face files".into(),
        })?;
        for p in &self.prefixes {
            let name = format!("{p}{hf}");
            if let Some(e) = self.st.tensors.get(&name) {
                return Ok((name, e));
            }
        }
        // Not found: let the safetensors reader say so (it names the tensor and the folder).
        let name = format!("{}{hf}", self.prefixes[0]);
        self.st.get(&name, &[]).map(|e| (name, e))
    }

    /// Conv1D weights (GPT-2) are the blocks' 2-D weights.
    fn is_conv1d(&self, gguf: &str) -> bool {
        self.names.conv1d && gguf.starts_with("blk.") && gguf.ends_with(".weight")
    }
}

impl Source for HfSource<'_> {
    fn has(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let (hf, _) = self.find(name)?;
        if !self.is_conv1d(name) {
            let e = self.st.get(&hf, &[rows, cols])?;
            return Matrix::new(&hf, e.dtype, rows, cols, e.data.clone());
        }
        // Conv1D stores (in, out) and computes x @ W: transposed once here to (out, in).
        let e = self.st.get(&hf, &[cols, rows])?;
        let es = e.dtype.type_size();
        let mut t = vec![0u8; e.data.len()];
        for i in 0..cols {
            for o in 0..rows {
                let (src, dst) = ((i * rows + o) * es, (o * cols + i) * es);
                t[dst..dst + es].copy_from_slice(&e.data[src..src + es]);
            }
        }
        Matrix::new(&hf, e.dtype, rows, cols, Bytes::from_vec(t))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let (hf, _) = self.find(name)?;
        let e = self.st.get(&hf, &[len])?;
        let mut v = Matrix::vector_f32(&hf, e.dtype, len, e.data.clone())?;
        if self.norm_plus_one && name.ends_with("norm.weight") {
            v.iter_mut().for_each(|w| *w += 1.0);
        }
        Ok(v)
    }

    fn rows(&self, name: &str) -> Option<usize> {
        let (_, e) = self.find(name).ok()?;
        (e.shape.len() == 2).then(|| e.shape[0])
    }

    fn rope_pairs(&self, _: RopePairs) -> RopePairs {
        RopePairs::Halves
    }
}

/// A model in training: its f32 parameters, found by [`Parameters::locate`], weights already
/// (out, in). The matrices borrow from the buffer (no copy).
struct ParamsSource<'a> {
    c: &'a Config,
    p: &'a crate::model::params::Parameters,
    /// The parameters as bytes (f32-aligned).
    buf: Bytes,
}

impl Source for ParamsSource<'_> {
    fn has(&self, name: &str) -> bool {
        // Q, K and V are asked for one by one (see `find`), so that each has its own gradient.
        !name.contains(".attn_qkv.") && self.p.find(self.c, name).is_some()
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let r = self.p.locate(self.c, name, rows * cols)?;
        let bytes = self
            .buf
            .slice(r.start * 4, r.len() * 4)
            .ok_or_else(|| Error::Tensor {
                name: name.into(),
                msg: "outside the parameter buffer".into(),
            })?;
        Matrix::new(name, crate::tensor::DType::F32, rows, cols, bytes)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.p.data[self.p.locate(self.c, name, len)?].to_vec())
    }

    fn rows(&self, name: &str) -> Option<usize> {
        let names = self.c.arch.spec().hf_names;
        let hf = names.translate(name)?;
        let s = self.p.spec(&format!("{}{hf}", names.optional_prefix))?;
        (s.shape.len() == 2).then(|| s.shape[0])
    }

    fn rope_pairs(&self, _: RopePairs) -> RopePairs {
        RopePairs::Halves
    }
}

/// Splits a fused projection (rows stacked: e.g. q, k, v) into its row blocks.
fn split_rows(l: &Linear, parts: &[(&str, usize)]) -> Result<Vec<Linear>> {
    let mut out = Vec::new();
    let mut r0 = 0;
    let row_bytes = l.weight.as_ref().row_bytes();
    for &(part, rows) in parts {
        let data = l
            .weight
            .data
            .slice(r0 * row_bytes, rows * row_bytes)
            .ok_or_else(|| Error::Tensor {
                name: l.weight.name.clone(),
                msg: "fused matrix too small to split".into(),
            })?;
        let name = format!("{}[{part}]", l.weight.name);
        let w = Matrix::new(&name, l.weight.dtype, rows, l.weight.cols, data)?;
        let b = l.bias.as_ref().map(|b| b[r0..r0 + rows].to_vec());
        out.push(Linear::new(w, b));
        r0 += rows;
    }
    Ok(out)
}

/// The one builder: every architecture, every source.
fn build(mut config: Config, src: &dyn Source, tied: bool) -> Result<Transformer> {
    let spec = config.arch.spec();
    let c = config.clone();
    let (dm, qd, kvd, hs) = (c.d_model, c.n_head * c.head_dim, c.kv_dim(), c.head_dim);
    let linear = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
        let bias_name = format!("{name}.bias");
        let bias = if src.has(&bias_name) {
            Some(src.vector(&bias_name, rows)?)
        } else {
            None
        };
        Ok(Linear::new(
            src.matrix(&format!("{name}.weight"), rows, cols)?,
            bias,
        ))
    };
    let norm = |name: &str, len: usize| -> Result<Norm> {
        let weight = src.vector(&format!("{name}.weight"), len)?;
        Ok(match spec.norm {
            NormKind::Rms => Norm::Rms {
                weight,
                eps: c.norm_eps,
            },
            NormKind::Layer => Norm::Layer {
                weight,
                bias: src.vector(&format!("{name}.bias"), len)?,
                eps: c.norm_eps,
            },
        })
    };
    let token_embedding = Embedding {
        table: src.matrix("token_embd.weight", c.vocab_size, dm)?,
        scale: spec.embed_scale_sqrt_c.then(|| (dm as f32).sqrt()),
    };
    let position_embedding = match spec.positions {
        Positions::Learned => {
            let n_pos = src.rows("position_embd.weight").unwrap_or(0);
            // A table shorter than the declared context bounds the context.
            config.context_length = config.context_length.min(n_pos);
            if n_pos == 0 {
                return Err(Error::Tensor {
                    name: "position_embd.weight".into(),
                    msg: "missing or not 2-D".into(),
                });
            }
            Some(Embedding {
                table: src.matrix("position_embd.weight", n_pos, dm)?,
                scale: None,
            })
        }
        Positions::Rope { .. } => None,
    };
    // Llama 3.1-style RoPE scaling: per-pair divisors of the frequencies.
    let freq_factors = if src.has("rope_freqs.weight") {
        Some(src.vector("rope_freqs.weight", c.rope_dim / 2)?)
    } else {
        c.rope_freq_factors.clone()
    };
    for unsupported in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if src.has(unsupported) {
            return Err(Error::Tensor {
                name: unsupported.into(),
                msg: "LongRoPE (Phi-3 128k) is not supported".into(),
            });
        }
    }
    let rope_for = |l: usize| -> Option<Rope> {
        let Positions::Rope { gguf_pairs } = spec.positions else {
            return None;
        };
        let pairs = src.rope_pairs(gguf_pairs);
        let sliding = c.is_sliding(l);
        let theta = match (sliding, c.rope_theta_sliding) {
            (true, Some(t)) => t,
            _ => c.rope_theta?,
        };
        let scale = if sliding { 1.0 } else { c.rope_scale };
        let rope = Rope::new(c.rope_dim, theta, pairs).with_linear_scaling(scale);
        Some(match &freq_factors {
            Some(f) => rope.with_freq_factors(f),
            None => rope,
        })
    };
    let mut blocks = Vec::with_capacity(c.n_layer);
    for l in 0..c.n_layer {
        let p = |s: &str| format!("blk.{l}.{s}");
        let (wq, wk, wv) = if src.has(&p("attn_qkv.weight")) {
            let fused = linear(&p("attn_qkv"), qd + 2 * kvd, dm)?;
            let [q, k, v]: [Linear; 3] = split_rows(&fused, &[("q", qd), ("k", kvd), ("v", kvd)])?
                .try_into()
                .map_err(|_| Error::Invalid("attn_qkv split".into()))?;
            (q, k, v)
        } else {
            (
                linear(&p("attn_q"), qd, dm)?,
                linear(&p("attn_k"), kvd, dm)?,
                linear(&p("attn_v"), kvd, dm)?,
            )
        };
        let (q_norm, k_norm) = if spec.qk_norm {
            (
                Some(norm(&p("attn_q_norm"), hs)?),
                Some(norm(&p("attn_k_norm"), hs)?),
            )
        } else {
            (None, None)
        };
        let attn = Attention {
            wq,
            wk,
            wv,
            wo: linear(&p("attn_output"), dm, qd)?,
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            head_dim: hs,
            rope: rope_for(l),
            q_norm,
            k_norm,
            scale: c.attention_scale(),
            window: c.sliding_window.filter(|_| c.is_sliding(l)),
        };
        let mlp = match spec.mlp {
            MlpKind::SwiGlu | MlpKind::GeGlu => {
                let (gate, up) = if spec.fused_gate_up && !src.has(&p("ffn_gate.weight")) {
                    let fused = linear(&p("ffn_up"), 2 * c.d_ff, dm)?;
                    let [g, u]: [Linear; 2] =
                        split_rows(&fused, &[("gate", c.d_ff), ("up", c.d_ff)])?
                            .try_into()
                            .map_err(|_| Error::Invalid("ffn_up split".into()))?;
                    (g, u)
                } else {
                    (
                        linear(&p("ffn_gate"), c.d_ff, dm)?,
                        linear(&p("ffn_up"), c.d_ff, dm)?,
                    )
                };
                let down = linear(&p("ffn_down"), dm, c.d_ff)?;
                match spec.mlp {
                    MlpKind::SwiGlu => Mlp::SwiGlu { gate, up, down },
                    _ => Mlp::GeGlu { gate, up, down },
                }
            }
            MlpKind::Gelu => Mlp::Gelu {
                fc: linear(&p("ffn_up"), c.d_ff, dm)?,
                proj: linear(&p("ffn_down"), dm, c.d_ff)?,
            },
        };
        let post = |name: &str| -> Result<Option<Norm>> {
            spec.post_norms.then(|| norm(&p(name), dm)).transpose()
        };
        blocks.push(Block {
            attn_norm: norm(&p("attn_norm"), dm)?,
            attn,
            post_attn_norm: post("post_attention_norm")?,
            mlp_norm: norm(&p("ffn_norm"), dm)?,
            mlp,
            post_mlp_norm: post("post_ffw_norm")?,
        });
    }
    let final_norm = norm("output_norm", dm)?;
    let unembedding = if !tied && src.has("output.weight") {
        Unembedding {
            linear: linear("output", c.vocab_size, dm)?,
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

/// [`build`] for inference: the weights repacked once here, so that no matmul of generation or
/// of a prompt repacks them.
fn build_packed(config: Config, src: &dyn Source, tied: bool) -> Result<Transformer> {
    let mut model = build(config, src, tied)?;
    model.pack_weights();
    Ok(model)
}

impl Transformer {
    /// Builds the model from a parsed GGUF file (weights stay memory-mapped).
    pub fn from_gguf(g: &GgufFile) -> Result<Transformer> {
        build_packed(Config::from_gguf(g)?, &GgufSource { g }, false)
    }

    /// Builds the model from a Hugging Face folder: config.json + model.safetensors (or shards).
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Transformer> {
        let hf = crate::formats::hf_config::HfConfig::from_file(&dir.join("config.json"))?;
        let st = SafetensorsModel::open_dir(dir)?;
        let prefix = hf.config.arch.spec().hf_names.optional_prefix;
        Transformer::from_hf_tensors(&hf, &st, prefix)
    }

    /// Builds the model from Hugging Face tensors whose names carry `prefix` where the
    /// architecture's names may carry one (GPT-2's `transformer.`); names without it are tried
    /// too.
    pub fn from_hf_tensors(
        hf: &crate::formats::hf_config::HfConfig,
        st: &SafetensorsModel,
        prefix: &str,
    ) -> Result<Transformer> {
        let spec = hf.config.arch.spec();
        let src = HfSource {
            st,
            names: spec.hf_names,
            prefixes: vec![prefix.to_string(), String::new()],
            norm_plus_one: spec.hf_norm_plus_one,
        };
        build_packed(hf.config.clone(), &src, hf.tied)
    }

    /// The model of training parameters (f32), its matrices borrowed from their buffer: what
    /// training runs forward and backward, and what samples and validation use during training.
    pub fn from_params(c: &Config, p: &crate::model::params::Parameters) -> Result<Transformer> {
        let src = ParamsSource {
            c,
            p,
            buf: p.data.bytes(),
        };
        let tied = p.find(c, "output.weight").is_none();
        let mut t = build(c.clone(), &src, tied)?;
        t.precision = Precision::Dense;
        Ok(t)
    }
}
