//! U-MAE (Zhang, Wang, Wang, "How Mask Matters: Towards Theoretical Understandings of Masked
//! Autoencoders", NeurIPS 2022, arXiv 2210.08344): its `method_params`.

use serde::{Deserialize, Serialize};

use super::mae::{check_masked, needs_vit, DecoderParams};
use super::{About, Check, Params};
use crate::plan::Backbone;

/// U-MAE (`methods::umae`): MAE + λ·uniformity of the cls features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UmaeParams {
    pub mask_ratio: f64,
    pub norm_pix: bool,
    pub decoder: DecoderParams,
    /// Weight of the uniformity term (`--lamb`).
    pub lambda: f64,
}

/// The official defaults: `zhangq327/U-MAE` @ 6a5b6dc0 `pretrain.sh` (`--lamb 0.01`, mask 0.75,
/// `--norm_pix_loss`) with MAE's ViT-B decoder.
impl Default for UmaeParams {
    fn default() -> Self {
        Self { mask_ratio: 0.75, norm_pix: true, decoder: DecoderParams::default(), lambda: 0.01 }
    }
}

impl Params for UmaeParams {
    const NAME: &'static str = "umae";
    const ABOUT: About = About {
        paper: "Zhang, Wang, Wang, NeurIPS 2022, arXiv 2210.08344",
        code: "`zhangq327/U-MAE` @ 6a5b6dc0 (`loss_func.py` `uniformity_loss`)",
        fields: "as `mae`, and `lambda` (0.01)",
        notes: "MAE + λ·mean of the squared cosine similarities of the cls token of the masked input (the final LayerNorm applied again, as the code), diagonal included",
    };

    fn check(&self, c: &mut Check) {
        check_masked(c, self.mask_ratio, &self.decoder);
        c.non_negative("lambda", self.lambda);
    }

    fn refuses(&self, backbone: &Backbone) -> Option<String> {
        needs_vit(Self::NAME, backbone)
    }
}
