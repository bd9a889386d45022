//! The data stage: `datasets.lock` → fetched and verified files → decoded uint8 image splits.
//! Decoded splits are plain bytes ([`ImageSet`]); only `loader`/`augment` turn them into tch tensors,
//! so eval (ONNX Runtime) can use the same splits without libtorch.

pub mod augment;
pub mod cifar;
pub mod decoded;
pub mod extract;
pub mod fetch;
pub mod folder;
pub mod idx;
pub mod imagenet;
pub mod resize;
pub mod stl10;

use std::path::{Path, PathBuf};

pub use repro_lite::lock;
pub use repro_lite::lock::{has_unlabeled, DatasetInfo};

use anyhow::{bail, Context, Result};
use lock::{DatasetEntry, Format, LabelSet};

/// N images of C×H×W bytes (row-major, channel-first) with their labels (empty for an unlabeled set).
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pixels: Pixels,
    pub labels: Vec<u32>,
}

/// Image bytes: decoded in memory, or read in place from the decoded cache's `.npy` file through a
/// read-only memory map, so a split larger than memory (ImageNet-100 at 224 px: 19 GB) costs page
/// cache the kernel can evict, not resident memory.
#[derive(Clone)]
pub enum Pixels {
    Owned(Vec<u8>),
    /// `len` bytes from `start` of the mapped file.
    Mapped { map: std::sync::Arc<memmap2::Mmap>, start: usize, len: usize },
}

impl Pixels {
    pub fn is_mapped(&self) -> bool {
        matches!(self, Pixels::Mapped { .. })
    }
}

impl std::ops::Deref for Pixels {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(v) => v,
            Pixels::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({} bytes{})", self.len(), if self.is_mapped() { ", mapped" } else { "" })
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(v: Vec<u8>) -> Self {
        Pixels::Owned(v)
    }
}

impl FromIterator<u8> for Pixels {
    fn from_iter<I: IntoIterator<Item = u8>>(it: I) -> Self {
        Pixels::Owned(it.into_iter().collect())
    }
}

impl ImageSet {
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Rows `range` as a new set (copies).
    pub fn slice(&self, range: std::ops::Range<usize>) -> ImageSet {
        let l = self.image_len();
        ImageSet {
            n: range.len(),
            c: self.c,
            h: self.h,
            w: self.w,
            pixels: self.pixels[range.start * l..range.end * l].to_vec().into(),
            labels: if self.labels.is_empty() { Vec::new() } else { self.labels[range].to_vec() },
        }
    }
}

/// The splits of a dataset plus what the harness needs to know about it.
#[derive(Debug, Clone)]
pub struct Splits {
    pub info: DatasetInfo,
    pub train: ImageSet,
    pub test: ImageSet,
    /// Images without labels for pre-training (STL-10's 100k), when asked for and the dataset has them.
    pub unlabeled: Option<ImageSet>,
}

/// Where a dataset's raw data comes from.
enum Source {
    /// The lock's files, fetched and verified into the cache.
    Files,
    /// Extracted class-folder trees on this machine (not hashed; fingerprinted for the cache).
    Folders { train: PathBuf, test: PathBuf },
}

/// The folder trees a folder-reading format uses: `layout.train`/`layout.test` relative to `root`
/// (the dataset's cache folder, or its extracted archive), or absolute.
fn folder_paths(entry: &DatasetEntry, root: &Path) -> Option<(PathBuf, PathBuf)> {
    let (train, test) = (entry.layout.train.as_ref()?, entry.layout.test.as_ref()?);
    Some((root.join(train), root.join(test)))
}

/// Files when the entry has them, except that imagenet_subset prefers extracted folders when both
/// exist; a folder-only entry must have its folders.
fn resolve_source(name: &str, entry: &DatasetEntry, cache_dir: &Path) -> Result<Source> {
    if !entry.format.reads_folders() {
        return Ok(Source::Files);
    }
    let folders = folder_paths(entry, cache_dir);
    if let Some((train, test)) = &folders {
        let present = train.is_dir() && test.is_dir();
        if present && (entry.files.is_empty() || entry.format == Format::ImagenetSubset) {
            return Ok(Source::Folders { train: train.clone(), test: test.clone() });
        }
        if entry.files.is_empty() {
            let mut m = format!(
                "dataset {name} reads class folders on this machine, but {} and {} are not both folders",
                train.display(),
                test.display()
            );
            if let Some(how) = &entry.instructions {
                m.push_str(&format!("\nHow to get it: {}", how.trim()));
            }
            bail!("{m}\nCreate them (or symlinks to them), or fix layout.train/layout.test in the lock");
        }
    }
    Ok(Source::Files)
}

/// The extracted class folders dataset `name` reads instead of files, if that is its source now.
pub fn folder_source(lock: &lock::Lock, name: &str, cache: &Path) -> Result<Option<(PathBuf, PathBuf)>> {
    let entry = lock.get(name)?;
    Ok(match resolve_source(name, entry, &cache.join(name))? {
        Source::Folders { train, test } => Some((train, test)),
        Source::Files => None,
    })
}

/// Fetches (if needed), verifies and decodes a dataset named in the lock; a second call reads the
/// decoded cache (without re-hashing the archives it was decoded from).
pub fn load(lock_path: &Path, name: &str, opts: &fetch::FetchOptions, unlabeled: bool) -> Result<Splits> {
    load_from(&lock::Lock::load(lock_path)?, name, opts, unlabeled, None)
}

/// [`load`] with the lock already read; `fetched` are the dataset's files when the caller has just
/// fetched and verified them (`repro fetch --decode`), so they are not hashed a second time.
pub fn load_from(lock: &lock::Lock, name: &str, opts: &fetch::FetchOptions, unlabeled: bool, fetched: Option<Vec<PathBuf>>) -> Result<Splits> {
    let info = lock.info(name)?;
    let entry = lock.get(name)?;
    if unlabeled && !has_unlabeled(entry.format) {
        bail!("dataset {name} (format {}) has no unlabeled split; remove data.unlabeled from the suite", entry.format.name());
    }
    let cache = fetch::data_dir()?;
    let cache_dir = cache.join(name);
    let source = resolve_source(name, entry, &cache_dir)?;
    let key = cache_key(entry, &source)?;
    let decoded_dir = cache_dir.join("decoded");
    let wanted: &[&str] = if unlabeled { &["train", "test", "unlabeled"] } else { &["train", "test"] };
    if let Some(mut sets) = decoded::load(&decoded_dir, &key, wanted)? {
        let unlabeled = if unlabeled { sets.pop() } else { None };
        let test = sets.pop().context("cached test split")?;
        let train = sets.pop().context("cached train split")?;
        return Ok(Splits { info, train, test, unlabeled });
    }
    let files = match (&source, fetched) {
        (Source::Files, Some(files)) => files,
        (Source::Files, None) => fetch::ensure_dataset(lock, name, &cache, opts)?,
        (Source::Folders { .. }, _) => Vec::new(),
    };
    eprintln!("decoding {name} (once; later runs read {})", decoded_dir.display());
    let decoded = decode(lock, name, entry, &files, &source, &info)?;
    check_labels(name, &info, &decoded)?;
    let stored: Vec<(&str, &ImageSet)> = decoded.iter().map(|(s, set)| (*s, set)).collect();
    decoded::store(&decoded_dir, &key, &stored)?;
    // Read back through the memory map, freeing the decoded copy: training then holds one copy of
    // the images (its tensor), not two.
    drop(decoded);
    let mut sets = decoded::load(&decoded_dir, &key, wanted)?.with_context(|| format!("{} was just written but does not read back", decoded_dir.display()))?;
    let unlabeled = if unlabeled { sets.pop() } else { None };
    let test = sets.pop().context("stored test split")?;
    let train = sets.pop().context("stored train split")?;
    Ok(Splits { info, train, test, unlabeled })
}

/// Labels inside 0..classes and images of the entry's size and channel count.
fn check_labels(name: &str, info: &DatasetInfo, decoded: &[(&str, ImageSet)]) -> Result<()> {
    for (split, set) in decoded {
        if set.labels.is_empty() != (*split == "unlabeled") {
            bail!("dataset {name}, {split} split: {} labels for {} images", set.labels.len(), set.n);
        }
        if let Some(bad) = set.labels.iter().find(|&&l| l as usize >= info.classes) {
            bail!("dataset {name}, {split} split: label {bad} outside 0..{} (the lock says classes: {})", info.classes, info.classes);
        }
        let channels_ok = set.c == info.channels || (set.c == 1 && info.channels == 3);
        if set.h != info.image_size || set.w != info.image_size || !channels_ok {
            bail!(
                "dataset {name}, {split} split: decoded images are {}x{}x{}, the lock says {} channel(s) of {}x{}; fix image_size/mean/std in the lock",
                set.c, set.h, set.w, info.channels, info.image_size, info.image_size
            );
        }
    }
    Ok(())
}

/// What the decoded arrays depend on: the format, its layout and size, and the source identity.
fn cache_key(entry: &DatasetEntry, source: &Source) -> Result<decoded::Key> {
    let decoder = format!("{}@{}px {}", entry.format.name(), entry.image_size, serde_json::to_string(&entry.layout)?);
    let sources = match source {
        Source::Files => entry.files.iter().map(|f| (f.name.clone(), file_identity(f))).collect(),
        Source::Folders { train, test } => vec![
            (format!("folder:{}", train.display()), folder::fingerprint(train)?),
            (format!("folder:{}", test.display()), folder::fingerprint(test)?),
        ],
    };
    Ok(decoded::Key { format: entry.format.name().to_owned(), decoder, sources })
}

/// The hash that pins a file: its sha256, else `md5:<md5>`.
fn file_identity(f: &lock::FileEntry) -> String {
    match (&f.sha256, &f.md5) {
        (Some(sha), _) => sha.clone(),
        (None, Some(md5)) => format!("md5:{md5}"),
        (None, None) => String::new(),
    }
}

/// Runs the format's decoder; returns (split name, images) for every split it has.
fn decode(lock: &lock::Lock, name: &str, entry: &DatasetEntry, files: &[PathBuf], source: &Source, info: &DatasetInfo) -> Result<Vec<(&'static str, ImageSet)>> {
    let size = info.image_size as u32;
    let resize = match entry.layout.shorter_side {
        Some(s) => folder::Resize::ShorterSide(s),
        None => folder::Resize::Exact,
    };
    Ok(match entry.format {
        Format::Idx => decode_idx(files)?,
        Format::Cifar10Bin => {
            let dir = extracted(files)?.join("cifar-10-batches-bin");
            let batches: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
            let refs: Vec<&Path> = batches.iter().map(PathBuf::as_path).collect();
            vec![("train", cifar::decode(&refs, cifar::Labels::Only)?), ("test", cifar::decode(&[&dir.join("test_batch.bin")], cifar::Labels::Only)?)]
        }
        Format::Cifar100Bin => {
            let dir = extracted(files)?.join("cifar-100-binary");
            let labels = match entry.layout.labels.unwrap_or(LabelSet::Fine) {
                LabelSet::Fine => cifar::Labels::Fine,
                LabelSet::Coarse => cifar::Labels::Coarse,
            };
            vec![("train", cifar::decode(&[&dir.join("train.bin")], labels)?), ("test", cifar::decode(&[&dir.join("test.bin")], labels)?)]
        }
        Format::Stl10Bin => {
            let dir = extracted(files)?.join("stl10_binary");
            let mut out = vec![
                ("train", stl10::decode(&dir.join("train_X.bin"), &dir.join("train_y.bin"))?),
                ("test", stl10::decode(&dir.join("test_X.bin"), &dir.join("test_y.bin"))?),
            ];
            let unl = dir.join("unlabeled_X.bin");
            if unl.is_file() {
                out.push(("unlabeled", stl10::decode_unlabeled(&unl)?));
            }
            out
        }
        Format::TinyImagenetZip => {
            let (train, test, _wnids) = folder::decode_tiny_imagenet(&extracted(files)?.join("tiny-imagenet-200"))?;
            vec![("train", train), ("test", test)]
        }
        Format::ImageFolder => {
            let (train_dir, test_dir) = match source {
                Source::Folders { train, test } => (train.clone(), test.clone()),
                // The same layout keys, relative to the extracted archive instead of the cache folder.
                Source::Files => folder_paths(entry, &extracted(files)?).context("layout.train/layout.test")?,
            };
            let (train, classes) = folder::decode_image_folder(&train_dir, None, size, resize)?;
            if classes.len() != info.classes {
                bail!("dataset {name}: {} has {} class folders, the lock says classes: {}", train_dir.display(), classes.len(), info.classes);
            }
            let (test, _) = folder::decode_image_folder(&test_dir, Some(&classes), size, resize)?;
            vec![("train", train), ("test", test)]
        }
        Format::ImagenetSubset => {
            let layout = &entry.layout;
            let pin = layout.class_list.as_ref().context("layout.class_list")?;
            let wnids = imagenet::class_list(&lock.read_pinned(pin)?, &lock.resolve(&pin.file), info.classes)?;
            match source {
                Source::Folders { train, test } => {
                    let (tr, _) = folder::decode_image_folder(train, Some(&wnids), size, resize)?;
                    let (te, _) = folder::decode_image_folder(test, Some(&wnids), size, resize)?;
                    vec![("train", tr), ("test", te)]
                }
                Source::Files => {
                    let pin = layout.val_labels.as_ref().context("layout.val_labels")?;
                    let val_wnids = imagenet::val_labels(&lock.read_pinned(pin)?, &lock.resolve(&pin.file))?;
                    let [train_tar, val_tar] = files else { bail!("dataset {name}: expected the train and val archives, the lock lists {} files", files.len()) };
                    let tr = imagenet::decode_train_tar(train_tar, &wnids, size, resize)?;
                    let te = imagenet::decode_val_tar(val_tar, &wnids, &val_wnids, size, resize)?;
                    vec![("train", tr), ("test", te)]
                }
            }
        }
    })
}

/// Extracts the dataset's one archive next to it (`<file>.extracted/`), once.
fn extracted(files: &[PathBuf]) -> Result<PathBuf> {
    let [archive] = files else { bail!("expected exactly one archive file, the lock lists {}", files.len()) };
    let name = archive.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let kind = extract::ArchiveKind::from_name(name).with_context(|| format!("{}: not a .tar, .tar.gz, .tgz or .zip archive", archive.display()))?;
    let dest = archive.with_file_name(format!("{name}.extracted"));
    extract::extract(archive, kind, &dest)?;
    Ok(dest)
}

fn find<'a>(files: &'a [PathBuf], stem: &str) -> Result<&'a PathBuf> {
    files
        .iter()
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(stem)))
        .with_context(|| format!("the lock entry has no file named {stem}*"))
}

fn decode_idx(files: &[PathBuf]) -> Result<Vec<(&'static str, ImageSet)>> {
    let split = |images: &str, labels: &str| -> Result<ImageSet> {
        let x = idx::read(find(files, images)?)?;
        let y = idx::read(find(files, labels)?)?;
        if x.dims.len() != 3 || y.dims.len() != 1 || x.dims[0] != y.dims[0] {
            bail!("{images}/{labels}: image dims {:?} do not match label dims {:?}", x.dims, y.dims);
        }
        Ok(ImageSet { n: x.dims[0], c: 1, h: x.dims[1], w: x.dims[2], pixels: x.data.into(), labels: y.data.iter().map(|&l| l as u32).collect() })
    };
    Ok(vec![("train", split("train-images", "train-labels")?), ("test", split("t10k-images", "t10k-labels")?)])
}
