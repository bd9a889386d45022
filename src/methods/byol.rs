//! BYOL as a method (Grill et al., NeurIPS 2020, arXiv 2006.07733; `deepmind/deepmind-research`
//! `byol/byol_experiment.py`, solo-learn `solo/methods/byol.py`): an online network (backbone →
//! projector → predictor) regresses the target network's projection of the other view; the target
//! (backbone → projector) is the EMA of the online weights (`methods::ema`, τ from τ_base to 1 on
//! a cosine). The loss is `losses::byol` for both view orders, summed. Only the online backbone is
//! exported.

use anyhow::Result;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::ema::Ema;
use super::{features, NoArgs, Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::nn::heads::{Mlp, Style};
use crate::nn::Encoder;
use crate::plan::ByolParams;

pub struct Byol {
    projector: Mlp,
    predictor: Mlp,
    pub target: Ema,
    target_projector: Mlp,
}

impl Byol {
    /// `root` is the online model's `method` path; `make_encoder` builds a backbone like the online one.
    pub fn new(root: &nn::Path, feature_dim: i64, p: &ByolParams, make_encoder: &dyn Fn(&nn::Path) -> Result<Encoder>) -> Result<Self> {
        let style = Style::BatchNorm { last_bias: true };
        let projector = Mlp::new(&(root / "projector"), feature_dim, &p.projector, style);
        let out = *p.projector.last().unwrap_or(&feature_dim);
        let predictor = Mlp::new(&(root / "predictor"), out, &p.predictor, style);
        let target = Ema::new(root.device(), make_encoder, p.momentum, "byol.target")?;
        let target_projector = Mlp::new(&(target.method_root() / "projector"), feature_dim, &p.projector, style);
        Ok(Self { projector, predictor, target, target_projector })
    }

    /// The symmetrised loss from the online features `h1`, `h2` and the two views (for the target).
    pub fn step(&self, h1: &Tensor, h2: &Tensor, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let p1 = self.predictor.forward_t(&self.projector.forward_t(h1, true), true);
        let p2 = self.predictor.forward_t(&self.projector.forward_t(h2, true), true);
        let (t1, t2) = tch::no_grad(|| {
            let t = |v: &Tensor| self.target_projector.forward_t(&self.target.encoder.forward_t(v, true), true);
            (t(v1), t(v2))
        });
        let a = losses::byol::loss(&p1, &t2.detach())?;
        let b = losses::byol::loss(&p2, &t1.detach())?;
        let total = &a.total + &b.total;
        Ok(StepLoss { total: total.shallow_clone(), terms: vec![("regression", total)] })
    }
}

impl Objective for Byol {
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let (h1, h2) = features(encoder, v1, v2);
        self.step(&h1, &h2, v1, v2)
    }
    fn target(&self) -> Option<&Ema> {
        Some(&self.target)
    }
    fn target_mut(&mut self) -> Option<&mut Ema> {
        Some(&mut self.target)
    }
}

impl Trains for ByolParams {
    /// `repro loss byol` is the regression of given predictions onto given targets: no parameters.
    type LossArgs = NoArgs;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(Byol::new(&parts.root, parts.feature_dim, self, parts.make_encoder)?))
    }
    fn loss_on(_: &NoArgs, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        losses::byol::loss(z1, z2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::resnet::ResNet;
    use crate::plan::{ResnetDepth, ResnetStem};

    #[test]
    fn target_starts_as_online_then_follows_by_ema() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let enc = |r: &nn::Path| -> Result<Encoder> { Ok(Encoder::Resnet(ResNet::new(r, 1, ResnetDepth::R18, ResnetStem::Cifar, 2, false))) };
        let online = enc(&vs.root()).unwrap();
        let p = ByolParams { projector: vec![8, 4], predictor: vec![8, 4], momentum: 0.9 };
        let mut m = Byol::new(&(vs.root() / "method"), online.out_dim(), &p, &enc).unwrap();
        m.target.init(&vs).unwrap();
        let on = vs.variables();
        let target = m.target.variables();
        assert!(target.contains_key("method.projector.0.weight") && !target.contains_key("method.predictor.0.weight"));
        for (n, t) in &target {
            assert!(t.equal(&on[n]), "{n}");
        }
        // Move one online weight; after a step with τ_0 = 1 − 0.1·(cos(π/K) + 1)/2, the target moves (1 − τ) of the way.
        let w = on["conv1.weight"].shallow_clone();
        let before = target["conv1.weight"].copy();
        let _ = tch::no_grad(|| w.shallow_clone().g_add_scalar_(1.0));
        m.target.after_step(0, 2);
        let k = 0.5f64;
        let tau = 1.0 - 0.1 * ((std::f64::consts::PI * k).cos() + 1.0) / 2.0;
        let moved = (m.target.variables()["conv1.weight"].copy() - before).mean(tch::Kind::Float).double_value(&[]);
        assert!((moved - (1.0 - tau)).abs() < 1e-5, "{moved} vs {}", 1.0 - tau);
        let x = Tensor::randn([4, 1, 8, 8], tch::kind::FLOAT_CPU);
        let h = online.forward_t(&x, true);
        let l = m.step(&h, &h, &x, &x).unwrap();
        assert!(l.total.double_value(&[]).is_finite());
        assert_eq!(m.target.state().len(), target.len());
    }
}
