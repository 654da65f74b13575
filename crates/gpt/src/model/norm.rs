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
                let c = weight.len();
                // Rows split among the kernels' team in blocks of ROWS_PER_TASK.
                let block = ROWS_PER_TASK * c;
                crate::kernels::team::for_each_chunk_pair_mut(
                    &mut out,
                    block,
                    &mut [(); 0],
                    0,
                    |i, y, _| {
                        let x = &x[i * block..][..y.len()];
                        for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
                            let ms = xr.iter().map(|v| v * v).sum::<f32>() / c as f32;
                            let inv = 1.0 / (ms + eps).sqrt();
                            for ((y, v), w) in yr.iter_mut().zip(xr).zip(weight) {
                                *y = v * inv * w;
                            }
                        }
                    },
                );
            }
            Norm::Layer { weight, bias, eps } => {
                let rows = x.len() / weight.len();
                let (mut mean, mut rstd) = (vec![0f32; rows], vec![0f32; rows]);
                layer_norm_forward(x, weight, bias, *eps, &mut out, &mut mean, &mut rstd);
            }
        }
        out
    }
}

/// LayerNorm over rows: out (N, C) = (x - mean) * rstd * w + b, recording each row's mean and
/// rstd = 1 / sqrt(var + eps) (N) for the backward pass. The variance is biased (divides by C).
#[allow(clippy::too_many_arguments)] // llm.c's signature: input, parameters, output, statistics
pub fn layer_norm_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    eps: f32,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    use rayon::prelude::*;
    let c = w.len();
    out.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((yr, xr), (mean, rstd))| {
            let m = xr.iter().sum::<f32>() / c as f32;
            let var = xr.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c as f32;
            let s = 1.0 / (var + eps).sqrt();
            for (((y, v), wi), bi) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                *y = (v - m) * s * wi + bi;
            }
            *mean = m;
            *rstd = s;
        });
}

/// Rows per task in the norms' loops: fixed, so that sums are grouped the same way on every run.
const ROWS_PER_TASK: usize = 64;

/// The backward pass of [`layer_norm_forward`]: accumulates dx (N, C), dw (C), db (C) from
/// dout (N, C). With xhat = (x - mean) * rstd and g = dout * w:
/// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    use rayon::prelude::*;
    let c = w.len();
    // dx rows are independent; dw and db are sums over rows: each task sums a fixed block of
    // rows and the blocks are added in order, so the result has the same bits on every run.
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(ROWS_PER_TASK * c)
        .enumerate()
        .map(|(blk, dx_blk)| {
            let (mut dw_p, mut db_p) = (vec![0f32; c], vec![0f32; c]);
            for (k, dxr) in dx_blk.chunks_exact_mut(c).enumerate() {
                let i = blk * ROWS_PER_TASK + k;
                let (dyr, xr) = (&dout[i * c..(i + 1) * c], &x[i * c..(i + 1) * c]);
                let (m, s) = (mean[i], rstd[i]);
                let (mut g_mean, mut gx_mean) = (0f32, 0f32);
                for j in 0..c {
                    let g = dyr[j] * w[j];
                    g_mean += g;
                    gx_mean += g * (xr[j] - m) * s;
                }
                g_mean /= c as f32;
                gx_mean /= c as f32;
                for j in 0..c {
                    let xhat = (xr[j] - m) * s;
                    db_p[j] += dyr[j];
                    dw_p[j] += dyr[j] * xhat;
                    dxr[j] += s * (dyr[j] * w[j] - g_mean - xhat * gx_mean);
                }
            }
            (dw_p, db_p)
        })
        .collect();
    for (dw_p, db_p) in partial {
        for j in 0..c {
            dw[j] += dw_p[j];
            db[j] += db_p[j];
        }
    }
}

/// The backward pass of RMSNorm (y = x * r * w, r = 1 / sqrt(mean(x^2) + eps) per row):
/// accumulates dx (N, C) and dw (C) from dout (N, C). With g = dout * w:
/// dx = r * g - x * r^3 * mean(g * x).
pub fn rms_norm_backward(
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    eps: f32,
    dx: &mut [f32],
    dw: &mut [f32],
) {
    use rayon::prelude::*;
    let c = w.len();
    // As in layer_norm_backward: fixed blocks of rows, their dw added in order.
    let partial: Vec<Vec<f32>> = dx
        .par_chunks_mut(ROWS_PER_TASK * c)
        .enumerate()
        .map(|(blk, dx_blk)| {
            let mut dw_p = vec![0f32; c];
            for (k, dxr) in dx_blk.chunks_exact_mut(c).enumerate() {
                let i = blk * ROWS_PER_TASK + k;
                let (dyr, xr) = (&dout[i * c..(i + 1) * c], &x[i * c..(i + 1) * c]);
                let r = 1.0 / (xr.iter().map(|v| v * v).sum::<f32>() / c as f32 + eps).sqrt();
                let gx_mean = (0..c).map(|j| dyr[j] * w[j] * xr[j]).sum::<f32>() / c as f32;
                for j in 0..c {
                    dw_p[j] += dyr[j] * xr[j] * r;
                    dxr[j] += r * dyr[j] * w[j] - xr[j] * r * r * r * gx_mean;
                }
            }
            dw_p
        })
        .collect();
    for dw_p in partial {
        for j in 0..c {
            dw[j] += dw_p[j];
        }
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
