//! The library's error type: every variant names the file, tensor or field at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The OS error is part of the message, not a `#[source]`: anyhow's `{:#}` would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A model file that is malformed: bad magic, truncated, out-of-bounds offsets, absurd counts.
    #[error("{file}: {msg}")]
    Format { file: String, msg: String },
    /// A tensor type this engine does not know (the GGML type number or dtype name).
    #[error("{file}: tensor '{tensor}' has unsupported type {dtype}")]
    UnsupportedType {
        file: String,
        tensor: String,
        dtype: String,
    },
    /// A tensor that the model needs is absent or has the wrong shape.
    #[error("tensor '{name}': {msg}")]
    Tensor { name: String, msg: String },
    /// A required or malformed metadata / config field.
    #[error("{file}: field '{field}': {msg}")]
    Field {
        file: String,
        field: String,
        msg: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt and generation need {needed} tokens but the context window is {context}")]
    ContextOverflow { needed: usize, context: usize },
    #[error("chat template: {0}")]
    Template(String),
    #[error("model hub: {0}")]
    Hub(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }
}
