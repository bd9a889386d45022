//! The masked auto-encoders' shared training part (MAE, U-MAE, M-MAE): MAE's light decoder and the
//! step `facebookresearch/mae` @ efb2a806 takes (`models_mae.py` `forward`): the ViT encodes the
//! visible patches of one view (`nn::vit::Vit::forward_masked`), the decoder embeds them to its
//! width, appends a learned mask token for each removed patch, restores the patch order, adds its
//! own fixed sin-cos position embedding (cls row zeros), runs its blocks and a final LayerNorm and
//! predicts each patch's p²·C pixels; the loss is `losses::mae::reconstruction` on the removed
//! patches, plus λ·regulariser of the cls token of the masked input with the final LayerNorm applied
//! again (`self.norm(latent)[:, 0]`, not detached) for U-MAE and M-MAE. The decoder is initialised
//! as MAE's (Xavier-uniform Linear weights, zero biases, mask token N(0, 0.02)). Only the encoder is
//! exported; the decoder lives under `method.` in the checkpoint. MAE trains on one view: the
//! second view the loop could draw is not asked for ([`super::Objective::views`]).

use anyhow::{bail, Result};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::{Objective, Parts, StepLoss};
use crate::losses::mae as loss;
use crate::nn::vit::{self, Block, Vit};
use crate::nn::Encoder;
use crate::plan::DecoderParams;

/// What is added to the reconstruction, on the cls features of the masked input.
#[derive(Debug, Clone, Copy)]
pub enum Regulariser {
    None,
    /// U-MAE: λ·uniformity.
    Uniformity {
        lambda: f64,
    },
    /// M-MAE: λ·TCR.
    Tcr {
        lambda: f64,
        mu: f64,
        centering: bool,
    },
}

pub struct MaskedAutoencoder {
    embed: nn::Linear,
    mask_token: Tensor,
    /// [1, 1 + L, width], fixed.
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    pred: nn::Linear,
    mask_ratio: f64,
    norm_pix: bool,
    regulariser: Regulariser,
}

fn vit_of(encoder: &Encoder) -> Result<&Vit> {
    match encoder {
        Encoder::Vit(v) => Ok(v),
        _ => bail!("the masked auto-encoders train a ViT encoder (backbone arch: vit)"),
    }
}

impl MaskedAutoencoder {
    pub fn new(parts: &Parts, decoder: &DecoderParams, mask_ratio: f64, norm_pix: bool, regulariser: Regulariser) -> Result<Self> {
        let v = vit_of(parts.encoder)?;
        let root = &parts.root;
        let w = decoder.width;
        let (grid, patch) = (v.grid(), v.patch_size());
        let pos = Tensor::cat(&[Tensor::zeros([1, w], tch::kind::FLOAT_CPU), vit::sincos_2d(w, grid)], 0).unsqueeze(0).to_device(root.device());
        Ok(Self {
            embed: vit::linear(root, "decoder_embed", v.out_dim(), w),
            mask_token: root.var("mask_token", &[1, 1, w], nn::Init::Randn { mean: 0.0, stdev: 0.02 }),
            pos_embed: pos,
            blocks: (0..decoder.depth).map(|i| Block::new(root, &format!("decoder_blocks.{i}"), w, decoder.heads)).collect(),
            norm: vit::layer_norm(root, "decoder_norm", w),
            pred: vit::linear(root, "decoder_pred", w, patch * patch * v.in_channels()),
            mask_ratio,
            norm_pix,
            regulariser,
        })
    }

    /// MAE's `forward_decoder`: latent [N, 1 + K, D] and `ids_restore` [N, L] → predictions [N, L, p²C].
    fn decode(&self, latent: &Tensor, ids_restore: &Tensor) -> Tensor {
        let x = latent.apply(&self.embed);
        let (n, k1, w) = x.size3().unwrap_or((0, 0, 0));
        let l = ids_restore.size()[1];
        let tokens = Tensor::cat(&[x.narrow(1, 1, k1 - 1), self.mask_token.expand([n, l + 1 - k1, w], true)], 1);
        let tokens = tokens.gather(1, &ids_restore.unsqueeze(-1).expand([n, l, w], true), false);
        let mut x = Tensor::cat(&[x.narrow(1, 0, 1), tokens], 1) + &self.pos_embed;
        for b in &self.blocks {
            x = b.forward(&x);
        }
        self.norm.forward(&x).apply(&self.pred).narrow(1, 1, l)
    }

    /// The loss of one view `v` (normalised images): reconstruction (+ λ·regulariser).
    pub fn step(&self, v: &Vit, images: &Tensor) -> Result<StepLoss> {
        let m = v.forward_masked(images, self.mask_ratio);
        let pred = self.decode(&m.latent, &m.ids_restore);
        let target = loss::patchify(images, v.patch_size())?;
        let reconstruction = loss::reconstruction(&pred, &target, &m.mask, self.norm_pix)?;
        let cls = || v.renorm(&m.latent).select(1, 0);
        let (name, reg, lambda) = match self.regulariser {
            Regulariser::None => return Ok(StepLoss { total: reconstruction.shallow_clone(), terms: vec![("reconstruction", reconstruction)] }),
            Regulariser::Uniformity { lambda } => ("uniformity", loss::uniformity(&cls())?, lambda),
            Regulariser::Tcr { lambda, mu, centering } => ("tcr", loss::tcr(&cls(), mu, centering)?, lambda),
        };
        let total = &reconstruction + &reg * lambda;
        Ok(StepLoss { total, terms: vec![("reconstruction", reconstruction), (name, reg)] })
    }
}

impl Objective for MaskedAutoencoder {
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, _v2: &Tensor) -> Result<StepLoss> {
        self.step(vit_of(encoder)?, &v1.to_kind(Kind::Float))
    }

    fn views(&self) -> usize {
        1
    }

    fn encoder_macs_per_image(&self, encoder: &Encoder, in_channels: i64, image_size: i64, device: tch::Device) -> Result<u64> {
        let v = vit_of(encoder)?;
        let x = Tensor::zeros([1, in_channels, image_size, image_size], (Kind::Float, device));
        Ok(crate::nn::count_macs(|| {
            let _ = tch::no_grad(|| v.forward_masked(&x, self.mask_ratio));
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each masked auto-encoder trains a tiny ViT on a fixed batch: its loss falls, the decoder's
    /// variables exist under `method.`, and the regularisers' terms are logged.
    #[test]
    fn every_variant_trains_on_a_fixed_batch() {
        let _rng = crate::rng_lock();
        for (reg, term) in
            [(Regulariser::None, None), (Regulariser::Uniformity { lambda: 0.01 }, Some("uniformity")), (Regulariser::Tcr { lambda: 0.01, mu: 3.0, centering: false }, Some("tcr"))]
        {
            tch::manual_seed(0);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let backbone = crate::plan::Backbone::Vit { size: crate::plan::VitSize::Tiny, depth: Some(1), patch_size: 4, pool: crate::plan::VitPool::Cls };
            let make = |r: &nn::Path| Encoder::new(r, &backbone, 1, 16);
            let encoder = make(&vs.root()).unwrap();
            let parts = Parts { root: vs.root() / "method", feature_dim: encoder.out_dim(), encoder: &encoder, backbone: &backbone, make_encoder: &make };
            let mut m = MaskedAutoencoder::new(&parts, &DecoderParams { width: 32, depth: 1, heads: 2 }, 0.75, true, reg).unwrap();
            assert!(vs.variables().contains_key("method.decoder_blocks.0.attn.qkv.weight"));
            assert_eq!(m.views(), 1);
            let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-3).unwrap();
            let x = Tensor::randn([8, 1, 16, 16], tch::kind::FLOAT_CPU);
            let (mut first, mut last) = (0.0, 0.0);
            for i in 0..30 {
                tch::manual_seed(1); // the same masks every step: a fixed problem
                let out = m.loss(&encoder, &x, &x).unwrap();
                assert_eq!(out.terms.iter().map(|t| t.0).nth(1), term);
                last = out.total.double_value(&[]);
                if i == 0 {
                    first = last;
                }
                opt.backward_step(&out.total);
            }
            assert!(last < 0.8 * first, "{reg:?}: {first} -> {last}");
        }
    }

    /// The encoder's training MACs count the masked pass: the patch embedding over all 16 patches of
    /// a 16 px image at patch 4, then one block over the cls token and the 4 kept patches.
    #[test]
    fn training_macs_count_only_the_kept_patches() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let backbone = crate::plan::Backbone::Vit { size: crate::plan::VitSize::Tiny, depth: Some(1), patch_size: 4, pool: crate::plan::VitPool::Cls };
        let make = |r: &nn::Path| Encoder::new(r, &backbone, 1, 16);
        let encoder = make(&vs.root()).unwrap();
        let parts = Parts { root: vs.root() / "method", feature_dim: encoder.out_dim(), encoder: &encoder, backbone: &backbone, make_encoder: &make };
        let m = MaskedAutoencoder::new(&parts, &DecoderParams { width: 32, depth: 1, heads: 2 }, 0.75, true, Regulariser::None).unwrap();
        let (d, patch) = (192u64, 16 * 192 * 16);
        let block = |l: u64| l * 12 * d * d + 2 * l * l * d;
        assert_eq!(m.encoder_macs_per_image(&encoder, 1, 16, tch::Device::Cpu).unwrap(), patch + block(5));
        assert_eq!(encoder.macs_per_image(1, 16, tch::Device::Cpu), patch + block(17));
    }
}
