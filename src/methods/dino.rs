//! DINO as a method (Caron et al., ICCV 2021, arXiv 2104.14294; `facebookresearch/dino`
//! `main_dino.py`): a student (backbone → projector → L2 normalisation → unit-norm prototypes) is
//! trained to match, on the other view, an EMA teacher's centred and sharpened softmax
//! (`losses::dino`); the centre is a running mean of the teacher's logits, kept in checkpoints
//! beside the teacher. The head is the one of ER's `dino` head (`methods::er`), so the ER study
//! compares objectives on one network. Only the online backbone is exported.

use anyhow::{Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::ema::Ema;
use super::{features, Objective, Parts, StepLoss, Trains};
use crate::losses::{self, l2_normalize};
use crate::nn::heads::{Mlp, Prototypes, Style};
use crate::nn::Encoder;
use crate::plan::DinoParams;

const STYLE: Style = Style::BatchNorm { last_bias: true };
const CENTER_KEY: &str = "dino.center";

pub struct Dino {
    projector: Mlp,
    prototypes: Prototypes,
    target: Ema,
    target_projector: Mlp,
    target_prototypes: Prototypes,
    center: Tensor,
    p: DinoParams,
}

impl Dino {
    pub fn new(root: &nn::Path, feature_dim: i64, p: &DinoParams, make_encoder: &dyn Fn(&nn::Path) -> Result<Encoder>) -> Result<Self> {
        let out = *p.projector.last().unwrap_or(&feature_dim);
        let target = Ema::new(root.device(), make_encoder, p.momentum, "dino.target")?;
        let target_projector = Mlp::new(&(target.method_root() / "projector"), feature_dim, &p.projector, STYLE);
        let target_prototypes = Prototypes::new(&(target.method_root() / "prototypes"), out, p.prototypes);
        Ok(Self {
            projector: Mlp::new(&(root / "projector"), feature_dim, &p.projector, STYLE),
            prototypes: Prototypes::new(&(root / "prototypes"), out, p.prototypes),
            target,
            target_projector,
            target_prototypes,
            center: Tensor::zeros([p.prototypes], (Kind::Float, root.device())),
            p: p.clone(),
        })
    }

    /// The loss from the online features `h1`, `h2` and the two views (for the teacher); moves the
    /// centre as DINO does after each loss.
    pub fn step(&mut self, h1: &Tensor, h2: &Tensor, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let s = |h: &Tensor| self.prototypes.logits(&l2_normalize(&self.projector.forward_t(h, true)));
        let (s1, s2) = (s(h1), s(h2));
        let (t1, t2) = tch::no_grad(|| {
            let t = |v: &Tensor| {
                let z = self.target_projector.forward_t(&self.target.encoder.forward_t(v, true), true);
                self.target_prototypes.logits(&l2_normalize(&z))
            };
            (t(v1), t(v2))
        });
        let out = losses::dino::loss(&s1, &s2, &t1, &t2, &self.center, self.p.student_temperature, self.p.teacher_temperature)?;
        self.center = tch::no_grad(|| losses::dino::updated_center(&self.center, &t1, &t2, self.p.center_momentum));
        Ok(out)
    }
}

impl Objective for Dino {
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
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut s = self.target.state();
        s.push((CENTER_KEY.into(), self.center.detach()));
        s
    }
    fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        self.target.load_state(named).context("loading DINO's teacher")?;
        let (_, c) = named.iter().find(|(k, _)| k == CENTER_KEY).with_context(|| format!("checkpoint lacks {CENTER_KEY}"))?;
        if c.size() != self.center.size() {
            anyhow::bail!("checkpoint's {CENTER_KEY} is {:?}, the suite's head has {} prototypes", c.size(), self.p.prototypes);
        }
        self.center = c.to_device(self.center.device()).to_kind(Kind::Float);
        Ok(())
    }
}

/// `repro loss dino` arguments: the temperatures (one pair, zero centre).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoLoss {
    student_temperature: f64,
    teacher_temperature: f64,
}

impl Default for DinoLoss {
    fn default() -> Self {
        let p = DinoParams::default();
        Self { student_temperature: p.student_temperature, teacher_temperature: p.teacher_temperature }
    }
}

impl Trains for DinoParams {
    type LossArgs = DinoLoss;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(Dino::new(&parts.root, parts.feature_dim, self, parts.make_encoder)?))
    }
    /// z1: student logits, z2: teacher logits [N, K]; centre 0.
    fn loss_on(p: &DinoLoss, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        let k = z1.size().get(1).copied().unwrap_or(0);
        let ce = losses::dino::cross_entropy(z1, z2, &Tensor::zeros([k], (Kind::Float, z1.device())), p.student_temperature, p.teacher_temperature)?;
        Ok(StepLoss { total: ce.shallow_clone(), terms: vec![("cross_entropy", ce)] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::resnet::ResNet;
    use crate::plan::{ResnetDepth, ResnetStem};

    /// The centre moves towards the teacher's logits and survives a state round trip.
    #[test]
    fn the_centre_moves_and_is_checkpointed() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let enc = |r: &nn::Path| -> Result<Encoder> { Ok(Encoder::Resnet(ResNet::new(r, 1, ResnetDepth::R18, ResnetStem::Cifar, 2, false))) };
        let online = enc(&vs.root()).unwrap();
        let p = DinoParams { projector: vec![8, 4], prototypes: 16, ..DinoParams::default() };
        let mut m = Dino::new(&(vs.root() / "method"), online.out_dim(), &p, &enc).unwrap();
        m.target.init(&vs).unwrap();
        let x = Tensor::randn([6, 1, 8, 8], tch::kind::FLOAT_CPU);
        let l = m.loss(&online, &x, &x.flip([3])).unwrap();
        assert!(l.total.double_value(&[]).is_finite() && l.terms[0].0 == "cross_entropy");
        assert!(m.center.abs().sum(Kind::Float).double_value(&[]) > 0.0, "the centre moved");
        let state = m.state();
        assert!(state.iter().any(|(k, _)| k == CENTER_KEY) && state.iter().any(|(k, _)| k.starts_with("dino.target.")));
        let mut fresh = Dino::new(&(vs.root() / "other"), online.out_dim(), &p, &enc).unwrap();
        fresh.load_state(&state).unwrap();
        assert!(fresh.center.equal(&m.center));
        let wrong: Vec<(String, Tensor)> =
            state.iter().map(|(k, t)| (k.clone(), if k == CENTER_KEY { Tensor::zeros([8], tch::kind::FLOAT_CPU) } else { t.shallow_clone() })).collect();
        assert!(fresh.load_state(&wrong).unwrap_err().to_string().contains("16 prototypes"));
    }
}
