//! BYOL as a method (Grill et al., NeurIPS 2020, arXiv 2006.07733; `deepmind/deepmind-research`
//! `byol/byol_experiment.py`, solo-learn `solo/methods/byol.py`): an online network (backbone →
//! projector → predictor) regresses the target network's projection of the other view; the target
//! (backbone → projector) is not trained but follows the online weights as an exponential moving
//! average, τ·target + (1 − τ)·online after every step, with τ rising from τ_base to 1 on a cosine:
//! τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2. The loss is `losses::byol` for both view orders, summed.
//! The target runs in training mode (its BatchNorm uses batch statistics, as in the reference), under
//! no_grad. Only the online backbone is exported.

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::StepLoss;
use crate::losses;
use crate::nn::heads::{Mlp, Style};
use crate::nn::resnet::ResNet18;
use crate::plan::ByolParams;

pub struct Byol {
    projector: Mlp,
    predictor: Mlp,
    target_vs: nn::VarStore,
    target_encoder: ResNet18,
    target_projector: Mlp,
    momentum: f64,
}

/// The online variable a target variable follows: the encoder's names are shared; the target's
/// `projector.*` follows the online `method.projector.*`.
fn online_name(target: &str) -> String {
    if target.starts_with("projector.") {
        format!("method.{target}")
    } else {
        target.to_owned()
    }
}

impl Byol {
    /// `root` is the online model's `method` path; `make_encoder` builds a backbone like the online one.
    pub fn new(root: &nn::Path, feature_dim: i64, p: &ByolParams, make_encoder: impl Fn(&nn::Path) -> ResNet18) -> Self {
        let style = Style::BatchNorm { last_bias: true };
        let projector = Mlp::new(&(root / "projector"), feature_dim, &p.projector, style);
        let out = *p.projector.last().unwrap_or(&feature_dim);
        let predictor = Mlp::new(&(root / "predictor"), out, &p.predictor, style);
        let target_vs = nn::VarStore::new(root.device());
        let target_encoder = make_encoder(&target_vs.root());
        let target_projector = Mlp::new(&(target_vs.root() / "projector"), feature_dim, &p.projector, style);
        Self { projector, predictor, target_vs, target_encoder, target_projector, momentum: p.momentum }
    }

    /// Copies the online weights into the target (at the start of training, as the reference).
    pub fn init_target(&mut self, online: &nn::VarStore) -> Result<()> {
        self.follow(online, 0.0)
    }

    /// target ← τ·target + (1 − τ)·online, variable by variable (BN running statistics included).
    fn follow(&mut self, online: &nn::VarStore, tau: f64) -> Result<()> {
        let on = online.variables();
        tch::no_grad(|| -> Result<()> {
            for (name, mut t) in self.target_vs.variables() {
                let src = on.get(&online_name(&name)).with_context(|| format!("byol: the online model has no variable {}", online_name(&name)))?;
                if src.size() != t.size() {
                    bail!("byol: target {name} is {:?}, online is {:?}", t.size(), src.size());
                }
                let mixed = &t * tau + src * (1.0 - tau);
                t.copy_(&mixed);
            }
            Ok(())
        })
    }

    /// After optimizer step `step` (0-based) of `total`: the EMA update with the cosine schedule.
    pub fn after_step(&mut self, online: &nn::VarStore, step: usize, total: usize) -> Result<()> {
        let k = (step + 1) as f64 / total.max(1) as f64;
        let tau = 1.0 - (1.0 - self.momentum) * ((std::f64::consts::PI * k).cos() + 1.0) / 2.0;
        self.follow(online, tau)
    }

    /// The symmetrised loss from the online features `h1`, `h2` and the two views (for the target).
    pub fn step(&self, h1: &Tensor, h2: &Tensor, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let p1 = self.predictor.forward_t(&self.projector.forward_t(h1, true), true);
        let p2 = self.predictor.forward_t(&self.projector.forward_t(h2, true), true);
        let (t1, t2) = tch::no_grad(|| {
            let t = |v: &Tensor| self.target_projector.forward_t(&self.target_encoder.forward_t(v, true), true);
            (t(v1), t(v2))
        });
        let a = losses::byol::loss(&p1, &t2.detach())?;
        let b = losses::byol::loss(&p2, &t1.detach())?;
        let total = &a.total + &b.total;
        Ok(StepLoss { total: total.shallow_clone(), terms: vec![("regression", total)] })
    }

    /// The target's variables, for checkpoints (`byol.target.<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.target_vs.variables().into_iter().map(|(n, t)| (format!("byol.target.{n}"), t.detach())).collect()
    }

    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (name, mut t) in self.target_vs.variables() {
                let key = format!("byol.target.{name}");
                let (_, src) = named.iter().find(|(k, _)| *k == key).with_context(|| format!("checkpoint lacks {key}"))?;
                t.copy_(&src.to_device(t.device()));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_starts_as_online_then_follows_by_ema() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let enc = |r: &nn::Path| ResNet18::new(r, 1, 2, false);
        let online = enc(&vs.root());
        let p = ByolParams { projector: vec![8, 4], predictor: vec![8, 4], momentum: 0.9 };
        let mut m = Byol::new(&(vs.root() / "method"), online.out_dim(), &p, enc);
        m.init_target(&vs).unwrap();
        let on = vs.variables();
        for (n, t) in m.target_vs.variables() {
            assert!(t.equal(&on[&online_name(&n)]), "{n}");
        }
        // Move one online weight; after a step with τ_0 = 1 − 0.1·(cos(π/K) + 1)/2, the target moves (1 − τ) of the way.
        let w = on["conv1.weight"].shallow_clone();
        let before = m.target_vs.variables()["conv1.weight"].copy();
        let _ = tch::no_grad(|| w.shallow_clone().g_add_scalar_(1.0));
        m.after_step(&vs, 0, 2).unwrap();
        let k = 0.5f64;
        let tau = 1.0 - 0.1 * ((std::f64::consts::PI * k).cos() + 1.0) / 2.0;
        let moved = (m.target_vs.variables()["conv1.weight"].copy() - before).mean(tch::Kind::Float).double_value(&[]);
        assert!((moved - (1.0 - tau)).abs() < 1e-5, "{moved} vs {}", 1.0 - tau);
        let x = Tensor::randn([4, 1, 8, 8], tch::kind::FLOAT_CPU);
        let h = online.forward_t(&x, true);
        let l = m.step(&h, &h, &x, &x).unwrap();
        assert!(l.total.double_value(&[]).is_finite());
        assert_eq!(m.state().len(), m.target_vs.variables().len());
    }
}
