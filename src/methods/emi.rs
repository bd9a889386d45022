//! EMI as a method: projector of `Linear → BN → ReLU` blocks and a plain last `Linear` → `losses::emi`
//! (−MI from second-order statistics). UNVERIFIED: no official code was found, so the projector
//! style, its sizes and the views are the harness's choices, not the paper's (arXiv 2409.04747).

use tch::nn;

use anyhow::Result;
use tch::Tensor;

use super::projected::Projected;
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::EmiParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &EmiParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::emi::loss(a, b, &p2)))
}

impl Trains for EmiParams {
    type LossArgs = Self;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(new(&parts.root, parts.feature_dim, self)))
    }
    fn loss_on(p: &Self, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        losses::emi::loss(z1, z2, p)
    }
}
