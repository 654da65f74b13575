//! safetensors: the Hugging Face ecosystem's weight files, one (`model.safetensors`) or sharded
//! (`model.safetensors.index.json` naming the file of each tensor). Headers are parsed by the
//! `safetensors` crate; the data stays memory-mapped.

use crate::tensor::{Bytes, DType};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One tensor's place in a file.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub dtype: DType,
    /// Row-major shape, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    pub data: Bytes,
    /// The file it is in, for error messages.
    pub file: PathBuf,
}

/// All tensors of a model folder.
#[derive(Debug, Default)]
pub struct SafetensorsModel {
    pub tensors: HashMap<String, TensorEntry>,
    /// Tensors of types a model cannot use (e.g. int64 token ids in a fixture), with the type
    /// name: an error only if a model asks for one.
    pub unsupported: HashMap<String, String>,
}

/// Index files are small; a larger one is not an index.
const MAX_INDEX_BYTES: u64 = 64 << 20;

impl SafetensorsModel {
    /// Opens `dir/model.safetensors`, or every shard listed in `dir/model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsModel> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files = if single.exists() {
            vec![single]
        } else if index.exists() {
            shard_files(&index)?
        } else {
            return Err(Error::Invalid(format!(
                "{}: neither model.safetensors nor model.safetensors.index.json is here",
                dir.display()
            )));
        };
        let mut model = SafetensorsModel::default();
        for f in files {
            model.add_file(&f)?;
        }
        Ok(model)
    }

    /// Adds the tensors of one file.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let bytes = Bytes::map_file(path)?;
        let name = path.display().to_string();
        let format = |msg: String| Error::Format {
            file: name.clone(),
            msg,
        };
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
        let base = 8 + header_len;
        for (tname, info) in metadata.tensors() {
            let dtype = match info.dtype {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                other => {
                    self.unsupported.insert(tname, format!("{other:?}"));
                    continue;
                }
            };
            let (start, end) = info.data_offsets;
            let n: usize = info.shape.iter().product();
            let data = bytes
                .slice(base + start, end.saturating_sub(start))
                .filter(|d| d.len() == n * dtype.type_size())
                .ok_or_else(|| format(format!("tensor '{tname}': data offsets {start}..{end} do not fit its shape {:?} or the file", info.shape)))?;
            if self.tensors.contains_key(&tname) {
                return Err(format(format!(
                    "tensor '{tname}' appears in more than one file"
                )));
            }
            self.tensors.insert(
                tname,
                TensorEntry {
                    dtype,
                    shape: info.shape.clone(),
                    data,
                    file: path.to_path_buf(),
                },
            );
        }
        Ok(())
    }

    /// The tensor `name`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&TensorEntry> {
        if let Some(dtype) = self.unsupported.get(name) {
            return Err(Error::UnsupportedType {
                file: "safetensors".into(),
                tensor: name.into(),
                dtype: dtype.clone(),
            });
        }
        let t = self.tensors.get(name).ok_or_else(|| Error::Tensor {
            name: name.into(),
            msg: format!("missing (expected shape {shape:?})"),
        })?;
        if t.shape != shape {
            return Err(Error::Tensor {
                name: name.into(),
                msg: format!(
                    "expected shape {shape:?} but {} has {:?}",
                    t.file.display(),
                    t.shape
                ),
            });
        }
        Ok(t)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// The shard files named by an index's `weight_map`, in first-mention order.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(index).map_err(|e| Error::io(index, e))?;
    let name = index.display().to_string();
    if meta.len() > MAX_INDEX_BYTES {
        return Err(Error::Format {
            file: name,
            msg: format!("{} bytes is too large for an index", meta.len()),
        });
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Format {
        file: name.clone(),
        msg: format!("invalid JSON: {e}"),
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Field {
            file: name.clone(),
            field: "weight_map".into(),
            msg: "missing or not an object".into(),
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for (tensor, f) in map {
        let f = f
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\'))
            .ok_or_else(|| Error::Field {
                file: name.clone(),
                field: format!("weight_map.{tensor}"),
                msg: "not a file name in this folder".into(),
            })?;
        let p = dir.join(f);
        if !files.contains(&p) {
            files.push(p);
        }
    }
    Ok(files)
}
