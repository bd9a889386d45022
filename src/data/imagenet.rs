//! Class subsets of ILSVRC-2012 (ImageNet-100 of CMC, Tian et al. 2019) from the user's own copy.
//!
//! Two sources, giving identical arrays:
//! * extracted class folders `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the torchvision /
//!   `valprep.sh` layout; symlinks to a full ImageNet tree are fine, only the subset's folders are
//!   read) — decoded by `folder::decode_image_folder`;
//! * the archives as distributed: `ILSVRC2012_img_train.tar` (one inner `<wnid>.tar` of flat JPEGs
//!   per class) and `ILSVRC2012_img_val.tar` (50,000 flat `ILSVRC2012_val_%08d.JPEG`), labelled by a
//!   pinned table with the wnid of every val image. Nothing is extracted to disk: the train archive
//!   is indexed once (tar headers only, seeking past the data) and only the subset's inner tars are
//!   read; the val archive is streamed once and only the subset's images are kept. Entry names are
//!   matched, never used as paths, so no archive content can land anywhere.
//!
//! Class index = position of the wnid in the *sorted* subset list (what torchvision ImageFolder
//! gives over the subset's folders, the solo-learn `make_imagenet100.py` layout), not the list's
//! file order. Images are ordered by class, then file name, in both sources.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::folder::{self, Resize};
use super::ImageSet;

/// ImageNet keeps at most 1,300 training images per class: the buffer reserved up front.
const MAX_TRAIN_PER_CLASS: usize = 1300;

fn is_wnid(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Parses a class list (wnids separated by whitespace), checks it, and returns it sorted.
pub fn class_list(text: &str, path: &Path, classes: usize) -> Result<Vec<String>> {
    let mut wnids: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    if let Some(bad) = wnids.iter().find(|w| !is_wnid(w)) {
        bail!("{}: {bad:?} is not a WordNet id (n followed by 8 digits)", path.display());
    }
    if wnids.len() != classes {
        bail!("{}: {} wnids, the lock says classes: {classes}", path.display(), wnids.len());
    }
    wnids.sort();
    if let Some(w) = wnids.windows(2).find(|w| w[0] == w[1]) {
        bail!("{}: wnid {} listed twice", path.display(), w[0]);
    }
    Ok(wnids)
}

/// Parses the val label table: line i (from 1) is the wnid of `ILSVRC2012_val_{i:08}.JPEG`.
pub fn val_labels(text: &str, path: &Path) -> Result<Vec<String>> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let w = l.trim();
            if is_wnid(w) {
                Ok(w.to_owned())
            } else {
                bail!("{} line {}: expected a wnid (n followed by 8 digits), found {w:?}", path.display(), i + 1)
            }
        })
        .collect()
}

/// The last path component of a tar entry name (`./n01440764.tar` → `n01440764.tar`).
fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn is_jpeg(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpeg") || lower.ends_with(".jpg")
}

fn corrupt(archive: &Path, what: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{}: {what}; the archive is truncated or corrupt: delete it and place a good copy (it is verified by sha256)", archive.display())
}

/// The training images of `wnids` (sorted) from `ILSVRC2012_img_train.tar`.
pub fn decode_train_tar(archive: &Path, wnids: &[String], size: u32, resize: Resize) -> Result<ImageSet> {
    // Pass 1: where each wanted inner tar's bytes start, from the headers only.
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut outer = tar::Archive::new(BufReader::new(file));
    let wanted: HashSet<&str> = wnids.iter().map(String::as_str).collect();
    let mut spans: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in outer.entries_with_seek().map_err(|e| corrupt(archive, e))? {
        let entry = entry.map_err(|e| corrupt(archive, format!("cannot read the next entry: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if let Some(wnid) = base_name(&name).strip_suffix(".tar") {
            if wanted.contains(wnid) {
                spans.insert(wnid.to_owned(), (entry.raw_file_position(), entry.size()));
            }
        }
    }
    let missing: Vec<&str> = wnids.iter().map(String::as_str).filter(|w| !spans.contains_key(*w)).collect();
    if !missing.is_empty() {
        bail!(
            "{}: no inner archive for {} of the subset's classes ({}{}); is this ILSVRC2012_img_train.tar?",
            archive.display(),
            missing.len(),
            missing.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            if missing.len() > 5 { ", ..." } else { "" }
        );
    }
    // Pass 2: class by class, in sorted-wnid order, decode in parallel into one growing buffer.
    let image = 3 * size as usize * size as usize;
    let mut pixels = Vec::with_capacity(image * MAX_TRAIN_PER_CLASS * wnids.len());
    let mut labels = Vec::new();
    for (class, wnid) in wnids.iter().enumerate() {
        let (start, len) = spans[wnid];
        let mut file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
        file.seek(SeekFrom::Start(start)).with_context(|| format!("cannot seek in {}", archive.display()))?;
        let items = read_images(BufReader::new(file).take(len), archive, &format!("{wnid}.tar"), |_| true)?;
        if items.is_empty() {
            bail!("{}: {wnid}.tar holds no JPEG", archive.display());
        }
        let label = u32::try_from(class).context("too many classes")?;
        let set = folder::decode_memory(&items, vec![label; items.len()], size, resize)?;
        pixels.extend_from_slice(&set.pixels);
        labels.extend(set.labels);
    }
    Ok(ImageSet { n: labels.len(), c: 3, h: size as usize, w: size as usize, pixels: pixels.into(), labels })
}

/// Reads the JPEG members of a tar stream whose file name passes `keep`, sorted by name.
fn read_images(reader: impl Read, archive: &Path, what: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<(String, Vec<u8>)>> {
    let mut tar = tar::Archive::new(reader);
    let mut items = Vec::new();
    for entry in tar.entries().map_err(|e| corrupt(archive, format!("{what}: {e}")))? {
        let mut entry = entry.map_err(|e| corrupt(archive, format!("{what}: cannot read the next entry: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = base_name(&String::from_utf8_lossy(&entry.path_bytes())).to_owned();
        if !is_jpeg(&name) || !keep(&name) {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(|e| corrupt(archive, format!("{what}/{name}: {e}")))?;
        if bytes.len() as u64 != entry.size() {
            return Err(corrupt(archive, format!("{what}/{name}: ends after {} of {} bytes", bytes.len(), entry.size())));
        }
        items.push((format!("{}:{what}/{name}", archive.display()), bytes));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(items)
}

/// The validation images of `wnids` (sorted) from `ILSVRC2012_img_val.tar`, labelled by
/// `val_wnids` (entry i − 1 for `ILSVRC2012_val_{i:08}.JPEG`).
pub fn decode_val_tar(archive: &Path, wnids: &[String], val_wnids: &[String], size: u32, resize: Resize) -> Result<ImageSet> {
    let class: HashMap<&str, u32> = wnids.iter().enumerate().map(|(i, w)| (w.as_str(), i as u32)).collect();
    let label_of = |name: &str| -> Option<u32> {
        let stem = name.strip_prefix("ILSVRC2012_val_")?.split('.').next()?;
        let i: usize = stem.parse().ok()?;
        class.get(val_wnids.get(i.checked_sub(1)?)?.as_str()).copied()
    };
    let expected = val_wnids.iter().filter(|w| class.contains_key(w.as_str())).count();
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let items = read_images(BufReader::new(file), archive, "val", |n| label_of(n).is_some())?;
    if items.len() != expected {
        bail!(
            "{}: found {} validation images of the subset's classes, the label table expects {expected}; is this ILSVRC2012_img_val.tar?",
            archive.display(),
            items.len()
        );
    }
    // Class, then file name: the order of the val/<wnid>/ folders.
    let mut by_class: BTreeMap<(u32, String), Vec<u8>> = BTreeMap::new();
    for (name, bytes) in items {
        let base = base_name(&name).to_owned();
        let label = label_of(&base).context("label")?;
        by_class.insert((label, name), bytes);
    }
    let labels: Vec<u32> = by_class.keys().map(|(l, _)| *l).collect();
    let items: Vec<(String, Vec<u8>)> = by_class.into_iter().map(|((_, n), b)| (n, b)).collect();
    folder::decode_memory(&items, labels, size, resize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_cmc_list_matches_its_published_hash() {
        // ../shared/reference/datasets.md §3: CMC imagenet100.txt, 100 wnids, 1000 bytes, sha256 79f3f155…
        let lock = crate::data::lock::Lock::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets.lock")).unwrap();
        let entry = lock.get("imagenet100").unwrap();
        let pin = entry.layout.class_list.as_ref().unwrap();
        assert_eq!(pin.sha256, "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397");
        let text = lock.read_pinned(pin).unwrap();
        assert_eq!(text.len(), 1000);
        let sorted = class_list(&text, Path::new("x"), 100).unwrap();
        assert_eq!(text.lines().next(), Some("n02869837"), "CMC order, first line");
        assert_eq!(sorted[0], "n01558993");
        let vpin = entry.layout.val_labels.as_ref().unwrap();
        let val = val_labels(&lock.read_pinned(vpin).unwrap(), Path::new("y")).unwrap();
        assert_eq!(val.len(), 50_000);
        assert_eq!(val[0], "n01751748", "ILSVRC2012_val_00000001.JPEG");
        let in_subset = val.iter().filter(|w| sorted.binary_search(w).is_ok()).count();
        assert_eq!(in_subset, 5000, "50 validation images for each of the 100 classes");
    }

    #[test]
    fn bad_lists_are_refused() {
        let p = Path::new("list.txt");
        assert!(class_list("n01000001 n01000002", p, 2).is_ok());
        assert!(class_list("n01000001 x1000002", p, 2).unwrap_err().to_string().contains("x1000002"));
        assert!(class_list("n01000001 n01000001", p, 2).unwrap_err().to_string().contains("twice"));
        assert!(class_list("n01000001", p, 2).unwrap_err().to_string().contains("classes: 2"));
        assert!(val_labels("n01000001\nbad\n", p).unwrap_err().to_string().contains("line 2"));
    }
}
