//! GGUF (versions 2 and 3): the llama.cpp ecosystem's single-file model format.
//! STUB: the API below is the contract; the implementation is being written.

use crate::tensor::{Bytes, DType};
use crate::Result;
use std::path::Path;

/// One metadata value (GGUF's `gguf_metadata_value_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Any integer type that fits, as u64.
    pub fn as_u64(&self) -> Option<u64> {
        todo!()
    }
    /// Any float or integer type, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        todo!()
    }
    pub fn as_bool(&self) -> Option<bool> {
        todo!()
    }
    pub fn as_str(&self) -> Option<&str> {
        todo!()
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        todo!()
    }
}

/// A tensor's description from the header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the innermost (contiguous) dimension, e.g. (K, N) for a matrix
    /// of N rows of K elements.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Offset of the data from the start of the file (already includes the data section start).
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file whose tensor data stays memory-mapped.
pub struct GgufFile {
    /// The file's name, for error messages.
    pub name: String,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    data: Bytes,
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        todo!()
    }
    /// Parses a file held in memory; `name` is used in errors.
    pub fn from_bytes(name: &str, data: Bytes) -> Result<GgufFile> {
        todo!()
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        todo!()
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        todo!()
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        todo!()
    }
    pub fn get_f64_opt(&self, key: &str) -> Option<f64> {
        todo!()
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        todo!()
    }
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>> {
        todo!()
    }
    pub fn architecture(&self) -> Result<&str> {
        todo!()
    }
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        todo!()
    }
    /// The tensor's bytes, borrowed from the mapping (bounds were checked when parsing).
    pub fn tensor_data(&self, info: &TensorInfo) -> Bytes {
        todo!()
    }
}
