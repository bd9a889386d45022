//! VICReg as a method: expander of `Linear → BN → ReLU` blocks and a plain last `Linear`
//! (`facebookresearch/vicreg` `main_vicreg.py`, `Projector`) → `losses::vicreg`. Views: the suite's
//! `augment:` block (the paper's: BYOL's asymmetric views).

use tch::nn;

use anyhow::Result;
use tch::Tensor;

use super::projected::Projected;
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::VicregParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &VicregParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::vicreg::loss(a, b, &p2)))
}

impl Trains for VicregParams {
    type LossArgs = Self;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(new(&parts.root, parts.feature_dim, self)))
    }
    fn loss_on(p: &Self, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        losses::vicreg::loss(z1, z2, p)
    }
}
