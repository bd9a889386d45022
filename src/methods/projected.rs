//! The shared shape of the methods whose objective is a loss on two projected views (SimCLR, Barlow
//! Twins, VICReg, EMI): backbone features → projector MLP → `losses::<method>`. Each of those
//! methods' files only chooses the projector style and the loss.

use anyhow::Result;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::{features, Objective, StepLoss};
use crate::nn::Encoder;
use crate::nn::heads::{Mlp, Style};

type LossFn = Box<dyn Fn(&Tensor, &Tensor) -> Result<StepLoss>>;

pub struct Projected {
    projector: Mlp,
    loss: LossFn,
}

impl Projected {
    pub fn new(root: &nn::Path, feature_dim: i64, sizes: &[i64], style: Style, loss: LossFn) -> Self {
        Self { projector: Mlp::new(&(root / "projector"), feature_dim, sizes, style), loss }
    }

    /// The loss on the backbone features of the two views.
    pub fn step(&self, h1: &Tensor, h2: &Tensor) -> Result<StepLoss> {
        (self.loss)(&self.projector.forward_t(h1, true), &self.projector.forward_t(h2, true))
    }
}

impl Objective for Projected {
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let (h1, h2) = features(encoder, v1, v2);
        self.step(&h1, &h2)
    }
}
