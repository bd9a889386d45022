//! Cache of decoded splits: `<cache>/<dataset>/decoded/{train,test}_{images,labels}.npy` (uint8
//! [N, C, H, W] and uint32 [N]) plus `manifest.json` naming the lock entry's file hashes and the
//! format they were decoded from. A later run whose lock entry has the same hashes loads the arrays
//! instead of extracting and decoding again; any other manifest is ignored and rewritten. The
//! manifest is written last, atomically, so a half-written cache is never used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{Array1, Array4, ArrayView1, ArrayView4};
use serde::{Deserialize, Serialize};

use super::lock::DatasetEntry;
use super::ImageSet;
use crate::util;

const MANIFEST: &str = "manifest.json";
const VERSION: u32 = 1;

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

fn manifest_for(entry: &DatasetEntry, decoder: &str, splits: &[&str]) -> Manifest {
    Manifest {
        version: VERSION,
        format: entry.format.clone(),
        decoder: decoder.to_owned(),
        sources: entry.files.iter().map(|f| (f.name.clone(), f.sha256.clone())).collect(),
        splits: splits.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn paths(dir: &Path, split: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{split}_images.npy")), dir.join(format!("{split}_labels.npy")))
}

/// Loads cached splits when the manifest matches this lock entry and decoder settings.
pub fn load(dir: &Path, entry: &DatasetEntry, decoder: &str, splits: &[&str]) -> Result<Option<Vec<ImageSet>>> {
    let Ok(found) = util::read_json::<Manifest>(&dir.join(MANIFEST)) else { return Ok(None) };
    if found != manifest_for(entry, decoder, splits) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for split in splits {
        let (xp, yp) = paths(dir, split);
        let x: Array4<u8> = ndarray_npy::read_npy(&xp).with_context(|| format!("cannot read cached split {}", xp.display()))?;
        let y: Array1<u32> = ndarray_npy::read_npy(&yp).with_context(|| format!("cannot read cached labels {}", yp.display()))?;
        let (n, c, h, w) = x.dim();
        if y.len() != n {
            anyhow::bail!("{}: {} labels for {n} images; delete {} to rebuild the cache", yp.display(), y.len(), dir.display());
        }
        out.push(ImageSet { n, c, h, w, pixels: x.into_raw_vec_and_offset().0, labels: y.to_vec() });
    }
    Ok(Some(out))
}

/// Stores decoded splits; the manifest goes last.
pub fn store(dir: &Path, entry: &DatasetEntry, decoder: &str, splits: &[(&str, &ImageSet)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = dir.join(MANIFEST);
    if manifest.exists() {
        std::fs::remove_file(&manifest).with_context(|| format!("cannot remove {}", manifest.display()))?;
    }
    for (split, set) in splits {
        let (xp, yp) = paths(dir, split);
        // Views over the decoded bytes: no second copy of a possibly large split.
        let x = ArrayView4::from_shape((set.n, set.c, set.h, set.w), &set.pixels)?;
        let y = ArrayView1::from(&set.labels);
        util::write_atomic_with(&xp, |tmp| ndarray_npy::write_npy(tmp, &x).with_context(|| format!("cannot write {}", tmp.display())))?;
        util::write_atomic_with(&yp, |tmp| ndarray_npy::write_npy(tmp, &y).with_context(|| format!("cannot write {}", tmp.display())))?;
    }
    let names: Vec<&str> = splits.iter().map(|(s, _)| *s).collect();
    util::write_json(&manifest, &manifest_for(entry, decoder, &names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_invalidation() {
        let d = tempfile::tempdir().unwrap();
        let lock = crate::data::lock::Lock::parse(
            "version: 1\ndatasets:\n  x:\n    description: d\n    homepage: h\n    license: l\n    format: idx\n    files:\n      - name: a.gz\n        size: 1\n        sha256: 0000000000000000000000000000000000000000000000000000000000000000\n        sources: []\n",
            Path::new("t.lock"),
        )
        .unwrap();
        let entry = lock.get("x").unwrap();
        let set = ImageSet { n: 2, c: 1, h: 2, w: 3, pixels: (0..12).collect(), labels: vec![4, 7] };
        store(d.path(), entry, "idx@2", &[("train", &set), ("test", &set)]).unwrap();
        let got = load(d.path(), entry, "idx@2", &["train", "test"]).unwrap().unwrap();
        assert_eq!((got[1].n, got[1].h, got[1].w, got[1].pixels[11], got[1].labels[1]), (2, 2, 3, 11, 7));
        // A different pinned hash (a new archive) invalidates the cache.
        let mut other = entry.clone();
        other.files[0].sha256 = "1".repeat(64);
        assert!(load(d.path(), &other, "idx@2", &["train", "test"]).unwrap().is_none());
        // So do other decoder settings (another resize target).
        assert!(load(d.path(), entry, "idx@3", &["train", "test"]).unwrap().is_none());
    }
}
