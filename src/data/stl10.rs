//! STL-10 binary decoder (https://cs.stanford.edu/~acoates/stl10/; ../shared/reference/datasets.md):
//! `*_X.bin` holds 3×96×96 uint8 per image, one channel at a time, each 96×96 plane stored
//! column-major (we transpose to row-major C×H×W, as torchvision's `transpose(0, 1, 3, 2)`);
//! `*_y.bin` holds one label per image in 1..=10, shifted to 0..=9. `unlabeled_X.bin` (100k images)
//! has no labels file: [`decode_unlabeled`] gives it empty labels.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::ImageSet;

const SIDE: usize = 96;
const IMAGE: usize = 3 * SIDE * SIDE;

/// Decodes an images file into row-major C×H×W bytes; returns (count, pixels).
pub fn decode_images(path: &Path) -> Result<(usize, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.is_empty() || raw.len() % IMAGE != 0 {
        bail!("{}: {} bytes is not a whole number of {IMAGE}-byte 3×96×96 images; the file is truncated", path.display(), raw.len());
    }
    let n = raw.len() / IMAGE;
    let mut out = vec![0u8; raw.len()];
    for (src, dst) in raw.chunks_exact(SIDE * SIDE).zip(out.chunks_exact_mut(SIDE * SIDE)) {
        // src is column-major: src[x * 96 + y] is the pixel at row y, column x.
        for x in 0..SIDE {
            for y in 0..SIDE {
                dst[y * SIDE + x] = src[x * SIDE + y];
            }
        }
    }
    Ok((n, out))
}

/// Decodes the unlabeled split (`unlabeled_X.bin`, 100k images); its `labels` are empty.
pub fn decode_unlabeled(images: &Path) -> Result<ImageSet> {
    let (n, pixels) = decode_images(images)?;
    Ok(ImageSet { n, c: 3, h: SIDE, w: SIDE, pixels: pixels.into(), labels: Vec::new() })
}

/// Decodes a labelled split (`train` or `test`).
pub fn decode(images: &Path, labels: &Path) -> Result<ImageSet> {
    let (n, pixels) = decode_images(images)?;
    let raw = std::fs::read(labels).with_context(|| format!("cannot read {}", labels.display()))?;
    if raw.len() != n {
        bail!("{}: {} labels for {n} images in {}", labels.display(), raw.len(), images.display());
    }
    let labels_out = raw
        .iter()
        .enumerate()
        .map(|(i, &l)| if (1..=10).contains(&l) { Ok(l as u32 - 1) } else { bail!("{}: label {l} at {i} outside 1..=10", labels.display()) })
        .collect::<Result<Vec<u32>>>()?;
    Ok(ImageSet { n, c: 3, h: SIDE, w: SIDE, pixels: pixels.into(), labels: labels_out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_are_transposed_and_labels_shifted() {
        let d = tempfile::tempdir().unwrap();
        let mut img = vec![0u8; IMAGE];
        img[3 * SIDE + 5] = 200; // column-major: column 3, row 5 of the red plane
        img[SIDE * SIDE + 1] = 9; // green plane, column 0, row 1
        std::fs::write(d.path().join("x.bin"), [img.clone(), img].concat()).unwrap();
        std::fs::write(d.path().join("y.bin"), [1u8, 10]).unwrap();
        let s = decode(&d.path().join("x.bin"), &d.path().join("y.bin")).unwrap();
        assert_eq!((s.n, s.labels.clone()), (2, vec![0, 9]));
        assert_eq!(s.pixels[5 * SIDE + 3], 200);
        assert_eq!(s.pixels[SIDE * SIDE + SIDE], 9);
        std::fs::write(d.path().join("y.bin"), [1u8, 11]).unwrap();
        assert!(decode(&d.path().join("x.bin"), &d.path().join("y.bin")).unwrap_err().to_string().contains("label 11"));
        std::fs::write(d.path().join("x.bin"), [1u8; 10]).unwrap();
        assert!(decode_images(&d.path().join("x.bin")).unwrap_err().to_string().contains("truncated"));
    }
}
