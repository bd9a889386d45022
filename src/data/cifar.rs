//! CIFAR-10 / CIFAR-100 binary-version decoders (https://www.cs.toronto.edu/~kriz/cifar.html;
//! ../shared/reference/datasets.md). Records are `<label><3072 pixel bytes>` (CIFAR-10) or
//! `<coarse label><fine label><3072 pixel bytes>` (CIFAR-100, coarse first); the pixels are the
//! 1024 R, then 1024 G, then 1024 B values of a row-major 32×32 image, i.e. already C×H×W.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::ImageSet;

const PIXELS: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// CIFAR-10's single label.
    Only,
    /// CIFAR-100's 100 fine labels (the default everywhere in the papers).
    Fine,
    /// CIFAR-100's 20 superclasses.
    Coarse,
}

/// Decodes the concatenation of `files` (all of one split).
pub fn decode(files: &[&Path], labels: Labels) -> Result<ImageSet> {
    let label_bytes = if labels == Labels::Only { 1 } else { 2 };
    let record = label_bytes + PIXELS;
    let classes = match labels {
        Labels::Only => 10,
        Labels::Fine => 100,
        Labels::Coarse => 20,
    };
    let mut pixels = Vec::new();
    let mut out_labels = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            bail!(
                "{}: {} bytes is not a whole number of {record}-byte CIFAR records; the file is truncated or not a CIFAR binary batch",
                path.display(),
                bytes.len()
            );
        }
        for (i, r) in bytes.chunks_exact(record).enumerate() {
            let label = match labels {
                Labels::Only | Labels::Coarse => r[0],
                Labels::Fine => r[1],
            };
            if label as usize >= classes {
                bail!("{}: record {i} has label {label}, outside 0..{classes}", path.display());
            }
            out_labels.push(label as u32);
            pixels.extend_from_slice(&r[label_bytes..]);
        }
    }
    Ok(ImageSet { n: out_labels.len(), c: 3, h: 32, w: 32, pixels: pixels.into(), labels: out_labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_layouts_and_rejects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        // CIFAR-100: coarse 3, fine 42; first pixel of the green plane is 7.
        let mut rec = vec![3u8, 42];
        let mut px = vec![0u8; PIXELS];
        px[1024] = 7;
        rec.extend(&px);
        let p = dir.path().join("train.bin");
        std::fs::write(&p, [rec.clone(), rec.clone()].concat()).unwrap();
        let fine = decode(&[&p], Labels::Fine).unwrap();
        assert_eq!((fine.n, fine.labels[1]), (2, 42));
        assert_eq!(fine.pixels[1024], 7);
        assert_eq!(decode(&[&p], Labels::Coarse).unwrap().labels, vec![3, 3]);
        std::fs::write(&p, &rec[..rec.len() - 1]).unwrap();
        let e = decode(&[&p], Labels::Fine).unwrap_err().to_string();
        assert!(e.contains("not a whole number of 3074-byte"), "{e}");
        // CIFAR-10 records carry one label byte; a label of 10 is refused.
        let mut r10 = vec![10u8];
        r10.extend(&px);
        std::fs::write(&p, r10).unwrap();
        assert!(decode(&[&p], Labels::Only).unwrap_err().to_string().contains("label 10"));
    }
}
