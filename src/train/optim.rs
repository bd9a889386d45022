//! SGD with momentum and weight decay (PyTorch `torch.optim.SGD` semantics: g ← g + wd·p,
//! b ← μ·b + g, p ← p − lr·b) with its buffers exposed for checkpoints, and the linear-warm-up +
//! cosine schedule of the CorInfoMax runs (solo-learn / PL-Bolts `LinearWarmupCosineAnnealingLR`,
//! stepped per iteration here).

use anyhow::{Context, Result};
use tch::{nn::VarStore, Tensor};

pub struct Sgd {
    params: Vec<(String, Tensor)>,
    buffers: Vec<Tensor>,
    momentum: f64,
    weight_decay: f64,
}

impl Sgd {
    /// Optimises every trainable variable of `vs` (sorted by name for a stable order).
    pub fn new(vs: &VarStore, momentum: f64, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self { params, buffers, momentum, weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for ((_, p), b) in self.params.iter_mut().zip(self.buffers.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if self.weight_decay != 0.0 { &g + &*p * self.weight_decay } else { g };
                let _ = b.g_mul_scalar_(self.momentum).g_add_(&g);
                let _ = p.g_sub_(&(&*b * lr));
            }
        });
    }

    /// Momentum buffers, named `optim.<variable>`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params.iter().zip(&self.buffers).map(|((n, _), b)| (format!("optim.{n}"), b.shallow_clone())).collect()
    }

    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        for ((n, _), b) in self.params.iter().zip(self.buffers.iter_mut()) {
            let key = format!("optim.{n}");
            let t = named.iter().find(|(k, _)| *k == key).with_context(|| format!("checkpoint lacks {key}"))?;
            tch::no_grad(|| b.copy_(&t.1));
        }
        Ok(())
    }
}

/// Learning rate at `step` of `total`: linear warm-up from 0 over `warmup` steps, then cosine from
/// `base` to `min`.
pub fn warmup_cosine(step: usize, total: usize, warmup: usize, base: f64, min: f64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let t = ((step - warmup) as f64 / span).min(1.0);
    min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shape() {
        assert!((warmup_cosine(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(10, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(55, 100, 10, 1.0, 0.1) - 0.55).abs() < 1e-12);
        assert!(warmup_cosine(99, 100, 10, 1.0, 0.0) < 0.01);
        assert!((warmup_cosine(5, 100, 0, 2.0, 0.0) - 2.0 * 0.5 * (1.0 + (std::f64::consts::PI * 0.05).cos())).abs() < 1e-12);
    }

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut opt = Sgd::new(&vs, 0.9, 0.1);
        for _ in 0..2 {
            opt.zero_grad();
            (&w * &w).sum(tch::Kind::Float).backward();
            opt.step(0.5);
        }
        // step 1: g = 2w + 0.1w = 2.1w; b = g; w1 = w(1 - 1.05) = -0.05w
        // step 2: g = 2.1·w1; b = 0.9·2.1w + 2.1w1; w2 = w1 - 0.5·b
        let w0 = [1.0f64, -2.0];
        for (i, &x) in w0.iter().enumerate() {
            let w1 = -0.05 * x;
            let b = 0.9 * 2.1 * x + 2.1 * w1;
            let w2 = w1 - 0.5 * b;
            assert!((w.double_value(&[i as i64]) - w2).abs() < 1e-5);
        }
    }
}
