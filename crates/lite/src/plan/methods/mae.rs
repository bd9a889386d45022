//! MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022, arXiv 2111.06377):
//! its `method_params`, and the masked auto-encoder settings U-MAE and M-MAE share.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};
use crate::plan::Backbone;

/// MAE (`methods::mae`): masking, target and decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaeParams {
    /// Fraction of each image's patches removed before the encoder (0.75).
    pub mask_ratio: f64,
    /// Reconstruct each patch's pixels normalised by its own mean and std (MAE's `--norm_pix_loss`).
    pub norm_pix: bool,
    pub decoder: DecoderParams,
}

/// MAE's light decoder: `width`-wide pre-norm blocks over all tokens (mask tokens included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderParams {
    pub width: i64,
    pub depth: usize,
    pub heads: i64,
}

/// The ViT-B decoder of `facebookresearch/mae` @ efb2a806 (`models_mae.py` `mae_vit_base_patch16_dec512d8b`:
/// 512 wide, 8 blocks, 16 heads); mask ratio 0.75 and `--norm_pix_loss` from `PRETRAIN.md`.
impl Default for DecoderParams {
    fn default() -> Self {
        Self { width: 512, depth: 8, heads: 16 }
    }
}

/// The official defaults: `main_pretrain.py --mask_ratio 0.75 --norm_pix_loss` with the ViT-B decoder.
impl Default for MaeParams {
    fn default() -> Self {
        Self { mask_ratio: 0.75, norm_pix: true, decoder: DecoderParams::default() }
    }
}

/// The checks every masked auto-encoder's parameters share.
pub fn check_masked(c: &mut Check, mask_ratio: f64, decoder: &DecoderParams) {
    if !(mask_ratio > 0.0 && mask_ratio < 1.0) {
        c.push("mask_ratio", format!("expected a fraction strictly between 0 and 1, found {mask_ratio}"));
    }
    if decoder.width < 1 || decoder.heads < 1 || decoder.width % decoder.heads != 0 {
        c.push("decoder", format!("expected a positive width divisible by heads, found width {} and heads {}", decoder.width, decoder.heads));
    }
    if decoder.depth < 1 {
        c.push("decoder.depth", "expected at least 1 block");
    }
}

/// Masked auto-encoders need a ViT (its patches are what is masked).
pub fn needs_vit(name: &str, backbone: &Backbone) -> Option<String> {
    match backbone {
        Backbone::Vit { .. } => None,
        other => Some(format!("{name} masks the patches of a ViT; backbone {} has none: use backbone: {{arch: vit, size: tiny, patch_size: 4, pool: cls}}", other.label())),
    }
}

impl Params for MaeParams {
    const NAME: &'static str = "mae";
    const ABOUT: About = About {
        paper: "He et al., CVPR 2022, arXiv 2111.06377",
        code: "`facebookresearch/mae` @ efb2a806 (`models_mae.py`, `engine_pretrain.py`)",
        fields: "`mask_ratio` (0.75), `norm_pix` (true), `decoder`: `{width, depth, heads}` (512, 8, 16)",
        notes: "one view per image (the suite's crop and flip); per-image random masking (argsort of uniform noise), position embedding before masking, decoder with its own fixed sin-cos embedding and a learned mask token, loss on removed patches only; needs `arch: vit`. Small-data suites use a lighter decoder (a stated deviation)",
    };

    fn check(&self, c: &mut Check) {
        check_masked(c, self.mask_ratio, &self.decoder);
    }

    fn refuses(&self, backbone: &Backbone) -> Option<String> {
        needs_vit(Self::NAME, backbone)
    }
}
