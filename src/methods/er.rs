//! ER as a method: the entropy + reconstruction objective (`losses::er`) as a drop-in replacement
//! of a multi-view method's loss, on one of three heads, so batch size and EMA coefficient can be
//! swept (Rodríguez-Gálvez et al., ICML 2023, arXiv 2307.10907; estimators from
//! `apple/ml-entropy-reconstruction` @ f523f11).
//! - `simclr`: backbone → projector → L2 normalisation for both views; reconstruction of each view
//!   from the other (vMF, κ), entropy of both views' embeddings.
//! - `byol`: online projector + predictor, L2-normalised, reconstructs the EMA target's normalised
//!   projection of the other view (both orders); entropy of the online predictions.
//! - `dino`: projector → L2 normalisation → unit-norm prototypes (DINO's weight-normalised last
//!   layer, SwAV's normalised prototypes) → softmax at the student temperature; the EMA teacher's
//!   softmax at its own temperature is the target (discrete support; no centering: the entropy
//!   term replaces it); entropy of the student's batch-mean probabilities.
//!
//! Unverified: the official repository has only the estimators; how the paper wires them into each
//! head (which branch's entropy, head sizes, temperatures) is read from its abstract and the ICLR
//! 2023 EntRec text, not from code. The choices above are marked so in the README.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::ema::Ema;
use super::{features, Objective, Parts, StepLoss, Trains};
use crate::losses::er::{self, Support};
use crate::losses::{check_pair, l2_normalize};
use crate::nn::heads::{Mlp, Prototypes, Style};
use crate::nn::Encoder;
use crate::plan::{ErHead, ErParams, ErReduction};

const STYLE: Style = Style::BatchNorm { last_bias: true };

enum Head {
    Simclr { kappa: f64 },
    Byol { kappa: f64, predictor: Mlp, target: Box<Ema>, target_projector: Mlp },
    Dino { prototypes: Prototypes, target: Box<Ema>, target_projector: Mlp, target_prototypes: Prototypes, ts: f64, tt: f64 },
}

pub struct Er {
    projector: Mlp,
    head: Head,
    reduction: ErReduction,
}

impl Er {
    pub fn new(root: &nn::Path, feature_dim: i64, p: &ErParams, make_encoder: &dyn Fn(&nn::Path) -> Result<Encoder>) -> Result<Self> {
        let projector = Mlp::new(&(root / "projector"), feature_dim, &p.projector, STYLE);
        let out = *p.projector.last().unwrap_or(&feature_dim);
        let head = match &p.head {
            ErHead::Simclr { kappa } => Head::Simclr { kappa: *kappa },
            ErHead::Byol { kappa, predictor, momentum } => {
                let target = Ema::new(root.device(), make_encoder, *momentum, "er.target")?;
                let target_projector = Mlp::new(&(target.method_root() / "projector"), feature_dim, &p.projector, STYLE);
                Head::Byol { kappa: *kappa, predictor: Mlp::new(&(root / "predictor"), out, predictor, STYLE), target: Box::new(target), target_projector }
            }
            ErHead::Dino { prototypes, momentum, student_temperature, teacher_temperature } => {
                let target = Ema::new(root.device(), make_encoder, *momentum, "er.target")?;
                let target_projector = Mlp::new(&(target.method_root() / "projector"), feature_dim, &p.projector, STYLE);
                let target_prototypes = Prototypes::new(&(target.method_root() / "prototypes"), out, *prototypes);
                Head::Dino {
                    prototypes: Prototypes::new(&(root / "prototypes"), out, *prototypes),
                    target: Box::new(target),
                    target_projector,
                    target_prototypes,
                    ts: *student_temperature,
                    tt: *teacher_temperature,
                }
            }
        };
        Ok(Self { projector, head, reduction: p.reduction })
    }

    /// The EMA target, for heads that have one.
    pub fn target_mut(&mut self) -> Option<&mut Ema> {
        match &mut self.head {
            Head::Simclr { .. } => None,
            Head::Byol { target, .. } | Head::Dino { target, .. } => Some(target),
        }
    }

    pub fn target(&self) -> Option<&Ema> {
        match &self.head {
            Head::Simclr { .. } => None,
            Head::Byol { target, .. } | Head::Dino { target, .. } => Some(target),
        }
    }

    /// The objective from the online features `h1`, `h2` and the two views (for EMA targets).
    pub fn step(&self, h1: &Tensor, h2: &Tensor, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let (z1, z2) = (self.projector.forward_t(h1, true), self.projector.forward_t(h2, true));
        check_pair("er", &z1, &z2, 2)?;
        let r = self.reduction;
        Ok(match &self.head {
            Head::Simclr { kappa } => {
                let (a, b) = (l2_normalize(&z1), l2_normalize(&z2));
                er::objective(&[(&a, &b), (&b, &a)], &[&a, &b], Support::Sphere { kappa: *kappa }, r)
            }
            Head::Byol { kappa, predictor, target, target_projector } => {
                let (p1, p2) = (l2_normalize(&predictor.forward_t(&z1, true)), l2_normalize(&predictor.forward_t(&z2, true)));
                let (t1, t2) = tch::no_grad(|| {
                    let t = |v: &Tensor| l2_normalize(&target_projector.forward_t(&target.encoder.forward_t(v, true), true));
                    (t(v1), t(v2))
                });
                er::objective(&[(&p1, &t2), (&p2, &t1)], &[&p1, &p2], Support::Sphere { kappa: *kappa }, r)
            }
            Head::Dino { prototypes, target, target_projector, target_prototypes, ts, tt } => {
                let s = |z: &Tensor| (prototypes.logits(&l2_normalize(z)) / *ts).softmax(1, Kind::Float);
                let (s1, s2) = (s(&z1), s(&z2));
                let (t1, t2) = tch::no_grad(|| {
                    let t = |v: &Tensor| {
                        let z = target_projector.forward_t(&target.encoder.forward_t(v, true), true);
                        (target_prototypes.logits(&l2_normalize(&z)) / *tt).softmax(1, Kind::Float)
                    };
                    (t(v1), t(v2))
                });
                er::objective(&[(&s1, &t2), (&s2, &t1)], &[&s1, &s2], Support::Discrete, r)
            }
        })
    }
}

impl Objective for Er {
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let (h1, h2) = features(encoder, v1, v2);
        self.step(&h1, &h2, v1, v2)
    }
    fn target(&self) -> Option<&Ema> {
        Er::target(self)
    }
    fn target_mut(&mut self) -> Option<&mut Ema> {
        Er::target_mut(self)
    }
}

/// `repro loss er` arguments: the support of the given rows and the estimator.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErLoss {
    /// `sphere` (vMF with `kappa`; rows are L2-normalised first) or `discrete` (rows are probabilities).
    support: String,
    kappa: f64,
    reduction: ErReduction,
}

impl Default for ErLoss {
    fn default() -> Self {
        Self { support: "sphere".into(), kappa: 10.0, reduction: ErReduction::Expectation }
    }
}

impl Trains for ErParams {
    type LossArgs = ErLoss;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(Er::new(&parts.root, parts.feature_dim, self, parts.make_encoder)?))
    }
    fn loss_on(p: &ErLoss, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        let support = match p.support.as_str() {
            "sphere" => Support::Sphere { kappa: p.kappa },
            "discrete" => Support::Discrete,
            other => bail!("--set support={other}: expected sphere or discrete"),
        };
        er::loss(z1, z2, support, p.reduction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::resnet::ResNet;
    use crate::plan::{ResnetDepth, ResnetStem};

    #[test]
    fn every_head_gives_a_finite_loss_and_the_ema_heads_follow_their_names() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let heads = [
            ErHead::Simclr { kappa: 10.0 },
            ErHead::Byol { kappa: 10.0, predictor: vec![8, 4], momentum: 0.99 },
            ErHead::Dino { prototypes: 16, momentum: 0.99, student_temperature: 0.1, teacher_temperature: 0.04 },
        ];
        for head in heads {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let enc = |r: &nn::Path| -> Result<Encoder> { Ok(Encoder::Resnet(ResNet::new(r, 1, ResnetDepth::R18, ResnetStem::Cifar, 2, false))) };
            let online = enc(&vs.root()).unwrap();
            let p = ErParams { projector: vec![8, 4], reduction: ErReduction::Expectation, head };
            let mut m = Er::new(&(vs.root() / "method"), online.out_dim(), &p, &enc).unwrap();
            if let Some(t) = m.target_mut() {
                t.init(&vs).unwrap();
            }
            let x = Tensor::randn([6, 1, 8, 8], tch::kind::FLOAT_CPU);
            let h = online.forward_t(&x, true);
            let l = m.step(&h, &h, &x, &x).unwrap();
            assert!(l.total.double_value(&[]).is_finite(), "{:?}", p.head);
            assert_eq!(l.terms.len(), 2);
        }
    }
}
