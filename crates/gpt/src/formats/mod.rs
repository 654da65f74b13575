//! Model file formats. Parsing lives here, separate from the models that use the tensors.

pub mod gguf;
