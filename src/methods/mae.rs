//! MAE as a method (He et al., CVPR 2022; `facebookresearch/mae` @ efb2a806): a ViT encoder on the
//! visible patches, MAE's decoder, the normalised-pixel loss on removed patches
//! (`methods::masked`, `losses::mae`).

use anyhow::Result;
use tch::Tensor;

use super::masked::{MaskedAutoencoder, Regulariser};
use super::{Objective, Parts, StepLoss, Trains};
use crate::losses::{self, Loss};
use crate::plan::MaeParams;

/// `repro loss mae`: z1 the predicted patches, z2 the target pixels, one patch per row.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaeLossArgs {
    /// Normalise each target row by its mean and unbiased std (MAE's `--norm_pix_loss`: true).
    pub norm_pix: bool,
    /// 1 for each removed row (patch), 0 for a kept one; null: every row counts.
    pub masked: Option<Vec<f64>>,
}

impl Default for MaeLossArgs {
    fn default() -> Self {
        Self { norm_pix: MaeParams::default().norm_pix, masked: None }
    }
}

impl Trains for MaeParams {
    type LossArgs = MaeLossArgs;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        Ok(Box::new(MaskedAutoencoder::new(&parts, &self.decoder, self.mask_ratio, self.norm_pix, Regulariser::None)?))
    }
    fn loss_on(a: &MaeLossArgs, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        let rows = z1.size()[0];
        let mask = match &a.masked {
            Some(m) => {
                if m.len() as i64 != rows {
                    anyhow::bail!("mae: --set masked has {} entries for {rows} rows (patches)", m.len());
                }
                Tensor::from_slice(m).to_kind(tch::Kind::Float)
            }
            None => Tensor::ones([rows], tch::kind::FLOAT_CPU),
        };
        let r = losses::mae::reconstruction(z1, z2, &mask, a.norm_pix)?;
        Ok(Loss { total: r.shallow_clone(), terms: vec![("reconstruction", r)] })
    }
}
