//! Batched view augmentation on tensors (the same code path on CPU and GPU, nothing per image in
//! Rust): random resized crop and horizontal flip as one affine resampling per image
//! (`affine_grid` + bilinear `grid_sample` with reflection padding), then colour jitter, Gaussian
//! blur and solarisation with per-image random draws, then normalisation. The two views may use
//! different probabilities (the asymmetric views of the CorInfoMax CIFAR code,
//! `cifars-tiny/transform_utils.py`).
//!
//! Jitter applies brightness, contrast and saturation in that fixed order (torchvision draws a
//! random order) and has no hue term; saturation acts only on 3-channel images. Blur is a separable
//! Gaussian with a per-image σ and a kernel of 2·⌈3σ_max⌉+1 taps (torchvision's PIL blur uses the
//! radius directly; same σ meaning).
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

/// One random view (`view` 0 or 1, for the per-view probabilities) of every image in the batch.
///
/// # Shapes
/// `x`: float32 [N, C, H, W] in [0, 1] → [N, C, H, W] in [0, 1].
pub fn random_view(x: &Tensor, a: &Augment, view: usize) -> Tensor {
    let mut y = crop_flip(x, a);
    if let Some(j) = &a.jitter {
        y = jitter(&y, j);
    }
    if let Some(b) = &a.blur {
        y = blur(&y, b.p[view], b.sigma);
    }
    if let Some(s) = &a.solarize {
        y = solarize(&y, s.p[view], s.threshold);
    }
    y
}

/// Per-image Bernoulli(p) mask shaped [N, 1, 1, 1] (float 0/1).
fn coin(n: i64, p: f64, dev: tch::Device) -> Tensor {
    Tensor::rand([n, 1, 1, 1], (Kind::Float, dev)).lt(p).to_kind(Kind::Float)
}

/// Per-image factor drawn from [1 − v, 1 + v] (1 where the coin says no), shaped [N, 1, 1, 1].
fn factor(n: i64, v: f64, on: &Tensor) -> Tensor {
    let f = Tensor::empty([n, 1, 1, 1], (Kind::Float, on.device())).uniform_(1.0 - v, 1.0 + v);
    (f - 1.0) * on + 1.0
}

fn jitter(x: &Tensor, j: &crate::plan::Jitter) -> Tensor {
    let n = x.size()[0];
    let on = coin(n, j.p, x.device());
    let mut y = (x * factor(n, j.brightness, &on)).clamp(0.0, 1.0);
    let gray = |t: &Tensor| -> Tensor {
        if t.size()[1] == 3 {
            let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).reshape([1, 3, 1, 1]).to_device(t.device());
            (t * w).sum_dim_intlist(1, true, Kind::Float)
        } else {
            t.shallow_clone()
        }
    };
    let mean = gray(&y).mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    y = ((&y - &mean) * factor(n, j.contrast, &on) + &mean).clamp(0.0, 1.0);
    if y.size()[1] == 3 && j.saturation > 0.0 {
        let g = gray(&y);
        y = ((&y - &g) * factor(n, j.saturation, &on) + &g).clamp(0.0, 1.0);
    }
    y
}

fn blur(x: &Tensor, p: f64, sigma: [f64; 2]) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let size = x.size();
    let (n, c) = (size[0], size[1]);
    let dev = x.device();
    let radius = (3.0 * sigma[1]).ceil() as i64;
    let taps = Tensor::arange_start(-radius, radius + 1, (Kind::Float, dev)); // [K]
    let s = Tensor::empty([n, 1], (Kind::Float, dev)).uniform_(sigma[0], sigma[1]);
    let k = (-(taps.unsqueeze(0).square()) / (s.square() * 2.0)).exp(); // [N, K]
    let k = &k / k.sum_dim_intlist(1, true, Kind::Float);
    let k = k.repeat_interleave_self_int(c, 0, None); // [N·C, K], one kernel per image channel
    let ksize = 2 * radius + 1;
    let flat = x.reshape([1, n * c, size[2], size[3]]);
    let pad = |t: &Tensor, l, r, tp, b| t.pad([l, r, tp, b], "reflect", None::<f64>);
    let h = pad(&flat, radius, radius, 0, 0).conv2d(&k.reshape([n * c, 1, 1, ksize]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    let v = pad(&h, 0, 0, radius, radius).conv2d(&k.reshape([n * c, 1, ksize, 1]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    let blurred = v.reshape(size.as_slice());
    let on = coin(n, p, dev);
    &blurred * &on + x * (1.0 - on)
}

fn solarize(x: &Tensor, p: f64, threshold: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let on = coin(x.size()[0], p, x.device());
    let flip = x.ge(threshold).to_kind(Kind::Float) * on; // pixels to invert
    x + (1.0 - x * 2.0) * flip
}

fn crop_flip(x: &Tensor, a: &Augment) -> Tensor {
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
        Augment { crop_scale: scale, crop_ratio: [1.0, 1.0], hflip, jitter: None, blur: None, solarize: None }
    }

    #[test]
    fn identity_crop_and_certain_flip() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([4, 1, 8, 8], tch::kind::FLOAT_CPU);
        let same = random_view(&x, &aug([1.0, 1.0], 0.0), 0);
        assert!(f64::try_from((&same - &x).abs().max()).unwrap() < 1e-5);
        let flipped = random_view(&x, &aug([1.0, 1.0], 1.0), 0);
        assert!(f64::try_from((&flipped - x.flip([3])).abs().max()).unwrap() < 1e-5);
    }

    #[test]
    fn crops_differ_per_image_and_are_seeded() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([1, 1, 16, 16], tch::kind::FLOAT_CPU).repeat([6, 1, 1, 1]);
        tch::manual_seed(3);
        let a = random_view(&x, &aug([0.2, 0.6], 0.5), 1);
        tch::manual_seed(3);
        let b = random_view(&x, &aug([0.2, 0.6], 0.5), 1);
        assert!(a.equal(&b));
        assert!(f64::try_from((a.get(0) - a.get(1)).abs().max()).unwrap() > 1e-3);
    }

    #[test]
    fn solarize_blur_and_jitter_do_what_they_say() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([5, 1, 12, 12], tch::kind::FLOAT_CPU);
        let s = solarize(&x, 1.0, 0.5);
        let want = x.where_self(&x.lt(0.5), &(1.0 - &x));
        assert!(f64::try_from((&s - want).abs().max()).unwrap() < 1e-6);
        // A constant image is unchanged by blur (weights sum to 1, reflect padding).
        let c = Tensor::full([2, 3, 9, 9], 0.3, tch::kind::FLOAT_CPU);
        assert!(f64::try_from((blur(&c, 1.0, [0.5, 2.0]) - &c).abs().max()).unwrap() < 1e-6);
        // Blur lowers the variance of noise; p = 0 is the identity.
        let b = blur(&x, 1.0, [1.0, 1.0]);
        assert!(f64::try_from(b.var(true)).unwrap() < f64::try_from(x.var(true)).unwrap() * 0.5);
        assert!(blur(&x, 0.0, [1.0, 1.0]).equal(&x));
        // Jitter keeps pixels in [0, 1] and with p = 0 changes nothing.
        let j = crate::plan::Jitter { p: 1.0, brightness: 0.4, contrast: 0.4, saturation: 0.2 };
        let y = jitter(&Tensor::rand([4, 3, 8, 8], tch::kind::FLOAT_CPU), &j);
        assert!(f64::try_from(y.min()).unwrap() >= 0.0 && f64::try_from(y.max()).unwrap() <= 1.0);
        let off = crate::plan::Jitter { p: 0.0, ..j };
        assert!(f64::try_from((jitter(&x, &off) - &x).abs().max()).unwrap() < 1e-6);
    }
}
