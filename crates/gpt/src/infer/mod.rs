//! Inference: the KV cache and the prompt cache, sampling, the generation loop, chat templates and perplexity.

pub mod chat_template;
pub mod constraint;
pub mod generate;
pub mod kv_cache;
pub mod perplexity;
pub mod prompt_cache;
pub mod sampling;
pub mod tools;

pub use constraint::{Constraint, ConstraintFactory, Grammar};
pub use generate::{FinishReason, GenerateOptions, Generation, Generator, Sequence, Step};
pub use kv_cache::KvCache;
pub use prompt_cache::PromptCache;
pub use sampling::{Sampler, SamplingParams};
