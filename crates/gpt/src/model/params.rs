//! GPT-2's parameters as one contiguous f32 buffer with named views (llm.c's
//! ParameterTensors): the optimizer is one loop over one slice, gradients and optimizer moments
//! mirror it, and a checkpoint is one pass over the names.
//!
//! Names are Hugging Face's (`transformer.h.0.attn.c_attn.weight`, ...) so that loading and
//! saving are a name map. One difference in layout: Hugging Face's Conv1D weights are stored
//! (in, out); here every weight matrix is (out, in) like `nn.Linear`, so the forward pass uses
//! the same matmul as inference; they are transposed when read or written.

use super::config::Config;
use crate::{Error, Result};

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

/// GPT-2's tensors in Hugging Face's `named_parameters()` order.
pub fn gpt2_layout(c: &Config) -> Vec<ParamSpec> {
    let (v, p, d, f) = (c.vocab_size, c.context_length, c.d_model, c.d_ff);
    let mut specs = Vec::new();
    let mut offset = 0;
    let mut add = |name: String, shape: Vec<usize>, hf_transposed: bool| {
        let decay = shape.len() >= 2;
        let len: usize = shape.iter().product();
        specs.push(ParamSpec {
            name,
            shape,
            offset,
            hf_transposed,
            decay,
        });
        offset += len;
    };
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
    specs
}

/// The tensors of one block, in forward order.
#[derive(Debug)]
pub struct LayerParams<T> {
    pub ln_1_w: T,
    pub ln_1_b: T,
    /// (3C, C)
    pub c_attn_w: T,
    pub c_attn_b: T,
    /// (C, C)
    pub c_proj_w: T,
    pub c_proj_b: T,
    pub ln_2_w: T,
    pub ln_2_b: T,
    /// (F, C)
    pub c_fc_w: T,
    pub c_fc_b: T,
    /// (C, F)
    pub mlp_proj_w: T,
    pub mlp_proj_b: T,
}

/// Named views of a GPT-2 buffer; `T` is `&[f32]` or `&mut [f32]`.
#[derive(Debug)]
pub struct Gpt2Params<T> {
    /// (V, C), also the unembedding (tied).
    pub wte: T,
    /// (maxT, C)
    pub wpe: T,
    pub layers: Vec<LayerParams<T>>,
    pub ln_f_w: T,
    pub ln_f_b: T,
}

macro_rules! views {
    ($name:ident, $t:ty, $split:ident) => {
        /// Cuts `buf` into the named tensors of `specs` (from [`gpt2_layout`]).
        pub fn $name<'a>(specs: &[ParamSpec], n_layer: usize, buf: $t) -> Gpt2Params<$t> {
            let mut rest = buf;
            let mut it = specs.iter();
            let mut next = move || {
                let s = it.next().expect("layout has every tensor");
                let (head, tail) = std::mem::take(&mut rest).$split(s.len());
                rest = tail;
                head
            };
            let wte = next();
            let wpe = next();
            let layers = (0..n_layer)
                .map(|_| LayerParams {
                    ln_1_w: next(),
                    ln_1_b: next(),
                    c_attn_w: next(),
                    c_attn_b: next(),
                    c_proj_w: next(),
                    c_proj_b: next(),
                    ln_2_w: next(),
                    ln_2_b: next(),
                    c_fc_w: next(),
                    c_fc_b: next(),
                    mlp_proj_w: next(),
                    mlp_proj_b: next(),
                })
                .collect();
            let ln_f_w = next();
            let ln_f_b = next();
            Gpt2Params {
                wte,
                wpe,
                layers,
                ln_f_w,
                ln_f_b,
            }
        }
    };
}
views!(views, &'a [f32], split_at);
views!(views_mut, &'a mut [f32], split_at_mut);

/// All parameters (or gradients, or optimizer moments) of a GPT-2 in one buffer.
#[derive(Debug, Clone)]
pub struct Parameters {
    pub specs: Vec<ParamSpec>,
    pub data: Vec<f32>,
    n_layer: usize,
}

impl Parameters {
    pub fn zeros(c: &Config) -> Parameters {
        let specs = gpt2_layout(c);
        let n = specs.last().map_or(0, |s| s.offset + s.len());
        Parameters {
            specs,
            data: vec![0.0; n],
            n_layer: c.n_layer,
        }
    }

    /// GPT-2's initialization: N(0, 0.02) for weights and embeddings, N(0, 0.02 / sqrt(2 L)) for
    /// the projections into the residual stream (c_proj), zero biases, unit norm gains.
    pub fn init(c: &Config, seed: u64) -> Parameters {
        let mut p = Parameters::zeros(c);
        let mut rng = crate::infer::sampling::Rng::new(seed);
        let resid_std = 0.02 / (2.0 * c.n_layer as f32).sqrt();
        for s in p.specs.clone() {
            let x = &mut p.data[s.offset..s.offset + s.len()];
            if s.name.ends_with("ln_1.weight")
                || s.name.ends_with("ln_2.weight")
                || s.name.ends_with("ln_f.weight")
            {
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

    pub fn views(&self) -> Gpt2Params<&[f32]> {
        views(&self.specs, self.n_layer, &self.data)
    }

    pub fn views_mut(&mut self) -> Gpt2Params<&mut [f32]> {
        views_mut(&self.specs, self.n_layer, &mut self.data)
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
            msg: "not a GPT-2 parameter".into(),
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

    /// Reads every tensor named `{prefix}{name without "transformer."}`... from Hugging Face
    /// tensors; `prefix` replaces the leading "transformer." (e.g. "transformer." itself).
    pub fn from_hf(
        c: &Config,
        st: &crate::formats::safetensors::SafetensorsModel,
        prefix: &str,
    ) -> Result<Parameters> {
        let mut p = Parameters::zeros(c);
        for s in p.specs.clone() {
            let hf_name = format!("{prefix}{}", s.name.trim_start_matches("transformer."));
            let e = st.get(&hf_name, &s.hf_shape())?;
            let v = crate::tensor::Matrix::vector_f32(&hf_name, e.dtype, s.len(), e.data.clone())?;
            p.set_hf(&s.name, &v)?;
        }
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
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
    fn views_cover_the_buffer_in_order() {
        let mut p = Parameters::zeros(&tiny());
        for (i, v) in p.data.iter_mut().enumerate() {
            *v = i as f32;
        }
        let v = p.views();
        assert_eq!(v.wte[0], 0.0);
        assert_eq!(v.wpe[0], (11 * 8) as f32);
        assert_eq!(*v.ln_f_b.last().unwrap(), (p.len() - 1) as f32);
        assert_eq!(v.layers[1].c_attn_w.len(), 24 * 8);
    }
}
