//! An exponential-moving-average copy of the encoder and heads (BYOL's target, ER's EMA heads, a
//! DINO-style teacher): never trained, it follows the online weights, τ·target + (1 − τ)·online
//! after every step, with τ rising from τ_base to 1 on a cosine (BYOL, arXiv 2006.07733 §3.2):
//! τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2. BatchNorm running statistics follow too.
//!
//! The target's heads are built under `method/...` in its own variable store, so every target
//! variable has the same name as the online one it follows; the (target, online) pairs are matched
//! once, at [`Ema::init`]. The target runs in training mode (batch statistics, as the references)
//! under no_grad.

use anyhow::{bail, Context, Result};
use tch::nn;
use tch::Tensor;

use crate::nn::flat::Flat;
use crate::nn::Encoder;

pub struct Ema {
    vs: nn::VarStore,
    pub encoder: Encoder,
    /// The target's variables in one buffer and, in the same order, the online variables they follow:
    /// an update is one `cat` of the online side and two operations on the buffer.
    target: Option<Flat>,
    online: Vec<Option<Tensor>>,
    momentum: f64,
    /// Checkpoint key prefix, e.g. `byol.target`.
    key: &'static str,
}

impl Ema {
    pub fn new(device: tch::Device, make_encoder: &dyn Fn(&nn::Path) -> Result<Encoder>, momentum: f64, key: &'static str) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let encoder = make_encoder(&vs.root())?;
        Ok(Self { vs, encoder, target: None, online: Vec::new(), momentum, key })
    }

    /// Where the target's heads go, mirroring the online model's `method` path.
    pub fn method_root(&self) -> nn::Path<'_> {
        self.vs.root() / "method"
    }

    /// The channels-last layout for the target's convolution weights, as the online model's.
    pub fn channels_last(&self) {
        crate::nn::channels_last(&self.vs);
    }

    /// Pairs every target variable with its online namesake and copies the online weights in (the
    /// start of training, as the references).
    pub fn init(&mut self, online: &nn::VarStore) -> Result<()> {
        let on = online.variables();
        let mut targets = Vec::new();
        self.online.clear();
        let mut own: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        own.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in own {
            let src = on.get(&name).with_context(|| format!("{}: the online model has no variable {name}", self.key))?;
            if src.size() != t.size() {
                bail!("{}: target {name} is {:?}, online is {:?}", self.key, t.size(), src.size());
            }
            targets.push(t);
            self.online.push(Some(src.shallow_clone()));
        }
        self.target = Some(Flat::adopt(&targets).with_context(|| format!("{}: the target's variables in one buffer", self.key))?);
        self.follow(0.0);
        Ok(())
    }

    fn follow(&mut self, tau: f64) {
        let Some(target) = &self.target else { return };
        tch::no_grad(|| {
            let online = target.gather(&self.online).detach();
            let mut values = target.values.shallow_clone();
            let _ = values.g_mul_scalar_(tau).g_add_(&(online * (1.0 - tau)));
        });
    }

    /// τ after optimizer step `step` (0-based) of `total`.
    pub fn tau(&self, step: usize, total: usize) -> f64 {
        let k = (step + 1) as f64 / total.max(1) as f64;
        1.0 - (1.0 - self.momentum) * ((std::f64::consts::PI * k).cos() + 1.0) / 2.0
    }

    /// The EMA update after optimizer step `step` of `total`.
    pub fn after_step(&mut self, step: usize, total: usize) {
        let tau = self.tau(step, total);
        self.follow(tau);
    }

    /// The target's variables, for checkpoints (`<key>.<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.vs.variables().into_iter().map(|(n, t)| (format!("{}.{n}", self.key), t.detach())).collect()
    }

    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (name, mut t) in self.vs.variables() {
                let key = format!("{}.{name}", self.key);
                let (_, src) = named.iter().find(|(k, _)| *k == key).with_context(|| format!("checkpoint lacks {key}"))?;
                t.copy_(&src.to_device(t.device()));
            }
            Ok(())
        })
    }

    #[cfg(test)]
    pub fn variables(&self) -> std::collections::HashMap<String, Tensor> {
        self.vs.variables()
    }
}
