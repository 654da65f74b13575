//! Normalization of each position's vector before attention, before the MLP and at the end.

/// A norm over the C channels of each position.
#[derive(Clone, Debug)]
pub enum Norm {
    /// RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * weight
    Rms { weight: Vec<f32>, eps: f32 },
    /// LayerNorm (GPT-2): y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance.
    Layer {
        weight: Vec<f32>,
        bias: Vec<f32>,
        eps: f32,
    },
}

impl Norm {
    /// x: (T, C) -> (T, C)
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        match self {
            Norm::Rms { weight, eps } => {
                for (xr, yr) in x
                    .chunks_exact(weight.len())
                    .zip(out.chunks_exact_mut(weight.len()))
                {
                    let ms = xr.iter().map(|v| v * v).sum::<f32>() / xr.len() as f32;
                    let inv = 1.0 / (ms + eps).sqrt();
                    for ((y, v), w) in yr.iter_mut().zip(xr).zip(weight) {
                        *y = v * inv * w;
                    }
                }
            }
            Norm::Layer { weight, bias, eps } => {
                for (xr, yr) in x
                    .chunks_exact(weight.len())
                    .zip(out.chunks_exact_mut(weight.len()))
                {
                    let n = xr.len() as f32;
                    let mean = xr.iter().sum::<f32>() / n;
                    let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                    let inv = 1.0 / (var + eps).sqrt();
                    for (((y, v), w), b) in yr.iter_mut().zip(xr).zip(weight).zip(bias) {
                        *y = (v - mean) * inv * w + b;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_by_hand() {
        // x = (3, 4): mean of squares 12.5, so y = x / sqrt(12.5) * w
        let n = Norm::Rms {
            weight: vec![1.0, 2.0],
            eps: 0.0,
        };
        let y = n.forward(&[3.0, 4.0]);
        let r = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_by_hand() {
        // x = (1, 3): mean 2, biased variance 1, so y = (-1, 1) * w + b
        let n = Norm::Layer {
            weight: vec![2.0, 2.0],
            bias: vec![0.5, 0.5],
            eps: 0.0,
        };
        let y = n.forward(&[1.0, 3.0]);
        assert_eq!(y, vec![-1.5, 2.5]);
    }
}
