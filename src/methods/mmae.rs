//! M-MAE as a method (Tan et al., ICML 2024; `yifanzhang-pro/M-MAE`): MAE (`methods::masked`) +
//! λ·TCR of the cls features (`losses::mae::tcr`).

use anyhow::Result;
use tch::Tensor;

use super::masked::{MaskedAutoencoder, Regulariser};
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses;
use crate::plan::MmaeParams;

impl Trains for MmaeParams {
    type LossArgs = Self;
    const ONE_INPUT: bool = true;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        let reg = Regulariser::Tcr { lambda: self.lambda, mu: self.mu, centering: self.centering };
        Ok(Box::new(MaskedAutoencoder::new(&parts, &self.decoder, self.mask_ratio, self.norm_pix, reg)?))
    }
    /// λ·TCR of the cls features z1 (the reconstruction is `repro loss mae`'s).
    fn loss_on(p: &Self, z1: &Tensor, _: &Tensor) -> Result<StepLoss> {
        Ok(losses::mae::weighted("tcr", losses::mae::tcr(z1, p.mu, p.centering)?, p.lambda))
    }
}
