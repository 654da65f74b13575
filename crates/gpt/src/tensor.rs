//! Element types and byte storage shared by the formats, the kernels and the model.

use std::sync::Arc;

/// The storage type of a tensor: plain floats or one of GGML's block-quantized types.
///
/// Block types store `block_size()` consecutive elements of a row in `type_size()` bytes;
/// their layouts are pinned in [`crate::kernels::quant`] (blocks of 32) and
/// [`crate::kernels::kquant`] (GGML's K-quants: super-blocks of 256). Variants are named as
/// in GGML (`Q4_K`), so a reader searching for GGML's name finds them.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    /// Activations only (llama.cpp quantizes activations to it against K-quant weights); a
    /// file may store it, and it dequantizes like any other type.
    Q8_K,
}

impl DType {
    /// GGML's type numbers (ggml.h, `enum ggml_type`).
    pub fn from_ggml(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            10 => DType::Q2_K,
            11 => DType::Q3_K,
            12 => DType::Q4_K,
            13 => DType::Q5_K,
            14 => DType::Q6_K,
            15 => DType::Q8_K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    pub fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q2_K => 10,
            DType::Q3_K => 11,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::Q8_K => 15,
            DType::BF16 => 30,
        }
    }

    /// Elements per block (1 for plain floats).
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q8_K => {
                256
            }
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q2_K => 84,
            DType::Q3_K => 110,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
            DType::Q8_K => 292,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes taken by `n` elements, or `None` if `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size() as u64)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::Q8_K => "Q8_K",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shared, immutable bytes: a slice of a memory-mapped file or of an owned buffer.
/// Cloning is cheap; weights borrow from the mapped model file without copying.
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    /// The same owner when it is a file mapping, whose pages [`Bytes::release_pages`] can drop.
    map: Option<Arc<memmap2::Mmap>>,
    start: usize,
    len: usize,
}

impl Bytes {
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        let len = (*owner).as_ref().len();
        Bytes {
            owner,
            map: None,
            start: 0,
            len,
        }
    }

    pub fn from_vec(v: Vec<u8>) -> Self {
        Bytes::new(Arc::new(v))
    }

    /// Memory-maps a file read-only: model weights are used in place, not copied.
    pub fn map_file(path: &std::path::Path) -> crate::Result<Bytes> {
        let err = |e| crate::Error::io(path, e);
        let file = std::fs::File::open(path).map_err(err)?;
        // SAFETY: the file is opened read-only and the mapping is never written through. A model
        // file is not expected to be modified or truncated while it is mapped (llama.cpp maps its
        // models under the same assumption); if another process does, reads may see changed
        // bytes or fault, which no safe API over a shared mapping can prevent.
        #[allow(unsafe_code)]
        let mmap = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(err)?);
        Ok(Bytes {
            map: Some(mmap.clone()),
            ..Bytes::new(mmap)
        })
    }

    /// Whether the bytes are a file's mapped pages (which [`release_pages`](Self::release_pages)
    /// can drop), not an owned buffer.
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Tells the kernel that this process will not read these bytes soon: the whole pages of a
    /// file mapping are dropped from the process (they stay in the page cache, and a later read
    /// maps them again, with the file's bytes); owned buffers are left alone. For weights that
    /// were repacked, so that the model is not held in memory twice.
    pub fn release_pages(&self) {
        const PAGE: usize = 4096;
        let Some(map) = &self.map else { return };
        #[cfg(not(unix))]
        let _ = (map, PAGE);
        let (start, end) = (
            self.start.next_multiple_of(PAGE),
            (self.start + self.len) / PAGE * PAGE,
        );
        #[cfg(unix)]
        if end > start {
            // SAFETY: the mapping is a read-only file mapping, so MADV_DONTNEED loses no data:
            // the next read of these pages faults them in from the file again. No reference into
            // them is invalidated (the addresses stay mapped). A failure (another page size)
            // only leaves the pages resident.
            #[allow(unsafe_code)]
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// A sub-range, or `None` if it is out of bounds.
    pub fn slice(&self, start: usize, len: usize) -> Option<Bytes> {
        let end = start.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(Bytes {
            owner: self.owner.clone(),
            map: self.map.clone(),
            start: self.start + start,
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}

/// A 2-D weight matrix of `rows` rows of `cols` elements, row-major in `dtype`
/// (a PyTorch `nn.Linear` weight of shape (out, in), or an embedding table (V, C)).
#[derive(Clone, Debug)]
pub struct Matrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: Bytes,
    /// The same weights repacked for the matmul kernels ([`Matrix::pack`]), if they were.
    pub packed: Option<Arc<crate::kernels::PackedWeights>>,
}

impl Matrix {
    /// Checks that `data` holds exactly `rows` x `cols` elements of `dtype`.
    pub fn new(
        name: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        data: Bytes,
    ) -> crate::Result<Matrix> {
        let expected = (rows as u64)
            .checked_mul(cols as u64)
            .filter(|_| cols.is_multiple_of(dtype.block_size()))
            .and_then(|n| dtype.bytes_for(n));
        if expected != Some(data.len() as u64) {
            return Err(crate::Error::Tensor {
                name: name.to_string(),
                msg: format!(
                    "expected ({rows}, {cols}) of {dtype} ({} bytes) but the data has {} bytes",
                    expected.map_or("overflow".to_string(), |e| e.to_string()),
                    data.len()
                ),
            });
        }
        Ok(Matrix {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            data,
            packed: None,
        })
    }

    /// Repacks the weights once for the detected kernels' panels (where they have them for
    /// this type), so that no matmul repacks them; see [`crate::kernels::PackedWeights`].
    ///
    /// Float matrices are packed only from a file's mapped pages: a float panel is as large as
    /// the rows, and an owned buffer (GPT-2's transposed Conv1D weights, say) cannot be let go,
    /// so packing it would hold the matrix twice; such matrices keep the row kernels.
    pub fn pack(&mut self) {
        if !self.dtype.is_quantized() && !self.data.is_mapped() {
            return;
        }
        if self.packed.is_none() {
            // Matmuls read the panels now; the file's bytes are read again only by rare paths
            // (an embedding row of tied weights, F32 precision, inspection), so their pages go
            // as soon as they are packed: the model is not held twice, not even while loading.
            let release = |r: std::ops::Range<usize>| {
                if let Some(b) = self.data.slice(r.start, r.len()) {
                    b.release_pages()
                }
            };
            self.packed = crate::kernels::PackedWeights::new(self.as_ref(), release).map(Arc::new);
            if self.packed.is_some() {
                // The pages that batches shared at their edges.
                self.data.release_pages();
            }
        }
    }

    /// An f32 matrix owning its values.
    pub fn from_f32(name: &str, rows: usize, cols: usize, values: &[f32]) -> crate::Result<Matrix> {
        Matrix::new(
            name,
            DType::F32,
            rows,
            cols,
            Bytes::from_vec(bytemuck::cast_slice(values).to_vec()),
        )
    }

    /// A vector of `len` values of `dtype` in `data` (checked as [`Matrix::new`] checks), as f32:
    /// norm gains and biases, whatever the file stored them as.
    pub fn vector_f32(
        name: &str,
        dtype: DType,
        len: usize,
        data: Bytes,
    ) -> crate::Result<Vec<f32>> {
        let m = Matrix::new(name, dtype, 1, len, data)?;
        let mut v = vec![0f32; len];
        m.row_f32(0, &mut v);
        Ok(v)
    }

    pub fn as_ref(&self) -> crate::kernels::MatRef<'_> {
        crate::kernels::MatRef {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
            packed: self.packed.as_deref(),
        }
    }

    /// Row `r` as f32 (C).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        self.as_ref().dequantize_row(r, out)
    }

    pub fn n_elements(&self) -> usize {
        self.rows * self.cols
    }
}
