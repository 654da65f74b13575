//! The KV cache: keys and values of every position seen so far, so that each new token attends
//! to the past without recomputing it. Stored in f32, contiguous per head, so that one head's
//! keys are one (P, HS) slice. A sliding-window layer keeps only the positions a later query
//! can still see, so its memory stays bounded however long the generation runs.

/// The cache of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// Per key/value head: (P - start, HS) keys of positions start..P.
    pub k: Vec<Vec<f32>>,
    /// Per key/value head: (P - start, HS) values.
    pub v: Vec<Vec<f32>>,
    /// The position of the first stored key: earlier ones have left a sliding window.
    pub start: usize,
    /// A sliding layer's window (each query sees this many positions, itself included).
    pub window: Option<usize>,
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
    /// A cache for `windows.len()` layers; `windows[l]` is layer l's sliding window, if any.
    pub fn new(windows: &[Option<usize>], n_kv_head: usize, head_dim: usize) -> KvCache {
        let layers = windows
            .iter()
            .map(|&window| LayerCache {
                k: vec![Vec::new(); n_kv_head],
                v: vec![Vec::new(); n_kv_head],
                start: 0,
                window,
            })
            .collect();
        KvCache {
            layers,
            len: 0,
            n_kv_head,
            head_dim,
        }
    }

    pub fn for_config(c: &crate::model::Config) -> KvCache {
        let windows: Vec<Option<usize>> = (0..c.n_layer)
            .map(|l| c.sliding_window.filter(|_| c.is_sliding(l)))
            .collect();
        KvCache::new(&windows, c.n_kv_head, c.head_dim)
    }

    /// Whether the cache can be truncated to `len` positions and go on from there: every layer
    /// still holds the keys a query at position `len` sees (a sliding layer drops old ones).
    pub fn can_truncate(&self, len: usize) -> bool {
        len <= self.len
            && self.layers.iter().all(|l| match l.window {
                Some(w) => l.start <= (len + 1).saturating_sub(w),
                None => l.start == 0,
            })
    }

    /// Makes this cache hold the first `len` positions of `src` (which must
    /// [`can_truncate`](Self::can_truncate) to `len`), reusing this cache's allocations.
    pub fn copy_prefix(&mut self, src: &KvCache, len: usize) {
        assert!(
            src.can_truncate(len),
            "copy_prefix: {len} positions are not all in the cache"
        );
        assert_eq!(
            (self.layers.len(), self.n_kv_head, self.head_dim),
            (src.layers.len(), src.n_kv_head, src.head_dim),
            "copy_prefix: caches of different shapes"
        );
        let hs = self.head_dim;
        for (dst, l) in self.layers.iter_mut().zip(&src.layers) {
            let keep = (len - l.start) * hs;
            for (d, s) in dst.k.iter_mut().zip(&l.k).chain(dst.v.iter_mut().zip(&l.v)) {
                d.clear();
                d.extend_from_slice(&s[..keep]);
            }
            dst.start = l.start;
            dst.window = l.window;
        }
        self.len = len;
    }

    /// Bytes of keys and values held (allocated).
    pub fn bytes(&self) -> usize {
        let floats: usize = self
            .layers
            .iter()
            .flat_map(|l| l.k.iter().chain(&l.v))
            .map(Vec::capacity)
            .sum();
        floats * std::mem::size_of::<f32>()
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
    /// Where a sliding layer no longer holds what a query at `len` sees (see
    /// [`can_truncate`](Self::can_truncate)), the whole cache is cleared instead.
    pub fn truncate(&mut self, len: usize) {
        let len = if len >= self.len {
            self.len
        } else if self.can_truncate(len) {
            len
        } else {
            0
        };
        let hs = self.head_dim;
        for l in &mut self.layers {
            let keep = (len - len.min(l.start)) * hs;
            for h in 0..self.n_kv_head {
                l.k[h].truncate(keep);
                l.v[h].truncate(keep);
            }
            if len == 0 {
                l.start = 0;
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

    /// Keys and values of head `h` at position `pos` (which must be stored).
    #[inline]
    pub fn kv(&self, h: usize, pos: usize, head_dim: usize) -> (&[f32], &[f32]) {
        let i = (pos - self.start) * head_dim;
        (&self.k[h][i..i + head_dim], &self.v[h][i..i + head_dim])
    }

    /// On a sliding layer, after a forward step: drops the positions no later query can see.
    /// The next query (at the position after the last stored) sees the last window - 1 stored
    /// positions; older ones go once there are a window's worth of them, so each position is
    /// moved at most once and the layer holds fewer than 2 x window positions.
    pub fn slide(&mut self, head_dim: usize) {
        let Some(w) = self.window else { return };
        let stored = self.k.first().map_or(0, |k| k.len() / head_dim);
        let keep = w.saturating_sub(1);
        if stored >= keep + w.max(1) {
            let drop = stored - keep;
            for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
                k.drain(..drop * head_dim);
                v.drain(..drop * head_dim);
            }
            self.start += drop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_layer_keeps_what_later_queries_see() {
        let w: usize = 4;
        let mut c = KvCache::new(&[Some(w), None], 1, 1);
        for pos in 0..50usize {
            for l in &mut c.layers {
                l.append(&[pos as f32], &[pos as f32], 1);
                l.slide(1);
            }
            c.advance(1);
            let s = &c.layers[0];
            // The next query (pos + 1) sees pos + 2 - w ..= pos: all still stored.
            assert!(
                s.start <= (pos + 2).saturating_sub(w),
                "start {} at {pos}",
                s.start
            );
            assert!(s.k[0].len() < 2 * w);
            let first = (pos + 2).saturating_sub(w);
            assert_eq!(s.kv(0, first, 1).0, &[first as f32]);
            assert_eq!(c.layers[1].k[0].len(), pos + 1);
        }
        assert!(!c.can_truncate(10));
        c.truncate(10);
        assert_eq!(c.len(), 0);
    }
}
