//! Barlow Twins as a method: projector of `Linear(bias=False) → BN → ReLU` blocks and a bias-free last
//! `Linear` (`facebookresearch/barlowtwins` `main.py`) → `losses::barlow_twins`. Views: the suite's
//! `augment:` block (the paper's are BYOL's asymmetric views: blur 1.0/0.1, solarize 0/0.2).
//! Deviation: the hidden Linears keep a bias (BatchNorm right after makes it redundant).

use tch::nn;

use anyhow::Result;
use tch::Tensor;

use super::projected::Projected;
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::BarlowTwinsParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &BarlowTwinsParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: false }, Box::new(move |a, b| losses::barlow_twins::loss(a, b, &p2)))
}

impl Trains for BarlowTwinsParams {
    type LossArgs = Self;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(new(&parts.root, parts.feature_dim, self)))
    }
    fn loss_on(p: &Self, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        losses::barlow_twins::loss(z1, z2, p)
    }
}
