//! `data.image_size`: every split resized to one side before training, export and evaluation
//! (antialiased bilinear, as torchvision's `Resize(antialias=True)` on tensors), e.g. to run the
//! AMDIM encoder's 32-px layout on 28-px Fashion-MNIST or to train ImageNet-100 at 128 px.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{ImageSet, Splits};

/// `set` with every image resized to `size`×`size` (a copy; the same set when it already is).
pub fn resize_set(set: &ImageSet, size: usize) -> Result<ImageSet> {
    if set.h == size && set.w == size {
        return Ok(set.clone());
    }
    let s = size as i64;
    let mut pixels = Vec::with_capacity(set.n * set.c * size * size);
    for start in (0..set.n).step_by(1024) {
        let n = (set.n - start).min(1024);
        let chunk = &set.pixels[start * set.image_len()..(start + n) * set.image_len()];
        let x = Tensor::from_slice(chunk).reshape([n as i64, set.c as i64, set.h as i64, set.w as i64]).to_kind(Kind::Float);
        let y = x.internal_upsample_bilinear2d_aa([s, s], false, None::<f64>, None::<f64>).round().clamp(0.0, 255.0).to_kind(Kind::Uint8);
        pixels.extend(Vec::<u8>::try_from(y.flatten(0, -1))?);
    }
    if pixels.len() != set.n * set.c * size * size {
        bail!("resize to {size} px produced {} bytes for {} images", pixels.len(), set.n);
    }
    Ok(ImageSet { n: set.n, c: set.c, h: size, w: size, pixels: pixels.into(), labels: set.labels.clone() })
}

/// Every split resized; `info.image_size` says the new side.
pub fn resize_splits(splits: &Splits, size: usize) -> Result<Splits> {
    let mut info = splits.info.clone();
    info.image_size = size;
    Ok(Splits {
        info,
        train: resize_set(&splits.train, size)?,
        test: resize_set(&splits.test, size)?,
        unlabeled: splits.unlabeled.as_ref().map(|u| resize_set(u, size)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_labels_follow() {
        let set = ImageSet { n: 3, c: 1, h: 28, w: 28, pixels: [10u8, 200, 77].iter().flat_map(|&v| vec![v; 784]).collect(), labels: vec![4, 5, 6] };
        let big = resize_set(&set, 32).unwrap();
        assert_eq!((big.n, big.h, big.w, big.labels.clone()), (3, 32, 32, vec![4, 5, 6]));
        assert!(big.pixels[..1024].iter().all(|&v| v == 10) && big.pixels[2048..].iter().all(|&v| v == 77));
        let small = resize_set(&big, 16).unwrap();
        assert_eq!(small.pixels.len(), 3 * 256);
    }
}
