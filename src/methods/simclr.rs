//! SimCLR as a method: projector `Linear → BN → ReLU → Linear` (solo-learn `solo/methods/simclr.py`;
//! the paper's 2-layer MLP head, arXiv 2002.05709 §2.1) → NT-Xent (`losses::simclr`). Views: the
//! suite's `augment:` block (the paper's crop, flip, colour jitter, grayscale and blur).

use tch::nn;

use anyhow::Result;
use tch::Tensor;

use super::projected::Projected;
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::SimclrParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &SimclrParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::simclr::loss(a, b, &p2)))
}

impl Trains for SimclrParams {
    type LossArgs = Self;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(new(&parts.root, parts.feature_dim, self)))
    }
    fn loss_on(p: &Self, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        losses::simclr::loss(z1, z2, p)
    }
}
