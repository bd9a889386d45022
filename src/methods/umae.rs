//! U-MAE as a method (Zhang, Wang, Wang, NeurIPS 2022; `zhangq327/U-MAE` @ 6a5b6dc0): MAE
//! (`methods::masked`) + λ·uniformity of the cls features (`losses::mae::uniformity`).

use anyhow::Result;
use tch::Tensor;

use super::masked::{MaskedAutoencoder, Regulariser};
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::plan::UmaeParams;

impl Trains for UmaeParams {
    type LossArgs = Self;
    const ONE_INPUT: bool = true;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(MaskedAutoencoder::new(&parts, &self.decoder, self.mask_ratio, self.norm_pix, Regulariser::Uniformity { lambda: self.lambda })?))
    }
    /// λ·uniformity of the cls features z1 (the reconstruction is `repro loss mae`'s).
    fn loss_on(p: &Self, z1: &Tensor, _: &Tensor) -> Result<StepLoss> {
        Ok(losses::mae::weighted("uniformity", losses::mae::uniformity(z1)?, p.lambda))
    }
}
