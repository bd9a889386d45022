//! Batched view augmentation on tensors (the same code path on CPU and GPU, nothing per image in
//! Rust): random resized crop and horizontal flip as one affine resampling per image
//! (`affine_grid` + bilinear `grid_sample` with reflection padding), then normalisation.
//!
//! Random resized crop samples area fraction s ~ U(scale) and log-aspect ~ U(log ratio) like
//! torchvision's `RandomResizedCrop`; where torchvision retries up to 10 times when the box does
//! not fit, we clamp the box's sides to the image (the crop is then slightly less extreme).
//! Randomness comes from libtorch's generator, seeded by the training loop.

use tch::{Device, Kind, Tensor};

use crate::plan::Augment;

/// Per-channel normalisation constants on a device, shaped [1, C, 1, 1].
pub struct Normalize {
    mean: Tensor,
    std: Tensor,
}

impl Normalize {
    pub fn new(mean: &[f32], std: &[f32], device: Device) -> Self {
        let c = mean.len() as i64;
        Self {
            mean: Tensor::from_slice(mean).reshape([1, c, 1, 1]).to_device(device),
            std: Tensor::from_slice(std).reshape([1, c, 1, 1]).to_device(device),
        }
    }

    /// uint8 [N, C, H, W] → normalised float32.
    pub fn apply_u8(&self, x: &Tensor) -> Tensor {
        self.apply(&(x.to_kind(Kind::Float) / 255.0))
    }

    /// float32 in [0, 1] → normalised.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        (x - &self.mean) / &self.std
    }
}

/// One random view of every image in the batch.
///
/// # Shapes
/// `x`: float32 [N, C, H, W] in [0, 1] → [N, C, H, W].
pub fn random_view(x: &Tensor, a: &Augment) -> Tensor {
    let size = x.size();
    let (n, dev) = (size[0], x.device());
    let opts = (Kind::Float, dev);
    let area = Tensor::empty([n], opts).uniform_(a.crop_scale[0], a.crop_scale[1]);
    let log_ratio = Tensor::empty([n], opts).uniform_(a.crop_ratio[0].ln(), a.crop_ratio[1].ln());
    let ratio = log_ratio.exp();
    // Side lengths as fractions of the image; in affine_grid coordinates the image spans [-1, 1].
    let sw = (&area * &ratio).sqrt().clamp_max(1.0);
    let sh = (&area / &ratio).sqrt().clamp_max(1.0);
    let cx = (Tensor::rand([n], opts) * 2.0 - 1.0) * (1.0 - &sw);
    let cy = (Tensor::rand([n], opts) * 2.0 - 1.0) * (1.0 - &sh);
    let flip = Tensor::rand([n], opts).lt(a.hflip).to_kind(Kind::Float) * -2.0 + 1.0; // ±1
    let zeros = Tensor::zeros([n], opts);
    let theta = Tensor::stack(&[&sw * &flip, zeros.shallow_clone(), cx, zeros, sh, cy], 1).reshape([n, 2, 3]);
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    // interpolation 0 = bilinear, padding 2 = reflection
    x.grid_sampler_2d(&grid, 0, 2, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aug(scale: [f64; 2], hflip: f64) -> Augment {
        Augment { crop_scale: scale, crop_ratio: [1.0, 1.0], hflip }
    }

    #[test]
    fn identity_crop_and_certain_flip() {
        let x = Tensor::rand([4, 1, 8, 8], tch::kind::FLOAT_CPU);
        let same = random_view(&x, &aug([1.0, 1.0], 0.0));
        assert!(f64::try_from((&same - &x).abs().max()).unwrap() < 1e-5);
        let flipped = random_view(&x, &aug([1.0, 1.0], 1.0));
        assert!(f64::try_from((&flipped - x.flip([3])).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn crops_differ_per_image_and_are_seeded() {
        let x = Tensor::rand([1, 1, 16, 16], tch::kind::FLOAT_CPU).repeat([6, 1, 1, 1]);
        tch::manual_seed(3);
        let a = random_view(&x, &aug([0.2, 0.6], 0.5));
        tch::manual_seed(3);
        let b = random_view(&x, &aug([0.2, 0.6], 0.5));
        assert!(a.equal(&b));
        assert!(f64::try_from((a.get(0) - a.get(1)).abs().max()).unwrap() > 1e-3);
    }
}
