//! Methods: a method = backbone + heads + loss (+ its view pipeline). The registry is the one `match`
//! on `plan::Method` in [`Model::new`]; the training loop only sees [`Model`].

pub mod corinfomax;

use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::nn::resnet::ResNet18;
use crate::plan::{Arch, Method, Target};

/// A loss and its named terms for logging.
pub use crate::losses::Loss as StepLoss;

enum Objective {
    CorInfoMax(corinfomax::CorInfoMax),
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
    pub fn new(t: &Target, in_channels: i64, device: tch::Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = match t.backbone.arch {
            Arch::Resnet18 => ResNet18::new(&root, in_channels, t.backbone.width, t.backbone.zero_init_residual),
        };
        let objective = match &t.method {
            Method::CorInfoMax(p) => Objective::CorInfoMax(corinfomax::CorInfoMax::new(&(&root / "method"), encoder.out_dim(), p)),
            Method::RandomInit => Objective::None,
        };
        Self { vs, encoder, objective }
    }

    /// The SSL loss for two augmented, normalised views.
    pub fn loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let h1 = self.encoder.forward_t(v1, true);
        let h2 = self.encoder.forward_t(v2, true);
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.step(&h1, &h2),
            Objective::None => bail!("this method has no training objective"),
        }
    }

    /// Non-variable method state (running statistics) for checkpoints.
    pub fn method_state(&self) -> Vec<(String, Tensor)> {
        match &self.objective {
            Objective::CorInfoMax(m) => m.state(),
            Objective::None => Vec::new(),
        }
    }

    pub fn load_method_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.load_state(named),
            Objective::None => Ok(()),
        }
    }
}
