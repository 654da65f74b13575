//! GGUF (versions 2 and 3): the llama.cpp ecosystem's single-file model format.
//!
//! Layout (all little-endian), as specified in ggml's `docs/gguf.md`:
//!
//! ```text
//! header        magic "GGUF", u32 version, u64 tensor_count, u64 kv_count
//! metadata      kv_count x (string key, u32 value type, value)
//! tensor infos  tensor_count x (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type,
//!               u64 offset relative to the data section)
//! padding       to `general.alignment` (default 32)
//! data section  the tensors' bytes, each starting at a multiple of the alignment
//! ```
//!
//! A string is a u64 byte length followed by UTF-8 bytes; an array is a u32 element type, a u64
//! count and the elements.
//!
//! The file is untrusted input: every count and length read from it is checked against the bytes
//! that remain before anything is allocated, so a corrupt or hostile file produces an
//! [`Error::Format`] naming the problem, never a panic or a huge allocation. Tensor data is not
//! copied: [`GgufFile::tensor_data`] returns slices of the memory-mapped file.
//!
//! [`GgufWriter`] builds GGUF v3 files in memory, for synthetic test files and for saving models.

use crate::tensor::{Bytes, DType};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The version [`GgufWriter`] writes.
pub const WRITE_VERSION: u32 = 3;
/// Data-section alignment when `general.alignment` is absent (ggml's `GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`: tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal; real files nest at most one level. The bound keeps a hostile file
/// from recursing until the stack overflows.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Vectors sized by a count from the file reserve at most this many elements up front and grow
/// as elements are actually read, so a count that passes the remaining-bytes check still cannot
/// reserve more memory than the data that backs it.
const PREALLOC_LIMIT: usize = 1 << 16;

/// Elements all metadata arrays of a file may hold together. Each decoded element is a 32-byte
/// [`Value`], so a file of one 40 MB u8 array would otherwise cost 1.3 GB; the largest real
/// tokenizers (tokens, scores, types, merges) hold about two million.
pub const MAX_METADATA_ELEMENTS: u64 = 1 << 23;

/// Smallest encoded size of one metadata entry: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoded size of one tensor info: name length, n_dims, ggml type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// GGUF's `gguf_metadata_value_type` numbers.
mod value_type {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

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
    /// Elements all of one type: GGUF arrays are homogeneous (the writer rejects mixed ones).
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Any integer type that fits, as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// Any integer type that fits, as i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }
    /// Any float or integer type, as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF type name, for error messages ("u32", "array", ...).
    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id())
    }

    /// The `gguf_metadata_value_type` number.
    fn type_id(&self) -> u32 {
        use value_type as t;
        match self {
            Value::U8(_) => t::U8,
            Value::I8(_) => t::I8,
            Value::U16(_) => t::U16,
            Value::I16(_) => t::I16,
            Value::U32(_) => t::U32,
            Value::I32(_) => t::I32,
            Value::F32(_) => t::F32,
            Value::Bool(_) => t::BOOL,
            Value::String(_) => t::STRING,
            Value::Array(_) => t::ARRAY,
            Value::U64(_) => t::U64,
            Value::I64(_) => t::I64,
            Value::F64(_) => t::F64,
        }
    }

    /// A short rendering for error messages: arrays show their length, not their contents.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.len() > 40 => format!("string {:?}...", truncate_str(s, 40)),
            Value::String(s) => format!("string {s:?}"),
            Value::Array(a) => format!("array of {} elements", a.len()),
            Value::Bool(b) => format!("bool {b}"),
            Value::U8(v) => format!("u8 {v}"),
            Value::I8(v) => format!("i8 {v}"),
            Value::U16(v) => format!("u16 {v}"),
            Value::I16(v) => format!("i16 {v}"),
            Value::U32(v) => format!("u32 {v}"),
            Value::I32(v) => format!("i32 {v}"),
            Value::U64(v) => format!("u64 {v}"),
            Value::I64(v) => format!("i64 {v}"),
            Value::F32(v) => format!("f32 {v}"),
            Value::F64(v) => format!("f64 {v}"),
        }
    }
}

fn truncate_str(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn type_name(id: u32) -> &'static str {
    use value_type as t;
    match id {
        t::U8 => "u8",
        t::I8 => "i8",
        t::U16 => "u16",
        t::I16 => "i16",
        t::U32 => "u32",
        t::I32 => "i32",
        t::F32 => "f32",
        t::BOOL => "bool",
        t::STRING => "string",
        t::ARRAY => "array",
        t::U64 => "u64",
        t::I64 => "i64",
        t::F64 => "f64",
        _ => "unknown",
    }
}

/// The fewest bytes one value of type `id` can take; used to bound counts before allocating.
fn min_value_bytes(id: u32) -> Option<u64> {
    use value_type as t;
    Some(match id {
        t::U8 | t::I8 | t::BOOL => 1,
        t::U16 | t::I16 => 2,
        t::U32 | t::I32 | t::F32 => 4,
        t::U64 | t::I64 | t::F64 => 8,
        t::STRING => 8,    // the length
        t::ARRAY => 4 + 8, // element type and count
        _ => return None,
    })
}

/// Names of GGML types this engine cannot compute with, so the error says "IQ2_XXS" rather
/// than only a number (ggml.h, `enum ggml_type`).
fn ggml_type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        9 => "Q8_1",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => return None,
    })
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
    /// The product of the dims; the reader has checked it does not overflow.
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
    /// The data section alignment (`general.alignment` or [`DEFAULT_ALIGNMENT`]).
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    data: Bytes,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        Self::from_bytes(&path.display().to_string(), Bytes::map_file(path)?)
    }

    /// Parses a file held in memory; `name` is used in errors.
    pub fn from_bytes(name: &str, data: Bytes) -> Result<GgufFile> {
        Parser {
            file: name,
            cur: Cursor {
                buf: &data,
                pos: 0,
                elements: 0,
            },
        }
        .parse(data.clone(), true)
    }

    /// Memory-maps `path` and parses only the header and the metadata: the tensor table is not
    /// read, so a file whose tensors this engine cannot load (an unknown type, a truncated data
    /// section) still gives its tokenizer and hyperparameters. `tensors` is empty.
    pub fn open_metadata(path: &Path) -> Result<GgufFile> {
        Self::metadata_from_bytes(&path.display().to_string(), Bytes::map_file(path)?)
    }

    /// [`Self::open_metadata`] for a file held in memory.
    pub fn metadata_from_bytes(name: &str, data: Bytes) -> Result<GgufFile> {
        Parser {
            file: name,
            cur: Cursor {
                buf: &data,
                pos: 0,
                elements: 0,
            },
        }
        .parse(data.clone(), false)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the mapping (bounds were checked when parsing).
    ///
    /// Panics if `info` did not come from this file and lies outside it: that is a programming
    /// error, not bad input. [`GgufFile::tensor_bytes`] looks a tensor up by name instead.
    pub fn tensor_data(&self, info: &TensorInfo) -> Bytes {
        usize::try_from(info.offset)
            .ok()
            .zip(usize::try_from(info.size).ok())
            .and_then(|(start, len)| self.data.slice(start, len))
            .unwrap_or_else(|| {
                panic!(
                    "tensor '{}' ({} bytes at {}) is not inside {} ({} bytes): its TensorInfo \
                     belongs to another file",
                    info.name,
                    info.size,
                    info.offset,
                    self.name,
                    self.data.len()
                )
            })
    }

    /// The named tensor's description and bytes, or an error naming the missing tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<(&TensorInfo, Bytes)> {
        let info = self.tensor_info(name).ok_or_else(|| Error::Tensor {
            name: name.to_string(),
            msg: format!("not found in {}", self.name),
        })?;
        Ok((info, self.tensor_data(info)))
    }

    /// `general.architecture`, e.g. "llama" or "gpt2": the prefix of the model's other keys.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    fn field_err(&self, key: &str, msg: String) -> Error {
        Error::Field {
            file: self.name.clone(),
            field: key.to_string(),
            msg,
        }
    }

    /// Looks `key` up and converts it; `Ok(None)` when absent, an error when the type is wrong.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => convert(v).map(Some).ok_or_else(|| {
                self.field_err(key, format!("expected {expected}, found {}", v.summary()))
            }),
        }
    }

    fn required<T>(&self, key: &str, v: Result<Option<T>>) -> Result<T> {
        v?.ok_or_else(|| self.field_err(key, "missing".to_string()))
    }

    /// An integer value as u64 (any integer type, if non-negative).
    pub fn get_u64_opt(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.required(key, self.get_u64_opt(key))
    }
    /// An integer value that fits in u32 (context lengths, head counts, token ids).
    pub fn get_u32_opt(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an integer in 0..2^32", |v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok())
        })
    }
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.required(key, self.get_u32_opt(key))
    }
    /// An integer value as usize, for sizes and counts.
    pub fn get_usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.typed(key, "a non-negative integer", |v| {
            v.as_u64().and_then(|n| usize::try_from(n).ok())
        })
    }
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.required(key, self.get_usize_opt(key))
    }
    /// Any numeric value as f64.
    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.required(key, self.get_f64_opt(key))
    }
    /// Any numeric value as f32 (norm epsilons and RoPE bases are stored as f32).
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.required(key, self.get_f32_opt(key))
    }
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", Value::as_bool)
    }
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.required(key, self.get_bool_opt(key))
    }
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", Value::as_str)
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.required(key, self.get_str_opt(key))
    }
    pub fn get_array_opt(&self, key: &str) -> Result<Option<&[Value]>> {
        self.typed(key, "an array", Value::as_array)
    }
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        self.required(key, self.get_array_opt(key))
    }

    /// Converts every element of an array, naming the first element that does not fit.
    fn typed_array<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(items) = self.get_array_opt(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                convert(v).ok_or_else(|| {
                    self.field_err(
                        key,
                        format!("element {i}: expected {expected}, found {}", v.summary()),
                    )
                })
            })
            .collect::<Result<Vec<T>>>()
            .map(Some)
    }

    /// An array of strings, borrowed (e.g. `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array_opt(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.typed_array(key, "a string", Value::as_str)
    }
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.required(key, self.get_str_array_opt(key))
    }
    /// An array of integers that fit in i32 (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i32_array_opt(&self, key: &str) -> Result<Option<Vec<i32>>> {
        self.typed_array(key, "an integer that fits in i32", |v| {
            v.as_i64().and_then(|n| i32::try_from(n).ok())
        })
    }
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.required(key, self.get_i32_array_opt(key))
    }
    /// An array of numbers as f32 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array_opt(&self, key: &str) -> Result<Option<Vec<f32>>> {
        self.typed_array(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.required(key, self.get_f32_array_opt(key))
    }
}

/// Why a low-level read failed; [`Parser`] adds what was being read and the file name.
enum Fault {
    Truncated {
        what: &'static str,
        need: u64,
        at: usize,
        left: usize,
    },
    Invalid(String),
}

type Read<T> = std::result::Result<T, Fault>;

/// A position in the file's bytes. Every read checks the remaining length first.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata array elements announced so far (see [`MAX_METADATA_ELEMENTS`]).
    elements: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &'static str) -> Read<&'a [u8]> {
        let left = self.remaining();
        if n > left as u64 {
            return Err(Fault::Truncated {
                what,
                need: n,
                at: self.pos,
                left,
            });
        }
        let n = n as usize; // fits: n <= left
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Read<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Read<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Read<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_bytes` each can fit in what is left, so the
    /// count can size an allocation.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Read<()> {
        let left = self.remaining() as u64;
        match count.checked_mul(min_bytes) {
            Some(need) if need <= left => Ok(()),
            _ => Err(Fault::Invalid(format!(
                "{what} {count} at offset {} is impossible: {count} x at least {min_bytes} bytes \
                 do not fit in the {left} bytes left (truncated or corrupt file)",
                self.pos
            ))),
        }
    }

    fn string(&mut self, what: &'static str) -> Read<String> {
        let at = self.pos;
        let len = self.u64(what)?;
        let left = self.remaining();
        if len > left as u64 {
            return Err(Fault::Invalid(format!(
                "{what} at offset {at} has length {len}, more than the {left} bytes left \
                 (truncated or corrupt file)"
            )));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            Fault::Invalid(format!(
                "{what} at offset {at} is not valid UTF-8 ({e}); GGUF strings are UTF-8"
            ))
        })
    }

    fn value(&mut self, ty: u32, depth: usize) -> Read<Value> {
        use value_type as t;
        Ok(match ty {
            t::U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            t::I8 => Value::I8(i8::from_le_bytes(self.array("i8 value")?)),
            t::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            t::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            t::U32 => Value::U32(self.u32("u32 value")?),
            t::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            t::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            t::BOOL => {
                let at = self.pos;
                match self.array::<1>("bool value")?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(Fault::Invalid(format!(
                            "bool at offset {at} has byte {b}, not 0 or 1"
                        )))
                    }
                }
            }
            t::STRING => Value::String(self.string("string value")?),
            t::ARRAY => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Fault::Invalid(format!(
                        "array at offset {at} is nested more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                let elem = self.u32("array element type")?;
                let min = min_value_bytes(elem).ok_or_else(|| {
                    Fault::Invalid(format!(
                        "array at offset {at} has unknown element type {elem}"
                    ))
                })?;
                let count = self.u64("array length")?;
                self.check_count(count, min, "array length")?;
                self.elements = self.elements.saturating_add(count);
                if self.elements > MAX_METADATA_ELEMENTS {
                    return Err(Fault::Invalid(format!(
                        "array at offset {at} brings the metadata to {} array elements, more than \
                         the {MAX_METADATA_ELEMENTS} a model file needs (real tokenizers hold ~2M)",
                        self.elements
                    )));
                }
                let mut items = Vec::with_capacity((count as usize).min(PREALLOC_LIMIT));
                for _ in 0..count {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::Array(items)
            }
            t::U64 => Value::U64(self.u64("u64 value")?),
            t::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            t::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
            _ => {
                return Err(Fault::Invalid(format!(
                    "unknown value type {ty} at offset {}",
                    self.pos.saturating_sub(4)
                )))
            }
        })
    }
}

struct Parser<'a> {
    file: &'a str,
    cur: Cursor<'a>,
}

impl Parser<'_> {
    fn err(&self, msg: String) -> Error {
        Error::Format {
            file: self.file.to_string(),
            msg,
        }
    }

    /// Turns a low-level fault into an error saying what was being read (`ctx`).
    fn fault(&self, ctx: &dyn Fn() -> String, f: Fault) -> Error {
        self.err(match f {
            Fault::Truncated {
                what,
                need,
                at,
                left,
            } => format!(
                "truncated while reading {}: {what} needs {need} bytes at offset {at}, only \
                 {left} left",
                ctx()
            ),
            Fault::Invalid(m) => format!("{}: {m}", ctx()),
        })
    }

    /// Parses the header and metadata, then the tensor table only if `with_tensors`.
    fn parse(mut self, data: Bytes, with_tensors: bool) -> Result<GgufFile> {
        let header = || "the header".to_string();
        let magic = self
            .cur
            .array::<4>("magic")
            .map_err(|f| self.fault(&header, f))?;
        if magic != MAGIC {
            return Err(self.err(format!(
                "not a GGUF file: starts with {:?}, expected \"GGUF\"",
                String::from_utf8_lossy(&magic)
            )));
        }
        let version = self
            .cur
            .u32("version")
            .map_err(|f| self.fault(&header, f))?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(self.err(
                    "GGUF version 1 is not supported (only versions 2 and 3); re-convert the \
                     model with a current llama.cpp"
                        .to_string(),
                ))
            }
            // llama.cpp's test: a byte-swapped small version has its low 16 bits zero.
            v if v & 0xFFFF == 0 && v.swap_bytes() <= 3 => {
                return Err(self.err(format!(
                    "big-endian GGUF (version {}) is not supported",
                    v.swap_bytes()
                )))
            }
            v => {
                return Err(self.err(format!(
                    "GGUF version {v} is not supported (only versions 2 and 3)"
                )))
            }
        }
        let n_tensors = self
            .cur
            .u64("tensor count")
            .map_err(|f| self.fault(&header, f))?;
        let n_kv = self
            .cur
            .u64("metadata count")
            .map_err(|f| self.fault(&header, f))?;
        self.cur
            .check_count(n_kv, MIN_KV_BYTES, "metadata count")
            .map_err(|f| self.fault(&header, f))?;
        // Metadata comes before the tensor infos, so both must fit in what follows the header.
        self.cur
            .check_count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor count")
            .map_err(|f| self.fault(&header, f))?;

        let (metadata, key_index) = self.read_metadata(n_kv)?;
        let alignment = self.alignment(&metadata, &key_index)?;
        if !with_tensors {
            return Ok(GgufFile {
                name: self.file.to_string(),
                version,
                metadata,
                tensors: Vec::new(),
                alignment,
                data_offset: 0,
                data,
                key_index,
                tensor_index: HashMap::new(),
            });
        }
        let raw = self.read_tensor_infos(n_tensors)?;

        let header_end = self.cur.pos as u64;
        let data_offset = header_end
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| self.err(format!("alignment {alignment} overflows the file offset")))?;
        let file_len = data.len() as u64;

        let mut tensors = Vec::with_capacity(raw.len());
        let mut tensor_index = HashMap::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let info = self.check_tensor(i, r, alignment, data_offset, file_len)?;
            if tensor_index.insert(info.name.clone(), i).is_some() {
                return Err(self.err(format!(
                    "tensor #{i}: duplicate tensor name '{}'",
                    info.name
                )));
            }
            tensors.push(info);
        }
        // Two tensors sharing bytes: a damaged or hostile file (a writer lays them end to end).
        let mut spans: Vec<(u64, u64, &str)> = tensors
            .iter()
            .filter(|t| t.size > 0)
            .map(|t| (t.offset, t.offset + t.size, t.name.as_str()))
            .collect();
        spans.sort_unstable();
        if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(self.err(format!(
                "tensors '{}' and '{}' overlap in the file (bytes {}..{} and {}..{})",
                w[0].2, w[1].2, w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }

        Ok(GgufFile {
            name: self.file.to_string(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            data,
            key_index,
            tensor_index,
        })
    }

    #[allow(clippy::type_complexity)]
    fn read_metadata(
        &mut self,
        n_kv: u64,
    ) -> Result<(Vec<(String, Value)>, HashMap<String, usize>)> {
        let cap = (n_kv as usize).min(PREALLOC_LIMIT);
        let mut metadata = Vec::with_capacity(cap);
        let mut index = HashMap::with_capacity(cap);
        for i in 0..n_kv as usize {
            let key = self
                .cur
                .string("key")
                .map_err(|f| self.fault(&|| format!("metadata key #{i}"), f))?;
            let ctx = || format!("metadata key #{i} ('{key}')");
            let ty = self
                .cur
                .u32("value type")
                .map_err(|f| self.fault(&ctx, f))?;
            let value = self.cur.value(ty, 0).map_err(|f| self.fault(&ctx, f))?;
            if index.insert(key.clone(), i).is_some() {
                return Err(self.err(format!("{}: duplicate key", ctx())));
            }
            metadata.push((key, value));
        }
        Ok((metadata, index))
    }

    fn alignment(
        &self,
        metadata: &[(String, Value)],
        index: &HashMap<String, usize>,
    ) -> Result<u64> {
        let Some(&i) = index.get(ALIGNMENT_KEY) else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        let v = &metadata[i].1;
        match v.as_u64() {
            Some(a) if a.is_power_of_two() => Ok(a),
            _ => Err(self.err(format!(
                "{ALIGNMENT_KEY} must be a non-zero power of two, found {}",
                v.summary()
            ))),
        }
    }

    fn read_tensor_infos(&mut self, n_tensors: u64) -> Result<Vec<RawTensorInfo>> {
        let mut raw = Vec::with_capacity((n_tensors as usize).min(PREALLOC_LIMIT));
        for i in 0..n_tensors as usize {
            let name = self
                .cur
                .string("name")
                .map_err(|f| self.fault(&|| format!("tensor info #{i}"), f))?;
            let ctx = || format!("tensor info #{i} ('{name}')");
            let n_dims = self.cur.u32("n_dims").map_err(|f| self.fault(&ctx, f))?;
            if n_dims as usize > MAX_DIMS {
                return Err(self.err(format!(
                    "{}: {n_dims} dimensions, at most {MAX_DIMS} are allowed",
                    ctx()
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(self.cur.u64("dimension").map_err(|f| self.fault(&ctx, f))?);
            }
            let ggml_type = self.cur.u32("ggml type").map_err(|f| self.fault(&ctx, f))?;
            let offset = self.cur.u64("offset").map_err(|f| self.fault(&ctx, f))?;
            raw.push(RawTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        Ok(raw)
    }

    /// Validates one tensor: known type, sane shape, aligned data inside the file.
    fn check_tensor(
        &self,
        i: usize,
        r: RawTensorInfo,
        alignment: u64,
        data_offset: u64,
        file_len: u64,
    ) -> Result<TensorInfo> {
        let ctx = format!("tensor #{i} ('{}')", r.name);
        let Some(dtype) = DType::from_ggml(r.ggml_type) else {
            let dtype = match ggml_type_name(r.ggml_type) {
                Some(n) => format!("{n} (ggml type {})", r.ggml_type),
                None => format!("ggml type {} (unknown)", r.ggml_type),
            };
            return Err(Error::UnsupportedType {
                file: self.file.to_string(),
                tensor: r.name,
                dtype,
            });
        };
        // ggml stores dims as int64_t, so llama.cpp rejects anything that is negative there.
        if let Some(d) = r.dims.iter().find(|&&d| d > i64::MAX as u64) {
            return Err(self.err(format!("{ctx}: dimension {d} is out of range")));
        }
        let n = r
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                self.err(format!(
                    "{ctx}: the element count of dims {:?} overflows",
                    r.dims
                ))
            })?;
        let row = r.dims.first().copied().unwrap_or(1);
        let block = dtype.block_size() as u64;
        if row % block != 0 {
            return Err(self.err(format!(
                "{ctx}: row length {row} (dims[0]) is not a multiple of the {dtype} block size \
                 {block}"
            )));
        }
        let size = dtype.bytes_for(n).ok_or_else(|| {
            self.err(format!(
                "{ctx}: the byte size of {n} {dtype} elements overflows"
            ))
        })?;
        // `alignment` is a power of two (checked when it was read).
        if r.offset & (alignment - 1) != 0 {
            return Err(self.err(format!(
                "{ctx}: data offset {} is not a multiple of the alignment {alignment}",
                r.offset
            )));
        }
        let offset = data_offset.checked_add(r.offset);
        match offset.and_then(|o| o.checked_add(size)) {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(self.err(format!(
                    "{ctx}: data ({size} bytes at data-section offset {}, file offset {}) lies \
                     outside the file ({file_len} bytes)",
                    r.offset,
                    data_offset as u128 + r.offset as u128
                )))
            }
        }
        Ok(TensorInfo {
            name: r.name,
            dims: r.dims,
            dtype,
            offset: data_offset + r.offset,
            size,
        })
    }
}

/// A tensor info as read, before its type and bounds are checked.
struct RawTensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

/// Builds a GGUF v3 file in memory: metadata in insertion order, then tensors, each padded to
/// the alignment (`general.alignment` if set, else [`DEFAULT_ALIGNMENT`]).
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<WriterTensor>,
}

#[derive(Debug, Clone)]
struct WriterTensor {
    name: String,
    dims: Vec<u64>,
    dtype: DType,
    data: Vec<u8>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry (kept in insertion order; duplicates are rejected by `to_bytes`).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Adds a tensor. `dims` are in GGML order (`dims[0]` innermost); `data` is the raw encoding,
    /// `dtype.bytes_for(n_elements)` bytes long (checked by `to_bytes`).
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        dtype: DType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors.push(WriterTensor {
            name: name.into(),
            dims: dims.to_vec(),
            dtype,
            data,
        });
        self
    }

    /// The data-section alignment this writer will use.
    fn alignment(&self) -> Result<u64> {
        match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, Value::U32(a))) if a.is_power_of_two() => Ok(u64::from(*a)),
            Some((_, v)) => Err(Error::Invalid(format!(
                "GGUF writer: {ALIGNMENT_KEY} must be a u32 power of two, found {}",
                v.summary()
            ))),
        }
    }

    /// The encoded file, after checking what a reader would reject.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let invalid = |msg: String| Error::Invalid(format!("GGUF writer: {msg}"));
        let alignment = self.alignment()?;

        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());

        let mut keys = std::collections::HashSet::new();
        for (key, value) in &self.metadata {
            if !keys.insert(key.as_str()) {
                return Err(invalid(format!("duplicate metadata key '{key}'")));
            }
            write_string(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            write_value(&mut out, value, 0).map_err(|m| invalid(format!("key '{key}': {m}")))?;
        }

        let mut names = std::collections::HashSet::new();
        let mut offset = 0u64;
        for t in &self.tensors {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("duplicate tensor name '{}'", t.name)));
            }
            if t.dims.len() > MAX_DIMS {
                return Err(invalid(format!(
                    "tensor '{}' has {} dims, at most {MAX_DIMS}",
                    t.name,
                    t.dims.len()
                )));
            }
            let n = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let row = t.dims.first().copied().unwrap_or(1);
            let expected = n
                .filter(|_| row % t.dtype.block_size() as u64 == 0)
                .and_then(|n| t.dtype.bytes_for(n));
            if expected != Some(t.data.len() as u64) {
                return Err(invalid(format!(
                    "tensor '{}' ({} {:?}) needs {} bytes, got {}",
                    t.name,
                    t.dtype,
                    t.dims,
                    expected.map_or("an impossible number of".to_string(), |e| e.to_string()),
                    t.data.len()
                )));
            }
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.ggml_id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(alignment);
        }

        for t in &self.tensors {
            pad_to(&mut out, alignment);
            out.extend_from_slice(&t.data);
        }
        pad_to(&mut out, alignment);
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment);
    out.resize(len as usize, 0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> std::result::Result<(), String> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => write_string(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(items) => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"));
            }
            // An empty array's element type is not recoverable from the Value. Strings: the
            // empty arrays of real files are string lists (a vocabulary without merges), and
            // llama.cpp checks their element type.
            let elem = items.first().map_or(value_type::STRING, Value::type_id);
            if let Some(bad) = items.iter().find(|x| x.type_id() != elem) {
                return Err(format!(
                    "array mixes {} and {} elements; GGUF arrays hold one type",
                    type_name(elem),
                    bad.type_name()
                ));
            }
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                write_value(out, x, depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_conversions_cover_integer_signs_and_floats() {
        assert_eq!(Value::I32(-1).as_u64(), None);
        assert_eq!(Value::I32(7).as_u64(), Some(7));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::U8(3).as_f64(), Some(3.0));
        assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::F32(0.5).as_u64(), None);
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(Value::U8(1).as_bool(), None);
        assert_eq!(Value::String("x".into()).as_str(), Some("x"));
        assert_eq!(Value::Array(vec![]).as_array(), Some(&[][..]));
    }

    #[test]
    fn empty_file_is_a_truncated_header() {
        let err = GgufFile::from_bytes("empty.gguf", Bytes::from_vec(vec![]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.gguf"), "{err}");
        assert!(err.contains("truncated while reading the header"), "{err}");
    }

    #[test]
    fn minimal_writer_output_reads_back() {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", Value::String("llama".into()));
        w.add_tensor("t", &[2], DType::F32, vec![0; 8]);
        let bytes = w.to_bytes().unwrap();
        assert_eq!(bytes.len() % DEFAULT_ALIGNMENT as usize, 0);
        let f = GgufFile::from_bytes("mem", Bytes::from_vec(bytes)).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.architecture().unwrap(), "llama");
        let t = f.tensor_info("t").unwrap();
        assert_eq!(t.offset, f.data_offset);
        assert_eq!(f.tensor_data(t).len(), 8);
    }
}
