//! Model file formats. Parsing lives here, separate from the models that use the tensors.

pub mod gguf;
pub mod hf_config;
pub mod safetensors;
