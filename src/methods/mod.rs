//! Methods: a method = backbone + heads + loss (+ its view pipeline). The registry is the one `match`
//! on `plan::Method` in [`Model::new`]; the training loop only sees [`Model`].

pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod emi;
pub mod projected;
pub mod simclr;
pub mod vicreg;

use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::nn::resnet::ResNet18;
use crate::plan::{Arch, Method, Target};

/// A loss and its named terms for logging.
pub use crate::losses::Loss as StepLoss;

enum Objective {
    CorInfoMax(corinfomax::CorInfoMax),
    /// SimCLR, Barlow Twins, VICReg, EMI: projector + loss.
    Projected(projected::Projected),
    Byol(Box<byol::Byol>),
    None,
}

/// Everything a target trains: the encoder (exported later) and the method's training-only parts.
pub struct Model {
    pub vs: nn::VarStore,
    pub encoder: ResNet18,
    objective: Objective,
}

impl Model {
    /// Builds the variables on `device`; `in_channels` comes from the dataset.
    pub fn new(t: &Target, in_channels: i64, device: tch::Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let make_encoder = |r: &nn::Path| match t.backbone.arch {
            Arch::Resnet18 => ResNet18::new(r, in_channels, t.backbone.width, t.backbone.zero_init_residual),
        };
        let encoder = make_encoder(&root);
        let (m, d) = (&root / "method", encoder.out_dim());
        let objective = match &t.method {
            Method::CorInfoMax(p) => Objective::CorInfoMax(corinfomax::CorInfoMax::new(&m, d, p)),
            Method::Simclr(p) => Objective::Projected(simclr::new(&m, d, p)),
            Method::BarlowTwins(p) => Objective::Projected(barlow_twins::new(&m, d, p)),
            Method::Vicreg(p) => Objective::Projected(vicreg::new(&m, d, p)),
            Method::Emi(p) => Objective::Projected(emi::new(&m, d, p)),
            Method::Byol(p) => Objective::Byol(Box::new(byol::Byol::new(&m, d, p, make_encoder))),
            Method::RandomInit => Objective::None,
        };
        let mut model = Self { vs, encoder, objective };
        if let Objective::Byol(b) = &mut model.objective {
            b.init_target(&model.vs)?;
        }
        Ok(model)
    }

    /// After each optimizer step (`step` of `total`, 0-based): the methods' own updates (BYOL's EMA).
    pub fn after_step(&mut self, step: usize, total: usize) -> Result<()> {
        match &mut self.objective {
            Objective::Byol(b) => b.after_step(&self.vs, step, total),
            _ => Ok(()),
        }
    }

    /// The SSL loss for two augmented, normalised views.
    pub fn loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let h1 = self.encoder.forward_t(v1, true);
        let h2 = self.encoder.forward_t(v2, true);
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.step(&h1, &h2),
            Objective::Projected(m) => m.step(&h1, &h2),
            Objective::Byol(m) => m.step(&h1, &h2, v1, v2),
            Objective::None => bail!("this method has no training objective"),
        }
    }

    /// Non-variable method state (running statistics) for checkpoints.
    pub fn method_state(&self) -> Vec<(String, Tensor)> {
        match &self.objective {
            Objective::CorInfoMax(m) => m.state(),
            Objective::Byol(m) => m.state(),
            Objective::Projected(_) | Objective::None => Vec::new(),
        }
    }

    pub fn load_method_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.load_state(named),
            Objective::Byol(m) => m.load_state(named),
            Objective::Projected(_) | Objective::None => Ok(()),
        }
    }
}
