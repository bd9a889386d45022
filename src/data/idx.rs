//! IDX decoder (MNIST / Fashion-MNIST): big-endian magic `0x0000 TT NN` (TT = 0x08 unsigned byte,
//! NN = number of dims), NN big-endian u32 sizes, then row-major bytes. Files may be gzipped (the
//! format is detected from the gzip magic, so Debian's and upstream's copies both read).
//! Format: http://yann.lecun.com/exdb/mnist/ ("THE IDX FILE FORMAT"); ../shared/reference/datasets.md.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A decoded IDX array of unsigned bytes.
#[derive(Debug)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads a (possibly gzipped) IDX file.
pub fn read(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out).with_context(|| format!("{}: corrupt gzip stream", path.display()))?;
        out
    } else {
        raw
    };
    parse(&bytes).with_context(|| format!("{}: not a valid IDX file", path.display()))
}

/// Parses IDX bytes.
pub fn parse(bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        bail!("file is {} bytes, shorter than the 4-byte IDX magic", bytes.len());
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        bail!("magic {:02x?} is not an unsigned-byte IDX magic (00 00 08 NN)", &bytes[..4]);
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        bail!("header declares {nd} dims but the file has {} bytes", bytes.len());
    }
    let dims: Vec<usize> = (0..nd).map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize).collect();
    // Checked: wrapped in release builds, a product of huge dims could match a short body.
    let Some(expected) = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else { bail!("dims {dims:?} overflow the address space") };
    let body = &bytes[header..];
    if body.len() != expected {
        bail!("dims {dims:?} need {expected} data bytes but {} follow the header", body.len());
    }
    Ok(IdxArray { dims, data: body.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_images_and_rejects_truncation() {
        let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend(0u8..12);
        let a = parse(&b).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data[11], 11);
        let e = parse(&b[..20]).unwrap_err().to_string();
        assert!(e.contains("need 12 data bytes"), "{e}");
        assert!(parse(&[0, 0, 9, 1]).unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn dims_whose_product_wraps_are_refused() {
        // 2^31 · 2^31 · 4 = 2^64 wraps to 0 in 64 bits: an empty body must not pass as matching.
        let mut b = vec![0, 0, 8, 3];
        for d in [1u32 << 31, 1 << 31, 1 << 2] {
            b.extend(d.to_be_bytes());
        }
        assert!(parse(&b).unwrap_err().to_string().contains("overflow"));
    }
}
