//! The optimizers and learning-rate schedules the recipes need, with their state exposed for
//! checkpoints (`optim.<variable>[.<buffer>]`, plus `optim.step`):
//! - SGD, PyTorch `torch.optim.SGD` semantics: g ← g + wd·p, b ← μ·b + g, p ← p − lr·b.
//! - LARS as `facebookresearch/barlowtwins` `main.py` (also BYOL's and solo-learn's): g ← g + wd·p,
//!   then g ← g·η‖p‖/‖g‖ (1 when either norm is 0), b ← μ·b + g, p ← p − lr·b; with
//!   `exclude_bias_and_norm`, 1-D variables (biases, BatchNorm) skip both the decay and the adaptation.
//! - Adam / AdamW, PyTorch semantics: Adam adds wd·p to the gradient (L2), AdamW decays the weights
//!   directly (p ← p − lr·wd·p; with `exclude_bias_and_norm` not the 1-D variables, as MAE's
//!   `optim_factory.add_weight_decay`); m and v with bias correction, p ← p − lr·m̂/(√v̂ + ε).
//! Schedules: linear warm-up from 0 over `warmup` steps, then cosine to `min_lr` (solo-learn / PL-Bolts
//! `LinearWarmupCosineAnnealingLR`, stepped per iteration) or PyTorch `MultiStepLR` (×γ at each
//! milestone epoch).

use anyhow::{Context, Result};
use tch::{nn::VarStore, Kind, Tensor};

use crate::nn::flat::Flat;
use crate::plan::{Optimizer as Kind_, Schedule};

/// The trainable variables live in one flat buffer ([`Flat`]) and so do the optimizer's buffers, so
/// a step is a fixed handful of operations over all of them (one `cat` gathers the gradients),
/// whatever the number of variables; a variable without a gradient is left untouched, as PyTorch
/// skips it.
pub struct Optimizer {
    names: Vec<String>,
    params: Vec<Tensor>,
    flat: Flat,
    /// [momentum] (SGD, LARS) or [exp_avg, exp_avg_sq] (Adam, AdamW), each laid out as `flat`.
    buffers: Vec<Tensor>,
    /// LARS or AdamW with `exclude_bias_and_norm`: per variable 1 (decayed, and adapted by LARS)
    /// or 0 (1-D, plain).
    adapted: Option<Tensor>,
    kind: Kind_,
    weight_decay: f64,
    /// Steps taken (Adam's bias correction).
    step: i64,
}

fn buffer_names(kind: &Kind_) -> &'static [&'static str] {
    match kind {
        Kind_::Sgd { .. } | Kind_::Lars { .. } => &[""],
        Kind_::Adam { .. } | Kind_::Adamw { .. } => &[".exp_avg", ".exp_avg_sq"],
    }
}

impl Optimizer {
    /// Optimises every trainable variable of `vs` (sorted by name for a stable order), moving them
    /// into one buffer (they keep their shapes and layouts).
    pub fn new(vs: &VarStore, kind: &Kind_, weight_decay: f64) -> Result<Self> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = named.into_iter().unzip();
        let flat = Flat::adopt(&params).context("the optimizer keeps all trainable variables in one buffer")?;
        let buffers = (0..buffer_names(kind).len()).map(|_| flat.zeros()).collect();
        let adapted = match kind {
            Kind_::Lars { exclude_bias_and_norm: true, .. } | Kind_::Adamw { exclude_bias_and_norm: true, .. } => {
                let per: Vec<f32> = params.iter().map(|p| if p.dim() == 1 { 0.0 } else { 1.0 }).collect();
                Some(Tensor::from_slice(&per).to_device(flat.values.device()))
            }
            _ => None,
        };
        Ok(Self { names, params, flat, buffers, adapted, kind: kind.clone(), weight_decay, step: 0 })
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update at rate `lr`. Returns the sum of all gradients (a device scalar, not read here):
    /// non-finite exactly when some gradient is, which is how training notices a divergence
    /// without waiting for the device. `None` when no variable has a gradient.
    pub fn step(&mut self, lr: f64) -> Option<Tensor> {
        let grads: Vec<Option<Tensor>> = self.params.iter().map(|p| Some(p.grad()).filter(Tensor::defined)).collect();
        if grads.iter().all(Option::is_none) {
            return None;
        }
        self.step += 1;
        let (wd, t) = (self.weight_decay, self.step as f64);
        let dev = self.flat.values.device();
        // Variables without a gradient keep their values and buffers (1 = has one).
        let active = grads.iter().any(Option::is_none).then(|| {
            let per: Vec<f32> = grads.iter().map(|g| if g.is_some() { 1.0 } else { 0.0 }).collect();
            self.flat.spread(&Tensor::from_slice(&per).to_device(dev))
        });
        let keep = |new: Tensor, old: &Tensor| match &active {
            Some(a) => &new * a + old * (1.0 - a),
            None => new,
        };
        tch::no_grad(|| {
            let g = self.flat.gather(&grads);
            let grad_sum = g.sum(g.kind());
            let p = self.flat.values.shallow_clone();
            let delta = match self.kind {
                Kind_::Sgd { momentum } => {
                    let g = if wd != 0.0 { g + &p * wd } else { g };
                    let b = keep(&self.buffers[0] * momentum + g, &self.buffers[0]);
                    self.buffers[0].copy_(&b);
                    &self.buffers[0] * lr
                }
                Kind_::Lars { momentum, eta, .. } => {
                    let decay = self.adapted.as_ref().map(|a| self.flat.spread(a));
                    let g = match (&decay, wd != 0.0) {
                        (Some(d), true) => g + &p * d * wd,
                        (None, true) => g + &p * wd,
                        (_, false) => g,
                    };
                    let pn = self.flat.segment_sq_norms(&p).sqrt();
                    let gn = self.flat.segment_sq_norms(&g).sqrt();
                    let both = pn.gt(0.0).logical_and(&gn.gt(0.0));
                    let mut trust = (&pn * eta / gn.clamp_min(f64::MIN_POSITIVE)).where_self(&both, &pn.ones_like());
                    if let Some(a) = &self.adapted {
                        trust = &trust * a - a + 1.0; // 1 for the excluded variables
                    }
                    let g = g * self.flat.spread(&trust);
                    let b = keep(&self.buffers[0] * momentum + g, &self.buffers[0]);
                    self.buffers[0].copy_(&b);
                    &self.buffers[0] * lr
                }
                Kind_::Adam { beta1, beta2, eps } | Kind_::Adamw { beta1, beta2, eps, .. } => {
                    let decoupled = matches!(self.kind, Kind_::Adamw { .. });
                    let g = if wd != 0.0 && !decoupled { g + &p * wd } else { g };
                    if wd != 0.0 && decoupled {
                        let decayed = match &self.adapted {
                            Some(a) => &p - &p * self.flat.spread(a) * (lr * wd),
                            None => &p * (1.0 - lr * wd),
                        };
                        let decayed = keep(decayed, &p);
                        self.flat.values.copy_(&decayed);
                    }
                    let m = keep(&self.buffers[0] * beta1 + &g * (1.0 - beta1), &self.buffers[0]);
                    let v = keep(&self.buffers[1] * beta2 + g.square() * (1.0 - beta2), &self.buffers[1]);
                    self.buffers[0].copy_(&m);
                    self.buffers[1].copy_(&v);
                    let m_hat = &self.buffers[0] / (1.0 - beta1.powf(t));
                    let v_hat = &self.buffers[1] / (1.0 - beta2.powf(t));
                    m_hat / (v_hat.sqrt() + eps) * lr
                }
            };
            let delta = match &active {
                Some(a) => delta * a,
                None => delta,
            };
            let _ = self.flat.values.g_sub_(&delta);
            Some(grad_sum)
        })
    }

    /// Buffers named `optim.<variable><suffix>` (views in the variable's shape), and `optim.step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let names = buffer_names(&self.kind);
        let mut v: Vec<(String, Tensor)> = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            for (s, b) in names.iter().zip(&self.buffers) {
                v.push((format!("optim.{n}{s}"), self.flat.segment(b, i)));
            }
        }
        v.push(("optim.step".into(), Tensor::from_slice(&[self.step]).to_kind(Kind::Int64)));
        v
    }

    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let names = buffer_names(&self.kind);
        for (i, n) in self.names.iter().enumerate() {
            for (s, b) in names.iter().zip(&self.buffers) {
                let key = format!("optim.{n}{s}");
                let t = named.iter().find(|(k, _)| *k == key).with_context(|| format!("checkpoint lacks {key} (written for another optimizer?)"))?;
                let mut view = self.flat.segment(b, i);
                tch::no_grad(|| view.copy_(&t.1));
            }
        }
        // Checkpoints from before `optim.step` existed were SGD-only, where the count is unused.
        if let Some((_, t)) = named.iter().find(|(k, _)| k == "optim.step") {
            self.step = t.int64_value(&[0]);
        }
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`, with `per_epoch` steps an epoch:
/// linear warm-up over `warmup` steps, then the schedule.
pub fn learning_rate(schedule: &Schedule, step: usize, total: usize, per_epoch: usize, warmup: usize, base: f64, min: f64) -> f64 {
    match schedule {
        Schedule::WarmupCosine => warmup_cosine(step, total, warmup, base, min),
        Schedule::Multistep { milestones, gamma } => {
            if step < warmup {
                return base * (step + 1) as f64 / warmup as f64;
            }
            let epoch = step / per_epoch.max(1);
            base * gamma.powi(milestones.iter().filter(|&&m| m <= epoch).count() as i32)
        }
    }
}

/// Linear warm-up from 0 over `warmup` steps, then cosine from `base` to `min`.
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
        // AMDIM-style: warm-up over 5 steps, ×0.2 at epochs 2 and 3 (10 steps an epoch).
        let ms = Schedule::Multistep { milestones: vec![2, 3], gamma: 0.2 };
        let lr = |s| learning_rate(&ms, s, 40, 10, 5, 1.0, 0.0);
        assert!((lr(0) - 0.2).abs() < 1e-12 && (lr(5) - 1.0).abs() < 1e-12 && (lr(19) - 1.0).abs() < 1e-12);
        assert!((lr(20) - 0.2).abs() < 1e-12 && (lr(35) - 0.04).abs() < 1e-12);
    }

    fn one_var(values: &[f32]) -> (VarStore, Tensor) {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(values));
        (vs, w)
    }

    /// Two steps of loss = Σ w² (gradient 2w) with each optimizer; expected values by hand.
    fn run(kind: Kind_, wd: f64, lr: f64, w0: &[f32]) -> Vec<f64> {
        let (vs, w) = one_var(w0);
        let mut opt = Optimizer::new(&vs, &kind, wd).unwrap();
        for _ in 0..2 {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            opt.step(lr);
        }
        (0..w0.len()).map(|i| w.double_value(&[i as i64])).collect()
    }

    #[test]
    fn sgd_matches_pytorch_by_hand() {
        // step 1: g = 2.1w; b = g; w1 = w(1 − 1.05) = −0.05w. step 2: b = 0.9·2.1w + 2.1w1; w2 = w1 − 0.5b.
        let got = run(Kind_::Sgd { momentum: 0.9 }, 0.1, 0.5, &[1.0, -2.0]);
        for (x, g) in [1.0f64, -2.0].iter().zip(got) {
            let w1 = -0.05 * x;
            let w2 = w1 - 0.5 * (0.9 * 2.1 * x + 2.1 * w1);
            assert!((g - w2).abs() < 1e-5);
        }
    }

    #[test]
    fn lars_scales_by_the_trust_ratio_and_skips_1d() {
        // 2-D variable: g = 2w + wd·w = 2.1w, trust η‖w‖/‖g‖ = η/2.1, so the update is η·w: w1 = w(1 − lr·η).
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[3.0f32, 4.0]).reshape([1, 2]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[3.0f32, 4.0]));
        let mut opt = Optimizer::new(&vs, &Kind_::Lars { momentum: 0.9, eta: 0.02, exclude_bias_and_norm: true }, 0.1).unwrap();
        opt.zero_grad();
        ((&w * &w).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
        opt.step(2.0);
        assert!((w.double_value(&[0, 0]) - 3.0 * (1.0 - 2.0 * 0.02)).abs() < 1e-5);
        // 1-D variable: plain momentum SGD, no decay: b1 = b − lr·2b = −3b.
        assert!((b.double_value(&[1]) - 4.0 * (1.0 - 4.0)).abs() < 1e-4);
    }

    #[test]
    fn adam_and_adamw_match_pytorch_by_hand() {
        let (b1, b2, eps) = (0.8, 0.999, 1e-8);
        for decoupled in [false, true] {
            let kind = if decoupled { Kind_::Adamw { beta1: b1, beta2: b2, eps, exclude_bias_and_norm: false } } else { Kind_::Adam { beta1: b1, beta2: b2, eps } };
            let (lr, wd) = (0.1, 0.01);
            let got = run(kind, wd, lr, &[1.0, -2.0]);
            for (x0, g) in [1.0f64, -2.0].iter().zip(got) {
                let (mut x, mut m, mut v) = (*x0, 0.0, 0.0);
                for t in 1..=2 {
                    let mut grad = 2.0 * x;
                    if decoupled {
                        x *= 1.0 - lr * wd;
                    } else {
                        grad += wd * x;
                    }
                    m = b1 * m + (1.0 - b1) * grad;
                    v = b2 * v + (1.0 - b2) * grad * grad;
                    let (mh, vh) = (m / (1.0 - b1.powi(t)), v / (1.0 - b2.powi(t)));
                    x -= lr * mh / (vh.sqrt() + eps);
                }
                assert!((g - x).abs() < 1e-5, "decoupled {decoupled}: {g} vs {x}");
            }
        }
    }

    /// AdamW with `exclude_bias_and_norm` decays the 2-D variable as plain AdamW and leaves the
    /// 1-D one undecayed (its step is Adam's alone).
    #[test]
    fn adamw_can_exclude_1d_variables_from_the_decay() {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[3.0f32, 4.0]).reshape([1, 2]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[3.0f32, 4.0]));
        let kind = Kind_::Adamw { beta1: 0.9, beta2: 0.95, eps: 1e-8, exclude_bias_and_norm: true };
        let mut opt = Optimizer::new(&vs, &kind, 0.5).unwrap();
        opt.zero_grad();
        ((&w * &w).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
        opt.step(0.1);
        // First Adam step moves each value by lr·sign(g) = 0.1; the decay takes lr·wd·p = 0.05·p more from w only.
        assert!((w.double_value(&[0, 0]) - (3.0 * (1.0 - 0.05) - 0.1)).abs() < 1e-5, "{}", w.double_value(&[0, 0]));
        assert!((b.double_value(&[0]) - (3.0 - 0.1)).abs() < 1e-5, "{}", b.double_value(&[0]));
    }

    #[test]
    fn state_round_trips() {
        let kind = Kind_::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
        let (vs, w) = one_var(&[1.0, 2.0]);
        let mut opt = Optimizer::new(&vs, &kind, 0.0).unwrap();
        opt.zero_grad();
        (&w * &w).sum(Kind::Float).backward();
        opt.step(0.1);
        let saved = opt.state();
        assert!(saved.iter().any(|(n, _)| n == "optim.w.exp_avg_sq") && saved.iter().any(|(n, _)| n == "optim.step"));
        let mut fresh = Optimizer::new(&vs, &kind, 0.0).unwrap();
        fresh.load_state(&saved).unwrap();
        assert_eq!(fresh.step, 1);
        assert!(fresh.buffers[1].equal(&opt.buffers[1]));
        let mut sgd = Optimizer::new(&vs, &Kind_::Sgd { momentum: 0.9 }, 0.0).unwrap();
        assert!(sgd.load_state(&saved).unwrap_err().to_string().contains("optim.w"));
    }
}
