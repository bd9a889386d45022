//! The suite file exactly as a user writes it: every field optional, unknown keys rejected.
//!
//! `*Spec` types are unchecked; `crate::plan` turns them into validated targets. A target's spec is
//! the deep merge of the suite's `defaults:` block, the target's own block and `--set` overrides.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

/// The whole YAML file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    /// Suite name; defaults to the file stem. Names the `reports/<suite>/` folder.
    pub suite: Option<String>,
    /// Version of the suite definition; bump on changes that alter results.
    pub version: u32,
    pub description: Option<String>,
    /// Merged under every target (a target's own keys win).
    pub defaults: Option<TargetSpec>,
    pub targets: Vec<TargetSpec>,
}

/// One reproduction target, possibly partial (before merging with `defaults:`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub id: Option<String>,
    pub description: Option<String>,
    /// Method name (`corinfomax`, `random_init`).
    pub method: Option<String>,
    /// Method hyper-parameters; typed per method in `plan`.
    pub method_params: Option<Value>,
    /// Dataset name in `datasets.lock`.
    pub dataset: Option<String>,
    pub backbone: Option<BackboneSpec>,
    pub data: Option<DataSpec>,
    pub augment: Option<AugmentSpec>,
    pub train: Option<TrainSpec>,
    pub eval: Option<EvalSpec>,
    pub export: Option<ExportSpec>,
    pub expected: Option<Vec<ExpectedSpec>>,
    /// One target per point of a grid of values: dotted keys of this target → lists of values,
    /// e.g. `{train.batch_size: [64, 128], method_params.head.momentum: [0.9, 0.99]}`; `mode: zip`
    /// pairs the lists position by position instead. Expanded by `suite::sweep`.
    pub sweep: Option<Value>,
    /// Set on each target a sweep expanded into (never read from YAML).
    #[serde(skip)]
    pub sweep_point: Option<SweepPoint>,
}

/// Where a target expanded from a `sweep:` sits: the sweep's own id and the point's values, each
/// as its dotted key and the label its id shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub of: String,
    pub values: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    pub arch: Option<String>,
    /// Base width W: stage channels are W, 2W, 4W, 8W (64 in the papers' ResNets).
    pub width: Option<i64>,
    /// resnet18/50: start the last BN of each residual block at 0 (torchvision `zero_init_residual`).
    pub zero_init_residual: Option<bool>,
    /// resnet18/50: `cifar` (3×3 stride-1 stem, no max-pool) or `imagenet` (7×7 stride 2 + max-pool).
    pub stem: Option<String>,
    /// amdim: channels of the global feature r1 and of the local projections (`--n_rkhs`).
    pub n_rkhs: Option<i64>,
    /// amdim: residual units per block (`--n_depth`).
    pub n_depth: Option<usize>,
    /// amdim: BatchNorm inside the trunk (`--use_bn`; off in the official runs).
    pub use_bn: Option<bool>,
    /// vit: `tiny`, `small` or `base`.
    pub size: Option<String>,
    /// vit: fewer (or more) blocks than the size's 12, a stated deviation (e.g. CPU smoke runs).
    pub depth: Option<usize>,
    /// vit: side of the square patches (4 for 32 px, 8 for 64 px, 16 for 224 px).
    pub patch_size: Option<i64>,
    /// vit: the exported embedding, `cls` (the cls token) or `mean` (of the patch tokens).
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Resize every split to this side (bilinear, antialiased) before training and evaluation;
    /// absent: the lock's `image_size`.
    pub image_size: Option<usize>,
    /// Number of training images used for pre-training (a seeded subset); omit for all.
    pub train_subset: Option<usize>,
    /// Images held out of the training split (its last N) to log k-NN every epoch.
    pub monitor_holdout: Option<usize>,
    /// Training images used as the k-NN bank of the per-epoch monitor.
    pub monitor_bank: Option<usize>,
    /// Also pre-train on the dataset's unlabeled split (STL-10's 100k images); default false.
    pub unlabeled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Random-resized-crop area range, fractions of the image.
    pub crop_scale: Option<[f64; 2]>,
    /// Random-resized-crop aspect-ratio range.
    pub crop_ratio: Option<[f64; 2]>,
    /// Probability of a horizontal flip.
    pub hflip: Option<f64>,
    /// Resampling of the crop: `bilinear` or `bicubic` (the CorInfoMax and AMDIM codes use bicubic).
    pub interpolation: Option<String>,
    /// Random translation after the crop, with reflected borders (the pad-and-random-crop of CIFAR
    /// pipelines; absent: none).
    pub translate: Option<TranslateSpec>,
    /// Colour jitter (absent: none).
    pub jitter: Option<JitterSpec>,
    /// Random grayscale with per-view probabilities (absent: none).
    pub grayscale: Option<GrayscaleSpec>,
    /// Gaussian blur with per-view probabilities (absent: none).
    pub blur: Option<BlurSpec>,
    /// Solarisation with per-view probabilities (absent: none).
    pub solarize: Option<SolarizeSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JitterSpec {
    pub p: Option<f64>,
    pub brightness: Option<f64>,
    pub contrast: Option<f64>,
    pub saturation: Option<f64>,
    /// Hue shift drawn from [−hue, hue] (fraction of the colour circle, at most 0.5).
    pub hue: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TranslateSpec {
    /// Largest shift each way, in whole pixels.
    pub pixels: Option<usize>,
    /// Probability of translating an image.
    pub p: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrayscaleSpec {
    /// Probability for view 1 and view 2.
    pub p: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlurSpec {
    /// Probability for view 1 and view 2.
    pub p: Option<[f64; 2]>,
    /// Range of the Gaussian's standard deviation, in pixels.
    pub sigma: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SolarizeSpec {
    /// Probability for view 1 and view 2.
    pub p: Option<[f64; 2]>,
    /// Pixels at or above this value (in [0, 1]) are inverted.
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    /// One run per seed, e.g. `[0, 1, 2]`; each has its own folder and is resumable on its own.
    pub seeds: Option<Vec<u64>>,
    /// Replaced by `seeds` (read only to say so).
    pub seed: Option<u64>,
    pub lr: Option<f64>,
    /// `{rule: linear | sqrt, reference_batch: 256}`: `lr` is the rate at `reference_batch` and the
    /// run trains at lr · (batch / reference) (linear, Goyal et al. 2017) or lr · √(batch / reference).
    pub lr_scaling: Option<LrScalingSpec>,
    /// `{name: sgd, momentum}`, `{name: lars, momentum, eta, exclude_bias_and_norm}`,
    /// `{name: adam | adamw, beta1, beta2, eps}`.
    pub optimizer: Option<Value>,
    /// `{name: warmup_cosine}` or `{name: multistep, milestones: [epochs], gamma}` (after the warm-up).
    pub schedule: Option<Value>,
    pub weight_decay: Option<f64>,
    /// Linear warm-up length, in epochs (may be fractional).
    pub warmup_epochs: Option<f64>,
    /// Final learning rate of the cosine decay.
    pub min_lr: Option<f64>,
    /// Deterministic algorithms, no cuDNN benchmark mode (default false).
    pub deterministic: Option<bool>,
    /// `auto` (default: bf16 autocast on CUDA, fp32 on the CPU) or `fp32`.
    pub precision: Option<String>,
    /// What a non-finite loss or gradient does: `{action: stop}` (default: the run ends as diverged)
    /// or `{action: restart, lr_factor: 0.5, max_restarts: 2}` (back to the last checkpoint at a
    /// lower rate, at most that many times, each restart recorded).
    pub on_divergence: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LrScalingSpec {
    pub rule: Option<String>,
    pub reference_batch: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Images per ONNX Runtime call when embedding a split.
    pub batch_size: Option<usize>,
    pub knn: Option<KnnSpec>,
    /// The harness's standard probe.
    pub linear: Option<LinearSpec>,
    /// Further probe protocols (e.g. a paper's own), each producing its own metric.
    pub extra_linear: Option<Vec<LinearSpec>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KnnSpec {
    pub k: Option<usize>,
    pub temperature: Option<f64>,
    /// `cosine` or `euclidean`.
    pub distance: Option<String>,
    /// Use the first N training images as the bank; omit for the whole training split.
    pub bank_subset: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LinearSpec {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    /// Peak learning rate (the cosine starts here).
    pub lr: Option<f64>,
    /// `cosine_per_step` (every mini-batch) or `cosine_per_epoch` (PyTorch `CosineAnnealingLR`
    /// stepped once per epoch).
    pub schedule: Option<String>,
    /// End of the cosine.
    pub min_lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
    /// Standardise features with the training split's mean and std before the probe.
    pub standardize: Option<bool>,
    /// Number of training images the probe is fitted on (the first N); omit for all.
    pub train_subset: Option<usize>,
    /// Train-time views of the probe's training images, re-embedded every epoch (absent: fixed
    /// features of the images as decoded).
    pub augment: Option<ProbeAugmentSpec>,
    /// Resize test images to this side (bicubic), then centre-crop back to the image size.
    pub test_resize: Option<usize>,
    /// BatchNorm without affine before the layer (MAE's probe head); default false.
    pub batchnorm: Option<bool>,
    /// `sgd` (default) or `lars` (MAE's probe; with `eta`).
    pub optimizer: Option<String>,
    /// LARS trust coefficient.
    pub eta: Option<f64>,
    /// Linear warm-up epochs before the cosine; default 0.
    pub warmup_epochs: Option<f64>,
    /// Std of the layer's normal initialisation; default 0 (zeros).
    pub init_std: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeAugmentSpec {
    pub crop_scale: Option<[f64; 2]>,
    pub crop_ratio: Option<[f64; 2]>,
    pub hflip: Option<f64>,
    /// `bilinear` or `bicubic`.
    pub interpolation: Option<String>,
    pub translate: Option<TranslateSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// Largest relative difference (max |ort - tch| / max |tch|) the parity check accepts.
    pub parity_tolerance: Option<f64>,
    /// Number of real test images the parity check runs.
    pub parity_images: Option<usize>,
}

/// A published number a target is expected to reproduce.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedSpec {
    /// Metric name as in metrics.json, e.g. `linear_top1`.
    pub metric: String,
    pub value: f64,
    /// Allowed shortfall before the gate calls it a regression.
    pub tolerance: f64,
    /// Paper, table and arXiv id.
    pub source: String,
    /// `verified`, `secondary` or `unverified` (only verified numbers gate).
    pub status: String,
}
