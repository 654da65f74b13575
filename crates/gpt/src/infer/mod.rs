//! Inference: the KV cache, sampling, the generation loop and chat templates.

pub mod chat_template;
pub mod generate;
pub mod kv_cache;
pub mod sampling;

pub use generate::{FinishReason, GenerateOptions, Generation, Generator, Sequence, Step};
pub use kv_cache::KvCache;
pub use sampling::{Sampler, SamplingParams};
