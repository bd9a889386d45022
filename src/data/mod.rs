//! The data stage: `datasets.lock` → fetched and verified files → decoded uint8 image splits.
//! Decoded splits are plain bytes ([`ImageSet`]); only `loader`/`augment` turn them into tch tensors,
//! so eval (ONNX Runtime) can use the same splits without libtorch.

pub mod augment;
pub mod fetch;
pub mod idx;
pub mod lock;

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

/// Datasets with a decoder. Fashion-MNIST's mean/std are those of its 60k training images
/// (0.2860, 0.3530), the values the quick-start calibration used.
pub fn info(name: &str) -> Result<DatasetInfo> {
    match name {
        "fashion_mnist" => Ok(DatasetInfo {
            name: "fashion_mnist",
            classes: 10,
            channels: 1,
            image_size: 28,
            mean: vec![0.2860],
            std: vec![0.3530],
        }),
        other => bail!("dataset {other:?} has no decoder yet; supported: fashion_mnist"),
    }
}

/// Fetches (if needed), verifies and decodes a dataset named in the lock.
pub fn load(lock_path: &Path, name: &str, opts: &fetch::FetchOptions) -> Result<Splits> {
    let info = info(name)?;
    let lock = lock::Lock::load(lock_path)?;
    let cache = fetch::data_dir()?;
    let files = fetch::ensure_dataset(&lock, name, &cache, opts)?;
    decode(info, &files)
}

fn find<'a>(files: &'a [PathBuf], stem: &str) -> Result<&'a PathBuf> {
    files
        .iter()
        .find(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(stem)))
        .with_context(|| format!("the lock entry has no file named {stem}*"))
}

fn decode(info: DatasetInfo, files: &[PathBuf]) -> Result<Splits> {
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
