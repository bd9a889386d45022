//! M-MAE (Tan, Yang, Huang, Yuan, Zhang, "Information Flow in Self-Supervised Learning", ICML 2024,
//! arXiv 2309.17281): its `method_params`.

use serde::{Deserialize, Serialize};

use super::mae::{check_masked, needs_vit, DecoderParams};
use super::{About, Check, Params};
use crate::plan::Backbone;

/// M-MAE (`methods::mmae`): MAE + λ·(−log det(I + (μ/d)·ZᵀZ)) on the cls features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmaeParams {
    pub mask_ratio: f64,
    pub norm_pix: bool,
    pub decoder: DecoderParams,
    /// Weight of the matrix-entropy (TCR) term (`--lamb`).
    pub lambda: f64,
    /// μ of the TCR term (`--uniformity_mu`).
    pub mu: f64,
    /// Centre the features first (ZᵀJZ, `--centering`).
    pub centering: bool,
}

/// The official defaults: `yifanzhang-pro/M-MAE` `pretrain.sh` (`--reg TCR --lamb 1e-2
/// --uniformity_mu 3`, mask 0.75, `--norm_pix_loss`) with MAE's ViT-B decoder. `--centering False`
/// in that script is ambiguous (a `type=bool` flag before commit 7e5c375, which makes it true; an
/// argparse error after it); the default here is off, the script's evident intent.
impl Default for MmaeParams {
    fn default() -> Self {
        Self { mask_ratio: 0.75, norm_pix: true, decoder: DecoderParams::default(), lambda: 0.01, mu: 3.0, centering: false }
    }
}

impl Params for MmaeParams {
    const NAME: &'static str = "mmae";
    const ABOUT: About = About {
        paper: "Tan et al., ICML 2024, arXiv 2309.17281",
        code: "`yifanzhang-pro/M-MAE` (`loss_func.py` `uniformity_loss_TCR`, `models_mae.py`)",
        fields: "as `mae`, and `lambda` (0.01), `mu` (3), `centering` (false)",
        notes: "MAE + λ·(−log det(I + (μ/d)·ZᵀZ)) on the L2-normalised cls token of the masked input, float64; as the code: μ/d (not μ/m), no ε, no ½. The code's online linear head (detached, no effect on the encoder) is left out; its `--centering False` is ambiguous (off here)",
    };

    fn check(&self, c: &mut Check) {
        check_masked(c, self.mask_ratio, &self.decoder);
        c.non_negative("lambda", self.lambda);
        c.positive("mu", self.mu);
    }

    fn refuses(&self, backbone: &Backbone) -> Option<String> {
        needs_vit(Self::NAME, backbone)
    }
}
