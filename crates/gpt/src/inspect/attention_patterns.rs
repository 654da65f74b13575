//! Attention patterns: for one layer, each head's softmax probabilities after the causal mask,
//! (NH, T, T) with row = query position and column = key position. They are recorded by the
//! [`AttentionRecorder`] hook inside the real forward pass ([`Transformer::forward`]), never
//! recomputed here.

use super::capture::AttentionRecorder;
use super::charts::{self, Heatmap, HeatmapGrid};
use super::render::Figure;
use crate::model::{Logits, Transformer};
use crate::{Error, Result};

/// Every head's attention pattern of one layer for one prompt.
#[derive(Debug, Clone)]
pub struct LayerAttention {
    pub layer: usize,
    /// NH
    pub n_head: usize,
    /// (T) the prompt's token ids.
    pub ids: Vec<u32>,
    /// (NH, T, T) probabilities, row-major; entries above the diagonal are exactly 0.
    pub probs: Vec<f32>,
}

/// A clear error for a layer or head index outside 0..count.
pub fn check_index(what: &str, index: usize, count: usize) -> Result<()> {
    if index >= count {
        return Err(Error::Invalid(format!(
            "{what} {index} is out of range: this model has {count} {what}s (0..={})",
            count.saturating_sub(1)
        )));
    }
    Ok(())
}

impl LayerAttention {
    /// Runs `ids` (T) through the model from an empty cache, recording layer `layer`.
    pub fn record(t: &Transformer, ids: &[u32], layer: usize) -> Result<LayerAttention> {
        check_index("layer", layer, t.config.n_layer)?;
        if ids.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        let mut rec = AttentionRecorder::new(vec![layer]);
        let mut cache = t.new_cache();
        t.forward(ids, &mut cache, Logits::Last, Some(&mut rec))?;
        let (_, n_head, tq, p, probs) = rec
            .patterns
            .pop()
            .ok_or_else(|| Error::Invalid(format!("layer {layer} recorded no attention")))?;
        debug_assert_eq!((tq, p), (ids.len(), ids.len()));
        Ok(LayerAttention {
            layer,
            n_head,
            ids: ids.to_vec(),
            probs,
        })
    }

    /// T
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The (T, T) pattern of one head, row = query position.
    pub fn head(&self, head: usize) -> Result<Vec<Vec<f32>>> {
        check_index("head", head, self.n_head)?;
        let t = self.len();
        Ok(self.probs[head * t * t..(head + 1) * t * t]
            .chunks_exact(t)
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// `{"layer":L,"head":H,"tokens":[..],"pattern":[[..]]}`, the command line's contract;
    /// `tokens` are the vocabulary strings (as `gpt tokenize --json` prints them).
    pub fn head_json(&self, head: usize, tokens: &[String]) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "layer": self.layer,
            "head": head,
            "tokens": tokens,
            "pattern": self.head(head)?,
        }))
    }

    /// A heatmap of one head with the tokens (`labels`, T) on both axes.
    pub fn head_figure(&self, head: usize, labels: &[String]) -> Result<Figure> {
        let values = self.head(head)?;
        let title = format!("Attention pattern, layer {} head {}", self.layer, head);
        Ok(charts::heatmap(&Heatmap {
            title: &title,
            row_labels: labels,
            col_labels: labels,
            row_notes: None,
            values: &values,
            max: 1.0,
            caption: "rows: query position (the token looking); columns: key position (the token looked at); each row sums to 1",
        }))
    }

    /// A grid of every head of the layer.
    pub fn grid_figure(&self, labels: &[String]) -> Result<Figure> {
        let panels = (0..self.n_head)
            .map(|h| Ok((format!("head {h}"), self.head(h)?)))
            .collect::<Result<Vec<_>>>()?;
        let title = format!(
            "Attention patterns, layer {}, all {} heads",
            self.layer, self.n_head
        );
        Ok(charts::heatmap_grid(&HeatmapGrid {
            title: &title,
            row_labels: labels,
            col_labels: labels,
            panels: &panels,
            max: 1.0,
            caption: "each panel: rows = query position, columns = key position",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_names_the_valid_range() {
        let e = check_index("layer", 40, 30).unwrap_err().to_string();
        assert!(e.contains("layer 40") && e.contains("0..=29"), "{e}");
        assert!(check_index("head", 8, 9).is_ok());
    }
}
