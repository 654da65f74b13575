//! The logit lens: what the model would predict if it stopped after block l. The residual stream
//! at the last position, captured after each block by the forward pass's hook, goes through the
//! model's own final norm and unembedding (the same functions the forward pass ends with), giving
//! one next-token distribution per layer. After the last block it is the model's real output.

use super::capture::Capture;
use super::charts::{self, Heatmap};
use super::render::Figure;
use super::report::logsumexp;
use crate::infer::sampling::top_k;
use crate::model::{Logits, Transformer};
use crate::{Error, Result};

/// Keeps the last position's residual vector (C) after each block.
#[derive(Debug, Default)]
pub struct ResidualRecorder {
    /// C
    pub d_model: usize,
    /// (L, C)
    pub last: Vec<Vec<f32>>,
}

impl Capture for ResidualRecorder {
    fn wants_residual(&self) -> bool {
        true
    }
    fn residual(&mut self, _layer: usize, x: &[f32]) {
        self.last.push(x[x.len() - self.d_model..].to_vec());
    }
}

/// A token with its logit and probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenProb {
    pub id: u32,
    pub logit: f32,
    pub prob: f32,
}

/// The lens over every layer for one prompt.
#[derive(Debug, Clone)]
pub struct LogitLens {
    /// (L, N) the top-N tokens after each block.
    pub top: Vec<Vec<TokenProb>>,
    /// (K) tokens followed through every layer: the final top-N, then each layer's top-1.
    pub tracked: Vec<u32>,
    /// (L, K) probability of each tracked token after each block.
    pub tracked_probs: Vec<Vec<f32>>,
}

/// Most tokens followed across layers in the picture.
pub const MAX_TRACKED: usize = 16;

impl LogitLens {
    /// Runs `ids` (T) from an empty cache and reads the top `n` tokens after every block.
    pub fn new(t: &Transformer, ids: &[u32], n: usize) -> Result<LogitLens> {
        if ids.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        let mut rec = ResidualRecorder {
            d_model: t.config.d_model,
            last: Vec::new(),
        };
        let mut cache = t.new_cache();
        t.forward(ids, &mut cache, Logits::Last, Some(&mut rec))?;
        let per_layer: Vec<Vec<f32>> = rec.last.iter().map(|x| layer_logits(t, x)).collect();
        let n = n.max(1);
        let top: Vec<Vec<TokenProb>> = per_layer
            .iter()
            .map(|logits| {
                let lse = logsumexp(logits);
                top_k(logits, n)
                    .iter()
                    .map(|c| TokenProb {
                        id: c.id,
                        logit: c.score,
                        prob: (c.score as f64 - lse).exp() as f32,
                    })
                    .collect()
            })
            .collect();
        let mut tracked: Vec<u32> = top
            .last()
            .map_or(Vec::new(), |l| l.iter().map(|c| c.id).collect());
        for row in &top {
            if tracked.len() >= MAX_TRACKED {
                break;
            }
            if !tracked.contains(&row[0].id) {
                tracked.push(row[0].id);
            }
        }
        let tracked_probs = per_layer
            .iter()
            .map(|logits| {
                let lse = logsumexp(logits);
                tracked
                    .iter()
                    .map(|&id| (logits[id as usize] as f64 - lse).exp() as f32)
                    .collect()
            })
            .collect();
        Ok(LogitLens {
            top,
            tracked,
            tracked_probs,
        })
    }

    /// A heatmap: layers down, tracked tokens (`labels`, K) across, colour = probability; each
    /// row notes that layer's top token (`top_labels`, L).
    pub fn figure(&self, title: &str, labels: &[String], top_labels: &[String]) -> Figure {
        let rows: Vec<String> = (0..self.top.len()).map(|l| format!("layer {l}")).collect();
        charts::heatmap(&Heatmap {
            title,
            row_labels: &rows,
            col_labels: labels,
            row_notes: Some(top_labels),
            values: &self.tracked_probs,
            max: 1.0,
            caption: "colour: probability of the column's token after each layer; (the final norm and unembedding applied to the residual stream at the last position); right: that layer's top token and its probability",
        })
    }
}

/// The logits (V) one residual vector (C) would give: the model's final norm, then its
/// unembedding, exactly as at the end of [`Transformer::forward`].
pub fn layer_logits(t: &Transformer, residual: &[f32]) -> Vec<f32> {
    let h = t.final_norm.forward(residual);
    t.unembedding.forward(&h, 1, t.precision)
}
