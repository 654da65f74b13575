//! GPT-2's parameters as one contiguous f32 buffer with named places (llm.c's
//! ParameterTensors): the optimizer is one loop over one slice, gradients and optimizer moments
//! mirror it, and a checkpoint is one pass over the names.
//!
//! Names are Hugging Face's (`transformer.h.0.attn.c_attn.weight`, ...) so that loading and
//! saving are a name map. One difference in layout: Hugging Face's Conv1D weights are stored
//! (in, out); here every weight matrix is (out, in) like `nn.Linear`, so the forward pass uses
//! the same matmul as inference; they are transposed when read or written.

use super::config::Config;
use crate::{Error, Result};
use std::sync::Arc;

/// One parameter tensor's place in the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// The Hugging Face name.
    pub name: String,
    /// Our shape: (out, in) for weight matrices.
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Stored (in, out) by Hugging Face (GPT-2's Conv1D).
    pub hf_transposed: bool,
    /// AdamW decays it: weight matrices and embeddings yes; biases and norm gains no (GPT-2 /
    /// nanoGPT practice: every tensor with 2 or more dimensions).
    pub decay: bool,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape Hugging Face stores.
    pub fn hf_shape(&self) -> Vec<usize> {
        if self.hf_transposed {
            vec![self.shape[1], self.shape[0]]
        } else {
            self.shape.clone()
        }
    }
}

/// Specs laid end to end in the order they are added.
#[derive(Default)]
struct Layout {
    specs: Vec<ParamSpec>,
    offset: usize,
}

impl Layout {
    fn add(&mut self, name: String, shape: Vec<usize>, hf_transposed: bool) {
        let len: usize = shape.iter().product();
        self.specs.push(ParamSpec {
            name,
            decay: shape.len() >= 2,
            shape,
            offset: self.offset,
            hf_transposed,
        });
        self.offset += len;
    }
}

/// The tensors of a model of this architecture in Hugging Face's `named_parameters()` order:
/// GPT-2's, or Llama's (also SmolLM2's; `tied`: no `lm_head`, the embedding unembeds).
pub fn layout(c: &Config, tied: bool) -> Result<Vec<ParamSpec>> {
    use super::config::Arch;
    match c.arch {
        Arch::Gpt2 => Ok(gpt2_layout(c)),
        Arch::Llama => Ok(llama_layout(c, tied)),
        other => Err(Error::Invalid(format!(
            "training {other:?} models is not supported (GPT-2 and Llama blocks are)"
        ))),
    }
}

/// Llama's tensors (HF `LlamaForCausalLM`), all stored (out, in) as here.
pub fn llama_layout(c: &Config, tied: bool) -> Vec<ParamSpec> {
    let (v, d, f) = (c.vocab_size, c.d_model, c.d_ff);
    let (qd, kvd) = (c.n_head * c.head_dim, c.kv_dim());
    let mut out = Layout::default();
    let mut add = |name: String, shape: Vec<usize>| out.add(name, shape, false);
    add("model.embed_tokens.weight".into(), vec![v, d]);
    for l in 0..c.n_layer {
        let n = |s: &str| format!("model.layers.{l}.{s}");
        add(n("self_attn.q_proj.weight"), vec![qd, d]);
        add(n("self_attn.k_proj.weight"), vec![kvd, d]);
        add(n("self_attn.v_proj.weight"), vec![kvd, d]);
        add(n("self_attn.o_proj.weight"), vec![d, qd]);
        add(n("mlp.gate_proj.weight"), vec![f, d]);
        add(n("mlp.up_proj.weight"), vec![f, d]);
        add(n("mlp.down_proj.weight"), vec![d, f]);
        add(n("input_layernorm.weight"), vec![d]);
        add(n("post_attention_layernorm.weight"), vec![d]);
    }
    add("model.norm.weight".into(), vec![d]);
    if !tied {
        add("lm_head.weight".into(), vec![v, d]);
    }
    out.specs
}

/// GPT-2's tensors in Hugging Face's `named_parameters()` order.
pub fn gpt2_layout(c: &Config) -> Vec<ParamSpec> {
    let (v, p, d, f) = (c.vocab_size, c.context_length, c.d_model, c.d_ff);
    let mut out = Layout::default();
    let mut add =
        |name: String, shape: Vec<usize>, hf_transposed: bool| out.add(name, shape, hf_transposed);
    add("transformer.wte.weight".into(), vec![v, d], false);
    add("transformer.wpe.weight".into(), vec![p, d], false);
    for l in 0..c.n_layer {
        let n = |s: &str| format!("transformer.h.{l}.{s}");
        add(n("ln_1.weight"), vec![d], false);
        add(n("ln_1.bias"), vec![d], false);
        add(n("attn.c_attn.weight"), vec![3 * d, d], true);
        add(n("attn.c_attn.bias"), vec![3 * d], false);
        add(n("attn.c_proj.weight"), vec![d, d], true);
        add(n("attn.c_proj.bias"), vec![d], false);
        add(n("ln_2.weight"), vec![d], false);
        add(n("ln_2.bias"), vec![d], false);
        add(n("mlp.c_fc.weight"), vec![f, d], true);
        add(n("mlp.c_fc.bias"), vec![f], false);
        add(n("mlp.c_proj.weight"), vec![d, f], true);
        add(n("mlp.c_proj.bias"), vec![d], false);
    }
    add("transformer.ln_f.weight".into(), vec![d], false);
    add("transformer.ln_f.bias".into(), vec![d], false);
    out.specs
}

/// All parameters (or gradients, or optimizer moments) of a model in one buffer.
#[derive(Debug, Clone)]
pub struct Parameters {
    pub specs: Vec<ParamSpec>,
    pub data: ParamData,
}

/// The values of a parameter buffer (a `Vec<f32>` to read and write), shared with the models
/// built over it: [`Transformer::from_params`](crate::model::Transformer::from_params) borrows
/// its matrices from here, so evaluation and samples during training copy nothing. Writing while
/// such a model is alive would copy the buffer first (copy on write); training drops its model
/// before the optimizer step.
#[derive(Debug, Clone, Default)]
pub struct ParamData(Arc<F32Buffer>);

/// f32 values seen as bytes too, so that matrices can borrow from them.
#[derive(Debug, Clone, Default)]
struct F32Buffer(Vec<f32>);

impl AsRef<[u8]> for F32Buffer {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl ParamData {
    /// The whole buffer as shared bytes (f32-aligned), for matrices that borrow from it.
    pub fn bytes(&self) -> crate::tensor::Bytes {
        crate::tensor::Bytes::new(self.0.clone())
    }
}

impl From<Vec<f32>> for ParamData {
    fn from(v: Vec<f32>) -> ParamData {
        ParamData(Arc::new(F32Buffer(v)))
    }
}

impl std::ops::Deref for ParamData {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0 .0
    }
}

impl std::ops::DerefMut for ParamData {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut Arc::make_mut(&mut self.0).0
    }
}

impl PartialEq for ParamData {
    fn eq(&self, other: &ParamData) -> bool {
        self.0 .0 == other.0 .0
    }
}

impl Parameters {
    pub fn zeros(c: &Config) -> Parameters {
        Parameters::with_specs(gpt2_layout(c))
    }

    /// Zeros in `specs`' layout.
    pub fn with_specs(specs: Vec<ParamSpec>) -> Parameters {
        let n = specs.last().map_or(0, |s| s.offset + s.len());
        Parameters {
            specs,
            data: vec![0.0; n].into(),
        }
    }

    /// Zeros in the layout of `other` (gradients, optimizer moments).
    pub fn zeros_like(other: &Parameters) -> Parameters {
        Parameters::with_specs(other.specs.clone())
    }

    /// GPT-2's initialization: N(0, 0.02) for weights and embeddings, N(0, 0.02 / sqrt(2 L)) for
    /// the projections into the residual stream (c_proj), zero biases, unit norm gains.
    pub fn init(c: &Config, seed: u64) -> Parameters {
        Parameters::init_specs(gpt2_layout(c), c, seed)
    }

    /// The initialization of [`init`](Self::init) for any layout: Llama's (Hugging Face's
    /// `_init_weights`) is the same without GPT-2's scaled c_proj.
    pub fn init_specs(specs: Vec<ParamSpec>, c: &Config, seed: u64) -> Parameters {
        let mut p = Parameters::with_specs(specs);
        let mut rng = crate::infer::sampling::Rng::new(seed);
        let resid_std = 0.02 / (2.0 * c.n_layer as f32).sqrt();
        for s in p.specs.clone() {
            let x = &mut p.data[s.offset..s.offset + s.len()];
            let gain = s.name.ends_with("norm.weight")
                || [".ln_1.weight", ".ln_2.weight", ".ln_f.weight"]
                    .iter()
                    .any(|n| s.name.ends_with(n));
            if gain {
                x.fill(1.0);
            } else if s.shape.len() >= 2 {
                let std = if s.name.ends_with("c_proj.weight") {
                    resid_std
                } else {
                    0.02
                };
                for v in x.iter_mut() {
                    *v = normal(&mut rng) * std;
                }
            }
        }
        p
    }

    pub fn spec(&self, name: &str) -> Option<&ParamSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// The tensor `name` in our layout.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.spec(name)
            .map(|s| &self.data[s.offset..s.offset + s.len()])
    }

    /// The tensor `name` in Hugging Face's layout (Conv1D weights transposed back).
    pub fn get_hf(&self, name: &str) -> Option<Vec<f32>> {
        let s = self.spec(name)?;
        let x = &self.data[s.offset..s.offset + s.len()];
        Some(if s.hf_transposed {
            transpose(x, s.shape[0], s.shape[1])
        } else {
            x.to_vec()
        })
    }

    /// Sets the tensor `name` from Hugging Face's layout.
    pub fn set_hf(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let s = self.spec(name).cloned().ok_or_else(|| Error::Tensor {
            name: name.into(),
            msg: "not a parameter of this model".into(),
        })?;
        if values.len() != s.len() {
            return Err(Error::Tensor {
                name: name.into(),
                msg: format!(
                    "expected {:?} ({} values) but got {}",
                    s.hf_shape(),
                    s.len(),
                    values.len()
                ),
            });
        }
        let dst = &mut self.data[s.offset..s.offset + s.len()];
        if s.hf_transposed {
            dst.copy_from_slice(&transpose(values, s.shape[1], s.shape[0]));
        } else {
            dst.copy_from_slice(values);
        }
        Ok(())
    }

    /// The parameters of a Hugging Face model of any trainable architecture: its layout
    /// ([`layout`]; the unembedding tied as config.json says), every tensor read by its name
    /// (GPT-2's with or without `transformer.`).
    pub fn from_hf_model(
        hf: &crate::formats::hf_config::HfConfig,
        st: &crate::formats::safetensors::SafetensorsModel,
    ) -> Result<Parameters> {
        let mut p = Parameters::with_specs(layout(&hf.config, hf.tied)?);
        for s in p.specs.clone() {
            let short = s.name.trim_start_matches("transformer.");
            let name = if st.tensors.contains_key(&s.name) {
                &s.name
            } else {
                short
            };
            p.read_hf(st, &s, name)?;
        }
        Ok(p)
    }

    fn read_hf(
        &mut self,
        st: &crate::formats::safetensors::SafetensorsModel,
        s: &ParamSpec,
        hf_name: &str,
    ) -> Result<()> {
        let e = st.get(hf_name, &s.hf_shape())?;
        let v = crate::tensor::Matrix::vector_f32(hf_name, e.dtype, s.len(), e.data.clone())?;
        self.set_hf(&s.name, &v)
    }

    /// The f32 parameters of a GGUF file of a trainable architecture, with its config: every
    /// tensor dequantized from whatever type the file stores, Llama's Q and K rows put back in
    /// Hugging Face's order (the converter permuted them for llama.cpp's adjacent-pair RoPE).
    /// Every parameter must come from the file; a tensor with no place here is an error.
    pub fn from_gguf(g: &crate::formats::gguf::GgufFile) -> Result<(Config, Parameters)> {
        use super::arch::Positions;
        use super::rope::{adjacent_to_halves, RopePairs};
        let mut c = Config::from_gguf(g)?;
        let has_output = g.tensor_info("output.weight").is_some();
        let tied = gguf_ties(&c, g);
        let mut p = Parameters::with_specs(layout(&c, tied)?);
        let adjacent = matches!(
            c.arch.spec().positions,
            Positions::Rope {
                gguf_pairs: RopePairs::Adjacent
            }
        );
        if adjacent && !c.head_dim.is_multiple_of(2) {
            return Err(Error::Field {
                file: g.name.clone(),
                field: "attention.key_length".into(),
                msg: format!(
                    "RoPE needs an even head size (key_length), not {}",
                    c.head_dim
                ),
            });
        }
        let read = |name: &str| -> Result<Vec<f32>> {
            let info = g.tensor_info(name).ok_or_else(|| Error::Tensor {
                name: name.into(),
                msg: format!("missing from {}", g.name),
            })?;
            let n = info
                .dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?));
            let n = n.ok_or_else(|| Error::Tensor {
                name: name.into(),
                msg: format!("dimensions {:?} overflow", info.dims),
            })?;
            crate::tensor::Matrix::vector_f32(name, info.dtype, n, g.tensor_data(info))
        };
        let mut filled = Vec::new();
        for info in &g.tensors {
            let name = info.name.as_str();
            if tied && has_output && name == "output.weight" {
                // GPT-2's converter copies token_embd.weight here (and llama-quantize may store
                // the copy in another type): training ties the two, as Hugging Face's GPT-2 does.
                continue;
            }
            let mut x = read(name)?;
            if name == "rope_freqs.weight" {
                c.rope_freq_factors = Some(x); // RoPE's scaling: the config's, not a parameter
                continue;
            }
            let range = p.locate(&c, name, x.len())?;
            let role = name.rsplit('.').nth(1).unwrap_or_default();
            if adjacent && name.ends_with(".weight") && (role == "attn_q" || role == "attn_k") {
                let heads = if role == "attn_q" {
                    c.n_head
                } else {
                    c.n_kv_head
                };
                x = adjacent_to_halves(&x, heads, c.d_model);
            }
            p.data[range.clone()].copy_from_slice(&x);
            filled.push(range);
        }
        filled.sort_by_key(|r| r.start);
        let mut end = 0;
        for r in filled.iter().chain(std::iter::once(&(p.len()..p.len()))) {
            if r.start != end {
                let gap = p.specs.iter().find(|s| s.offset + s.len() > end);
                return Err(Error::Tensor {
                    name: gap.map_or("?".into(), |s| s.name.clone()),
                    msg: format!("{}: no tensor of the file holds this parameter", g.name),
                });
            }
            end = r.end;
        }
        Ok((c, p))
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Where the model's tensor `gguf` (named as the loader asks for it: `blk.0.attn_q.weight`)
    /// lives in the buffer, if this layout has it. A projection that the layout stores fused
    /// (GPT-2's `c_attn` holds Q, K and V) is its block of rows.
    pub fn find(&self, c: &Config, gguf: &str) -> Option<std::ops::Range<usize>> {
        let names = c.arch.spec().hf_names;
        let spec = |g: &str| {
            let hf = names.translate(g)?;
            self.spec(&format!("{}{hf}", names.optional_prefix))
        };
        if let Some(s) = spec(gguf) {
            return Some(s.offset..s.offset + s.len());
        }
        // blk.L.attn_{q,k,v}.{weight,bias}: rows q, then k, then v of blk.L.attn_qkv.
        let (stem, suffix) = gguf.rsplit_once('.')?;
        let (layer, role) = stem.rsplit_once('.')?;
        let part = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .position(|&p| p == role)?;
        let s = spec(&format!("{layer}.attn_qkv.{suffix}"))?;
        let per_row = if suffix == "weight" { c.d_model } else { 1 };
        let (q, kv) = (c.n_head * c.head_dim * per_row, c.kv_dim() * per_row);
        let start = s.offset + [0, q, q + kv][part];
        Some(start..start + [q, kv, kv][part])
    }

    /// [`find`](Self::find), for a tensor of `len` values.
    pub fn locate(&self, c: &Config, gguf: &str, len: usize) -> Result<std::ops::Range<usize>> {
        let range = self.find(c, gguf).ok_or_else(|| Error::Tensor {
            name: gguf.into(),
            msg: "not a parameter of this model".into(),
        })?;
        if range.len() != len {
            return Err(Error::Tensor {
                name: gguf.into(),
                msg: format!("{len} values for a parameter of {}", range.len()),
            });
        }
        Ok(range)
    }

    /// The name of the first tensor holding a NaN or an infinity, if any.
    pub fn first_non_finite(&self) -> Option<&str> {
        self.specs
            .iter()
            .find(|s| {
                self.data[s.offset..s.offset + s.len()]
                    .iter()
                    .any(|x| !x.is_finite())
            })
            .map(|s| s.name.as_str())
    }
}

/// Whether training's layout of this GGUF model ties the unembedding to the token embedding:
/// GPT-2 always (llama.cpp's converter writes a copy as output.weight), others when the file has
/// no output.weight.
pub fn gguf_ties(c: &Config, g: &crate::formats::gguf::GgufFile) -> bool {
    c.arch == super::config::Arch::Gpt2 || g.tensor_info("output.weight").is_none()
}

/// x (rows, cols) -> (cols, rows)
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut crate::infer::sampling::Rng) -> f32 {
    let u1 = (rng.next_f32() as f64).max(1e-12);
    let u2 = rng.next_f32() as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    pub(crate) fn tiny() -> Config {
        Config {
            arch: Arch::Gpt2,
            n_layer: 2,
            d_model: 8,
            n_head: 2,
            n_kv_head: 2,
            head_dim: 4,
            d_ff: 32,
            vocab_size: 11,
            context_length: 5,
            norm_eps: 1e-5,
            rope_theta: None,
            rope_dim: 0,
            ..Config::default()
        }
    }

    #[test]
    fn gpt2_124m_has_huggingfaces_parameter_count() {
        let c = Config {
            n_layer: 12,
            d_model: 768,
            n_head: 12,
            n_kv_head: 12,
            head_dim: 64,
            d_ff: 3072,
            vocab_size: 50257,
            context_length: 1024,
            ..tiny()
        };
        assert_eq!(Parameters::zeros(&c).len(), 124_439_808);
    }

    #[test]
    fn gpt2_splits_c_attn_into_q_k_and_v_rows() {
        let (c, p) = (tiny(), Parameters::zeros(&tiny()));
        let fused = p.spec("transformer.h.1.attn.c_attn.weight").unwrap().offset;
        let q = p.locate(&c, "blk.1.attn_q.weight", 64).unwrap();
        let v = p.locate(&c, "blk.1.attn_v.weight", 64).unwrap();
        assert_eq!((q.start, v.start), (fused, fused + 128));
        let kb = p.locate(&c, "blk.1.attn_k.bias", 8).unwrap();
        let bias = p.spec("transformer.h.1.attn.c_attn.bias").unwrap().offset;
        assert_eq!(kb, bias + 8..bias + 16);
        assert!(p.locate(&c, "blk.1.attn_q.weight", 65).is_err());
        assert!(p.find(&c, "blk.1.attn_x.weight").is_none());
    }
}
