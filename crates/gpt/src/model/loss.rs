//! The pre-training loss: cross-entropy of the true next token, -ln p(target), averaged over
//! positions. Lowering it raises the probability the model gives to what actually came next.

use rayon::prelude::*;

/// probs (N, V) = softmax(logits (N, V)); losses (N) = -ln probs[target]. Returns the mean loss.
pub fn cross_entropy_forward(
    logits: &[f32],
    targets: &[u32],
    probs: &mut [f32],
    losses: &mut [f32],
) -> f32 {
    let v = logits.len() / targets.len();
    probs
        .par_chunks_mut(v)
        .zip(logits.par_chunks(v))
        .zip(losses.par_iter_mut())
        .zip(targets.par_iter())
        .for_each(|(((p, l), loss), &y)| {
            p.copy_from_slice(l);
            crate::kernels::softmax(p);
            *loss = -p[y as usize].ln();
        });
    (losses.iter().map(|&l| l as f64).sum::<f64>() / targets.len() as f64) as f32
}

/// The backward pass of [`cross_entropy_forward`] for the mean loss:
/// dlogits (N, V) += (probs - onehot(target)) / N.
pub fn cross_entropy_backward(probs: &[f32], targets: &[u32], dlogits: &mut [f32]) {
    let v = probs.len() / targets.len();
    let scale = 1.0 / targets.len() as f32;
    dlogits
        .par_chunks_mut(v)
        .zip(probs.par_chunks(v))
        .zip(targets.par_iter())
        .for_each(|((d, p), &y)| {
            for (j, (dj, pj)) in d.iter_mut().zip(p).enumerate() {
                let indicator = if j == y as usize { 1.0 } else { 0.0 };
                *dj += (pj - indicator) * scale;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_ln_v() {
        // Four equal logits: p = 1/4 each, loss = ln 4; gradient (1/4 - 1) at the target.
        let logits = [0.5f32; 4];
        let (mut p, mut l) = ([0f32; 4], [0f32]);
        let loss = cross_entropy_forward(&logits, &[2], &mut p, &mut l);
        assert!((loss - 4f32.ln()).abs() < 1e-6);
        let mut d = [0f32; 4];
        cross_entropy_backward(&p, &[2], &mut d);
        assert!((d[2] + 0.75).abs() < 1e-6 && (d[0] - 0.25).abs() < 1e-6);
    }
}
