//! The KV cache: keys and values of every position seen so far, so that each new token attends
//! to the past without recomputing it. Stored in f32, contiguous per head, so that one head's
//! keys are one (P, HS) slice.

/// The cache of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Per key/value head: (P, HS) keys.
    pub k: Vec<Vec<f32>>,
    /// Per key/value head: (P, HS) values.
    pub v: Vec<Vec<f32>>,
}

/// The cache of all layers for one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    /// Positions stored (P).
    len: usize,
    n_kv_head: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(n_layer: usize, n_kv_head: usize, head_dim: usize) -> KvCache {
        let layer = LayerCache {
            k: vec![Vec::new(); n_kv_head],
            v: vec![Vec::new(); n_kv_head],
        };
        KvCache {
            layers: vec![layer; n_layer],
            len: 0,
            n_kv_head,
            head_dim,
        }
    }

    pub fn for_config(c: &crate::model::Config) -> KvCache {
        KvCache::new(c.n_layer, c.n_kv_head, c.head_dim)
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks `t` new positions as stored; each layer has appended them with [`LayerCache::append`].
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Forgets every position from `len` on (to reuse a shared prefix, or to start over).
    pub fn truncate(&mut self, len: usize) {
        let hs = self.head_dim;
        for l in &mut self.layers {
            for h in 0..self.n_kv_head {
                l.k[h].truncate(len * hs);
                l.v[h].truncate(len * hs);
            }
        }
        self.len = self.len.min(len);
    }

    pub fn clear(&mut self) {
        self.truncate(0)
    }
}

impl LayerCache {
    /// Appends k, v: (T, NKV * HS) as T new positions of every head.
    pub fn append(&mut self, k: &[f32], v: &[f32], head_dim: usize) {
        let n_kv = self.k.len();
        for (kr, vr) in k
            .chunks_exact(n_kv * head_dim)
            .zip(v.chunks_exact(n_kv * head_dim))
        {
            for h in 0..n_kv {
                self.k[h].extend_from_slice(&kr[h * head_dim..(h + 1) * head_dim]);
                self.v[h].extend_from_slice(&vr[h * head_dim..(h + 1) * head_dim]);
            }
        }
    }
}
