//! Temperature: the same logits through softmax(logit / T) at several temperatures. Low T sharpens
//! the distribution towards the most likely token, high T flattens it; T = 0 is the argmax taking
//! all the mass (greedy decoding). The math is the sampler's ([`crate::infer::sampling`]).

use super::charts::{self, GroupedBars};
use super::render::Figure;
use crate::infer::sampling::{softmax_with_temperature, top_k};
use crate::{Error, Result};

/// The top-N tokens' probabilities at each temperature.
#[derive(Debug, Clone, PartialEq)]
pub struct TemperatureTable {
    /// (S) the temperatures, as asked.
    pub temperatures: Vec<f32>,
    /// (N) the N most likely tokens, by descending logit (the same order at every T > 0).
    pub ids: Vec<u32>,
    /// (N) their logits.
    pub logits: Vec<f32>,
    /// (S, N) probability of each token at each temperature.
    pub probs: Vec<Vec<f32>>,
}

impl TemperatureTable {
    /// logits: (V). Temperatures must be finite and >= 0.
    pub fn new(logits: &[f32], temperatures: &[f32], n: usize) -> Result<TemperatureTable> {
        if logits.is_empty() {
            return Err(Error::Invalid("no logits".into()));
        }
        if let Some(t) = temperatures.iter().find(|t| !t.is_finite() || **t < 0.0) {
            return Err(Error::Invalid(format!(
                "temperature {t} is not a finite number >= 0"
            )));
        }
        let n = n.clamp(1, logits.len());
        let sorted = top_k(logits, 0); // all of V, by descending logit
        let ids: Vec<u32> = sorted[..n].iter().map(|c| c.id).collect();
        let probs = temperatures
            .iter()
            .map(|&t| {
                if t == 0.0 {
                    // greedy: the argmax (the first on ties, as the sampler) takes all the mass
                    (0..n).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect()
                } else {
                    let mut c = sorted.clone();
                    softmax_with_temperature(&mut c, t);
                    c[..n].iter().map(|c| c.score).collect()
                }
            })
            .collect();
        Ok(TemperatureTable {
            temperatures: temperatures.to_vec(),
            ids,
            logits: sorted[..n].iter().map(|c| c.score).collect(),
            probs,
        })
    }

    /// The probability left to all other tokens at temperature index `s`.
    pub fn rest(&self, s: usize) -> f32 {
        (1.0 - self.probs[s].iter().sum::<f32>()).max(0.0)
    }

    /// A grouped bar chart: one group per token (`labels`, N), one bar per temperature.
    pub fn figure(&self, title: &str, labels: &[String]) -> Figure {
        let series: Vec<(String, Vec<f32>)> = self
            .temperatures
            .iter()
            .zip(&self.probs)
            .map(|(t, p)| (format!("T = {t}"), p.clone()))
            .collect();
        charts::grouped_bars(&GroupedBars {
            title,
            groups: labels,
            series: &series,
            y_label: "probability",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_by_hand() {
        // logits (ln 1, ln 3): T = 1 gives (3/4, 1/4); T = 2 gives (sqrt 3, 1) / (1 + sqrt 3);
        // T = 0 gives (1, 0).
        let t = TemperatureTable::new(&[0.0, 3f32.ln()], &[0.0, 1.0, 2.0], 2).unwrap();
        assert_eq!(t.ids, vec![1, 0]);
        assert_eq!(t.probs[0], vec![1.0, 0.0]);
        assert!((t.probs[1][0] - 0.75).abs() < 1e-6);
        let s3 = 3f32.sqrt();
        assert!((t.probs[2][0] - s3 / (1.0 + s3)).abs() < 1e-6);
        assert!(t.rest(1).abs() < 1e-6);
    }

    #[test]
    fn higher_temperature_flattens() {
        let logits = [3.0, 2.0, 1.0, 0.0, -1.0];
        let t = TemperatureTable::new(&logits, &[0.5, 1.0, 2.0], 3).unwrap();
        assert!(t.probs[0][0] > t.probs[1][0] && t.probs[1][0] > t.probs[2][0]);
        assert!(t.rest(0) < t.rest(2));
        assert_eq!(
            t.figure("x", &["a".into(), "b".into(), "c".into()])
                .rects(super::super::render::Role::Bar)
                .count(),
            9
        );
    }

    #[test]
    fn negative_temperature_is_an_error() {
        assert!(TemperatureTable::new(&[1.0], &[-1.0], 1).is_err());
    }
}
