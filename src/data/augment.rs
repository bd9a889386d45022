//! Batched view augmentation, in torchvision's order: random resized crop and horizontal flip as one
//! affine resampling per image (what `affine_grid` + bilinear or bicubic `grid_sample` with
//! reflected borders compute, plus an optional pixel translation: the pad-and-crop of CIFAR
//! pipelines), then colour jitter, random grayscale, Gaussian blur and solarisation with per-image
//! random draws. Tensor operations on the training device, except the colour jitter on the CPU: one
//! Rust kernel over the pixels (`jitter_cpu`), equal to the tensor jitter that CUDA runs (tested).
//! All random draws come from libtorch, in the same order on either path. The two views may use
//! different probabilities (the asymmetric views of the CorInfoMax CIFAR code,
//! `serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/transform_utils.py`).
//!
//! Jitter follows torchvision `ColorJitter`: brightness, contrast, saturation and hue, applied in a
//! random order drawn per image; each factor from [1 − v, 1 + v], the hue shift from [−h, h] of the
//! colour circle through HSV (the formulas of torchvision's `_rgb2hsv`/`_hsv2rgb`). Saturation, hue
//! and grayscale act only on 3-channel images. Blur is a separable Gaussian with a per-image σ and a
//! kernel of 2·⌈3σ_max⌉+1 taps (torchvision's PIL blur uses the radius directly; same σ meaning).
//! Bicubic resampling can overshoot, so the crop is clamped to [0, 1] as PIL's uint8 output is.
//!
//! Random resized crop samples area fraction s ~ U(scale) and log-aspect ~ U(log ratio) like
//! torchvision's `RandomResizedCrop`; where torchvision retries up to 10 times when the box does
//! not fit, we clamp the box's sides to the image (the crop is then slightly less extreme).
//! Randomness comes from libtorch's generator, seeded by the training loop.

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::plan::{Augment, Interpolation, Jitter};
#[cfg(test)]
use crate::plan::Translate;

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
pub fn random_view(x: &Tensor, a: &Augment, view: usize) -> Result<Tensor> {
    let mut y = crop_flip(x, a);
    if let Some(j) = &a.jitter {
        y = jitter(&y, j)?;
    }
    if let Some(g) = &a.grayscale {
        y = grayscale(&y, g.p[view]);
    }
    if let Some(b) = &a.blur {
        y = blur(&y, b.p[view], b.sigma);
    }
    if let Some(s) = &a.solarize {
        y = solarize(&y, s.p[view], s.threshold);
    }
    Ok(y)
}

/// torchvision `Resize(side)` (bicubic) then `CenterCrop(size)` of square images, as evaluation
/// pipelines prepare test images (CorInfoMax: `Resize(int(32·8/7))` + `CenterCrop(32)`); `side`
/// must be at least the image size. PyTorch's bicubic kernel (a = −0.75) where PIL's is a = −0.5,
/// clamped to [0, 1] but not rounded to uint8 as PIL is.
///
/// # Shapes
/// `x`: float32 [N, C, S, S] in [0, 1] → [N, C, S, S].
pub fn resize_center_crop(x: &Tensor, side: i64) -> Tensor {
    let s = x.size()[2];
    let up = x.upsample_bicubic2d([side, side], false, None, None).clamp(0.0, 1.0);
    // torchvision: int(round((side − s) / 2.0)), Python's round (ties to even).
    let off = ((side - s) as f64 / 2.0).round_ties_even() as i64;
    up.narrow(2, off, s).narrow(3, off, s)
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

/// ITU-R 601 luma [N, 1, H, W] of RGB images (torchvision `rgb_to_grayscale`); 1-channel images as they are.
fn luma(t: &Tensor) -> Tensor {
    if t.size()[1] == 3 {
        let w = Tensor::from_slice(&[0.2989f32, 0.587, 0.114]).reshape([1, 3, 1, 1]).to_device(t.device());
        (t * w).sum_dim_intlist(1, true, Kind::Float)
    } else {
        t.shallow_clone()
    }
}

/// The four jitter operations, by index (torchvision's `fn_idx` numbering).
const BRIGHTNESS: i64 = 0;
const CONTRAST: i64 = 1;
const SATURATION: i64 = 2;
const HUE: i64 = 3;

/// One jitter operation on a subset of images with their factors `f` ([n, 1, 1, 1]).
fn jitter_op(op: i64, x: &Tensor, f: &Tensor) -> Tensor {
    let rgb = x.size()[1] == 3;
    match op {
        BRIGHTNESS => (x * f).clamp(0.0, 1.0),
        CONTRAST => {
            let mean = luma(x).mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
            ((x - &mean) * f + &mean).clamp(0.0, 1.0)
        }
        SATURATION if rgb => {
            let g = luma(x);
            ((x - &g) * f + &g).clamp(0.0, 1.0)
        }
        HUE if rgb => shift_hue(x, f),
        _ => x.shallow_clone(),
    }
}

/// Colour jitter with a random order of its four operations per image. On CUDA each operation runs
/// on the whole batch and `where` keeps it for the images whose turn it is (no host
/// synchronisation); on the CPU [`jitter_cpu`] applies each image's operations in one fused pass
/// per operation. Both read the same random draws and give the same images (tested).
fn jitter(x: &Tensor, j: &Jitter) -> Result<Tensor> {
    let d = JitterDraws::new(x, j);
    if x.device().is_cuda() {
        Ok(jitter_tensors(x, &d))
    } else {
        jitter_cpu(x, &d)
    }
}

/// The random draws of one jitter call, per image: the coin, the four factors (1 where the coin
/// says no; the hue shift 0) and the order of the four operations.
struct JitterDraws {
    on: Tensor,
    factors: [Tensor; 4],
    enabled: [bool; 4],
    order: Tensor,
}

impl JitterDraws {
    fn new(x: &Tensor, j: &Jitter) -> Self {
        let n = x.size()[0];
        let dev = x.device();
        let on = coin(n, j.p, dev);
        let hue = Tensor::empty([n, 1, 1, 1], (Kind::Float, dev)).uniform_(-j.hue, j.hue) * &on;
        let factors = [factor(n, j.brightness, &on), factor(n, j.contrast, &on), factor(n, j.saturation, &on), hue];
        let enabled = [j.brightness > 0.0, j.contrast > 0.0, j.saturation > 0.0, j.hue > 0.0];
        // A random order per image: the argsort of four uniform draws.
        let order = Tensor::rand([n, 4], (Kind::Float, dev)).argsort(1, false);
        Self { on, factors, enabled, order }
    }
}

/// The jitter as tensor operations on the whole batch, kept by `where` for the images whose turn it
/// is: what CUDA runs, and the definition the CPU kernel is tested against.
fn jitter_tensors(x: &Tensor, d: &JitterDraws) -> Tensor {
    let n = x.size()[0];
    let mut y = x.shallow_clone();
    // Images whose coin says no are left exactly as they are (torchvision's RandomApply).
    let jittered = d.on.view([n]).gt(0.5);
    for pos in 0..4 {
        let at = d.order.select(1, pos);
        for op in (0..4).filter(|&op| d.enabled[op as usize]) {
            let turn = at.eq(op).logical_and(&jittered);
            y = jitter_op(op, &y, &d.factors[op as usize]).where_self(&turn.view([n, 1, 1, 1]), &y);
        }
    }
    y
}

/// The jitter on the CPU: each image's operations in its drawn order, one pass over its pixels per
/// operation (two for contrast, which needs the image's mean luma). The images are split into as
/// many parts as libtorch's intra-op thread count (`tch::get_num_threads`), run on rayon's pool, so
/// one libtorch thread means one core. The formulas are [`jitter_op`]'s, pixel by pixel.
fn jitter_cpu(x: &Tensor, d: &JitterDraws) -> Result<Tensor> {
    use rayon::prelude::*;
    let size = x.size();
    let c = size[1] as usize;
    let hw = (size[2] * size[3]) as usize;
    let host = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).context("colour jitter: reading its random draws");
    let on = host(&d.on)?;
    let factors = [host(&d.factors[0])?, host(&d.factors[1])?, host(&d.factors[2])?, host(&d.factors[3])?];
    let order = Vec::<i64>::try_from(d.order.flatten(0, -1)).context("colour jitter: reading its random order")?;
    let mut px = Vec::<f32>::try_from(x.contiguous().flatten(0, -1)).context("colour jitter: reading the images")?;
    if px.is_empty() {
        return Ok(x.shallow_clone());
    }
    let enabled = d.enabled;
    let per_thread = on.len().div_ceil(tch::get_num_threads().max(1) as usize).max(1);
    px.par_chunks_mut(per_thread * c * hw).enumerate().for_each(|(part, images)| {
        for (k, img) in images.chunks_mut(c * hw).enumerate() {
            let i = part * per_thread + k;
            if on[i] > 0.5 {
                for &op in &order[4 * i..4 * i + 4] {
                    if enabled[op as usize] {
                        jitter_pixels(op, img, c, factors[op as usize][i]);
                    }
                }
            }
        }
    });
    Ok(Tensor::from_slice(&px).view(size.as_slice()))
}

/// ITU-R 601 luma of one pixel, in the order `luma` sums it.
fn luma_px(r: f32, g: f32, b: f32) -> f32 {
    r * 0.2989 + g * 0.587 + b * 0.114
}

/// One jitter operation on one image's planes ([C, H·W], in place) with factor `f`.
fn jitter_pixels(op: i64, img: &mut [f32], c: usize, f: f32) {
    let rgb = c == 3;
    let hw = img.len() / c;
    match op {
        BRIGHTNESS => img.iter_mut().for_each(|v| *v = (*v * f).clamp(0.0, 1.0)),
        CONTRAST => {
            let sum: f64 = if rgb {
                (0..hw).map(|k| f64::from(luma_px(img[k], img[hw + k], img[2 * hw + k]))).sum()
            } else {
                img.iter().map(|&v| f64::from(v)).sum()
            };
            let mean = (sum / if rgb { hw } else { img.len() } as f64) as f32;
            img.iter_mut().for_each(|v| *v = ((*v - mean) * f + mean).clamp(0.0, 1.0));
        }
        SATURATION if rgb => {
            let (r, rest) = img.split_at_mut(hw);
            let (g, b) = rest.split_at_mut(hw);
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let y = luma_px(*r, *g, *b);
                for v in [r, g, b] {
                    *v = ((*v - y) * f + y).clamp(0.0, 1.0);
                }
            }
        }
        HUE if rgb => {
            let (r, rest) = img.split_at_mut(hw);
            let (g, b) = rest.split_at_mut(hw);
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                [*r, *g, *b] = hue_px(*r, *g, *b, f);
            }
        }
        _ => {}
    }
}

/// [`shift_hue`] for one pixel, without branches (so the loop over pixels vectorises).
#[inline(always)]
fn hue_px(r: f32, g: f32, b: f32, shift: f32) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let range = maxc - r.min(g).min(b);
    let (at_r, at_g, at_b) = (g - b, (b - r) + range * 2.0, (r - g) + range * 4.0);
    let num = if maxc == r { at_r } else if maxc == g { at_g } else { at_b };
    let sixths = num / range.max(f32::MIN_POSITIVE) + shift * 6.0;
    [5.0f32, 3.0, 1.0].map(|n| {
        let k = sixths + n;
        let k = k - 6.0 * (k * (1.0 / 6.0)).floor(); // libtorch's `remainder`, far cheaper than fmod
        (maxc - range * k.min(4.0 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)
    })
}

/// `x` with the images whose coin (`on`, [N, 1, 1, 1] of 0/1) says yes replaced by `f` of them.
/// `f` gets those images and `pick`, which selects the same images' rows of a per-image tensor. On
/// CUDA `f` runs on the whole batch and `where` keeps its result for the chosen ones (no `nonzero`,
/// so the host never waits for the device); on the CPU it runs on the chosen images only, written
/// into a copy of `x`. Both give the same images (tested).
fn on_chosen(x: &Tensor, on: &Tensor, f: impl Fn(&Tensor, &dyn Fn(&Tensor) -> Tensor) -> Tensor) -> Tensor {
    on_chosen_with(x, on, x.device().is_cuda(), f)
}

fn on_chosen_with(x: &Tensor, on: &Tensor, sync_free: bool, f: impl Fn(&Tensor, &dyn Fn(&Tensor) -> Tensor) -> Tensor) -> Tensor {
    let chosen = on.gt(0.5);
    if sync_free {
        return f(x, &|t| t.shallow_clone()).where_self(&chosen, x);
    }
    let idx = chosen.flatten(0, -1).nonzero().squeeze_dim(1);
    let mut y = x.copy();
    if idx.size()[0] > 0 {
        let changed = f(&x.index_select(0, &idx), &|t| t.index_select(0, &idx));
        let _ = y.index_copy_(0, &idx, &changed);
    }
    y
}

/// Rotates the hue of RGB images in [0, 1] by `shift` ([N, 1, 1, 1], fractions of the circle).
///
/// torchvision's `_rgb2hsv` hue (in sixths of the circle: (g − b), (b − r) + 2·range or
/// (r − g) + 4·range over range, by which channel holds the maximum, red first), then `_hsv2rgb`
/// in its closed form: value and minimum stay, and channel c (n = 5, 3, 1 for r, g, b) is
/// max − range · clamp(min(k, 4 − k), 0, 1) with k = (n + 6·hue) mod 6. The same images as
/// torchvision's sector table (tested against it), in a third of the tensor operations.
fn shift_hue(x: &Tensor, shift: &Tensor) -> Tensor {
    let maxc = x.amax(&[1i64][..], true);
    let range = &maxc - x.amin(&[1i64][..], true);
    let d = x - x.roll([-1], [1]); // channels (r − g, g − b, b − r)
    let is_r = maxc.eq_tensor(&x.narrow(1, 0, 1));
    let is_g = maxc.eq_tensor(&x.narrow(1, 1, 1));
    let num = d.narrow(1, 1, 1).where_self(&is_r, &(d.narrow(1, 2, 1) + &range * 2.0).where_self(&is_g, &(d.narrow(1, 0, 1) + &range * 4.0)));
    // Gray pixels: num and range are 0, so the hue is 0 and every channel comes out as the value.
    let sixths = num / range.clamp_min(f64::from(f32::MIN_POSITIVE)) + shift * 6.0;
    let n = Tensor::from_slice(&[5.0f32, 3.0, 1.0]).reshape([1, 3, 1, 1]).to_device(x.device());
    let k = (sixths + n).remainder(6.0);
    let ramp = k.minimum(&(k.neg() + 4.0)).clamp(0.0, 1.0);
    (maxc - range * ramp).clamp(0.0, 1.0)
}

/// Replaces each 3-channel image by its luma in every channel with probability `p`, through
/// [`on_chosen`].
fn grayscale(x: &Tensor, p: f64) -> Tensor {
    if p <= 0.0 || x.size()[1] != 3 {
        return x.shallow_clone();
    }
    let on = coin(x.size()[0], p, x.device());
    on_chosen(x, &on, |imgs, _| luma(imgs).expand_as(imgs))
}

/// Gaussian blur with probability `p` per image, σ uniform in `sigma`, reflect padding, through
/// [`on_chosen`] (on the CPU only the chosen images are blurred: view 2 blurs a tenth of them).
fn blur(x: &Tensor, p: f64, sigma: [f64; 2]) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let n = x.size()[0];
    let dev = x.device();
    let s = Tensor::empty([n, 1], (Kind::Float, dev)).uniform_(sigma[0], sigma[1]);
    let on = coin(n, p, dev);
    on_chosen(x, &on, |imgs, pick| gaussian(imgs, &pick(&s), sigma[1]))
}

/// Every image of `x` blurred with its own σ (`s`, [N, 1]); the kernel radius is 3·`max_sigma`.
fn gaussian(x: &Tensor, s: &Tensor, max_sigma: f64) -> Tensor {
    let size = x.size();
    let (n, c) = (size[0], size[1]);
    let dev = x.device();
    let radius = (3.0 * max_sigma).ceil() as i64;
    let taps = Tensor::arange_start(-radius, radius + 1, (Kind::Float, dev)); // [K]
    let k = (-(taps.unsqueeze(0).square()) / (s.square() * 2.0)).exp(); // [N, K]
    let k = &k / k.sum_dim_intlist(1, true, Kind::Float);
    let k = k.repeat_interleave_self_int(c, 0, None); // [N·C, K], one kernel per image channel
    let ksize = 2 * radius + 1;
    let flat = x.reshape([1, n * c, size[2], size[3]]);
    let pad = |t: &Tensor, l, r, tp, b| t.pad([l, r, tp, b], "reflect", None::<f64>);
    let h = pad(&flat, radius, radius, 0, 0).conv2d(&k.reshape([n * c, 1, 1, ksize]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    let v = pad(&h, 0, 0, radius, radius).conv2d(&k.reshape([n * c, 1, ksize, 1]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    v.reshape(size.as_slice())
}

/// Inverts the pixels at or above `threshold` of each image with probability `p`, through
/// [`on_chosen`].
fn solarize(x: &Tensor, p: f64, threshold: f64) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let on = coin(x.size()[0], p, x.device());
    on_chosen(x, &on, |imgs, _| (imgs.neg() + 1.0).where_self(&imgs.ge(threshold), imgs))
}

/// The per-image crop boxes of a random resized crop (+ flip, + shift) in `affine_grid`'s
/// normalised coordinates: output (u, v) ∈ [−1, 1]² reads the source at (sw·flip·u + cx, sh·v + cy).
struct Boxes {
    sw: Tensor,
    sh: Tensor,
    flip: Tensor,
    cx: Tensor,
    cy: Tensor,
}

fn boxes(size: &[i64], a: &Augment, dev: Device) -> Boxes {
    let n = size[0];
    let opts = (Kind::Float, dev);
    let area = Tensor::empty([n], opts).uniform_(a.crop_scale[0], a.crop_scale[1]);
    let log_ratio = Tensor::empty([n], opts).uniform_(a.crop_ratio[0].ln(), a.crop_ratio[1].ln());
    let ratio = log_ratio.exp();
    // Side lengths as fractions of the image; in affine_grid coordinates the image spans [-1, 1].
    let sw = (&area * &ratio).sqrt().clamp_max(1.0);
    let sh = (&area / &ratio).sqrt().clamp_max(1.0);
    let mut cx = (Tensor::rand([n], opts) * 2.0 - 1.0) * (1.0 - &sw);
    let mut cy = (Tensor::rand([n], opts) * 2.0 - 1.0) * (1.0 - &sh);
    if let Some(t) = &a.translate {
        // Whole-pixel shifts in [−t, t] for a `p` share of the images, in grid units (a pixel is 2/size).
        let on = Tensor::rand([n], opts).lt(t.p).to_kind(Kind::Float);
        let k = t.pixels as i64;
        cx += Tensor::randint_low(-k, k + 1, [n], opts) * &on * (2.0 / size[3] as f64);
        cy += Tensor::randint_low(-k, k + 1, [n], opts) * &on * (2.0 / size[2] as f64);
    }
    let flip = Tensor::rand([n], opts).lt(a.hflip).to_kind(Kind::Float) * -2.0 + 1.0; // ±1
    Boxes { sw, sh, flip, cx, cy }
}

/// Random resized crop + flip (+ shift) of every image, back to its size: what `affine_grid` +
/// `grid_sample` (reflection padding, `align_corners=False`) compute, done as two batched matrix
/// products, since the map is separable: out = R_y · image · R_xᵀ with one interpolation matrix per
/// axis and image. Identical to grid_sample up to float rounding (tested), several times faster.
fn crop_flip(x: &Tensor, a: &Augment) -> Tensor {
    if a.crop_scale == [1.0, 1.0] && a.crop_ratio == [1.0, 1.0] && a.hflip == 0.0 && a.translate.is_none() {
        // The whole image, unflipped: resampling would only add rounding.
        return x.shallow_clone();
    }
    let size = x.size();
    let b = boxes(&size, a, x.device());
    let ry = axis_matrix(&b.sh, &b.cy, size[2], a.interpolation); // [N, H, H]
    let rx = axis_matrix(&(&b.sw * &b.flip), &b.cx, size[3], a.interpolation); // [N, W, W]
    // Along W for all channels and rows at once ([N, C·H, W] · R_xᵀ), then along H ([N, H, H] · [N, H, C·W]).
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    let along_w = x.reshape([n, c * h, w]).bmm(&rx.transpose(1, 2)).reshape([n, c, h, w]);
    let rows = along_w.transpose(1, 2).reshape([n, h, c * w]);
    let y = ry.bmm(&rows).reshape([n, h, c, w]).transpose(1, 2);
    match a.interpolation {
        Interpolation::Bilinear => y,
        Interpolation::Bicubic => y.clamp(0.0, 1.0),
    }
}

/// grid_sample's reflection padding of (fractional) source coordinates, `align_corners=False`:
/// reflect about −0.5 and `len` − 0.5, then clip to [0, len − 1] (PyTorch's `reflect_coordinates`
/// and `clip_coordinates`).
fn reflect(p: &Tensor, len: i64) -> Tensor {
    let (min, span) = (-0.5, len as f64);
    let q = (p - min).abs();
    let flips = (&q / span).floor();
    let extra = &q - &flips * span;
    let even = flips.remainder(2.0).eq(0.0);
    (&extra + min).where_self(&even, &(extra.neg() + span + min)).clamp(0.0, (len - 1) as f64)
}

/// The [N, len, len] matrices that resample one axis: output index j reads source coordinate
/// ((scale·u_j + center + 1)·len − 1)/2 with u_j = (2j + 1)/len − 1, through the taps of
/// grid_sample's bilinear (2 taps, padding applied to the coordinate) or bicubic (4 taps,
/// A = −0.75, padding applied to each tap) interpolation.
fn axis_matrix(scale: &Tensor, center: &Tensor, len: i64, interp: Interpolation) -> Tensor {
    let dev = scale.device();
    let u = (Tensor::arange(len, (Kind::Float, dev)) * 2.0 + 1.0) / len as f64 - 1.0; // [len]
    let src = scale.unsqueeze(1) * u.unsqueeze(0) + center.unsqueeze(1); // [N, len], normalised
    let p = ((src + 1.0) * len as f64 - 1.0) / 2.0; // pixel coordinates
    let (index, weight) = match interp {
        Interpolation::Bilinear => {
            let p = reflect(&p, len);
            let i0 = p.floor();
            let t = &p - &i0;
            let taps = Tensor::stack(&[i0.shallow_clone(), (&i0 + 1.0).clamp_max((len - 1) as f64)], 2);
            (taps, Tensor::stack(&[t.neg() + 1.0, t], 2))
        }
        Interpolation::Bicubic => {
            const A: f64 = -0.75;
            // The four taps ⌊p⌋ − 1 … ⌊p⌋ + 2 at once, [N, len, 4], and their distances from p.
            let taps = p.floor().unsqueeze(2) + Tensor::from_slice(&[-1.0f32, 0.0, 1.0, 2.0]).to_device(dev).view([1, 1, 4]);
            let x = (p.unsqueeze(2) - &taps).abs();
            // PyTorch's cubic_convolution1 (|x| ≤ 1) and cubic_convolution2 (1 < |x| < 2).
            let near = ((&x * (A + 2.0) - (A + 3.0)) * &x * &x) + 1.0;
            let far = ((&x * A - 5.0 * A) * &x + 8.0 * A) * &x - 4.0 * A;
            (reflect(&taps, len), near.where_self(&x.le(1.0), &far))
        }
    };
    let n = scale.size()[0];
    Tensor::zeros([n, len, len], (Kind::Float, dev)).scatter_add(2, &index.round().to_kind(Kind::Int64), &weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aug(scale: [f64; 2], hflip: f64) -> Augment {
        Augment {
            crop_scale: scale,
            crop_ratio: [1.0, 1.0],
            hflip,
            interpolation: Interpolation::Bilinear,
            translate: None,
            jitter: None,
            grayscale: None,
            blur: None,
            solarize: None,
        }
    }

    #[test]
    fn identity_crop_and_certain_flip() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([4, 1, 8, 8], tch::kind::FLOAT_CPU);
        let same = random_view(&x, &aug([1.0, 1.0], 0.0), 0).unwrap();
        assert!(same.equal(&x), "the identity view is exact");
        let flipped = random_view(&x, &aug([1.0, 1.0], 1.0), 0).unwrap();
        assert!(f64::try_from((&flipped - x.flip([3])).abs().max()).unwrap() < 1e-5);
    }

    /// The grid_sample path the separable crop replaced: the definition it must match.
    fn crop_flip_grid_sample(x: &Tensor, a: &Augment) -> Tensor {
        let size = x.size();
        let b = boxes(&size, a, x.device());
        let zeros = b.sw.zeros_like();
        let theta = Tensor::stack(&[&b.sw * &b.flip, zeros.shallow_clone(), b.cx, zeros, b.sh, b.cy], 1).reshape([size[0], 2, 3]);
        let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
        match a.interpolation {
            Interpolation::Bilinear => x.grid_sampler_2d(&grid, 0, 2, false),
            Interpolation::Bicubic => x.grid_sampler_2d(&grid, 2, 2, false).clamp(0.0, 1.0),
        }
    }

    #[test]
    fn separable_crop_equals_grid_sample() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([64, 3, 20, 28], tch::kind::FLOAT_CPU);
        for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
            for (scale, translate) in [([0.08, 1.0], None), ([0.5, 1.0], Some(Translate { pixels: 4, p: 0.8 })), ([1.0, 1.0], Some(Translate { pixels: 6, p: 1.0 }))] {
                let a = Augment { interpolation, crop_ratio: [0.5, 2.0], translate, ..aug(scale, 0.5) };
                tch::manual_seed(7);
                let fast = crop_flip(&x, &a);
                tch::manual_seed(7);
                let want = crop_flip_grid_sample(&x, &a);
                let d = f64::try_from((&fast - &want).abs().max()).unwrap();
                assert!(d < 2e-5, "{interpolation:?} {scale:?}: max difference {d}");
            }
        }
    }

    #[test]
    fn resize_and_centre_crop_as_torchvision() {
        let _rng = crate::rng_lock();
        // A constant image stays constant; at side = size it is the identity.
        let x = Tensor::rand([2, 3, 8, 8], tch::kind::FLOAT_CPU);
        assert!(f64::try_from((resize_center_crop(&x, 8) - &x).abs().max()).unwrap() < 1e-6);
        let c = Tensor::full([1, 1, 8, 8], 0.25, tch::kind::FLOAT_CPU);
        assert!(f64::try_from((resize_center_crop(&c, 9) - 0.25).abs().max()).unwrap() < 1e-6);
        // 32 → 36 → centre 32 zooms by 9/8 around the centre: a vertical edge at column 16 stays at 16.
        let edge = Tensor::arange(32, tch::kind::FLOAT_CPU).ge(16).to_kind(Kind::Float).reshape([1, 1, 1, 32]).expand([1, 1, 32, 32], true);
        let z = resize_center_crop(&edge, 36);
        let row: Vec<f32> = Vec::try_from(z.select(2, 10).flatten(0, -1)).unwrap();
        assert!(row[13] < 0.02 && row[18] > 0.98 && (row[15] + row[16] - 1.0).abs() < 0.05, "{row:?}");
    }

    #[test]
    fn crops_differ_per_image_and_are_seeded() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([1, 1, 16, 16], tch::kind::FLOAT_CPU).repeat([6, 1, 1, 1]);
        tch::manual_seed(3);
        let a = random_view(&x, &aug([0.2, 0.6], 0.5), 1).unwrap();
        tch::manual_seed(3);
        let b = random_view(&x, &aug([0.2, 0.6], 0.5), 1).unwrap();
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
        let j = Jitter { p: 1.0, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 };
        let y = jitter(&Tensor::rand([4, 3, 8, 8], tch::kind::FLOAT_CPU), &j).unwrap();
        assert!(f64::try_from(y.min()).unwrap() >= 0.0 && f64::try_from(y.max()).unwrap() <= 1.0);
        let off = Jitter { p: 0.0, ..j };
        assert!(f64::try_from((jitter(&x, &off).unwrap() - &x).abs().max()).unwrap() < 1e-6);
    }

    /// torchvision's `_rgb2hsv` + `_hsv2rgb` with its sector table, as written there: the definition
    /// the closed form must match.
    fn shift_hue_table(x: &Tensor, shift: &Tensor) -> Tensor {
        let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
        let maxc = x.amax(&[1i64][..], true);
        let minc = x.amin(&[1i64][..], true);
        let gray = maxc.eq_tensor(&minc);
        let ones = maxc.ones_like();
        let range = &maxc - &minc;
        let s = &range / maxc.where_self(&gray.logical_not(), &ones);
        let div = range.where_self(&gray.logical_not(), &ones);
        let (rc, gc, bc) = ((&maxc - &r) / &div, (&maxc - &g) / &div, (&maxc - &b) / &div);
        let is_r = maxc.eq_tensor(&r);
        let is_g = maxc.eq_tensor(&g); // where is_r does not win: torchvision's (maxc == g) & ~(maxc == r)
        let h = (&bc - &gc).where_self(&is_r, &(&rc - &bc + 2.0).where_self(&is_g, &(&gc - &rc + 4.0)));
        let h = (h / 6.0 + 1.0 + shift).remainder(1.0);
        // HSV → RGB.
        let v = maxc;
        let h6 = h * 6.0;
        let i = h6.floor();
        let frac = &h6 - &i;
        let i = i.remainder(6.0);
        let one_minus = |t: Tensor| -> Tensor { t.neg() + 1.0 };
        let p = (&v * one_minus(s.shallow_clone())).clamp(0.0, 1.0);
        let q = (&v * one_minus(&s * &frac)).clamp(0.0, 1.0);
        let t = (&v * one_minus(&s * one_minus(frac.shallow_clone()))).clamp(0.0, 1.0);
        // Sector i ∈ 0..6 picks each channel from (v, q, p, t): torchvision's `_hsv2rgb` table, by gather.
        let candidates = Tensor::cat(&[&v, &q, &p, &t], 1); // [N, 4, H, W]
        let sector = i.to_kind(Kind::Int64).clamp(0, 5);
        let table = Tensor::from_slice(&[0i64, 1, 2, 2, 3, 0, 3, 0, 0, 1, 2, 2, 2, 2, 3, 0, 0, 1]).to_device(x.device());
        let channel = |c: i64| table.narrow(0, 6 * c, 6).index_select(0, &sector.flatten(0, -1)).view_as(&sector);
        let which = Tensor::cat(&[channel(0), channel(1), channel(2)], 1); // [N, 3, H, W]
        candidates.gather(1, &which, false)
    }

    #[test]
    fn closed_form_hue_equals_torchvisions_sector_table() {
        let _rng = crate::rng_lock();
        // Random pixels, plus two-way ties of the maximum (r = g), grays and 0/1 channels.
        let x = Tensor::rand([64, 3, 8, 8], tch::kind::FLOAT_CPU);
        let _ = x.narrow(0, 0, 4).narrow(1, 1, 1).copy_(&x.narrow(0, 0, 4).narrow(1, 0, 1));
        let _ = x.narrow(0, 4, 4).copy_(&x.narrow(0, 4, 4).narrow(1, 2, 1).expand([4, 3, 8, 8], true));
        let _ = x.narrow(0, 8, 2).copy_(&x.narrow(0, 8, 2).ge(0.5).to_kind(Kind::Float));
        let shift = Tensor::empty([64, 1, 1, 1], tch::kind::FLOAT_CPU).uniform_(-0.5, 0.5);
        let d = f64::try_from((shift_hue(&x, &shift) - shift_hue_table(&x, &shift)).abs().max()).unwrap();
        assert!(d < 1e-5, "max difference {d}");
    }

    #[test]
    fn hue_rotates_primaries_and_keeps_grays() {
        // (r, g, b) pixels: red, green, a gray, an orange; one image of 4 pixels.
        let px = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.4, 0.4, 0.4], [0.9, 0.5, 0.1]];
        let x = Tensor::from_slice(&px.concat()).reshape([1, 4, 3]).permute([0, 2, 1]).reshape([1, 3, 2, 2]);
        let shift = |s: f32| shift_hue(&x, &Tensor::from_slice(&[s]).reshape([1, 1, 1, 1]));
        assert!(f64::try_from((shift(0.0) - &x).abs().max()).unwrap() < 1e-6, "a zero shift is the identity");
        let third = shift(1.0 / 3.0).reshape([3, 4]).transpose(0, 1); // per pixel (r, g, b)
        let want = Tensor::from_slice(&[0.0f32, 1.0, 0.0, 0.0, 0.0, 1.0, 0.4, 0.4, 0.4, 0.1, 0.9, 0.5]).reshape([4, 3]);
        assert!(f64::try_from((third - want).abs().max()).unwrap() < 1e-5, "red → green, green → blue, orange → (0.1, 0.9, 0.5)");
    }

    #[test]
    fn grayscale_bicubic_and_translate() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([6, 3, 8, 8], tch::kind::FLOAT_CPU);
        let g = grayscale(&x, 1.0);
        assert!(f64::try_from((g.select(1, 0) - g.select(1, 2)).abs().max()).unwrap() < 1e-6);
        assert!(grayscale(&x, 0.0).equal(&x));
        // Bicubic with an identity crop reproduces the image and stays in [0, 1].
        let a = Augment { interpolation: Interpolation::Bicubic, ..aug([1.0, 1.0], 0.0) };
        assert!(f64::try_from((random_view(&x, &a, 0).unwrap() - &x).abs().max()).unwrap() < 1e-4);
        let a = Augment { crop_scale: [0.1, 0.3], ..a };
        let y = random_view(&x, &a, 0).unwrap();
        assert!(f64::try_from(y.min()).unwrap() >= 0.0 && f64::try_from(y.max()).unwrap() <= 1.0);
        // A translation by whole pixels: every output row equals an input row shifted by ≤ 2.
        let a = Augment { translate: Some(crate::plan::Translate { pixels: 2, p: 1.0 }), ..aug([1.0, 1.0], 0.0) };
        let ramp = Tensor::arange(8, tch::kind::FLOAT_CPU).reshape([1, 1, 1, 8]).expand([6, 1, 8, 8], true).contiguous() / 8.0;
        let shifted = random_view(&ramp, &a, 0).unwrap();
        let first = shifted.select(3, 3).select(2, 3) * 8.0; // the value at column 3: 3 + shift
        let d = (first - 3.0).abs();
        assert!(f64::try_from(d.max()).unwrap() <= 2.0 + 1e-4);
        assert!(f64::try_from((&d - d.round()).abs().max()).unwrap() < 1e-4, "whole-pixel shifts");
    }

    #[test]
    fn jitter_order_is_random_per_image_but_seeded() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([1, 3, 6, 6], tch::kind::FLOAT_CPU).repeat([32, 1, 1, 1]);
        let j = Jitter { p: 1.0, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 };
        tch::manual_seed(5);
        let a = jitter(&x, &j).unwrap();
        tch::manual_seed(5);
        assert!(a.equal(&jitter(&x, &j).unwrap()));
        assert!(f64::try_from(a.min()).unwrap() >= 0.0 && f64::try_from(a.max()).unwrap() <= 1.0 + 1e-6);
    }

    #[test]
    fn cpu_jitter_kernel_equals_the_tensor_jitter() {
        let _rng = crate::rng_lock();
        for c in [3, 1] {
            let x = Tensor::rand([64, c, 8, 8], tch::kind::FLOAT_CPU);
            if c == 3 {
                // Two-way ties of the maximum (r = g), grays and 0/1 channels, where the hue branches.
                let _ = x.narrow(0, 0, 8).narrow(1, 1, 1).copy_(&x.narrow(0, 0, 8).narrow(1, 0, 1));
                let _ = x.narrow(0, 8, 8).copy_(&x.narrow(0, 8, 8).narrow(1, 2, 1).expand([8, 3, 8, 8], true));
                let _ = x.narrow(0, 16, 8).copy_(&x.narrow(0, 16, 8).ge(0.5).to_kind(Kind::Float));
            }
            let j = Jitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 };
            tch::manual_seed(11);
            let d = JitterDraws::new(&x, &j);
            let (kernel, tensors) = (jitter_cpu(&x, &d).unwrap(), jitter_tensors(&x, &d));
            let diff = f64::try_from((&kernel - &tensors).abs().max()).unwrap();
            assert!(diff < 1e-5, "{c} channels: max difference {diff}");
            assert!(f64::try_from((&kernel - &x).abs().max()).unwrap() > 1e-2, "the jitter changed the images");
            // Images whose coin says no come out exactly as they went in (RandomApply).
            let kept = d.on.view([64]).lt(0.5).nonzero().squeeze_dim(1);
            assert!(kept.size()[0] > 0 && kernel.index_select(0, &kept).equal(&x.index_select(0, &kept)));
        }
        let x = Tensor::rand([8, 3, 8, 8], tch::kind::FLOAT_CPU);
        let off = Jitter { p: 0.0, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 };
        let d = JitterDraws::new(&x, &off);
        assert!(jitter_cpu(&x, &d).unwrap().equal(&x) && jitter_tensors(&x, &d).equal(&x));
    }

    /// The CUDA (`where`) and CPU (chosen images only) paths of `on_chosen` give the same images, for
    /// the three operations that use it.
    #[test]
    fn both_paths_of_on_chosen_agree() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([24, 3, 10, 10], tch::kind::FLOAT_CPU);
        let on = coin(24, 0.4, Device::Cpu);
        let s = Tensor::empty([24, 1], tch::kind::FLOAT_CPU).uniform_(0.1, 2.0);
        let ops: [&dyn Fn(&Tensor, &dyn Fn(&Tensor) -> Tensor) -> Tensor; 3] = [
            &|imgs, _| luma(imgs).expand_as(imgs),
            &|imgs, pick| gaussian(imgs, &pick(&s), 2.0),
            &|imgs, _| (imgs.neg() + 1.0).where_self(&imgs.ge(0.5), imgs),
        ];
        for op in ops {
            let (subset, masked) = (on_chosen_with(&x, &on, false, op), on_chosen_with(&x, &on, true, op));
            assert!(f64::try_from((&subset - &masked).abs().max()).unwrap() < 1e-6);
            assert!(f64::try_from((&subset - &x).abs().max()).unwrap() > 1e-3, "some images changed");
        }
    }

    #[test]
    fn blurring_the_chosen_images_only_equals_blurring_all_then_picking() {
        let _rng = crate::rng_lock();
        let x = Tensor::rand([40, 3, 12, 12], tch::kind::FLOAT_CPU);
        tch::manual_seed(3);
        let some = blur(&x, 0.3, [0.1, 2.0]);
        tch::manual_seed(3);
        let s = Tensor::empty([40, 1], tch::kind::FLOAT_CPU).uniform_(0.1, 2.0);
        let on = coin(40, 0.3, Device::Cpu);
        let all = &gaussian(&x, &s, 2.0) * &on + &x * (1.0 - &on);
        assert!(f64::try_from((&some - &all).abs().max()).unwrap() < 1e-6);
        let changed = f64::try_from((&some - &x).abs().amax(&[1i64, 2, 3][..], false).gt(1e-4).sum(Kind::Int64)).unwrap();
        assert!(changed > 0.0 && changed < 40.0, "some images blurred, not all: {changed}");
    }
}
