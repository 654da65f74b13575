//! gpt: a GPT engine for the CPU.
//!
//! The modules follow the pipeline of a GPT, in the order a reader meets it:
//! text -> [`tokenizer`] -> token ids -> [`model`] (embedding, N x [norm, attention, norm, MLP],
//! final norm, unembedding) -> logits -> [`infer`] (sampling, generation, chat templates).
//! Weights come from [`formats`] (GGUF, safetensors), are stored as [`tensor`] buffers and are
//! multiplied by the [`kernels`], the only home of SIMD and `unsafe`. [`hub`] finds named models.
#![deny(unsafe_code)]

pub mod error;
pub mod export;
pub mod formats;
pub mod hub;
pub mod infer;
pub mod inspect;
pub mod kernels;
pub mod loaded_model;
pub mod model;
pub mod quantize;
pub mod tensor;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
pub use loaded_model::LoadedModel;
