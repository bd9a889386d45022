//! CorInfoMax as a method: the backbone's features → projector MLP → optional L2 normalisation →
//! `losses::corinfomax` with per-branch running mean and covariance kept across steps.
//! Reference: `serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/pretrain_base.py`.

use anyhow::{Context, Result};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use super::{features, Objective, Parts, StepLoss, Trains};
use crate::losses::corinfomax::{self as loss, BranchState};
use crate::nn::heads::{Mlp, Style};
use crate::nn::Encoder;
use crate::plan::CorInfoMaxParams;

pub struct CorInfoMax {
    projector: Mlp,
    states: [BranchState; 2],
    params: CorInfoMaxParams,
}

impl CorInfoMax {
    pub fn new(root: &nn::Path, feature_dim: i64, params: &CorInfoMaxParams) -> Self {
        let d = *params.projector.last().unwrap_or(&feature_dim);
        let dev = root.device();
        Self {
            projector: Mlp::new(&(root / "projector"), feature_dim, &params.projector, Style::Plain),
            states: [BranchState::new(d, params.r_ini, dev), BranchState::new(d, params.r_ini, dev)],
            params: params.clone(),
        }
    }

    fn project(&self, h: &Tensor) -> Tensor {
        let z = self.projector.forward_t(h, true);
        if self.params.normalize {
            let norm = z.square().sum_dim_intlist(1, true, Kind::Float).sqrt().clamp_min(1e-12);
            z / norm
        } else {
            z
        }
    }

    /// Loss on the backbone features of the two views; updates the running statistics.
    pub fn step(&mut self, h1: &Tensor, h2: &Tensor) -> Result<StepLoss> {
        let (z1, z2) = (self.project(h1), self.project(h2));
        loss::check_inputs(&z1, &z2, &self.states)?;
        let out = loss::loss(&z1, &z2, &self.states, &self.params);
        self.states = out.next;
        Ok(StepLoss { total: out.total, terms: vec![("invariance", out.invariance), ("covariance", out.covariance)] })
    }

    /// Running statistics to checkpoint.
    fn running_state(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (b, s) in self.states.iter().enumerate() {
            v.push((format!("corinfomax.mu{}", b + 1), s.mu.shallow_clone()));
            v.push((format!("corinfomax.r{}", b + 1), s.r.shallow_clone()));
        }
        v
    }

    fn load_running_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let dev = self.states[0].r.device();
        let get = |k: &str| -> Result<Tensor> {
            named.iter().find(|(n, _)| n == k).map(|(_, t)| t.to_device(dev)).with_context(|| format!("checkpoint lacks {k}"))
        };
        self.states = [
            BranchState { mu: get("corinfomax.mu1")?, r: get("corinfomax.r1")? },
            BranchState { mu: get("corinfomax.mu2")?, r: get("corinfomax.r2")? },
        ];
        Ok(())
    }
}

impl Objective for CorInfoMax {
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let (h1, h2) = features(encoder, v1, v2);
        self.step(&h1, &h2)
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.running_state()
    }
    fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        self.load_running_state(named)
    }
}

impl Trains for CorInfoMaxParams {
    type LossArgs = Self;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(CorInfoMax::new(&parts.root, parts.feature_dim, self)))
    }
    /// From a fresh state (R_ini·I, zero mean); the embeddings are used as given.
    fn loss_on(p: &Self, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        let d = z1.size().get(1).copied().unwrap_or(0);
        let states = [BranchState::new(d, p.r_ini, z1.device()), BranchState::new(d, p.r_ini, z1.device())];
        loss::check_inputs(z1, z2, &states)?;
        let out = loss::loss(z1, z2, &states, p);
        Ok(StepLoss { total: out.total, terms: vec![("invariance", out.invariance), ("covariance", out.covariance)] })
    }
}
