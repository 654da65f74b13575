//! The transformer: one model for every architecture gpt-rs runs (Llama family, GPT-2), generic
//! over how its weights are stored (f32, f16, bf16, GGML blocks).
//!
//! Dimension names, used in every doc comment that gives a tensor's shape:
//! - `B` batch, `T` time (tokens), `C` channels (d_model), `V` vocabulary size,
//! - `NH` query heads, `NKV` key/value heads, `HS` head size, `L` layers, `F` MLP width.
//!
//! The pipeline, file by file: [`embedding`] (token ids -> vectors), then per block
//! [`norm`] -> [`attention`] (with [`rope`]) -> residual add -> [`norm`] -> [`mlp`] -> residual
//! add, then the final [`norm`] and [`unembedding`] (vectors -> one logit per vocabulary entry).
//! [`transformer`] wires them; [`config`] holds the hyperparameters; [`load`] maps file tensors
//! to the model.

pub mod arch;
pub mod attention;
pub mod config;
pub mod embedding;
pub mod linear;
pub mod load;
pub mod loss;
pub mod mlp;
pub mod norm;
pub mod params;
pub mod rope;
pub mod training;
pub mod transformer;
pub mod unembedding;

pub use config::{Arch, Config};
pub use transformer::{Block, Logits, Transformer};
