//! The capture hook: the forward pass asks a [`Capture`] what it wants and hands it the values.
//! With no capture (`None`), nothing is recorded and nothing is computed for it.

/// What an observer of the forward pass wants to see.
pub trait Capture {
    /// Whether to record the attention patterns of `layer`.
    fn wants_attention(&self, _layer: usize) -> bool {
        false
    }
    /// The attention probabilities of one layer: (NH, T, P) for the T new query positions over
    /// all P = pos0 + T key positions, row-major; entries of future positions are exactly 0.
    fn attention(&mut self, _layer: usize, _n_head: usize, _t: usize, _p: usize, _probs: &[f32]) {}
    /// Whether to record the residual stream after each block.
    fn wants_residual(&self) -> bool {
        false
    }
    /// The residual stream (T, C) after block `layer`.
    fn residual(&mut self, _layer: usize, _x: &[f32]) {}
}

/// Records the attention patterns of the chosen layers.
#[derive(Debug, Default)]
pub struct AttentionRecorder {
    pub layers: Vec<usize>,
    /// (layer, NH, T, P, probabilities (NH, T, P))
    pub patterns: Vec<(usize, usize, usize, usize, Vec<f32>)>,
}

impl AttentionRecorder {
    pub fn new(layers: Vec<usize>) -> Self {
        AttentionRecorder {
            layers,
            patterns: Vec::new(),
        }
    }

    /// The (T, P) pattern of one head of one layer, if recorded.
    pub fn pattern(&self, layer: usize, head: usize) -> Option<Vec<Vec<f32>>> {
        let (_, nh, t, p, probs) = self.patterns.iter().find(|e| e.0 == layer)?;
        if head >= *nh {
            return None;
        }
        let h = &probs[head * t * p..(head + 1) * t * p];
        Some(h.chunks_exact(*p).map(|r| r.to_vec()).collect())
    }
}

impl Capture for AttentionRecorder {
    fn wants_attention(&self, layer: usize) -> bool {
        self.layers.contains(&layer)
    }
    fn attention(&mut self, layer: usize, n_head: usize, t: usize, p: usize, probs: &[f32]) {
        self.patterns.push((layer, n_head, t, p, probs.to_vec()));
    }
}
