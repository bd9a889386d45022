//! Cache of decoded splits: `<cache>/<dataset>/decoded/<split>_{images,labels}.npy` (uint8
//! [N, C, H, W] and uint32 [N]) plus `manifest.json` naming what they were decoded from: the format,
//! the decoder settings (image size, layout) and the sources (each lock file's pinned hash, or a
//! folder's fingerprint). A later run with the same [`Key`] loads the arrays instead of fetching,
//! extracting and decoding again; any other manifest is ignored and rewritten. The manifest is
//! written last, atomically, so a half-written cache is never used. Images are read in place
//! through a read-only memory map ([`super::Pixels::Mapped`]); labels are read into memory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{Array1, ArrayView1, ArrayView4};
use ndarray_npy::ViewNpyExt;
use serde::{Deserialize, Serialize};

use super::{ImageSet, Pixels};
use crate::util;

const MANIFEST: &str = "manifest.json";
const VERSION: u32 = 2;

/// What decoded arrays depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub format: String,
    /// Decoder settings that shape the arrays (image size, layout).
    pub decoder: String,
    /// (file name, pinned hash) per lock file, or (folder, fingerprint) per folder tree.
    pub sources: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    format: String,
    /// Decoder settings that shape the arrays (e.g. the image size images were resized to).
    decoder: String,
    /// (file name, sha256 pinned in the lock) for every source file.
    sources: Vec<(String, String)>,
    splits: Vec<String>,
}

fn manifest_for(key: &Key, splits: &[&str]) -> Manifest {
    Manifest { version: VERSION, format: key.format.clone(), decoder: key.decoder.clone(), sources: key.sources.clone(), splits: splits.iter().map(|s| (*s).to_owned()).collect() }
}

fn paths(dir: &Path, split: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{split}_images.npy")), dir.join(format!("{split}_labels.npy")))
}

/// Loads the cached `splits` (in that order) when the manifest matches `key` and holds them all.
pub fn load(dir: &Path, key: &Key, splits: &[&str]) -> Result<Option<Vec<ImageSet>>> {
    let Ok(found) = util::read_json::<Manifest>(&dir.join(MANIFEST)) else { return Ok(None) };
    let want = manifest_for(key, &[]);
    let same = (found.version, &found.format, &found.decoder, &found.sources) == (want.version, &want.format, &want.decoder, &want.sources);
    if !same || !splits.iter().all(|s| found.splits.iter().any(|f| f == s)) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for split in splits {
        let (xp, yp) = paths(dir, split);
        let pixels = map_images(&xp).with_context(|| format!("cannot read cached split {}; delete {} to rebuild the cache", xp.display(), dir.display()))?;
        let y: Array1<u32> = ndarray_npy::read_npy(&yp).with_context(|| format!("cannot read cached labels {}", yp.display()))?;
        let (n, c, h, w) = pixels.0;
        if y.len() != n && !y.is_empty() {
            anyhow::bail!("{}: {} labels for {n} images; delete {} to rebuild the cache", yp.display(), y.len(), dir.display());
        }
        out.push(ImageSet { n, c, h, w, pixels: pixels.1, labels: y.to_vec() });
    }
    Ok(Some(out))
}

/// The uint8 [N, C, H, W] array of an `.npy` file, mapped read-only: its shape and its bytes.
fn map_images(path: &Path) -> Result<((usize, usize, usize, usize), Pixels)> {
    let file = std::fs::File::open(path)?;
    // SAFETY: the map is read-only and the cache's files are only ever replaced by rename
    // (`util::write_atomic_with`), never written in place, so the mapped bytes do not change (a
    // replaced file's old inode stays mapped). A file truncated by another program while mapped
    // would end the process with SIGBUS; nothing in repro does that.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let (dim, start, len) = {
        let view = ArrayView4::<u8>::view_npy(&map)?;
        if !view.is_standard_layout() {
            anyhow::bail!("not a C-ordered array");
        }
        (view.dim(), view.as_ptr() as usize - map.as_ptr() as usize, view.len())
    };
    Ok((dim, Pixels::Mapped { map: std::sync::Arc::new(map), start, len }))
}

/// Stores decoded splits; the manifest goes last.
pub fn store(dir: &Path, key: &Key, splits: &[(&str, &ImageSet)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = dir.join(MANIFEST);
    if manifest.exists() {
        std::fs::remove_file(&manifest).with_context(|| format!("cannot remove {}", manifest.display()))?;
    }
    for (split, set) in splits {
        let (xp, yp) = paths(dir, split);
        // Views over the decoded bytes: no second copy of a possibly large split.
        let x = ArrayView4::from_shape((set.n, set.c, set.h, set.w), &set.pixels[..])?;
        let y = ArrayView1::from(&set.labels);
        util::write_atomic_with(&xp, |tmp| ndarray_npy::write_npy(tmp, &x).with_context(|| format!("cannot write {}", tmp.display())))?;
        util::write_atomic_with(&yp, |tmp| ndarray_npy::write_npy(tmp, &y).with_context(|| format!("cannot write {}", tmp.display())))?;
    }
    let names: Vec<&str> = splits.iter().map(|(s, _)| *s).collect();
    util::write_json(&manifest, &manifest_for(key, &names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_invalidation() {
        let d = tempfile::tempdir().unwrap();
        let key = Key { format: "idx".into(), decoder: "idx@2px {}".into(), sources: vec![("a.gz".into(), "0".repeat(64))] };
        let set = ImageSet { n: 2, c: 1, h: 2, w: 3, pixels: (0..12).collect(), labels: vec![4, 7] };
        let small = ImageSet { n: 1, c: 1, h: 2, w: 3, pixels: (20..26).collect(), labels: vec![1] };
        store(d.path(), &key, &[("train", &set), ("test", &set), ("unlabeled", &small)]).unwrap();
        let got = load(d.path(), &key, &["train", "test"]).unwrap().unwrap();
        assert_eq!((got[1].n, got[1].h, got[1].w, got[1].pixels[11], got[1].labels[1]), (2, 2, 3, 11, 7));
        // Read in place through the memory map, byte for byte.
        assert!(got[0].pixels.is_mapped() && got[0].pixels[..] == set.pixels[..]);
        // A subset of the stored splits, in the order asked for.
        let got = load(d.path(), &key, &["unlabeled"]).unwrap().unwrap();
        assert_eq!((got.len(), got[0].n, got[0].pixels[0]), (1, 1, 20));
        assert!(load(d.path(), &key, &["train", "extra"]).unwrap().is_none());
        // A different pinned hash (a new archive) invalidates the cache.
        let mut other = key.clone();
        other.sources[0].1 = "1".repeat(64);
        assert!(load(d.path(), &other, &["train", "test"]).unwrap().is_none());
        // So do other decoder settings (another resize target).
        let other = Key { decoder: "idx@3px {}".into(), ..key.clone() };
        assert!(load(d.path(), &other, &["train", "test"]).unwrap().is_none());
    }
}
