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
pub mod lock;
pub mod stl10;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// N images of C×H×W bytes (row-major, channel-first) with their labels.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
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
            pixels: self.pixels[range.start * l..range.end * l].to_vec(),
            labels: self.labels[range].to_vec(),
        }
    }
}

/// The train and test splits of a dataset plus what the harness needs to know about it.
#[derive(Debug, Clone)]
pub struct Splits {
    pub info: DatasetInfo,
    pub train: ImageSet,
    pub test: ImageSet,
}

/// Static facts about a dataset the decoders support.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    pub name: &'static str,
    pub classes: usize,
    pub channels: usize,
    pub image_size: usize,
    /// Per-channel normalisation of pixel/255.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

const IMAGENET_MEAN: &[f32] = &[0.485, 0.456, 0.406];
const IMAGENET_STD: &[f32] = &[0.229, 0.224, 0.225];

/// Datasets with a decoder. Fashion-MNIST's mean/std are those of its 60k training images
/// (0.2860, 0.3530), the values the quick-start calibration used; CIFAR's are the CorInfoMax code's
/// (`serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/transform_utils.py`).
pub fn info(name: &str) -> Result<DatasetInfo> {
    let d = |name, classes, channels, image_size, mean: &[f32], std: &[f32]| DatasetInfo {
        name,
        classes,
        channels,
        image_size,
        mean: mean.to_vec(),
        std: std.to_vec(),
    };
    match name {
        "fashion_mnist" => Ok(d("fashion_mnist", 10, 1, 28, &[0.2860], &[0.3530])),
        "cifar10" => Ok(d("cifar10", 10, 3, 32, &[0.4914, 0.4822, 0.4465], &[0.247, 0.243, 0.261])),
        "cifar100" => Ok(d("cifar100", 100, 3, 32, &[0.5071, 0.4865, 0.4409], &[0.2673, 0.2564, 0.2762])),
        // ImageNet statistics, the usual choice for STL-10 (not checked against a paper's code).
        "stl10" => Ok(d("stl10", 10, 3, 96, IMAGENET_MEAN, IMAGENET_STD)),
        // CorInfoMax's Tiny-ImageNet code normalises with ImageNet statistics.
        "tiny_imagenet" => Ok(d("tiny_imagenet", 200, 3, 64, IMAGENET_MEAN, IMAGENET_STD)),
        // Imagenette 160 px: shorter side 160, centre crop 160×160.
        "imagenette_160" => Ok(d("imagenette_160", 10, 3, 160, IMAGENET_MEAN, IMAGENET_STD)),
        other => bail!("dataset {other:?} has no decoder yet; supported: fashion_mnist, cifar10, cifar100, stl10, tiny_imagenet, imagenette_160"),
    }
}

/// Fetches (if needed), verifies and decodes a dataset named in the lock.
pub fn load(lock_path: &Path, name: &str, opts: &fetch::FetchOptions) -> Result<Splits> {
    let info = info(name)?;
    let lock = lock::Lock::load(lock_path)?;
    let cache = fetch::data_dir()?;
    let files = fetch::ensure_dataset(&lock, name, &cache, opts)?;
    let entry = lock.get(name)?;
    let decoded_dir = cache.join(name).join("decoded");
    let decoder = format!("{}@{}px", entry.format, info.image_size);
    if let Some(mut sets) = decoded::load(&decoded_dir, entry, &decoder, &["train", "test"])? {
        let test = sets.pop().context("cached test split")?;
        let train = sets.pop().context("cached train split")?;
        return Ok(Splits { info, train, test });
    }
    let splits = match entry.format.as_str() {
        "idx" => decode_idx(info, &files)?,
        "cifar10_bin" | "cifar100_bin" => decode_cifar(info, &files, &entry.format)?,
        "stl10_bin" => {
            let dir = extracted(&files)?.join("stl10_binary");
            let train = stl10::decode(&dir.join("train_X.bin"), &dir.join("train_y.bin"))?;
            let test = stl10::decode(&dir.join("test_X.bin"), &dir.join("test_y.bin"))?;
            Splits { info, train, test }
        }
        "tiny_imagenet_zip" => {
            let (train, test, _wnids) = folder::decode_tiny_imagenet(&extracted(&files)?.join("tiny-imagenet-200"))?;
            Splits { info, train, test }
        }
        "image_folder_tgz" => {
            let stem = files.first().and_then(|f| f.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
            let stem = stem.trim_end_matches(".tgz").trim_end_matches(".tar.gz").to_owned();
            let root = extracted(&files)?.join(&stem);
            let size = info.image_size as u32;
            let (train, classes) = folder::decode_image_folder(&root.join("train"), None, size, folder::Resize::ShorterSideCenterCrop)?;
            let (test, _) = folder::decode_image_folder(&root.join("val"), Some(&classes), size, folder::Resize::ShorterSideCenterCrop)?;
            Splits { info, train, test }
        }
        other => bail!(
            "{}: dataset {name} has format {other:?}; repro decodes idx, cifar10_bin, cifar100_bin, stl10_bin, tiny_imagenet_zip, image_folder_tgz",
            lock_path.display()
        ),
    };
    decoded::store(&decoded_dir, entry, &decoder, &[("train", &splits.train), ("test", &splits.test)])?;
    Ok(splits)
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

fn decode_cifar(info: DatasetInfo, files: &[PathBuf], format: &str) -> Result<Splits> {
    let root = extracted(files)?;
    let (train, test) = if format == "cifar10_bin" {
        let dir = root.join("cifar-10-batches-bin");
        let batches: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
        let refs: Vec<&Path> = batches.iter().map(PathBuf::as_path).collect();
        (cifar::decode(&refs, cifar::Labels::Only)?, cifar::decode(&[&dir.join("test_batch.bin")], cifar::Labels::Only)?)
    } else {
        let dir = root.join("cifar-100-binary");
        (cifar::decode(&[&dir.join("train.bin")], cifar::Labels::Fine)?, cifar::decode(&[&dir.join("test.bin")], cifar::Labels::Fine)?)
    };
    Ok(Splits { info, train, test })
}

fn find<'a>(files: &'a [PathBuf], stem: &str) -> Result<&'a PathBuf> {
    files
        .iter()
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(stem)))
        .with_context(|| format!("the lock entry has no file named {stem}*"))
}

fn decode_idx(info: DatasetInfo, files: &[PathBuf]) -> Result<Splits> {
    let split = |images: &str, labels: &str| -> Result<ImageSet> {
        let x = idx::read(find(files, images)?)?;
        let y = idx::read(find(files, labels)?)?;
        if x.dims.len() != 3 || y.dims.len() != 1 || x.dims[0] != y.dims[0] {
            bail!("{images}/{labels}: image dims {:?} do not match label dims {:?}", x.dims, y.dims);
        }
        if let Some(bad) = y.data.iter().find(|&&l| l as usize >= info.classes) {
            bail!("{labels}: label {bad} outside 0..{}", info.classes);
        }
        Ok(ImageSet { n: x.dims[0], c: 1, h: x.dims[1], w: x.dims[2], pixels: x.data, labels: y.data.iter().map(|&l| l as u32).collect() })
    };
    let train = split("train-images", "train-labels")?;
    let test = split("t10k-images", "t10k-labels")?;
    Ok(Splits { info, train, test })
}
