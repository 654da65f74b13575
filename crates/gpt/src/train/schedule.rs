//! The learning-rate schedule: linear warmup from 0, then cosine decay to a floor (GPT-2/3,
//! nanoGPT).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub max_lr: f32,
    pub min_lr: f32,
    pub warmup_steps: usize,
    /// The step at which the decay reaches `min_lr` (usually the last step).
    pub decay_steps: usize,
}

impl Schedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.max_lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        if step >= self.decay_steps {
            return self.min_lr;
        }
        let progress = (step - self.warmup_steps) as f32
            / (self.decay_steps - self.warmup_steps).max(1) as f32;
        let cosine = 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
        self.min_lr + cosine * (self.max_lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_by_hand() {
        let s = Schedule {
            max_lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            decay_steps: 110,
        };
        assert_eq!(s.lr(0), 0.1); // (0 + 1) / 10 of the peak
        assert_eq!(s.lr(9), 1.0);
        assert!((s.lr(10) - 1.0).abs() < 1e-6); // the decay starts at the peak
        assert!((s.lr(60) - 0.55).abs() < 1e-6); // halfway: min + (max - min) / 2
        assert_eq!(s.lr(110), 0.1);
        assert_eq!(s.lr(1000), 0.1);
    }
}
