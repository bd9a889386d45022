//! Methods: a method = backbone + heads + loss (+ its view pipeline). The registry is the one `match`
//! on `plan::Method` in [`Model::new`]; the training loop only sees [`Model`].

pub mod amdim;
pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod ema;
pub mod emi;
pub mod er;
pub mod projected;
pub mod simclr;
pub mod vicreg;

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::nn::Encoder;
use crate::plan::{Backbone, Method, Target};

/// A loss and its named terms for logging.
pub use crate::losses::Loss as StepLoss;

enum Objective {
    CorInfoMax(corinfomax::CorInfoMax),
    /// SimCLR, Barlow Twins, VICReg, EMI: projector + loss.
    Projected(projected::Projected),
    Byol(Box<byol::Byol>),
    Amdim(amdim::Amdim),
    Er(Box<er::Er>),
    None,
}

impl Objective {
    /// The EMA target, for methods that keep one.
    fn ema_mut(&mut self) -> Option<&mut ema::Ema> {
        match self {
            Objective::Byol(b) => Some(&mut b.target),
            Objective::Er(e) => e.target_mut(),
            _ => None,
        }
    }
}

/// Everything a target trains: the encoder (exported later) and the method's training-only parts.
pub struct Model {
    pub vs: nn::VarStore,
    pub encoder: Encoder,
    objective: Objective,
}

impl Model {
    /// Builds the variables on `device`; `in_channels` and `image_size` come from the dataset.
    pub fn new(t: &Target, in_channels: i64, image_size: usize, device: tch::Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let make_encoder = |r: &nn::Path| Encoder::new(r, &t.backbone, in_channels, image_size);
        let encoder = make_encoder(&root)?;
        let (m, d) = (&root / "method", encoder.out_dim());
        let objective = match &t.method {
            Method::CorInfoMax(p) => Objective::CorInfoMax(corinfomax::CorInfoMax::new(&m, d, p)),
            Method::Simclr(p) => Objective::Projected(simclr::new(&m, d, p)),
            Method::BarlowTwins(p) => Objective::Projected(barlow_twins::new(&m, d, p)),
            Method::Vicreg(p) => Objective::Projected(vicreg::new(&m, d, p)),
            Method::Emi(p) => Objective::Projected(emi::new(&m, d, p)),
            Method::Byol(p) => Objective::Byol(Box::new(byol::Byol::new(&m, d, p, &make_encoder)?)),
            Method::Er(p) => Objective::Er(Box::new(er::Er::new(&m, d, p, &make_encoder)?)),
            Method::Amdim(p) => {
                let (Encoder::Amdim(a), Backbone::Amdim { n_rkhs, use_bn, .. }) = (&encoder, &t.backbone) else {
                    bail!("method amdim needs backbone.arch: amdim (its loss reads the encoder's 5x5 and 7x7 maps)");
                };
                Objective::Amdim(amdim::Amdim::new(&m, a.map_channels(), *n_rkhs, *use_bn, p))
            }
            Method::RandomInit => Objective::None,
        };
        let mut model = Self { vs, encoder, objective };
        if let Some(target) = model.objective.ema_mut() {
            target.init(&model.vs)?;
        }
        Ok(model)
    }

    /// After each optimizer step (`step` of `total`, 0-based): the methods' own updates (EMA targets).
    pub fn after_step(&mut self, step: usize, total: usize) -> Result<()> {
        if let Some(target) = self.objective.ema_mut() {
            target.after_step(step, total);
        }
        Ok(())
    }

    /// The SSL loss for two augmented, normalised views.
    pub fn loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        if let (Objective::Amdim(m), Encoder::Amdim(e)) = (&self.objective, &self.encoder) {
            // Two encoder calls, so BatchNorm statistics are per view, as the official model.
            return m.step(&e.maps(v1, true), &e.maps(v2, true));
        }
        let h1 = self.encoder.forward_t(v1, true);
        let h2 = self.encoder.forward_t(v2, true);
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.step(&h1, &h2),
            Objective::Projected(m) => m.step(&h1, &h2),
            Objective::Byol(m) => m.step(&h1, &h2, v1, v2),
            Objective::Er(m) => m.step(&h1, &h2, v1, v2),
            Objective::Amdim(_) => bail!("method amdim needs backbone.arch: amdim"),
            Objective::None => bail!("this method has no training objective"),
        }
    }

    /// Non-variable method state (running statistics, EMA targets) for checkpoints.
    pub fn method_state(&self) -> Vec<(String, Tensor)> {
        match &self.objective {
            Objective::CorInfoMax(m) => m.state(),
            Objective::Byol(m) => m.target.state(),
            Objective::Er(m) => m.target().map(|t| t.state()).unwrap_or_default(),
            Objective::Projected(_) | Objective::Amdim(_) | Objective::None => Vec::new(),
        }
    }

    pub fn load_method_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        if let Objective::CorInfoMax(m) = &mut self.objective {
            return m.load_state(named);
        }
        match self.objective.ema_mut() {
            Some(t) => t.load_state(named).context("loading the EMA target"),
            None => Ok(()),
        }
    }
}
