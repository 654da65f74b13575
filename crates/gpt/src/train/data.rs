//! Training data: a text corpus tokenized once into token files on disk (`train.bin`,
//! `val.bin`), memory-mapped when training, so a corpus larger than memory works. Batches are
//! drawn at positions that depend only on the seed and the step, so a resumed run sees exactly
//! the batches an uninterrupted run would.
//!
//! File format (little-endian): the magic `b"GPTRSTOK"`, u32 version (1), u32 bytes per token
//! (2 or 4), u64 token count, then the tokens.

use crate::infer::sampling::Rng;
use crate::tensor::Bytes;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GPTRSTOK";
const VERSION: u32 = 1;
const HEADER: usize = 24;

/// A memory-mapped token file.
#[derive(Debug, Clone)]
pub struct TokenFile {
    data: Bytes,
    width: usize,
    len: usize,
    path: PathBuf,
}

impl TokenFile {
    pub fn open(path: &Path) -> Result<TokenFile> {
        let data = Bytes::map_file(path)?;
        let bad = |msg: String| Error::Format {
            file: path.display().to_string(),
            msg,
        };
        if data.len() < HEADER || &data[..8] != MAGIC {
            return Err(bad("not a gpt-rs token file (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap_or_default());
        if u32_at(8) != VERSION {
            return Err(bad(format!("unsupported token file version {}", u32_at(8))));
        }
        let width = u32_at(12) as usize;
        let len = u64::from_le_bytes(data[16..24].try_into().unwrap_or_default());
        if !(width == 2 || width == 4)
            || (data.len() - HEADER) as u64 != len.saturating_mul(width as u64)
        {
            return Err(bad(format!(
                "{width} bytes per token and {len} tokens do not match the file size {}",
                data.len()
            )));
        }
        Ok(TokenFile {
            data,
            width,
            len: len as usize,
            path: path.to_path_buf(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> u32 {
        let o = HEADER + i * self.width;
        match self.width {
            2 => u16::from_le_bytes([self.data[o], self.data[o + 1]]) as u32,
            _ => u32::from_le_bytes([
                self.data[o],
                self.data[o + 1],
                self.data[o + 2],
                self.data[o + 3],
            ]),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A batch of B sequences of T inputs and their next-token targets, at random positions
    /// drawn from `rng`: inputs (B, T), targets (B, T).
    pub fn batch(&self, b: usize, t: usize, rng: &mut Rng) -> Result<(Vec<u32>, Vec<u32>)> {
        if self.len <= t + 1 {
            return Err(Error::Invalid(format!(
                "{} has {} tokens, too few for sequences of {t}",
                self.path.display(),
                self.len
            )));
        }
        let (mut x, mut y) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
        for _ in 0..b {
            let start = (rng.next_u64() % (self.len - t) as u64) as usize;
            x.extend((start..start + t).map(|i| self.get(i)));
            y.extend((start + 1..start + t + 1).map(|i| self.get(i)));
        }
        Ok((x, y))
    }
}

/// Writes tokens as a token file, atomically (a temporary file, fsync, rename).
pub struct TokenWriter {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    width: usize,
    count: u64,
}

impl TokenWriter {
    pub fn create(dest: &Path, vocab_size: usize) -> Result<TokenWriter> {
        let tmp = dest.with_extension("bin.tmp");
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let width = if vocab_size <= 1 << 16 { 2 } else { 4 };
        let mut w = TokenWriter {
            file: std::io::BufWriter::new(f),
            tmp,
            dest: dest.to_path_buf(),
            width,
            count: 0,
        };
        w.write_header()?;
        Ok(w)
    }

    fn write_header(&mut self) -> Result<()> {
        let mut h = Vec::with_capacity(HEADER);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(self.width as u32).to_le_bytes());
        h.extend_from_slice(&self.count.to_le_bytes());
        self.file.write_all(&h).map_err(|e| Error::io(&self.tmp, e))
    }

    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        for &id in ids {
            let r = if self.width == 2 {
                self.file.write_all(&(id as u16).to_le_bytes())
            } else {
                self.file.write_all(&id.to_le_bytes())
            };
            r.map_err(|e| Error::io(&self.tmp, e))?;
        }
        self.count += ids.len() as u64;
        Ok(())
    }

    pub fn finish(mut self) -> Result<u64> {
        use std::io::Seek;
        let err = |e| Error::io(&self.tmp, e);
        self.file.flush().map_err(err)?;
        self.file.seek(std::io::SeekFrom::Start(0)).map_err(err)?;
        self.write_header()?;
        let f = self
            .file
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        Ok(self.count)
    }
}

/// Tokenizes `files` once into `dir/train.bin` and `dir/val.bin`: the last `val_fraction` of
/// each file's lines goes to validation. Text is read line by line and each line encoded as it
/// comes, so memory stays bounded whatever the corpus size. Returns (train, val) token counts.
pub fn prepare(
    files: &[PathBuf],
    tokenizer: &Tokenizer,
    dir: &Path,
    val_fraction: f64,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(u64, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut train = TokenWriter::create(&dir.join("train.bin"), tokenizer.vocab_size())?;
    let mut val = TokenWriter::create(&dir.join("val.bin"), tokenizer.vocab_size())?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let mut done = 0u64;
    for f in files {
        let size = std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len();
        let split = (size as f64 * (1.0 - val_fraction)) as u64;
        let mut reader =
            std::io::BufReader::new(std::fs::File::open(f).map_err(|e| Error::io(f, e))?);
        let (mut pos, mut line, mut n) = (0u64, Vec::new(), 0usize);
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(f, e))?
                == 0
            {
                break;
            }
            n += 1;
            pos += line.len() as u64;
            let text = std::str::from_utf8(&line).map_err(|e| Error::Format {
                file: f.display().to_string(),
                msg: format!("line {n} is not valid UTF-8: {e}"),
            })?;
            let ids = tokenizer.encode(text, false);
            if pos <= split {
                train.push(&ids)?
            } else {
                val.push(&ids)?
            }
            done += line.len() as u64;
            if n % 1024 == 0 {
                progress("tokenizing", done.min(total), total);
            }
        }
    }
    progress("tokenizing", total, total);
    Ok((train.finish()?, val.finish()?))
}
