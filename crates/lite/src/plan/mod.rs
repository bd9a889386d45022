//! Validated targets: what will run. Only [`build`] makes these types, from merged suite specs, and it
//! lists every problem with its key path instead of stopping at the first. No I/O, no tch, no ort.

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

pub mod methods;

pub use methods::*;

use crate::suite::spec::{ExpectedSpec, TargetSpec};
use crate::suite::LoadedSuite;

/// A suite ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub suite: String,
    pub suite_version: u32,
    pub targets: Vec<Target>,
}

impl Plan {
    /// The target ids, comma-separated, for messages.
    pub fn target_ids(&self) -> String {
        self.targets.iter().map(|t| t.id.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// A fully specified reproduction target; no field is left to a library default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub description: Option<String>,
    pub method: Method,
    pub dataset: String,
    pub backbone: Backbone,
    pub data: Data,
    pub augment: Augment,
    pub train: Train,
    pub eval: Eval,
    pub export: Export,
    pub expected: Vec<Expected>,
    /// The sweep this target is a point of (`sweep:` in the suite), with the point's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<crate::suite::SweepPoint>,
}

impl Target {
    /// `id`, or `id (seed N)` for a target with several seeds: how messages name one run.
    pub fn run_label(&self, seed: u64) -> String {
        if self.train.seeds.len() > 1 {
            format!("{} (seed {seed})", self.id)
        } else {
            self.id.clone()
        }
    }
}

/// The encoder network (`backbone.arch` and its fields); built by `nn::Encoder::new`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum Backbone {
    /// torchvision's ResNet-18 (basic blocks; stages W, 2W, 4W, 8W) with either stem (`nn::resnet`).
    Resnet18 {
        width: i64,
        /// Start the last BN of every residual block at 0 (torchvision `zero_init_residual`).
        zero_init_residual: bool,
        /// Not serialised when `cifar` (the only stem before ResNet-50), so older records keep their keys.
        #[serde(default, skip_serializing_if = "ResnetStem::is_cifar")]
        stem: ResnetStem,
    },
    /// torchvision's ResNet-50 (bottleneck blocks; outputs 32W) with either stem (`nn::resnet`).
    Resnet50 { width: i64, zero_init_residual: bool, stem: ResnetStem },
    /// The AMDIM encoder (`nn::amdim`): `width` is the official `ndf`.
    Amdim { width: i64, n_rkhs: i64, n_depth: usize, use_bn: bool },
    /// A Vision Transformer as MAE's encoder (`nn::vit`).
    Vit {
        size: VitSize,
        /// Blocks other than the size's 12 (`backbone.depth`, a stated deviation); None: the size's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth: Option<usize>,
        patch_size: i64,
        pool: VitPool,
    },
}

/// A ResNet's stem (`backbone.stem`): `cifar` (3×3 stride 1, no max-pool) or `imagenet`
/// (torchvision's 7×7 stride 2 and 3×3 stride-2 max-pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResnetStem {
    #[default]
    Cifar,
    Imagenet,
}

impl ResnetStem {
    fn is_cifar(&self) -> bool {
        *self == ResnetStem::Cifar
    }
}

/// The ResNet depths `nn::resnet` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResnetDepth {
    R18,
    R50,
}

/// ViT sizes (width, depth, heads in `nn::vit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitSize {
    Tiny,
    Small,
    Base,
}

impl VitSize {
    /// (width D, depth, heads): timm's `vit_tiny` / `vit_small` / `vit_base` (MAE's ViT-B).
    pub fn dims(self) -> (i64, usize, i64) {
        match self {
            VitSize::Tiny => (192, 12, 3),
            VitSize::Small => (384, 12, 6),
            VitSize::Base => (768, 12, 12),
        }
    }
}

/// The ViT's exported embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitPool {
    /// The final-normed cls token.
    Cls,
    /// The mean of the final-normed patch tokens.
    Mean,
}

impl Backbone {
    /// The narrowest layer's channels (a ViT's: its width D).
    pub fn width(&self) -> i64 {
        match self {
            Backbone::Resnet18 { width, .. } | Backbone::Resnet50 { width, .. } | Backbone::Amdim { width, .. } => *width,
            Backbone::Vit { size, .. } => size.dims().0,
        }
    }

    /// Short label for tables and logs, e.g. `resnet18 w8`, `resnet50 w64 in-stem`, `amdim w32 r256 d3`.
    pub fn label(&self) -> String {
        match self {
            Backbone::Resnet18 { width, stem, .. } | Backbone::Resnet50 { width, stem, .. } => {
                format!("resnet{} w{width}{}", if matches!(self, Backbone::Resnet18 { .. }) { 18 } else { 50 }, if *stem == ResnetStem::Imagenet { " in-stem" } else { "" })
            }
            Backbone::Amdim { width, n_rkhs, n_depth, .. } => format!("amdim w{width} r{n_rkhs} d{n_depth}"),
            Backbone::Vit { size, depth, patch_size, pool } => format!(
                "vit-{}{} p{patch_size} {}",
                match size {
                    VitSize::Tiny => "tiny",
                    VitSize::Small => "small",
                    VitSize::Base => "base",
                },
                depth.map_or_else(String::new, |d| format!(" d{d}")),
                match pool {
                    VitPool::Cls => "cls",
                    VitPool::Mean => "mean",
                }
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Data {
    /// Side the splits are resized to (None: the lock's `image_size`).
    #[serde(default)]
    pub image_size: Option<usize>,
    pub train_subset: Option<usize>,
    pub monitor_holdout: usize,
    pub monitor_bank: usize,
    /// Pre-train on the unlabeled split too (appended after the labelled training images).
    #[serde(default)]
    pub unlabeled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    pub crop_scale: [f64; 2],
    pub crop_ratio: [f64; 2],
    pub hflip: f64,
    pub interpolation: Interpolation,
    pub translate: Option<Translate>,
    pub jitter: Option<Jitter>,
    pub grayscale: Option<Grayscale>,
    pub blur: Option<Blur>,
    pub solarize: Option<Solarize>,
}

/// How the random resized crop is resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

/// Brightness, contrast, saturation and hue jitter applied with probability `p`, in a random order
/// per image (torchvision `ColorJitter`: factors drawn from [1 − v, 1 + v], hue shift from [−h, h]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jitter {
    pub p: f64,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

/// A whole-pixel shift in [−pixels, pixels] on each axis with probability `p`, reflected borders
/// (AMDIM's `RandomTranslateWithReflect`, the same as reflect-pad + random crop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Translate {
    pub pixels: usize,
    pub p: f64,
}

/// torchvision `RandomGrayscale` with a probability per view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grayscale {
    pub p: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blur {
    pub p: [f64; 2],
    pub sigma: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solarize {
    pub p: [f64; 2],
    pub threshold: f64,
}

/// The optimizer (`train.optimizer: {name: ..., ...}`); semantics in `train::optim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with momentum (PyTorch semantics, L2 weight decay).
    Sgd { momentum: f64 },
    /// LARS (barlowtwins/BYOL): trust ratio η‖p‖/‖g‖; 1-D variables plain when `exclude_bias_and_norm`.
    Lars { momentum: f64, eta: f64, exclude_bias_and_norm: bool },
    /// Adam with L2 weight decay (PyTorch semantics).
    Adam { beta1: f64, beta2: f64, eps: f64 },
    /// AdamW: decoupled weight decay; with `exclude_bias_and_norm`, 1-D variables (biases,
    /// LayerNorm) are not decayed (MAE's `optim_factory.add_weight_decay`).
    Adamw {
        beta1: f64,
        beta2: f64,
        eps: f64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exclude_bias_and_norm: bool,
    },
}

/// The learning-rate schedule after the linear warm-up (`train.schedule: {name: ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Cosine from `train.lr` to `train.min_lr` over the remaining steps.
    WarmupCosine,
    /// ×`gamma` at each milestone epoch (PyTorch MultiStepLR).
    Multistep { milestones: Vec<usize>, gamma: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Train {
    pub epochs: usize,
    pub batch_size: usize,
    /// One run per seed (`train.seeds: [0, 1, 2]`), each in its own folder, resumable on its own.
    pub seeds: Vec<u64>,
    /// The rate training runs at (after `lr_scaling`, when the suite gives one).
    pub lr: f64,
    /// How `lr` was derived from the suite's rate and the batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_scaling: Option<LrScaling>,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub min_lr: f64,
    /// Deterministic algorithms and no cuDNN benchmark mode (slower on a GPU; repeatable there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// `auto`: bf16 autocast for the network on CUDA (losses keep their float64), fp32 on the CPU;
    /// `fp32`: fp32 everywhere.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// What a non-finite loss or gradient does (absent from records, and from the run's key, when
    /// it is the default `stop`).
    #[serde(default, skip_serializing_if = "OnDivergence::is_stop")]
    pub on_divergence: OnDivergence,
}

/// `train.on_divergence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDivergence {
    pub action: DivergenceAction,
    /// Multiplies the learning rate at each restart.
    #[serde(default = "OnDivergence::default_lr_factor")]
    pub lr_factor: f64,
    /// Restarts allowed before the run ends as diverged.
    #[serde(default = "OnDivergence::default_max_restarts")]
    pub max_restarts: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceAction {
    /// End the run as diverged (recorded in failure.json; never a pass).
    Stop,
    /// Go back to the last checkpoint (the start, before the first) with the rate times `lr_factor`.
    Restart,
}

impl Default for OnDivergence {
    fn default() -> Self {
        Self { action: DivergenceAction::Stop, lr_factor: Self::default_lr_factor(), max_restarts: Self::default_max_restarts() }
    }
}

impl OnDivergence {
    fn default_lr_factor() -> f64 {
        0.5
    }

    fn default_max_restarts() -> usize {
        2
    }

    pub fn is_stop(&self) -> bool {
        self.action == DivergenceAction::Stop
    }

    /// Restarts left after `done` of them (0 for `stop`).
    pub fn restarts_left(&self, done: usize) -> usize {
        if self.is_stop() {
            0
        } else {
            self.max_restarts.saturating_sub(done)
        }
    }
}

/// `train.lr_scaling`: the suite's `lr` is `base_lr`, the rate at `reference_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrScaling {
    pub rule: LrRule,
    pub reference_batch: usize,
    pub base_lr: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrRule {
    /// lr = base · batch / reference (Goyal et al. 2017; SimCLR, BYOL, MAE).
    Linear,
    /// lr = base · √(batch / reference) (SimCLR's LARS alternative, appendix B.1).
    Sqrt,
}

impl LrScaling {
    pub fn apply(&self, batch: usize) -> f64 {
        let r = batch as f64 / self.reference_batch as f64;
        self.base_lr * if self.rule == LrRule::Linear { r } else { r.sqrt() }
    }
}

/// Training precision (`train.precision`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Auto,
    Fp32,
}

impl Precision {
    fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    Cosine,
    Euclidean,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knn {
    pub k: usize,
    pub temperature: f64,
    pub distance: Distance,
    /// The bank is the first N training images (None: the whole training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_subset: Option<usize>,
}

impl Knn {
    /// Metric name carrying every parameter, e.g. `knn_top1@k20_t0.07_cosine_bankall`.
    pub fn metric_name(&self) -> String {
        let d = match self.distance {
            Distance::Cosine => "cosine",
            Distance::Euclidean => "euclidean",
        };
        let bank = self.bank_subset.map_or_else(|| "all".to_owned(), |n| n.to_string());
        format!("knn_top1@k{}_t{}_{d}_bank{bank}", self.k, self.temperature)
    }
}

/// How the probe's learning rate decays from `lr` to `min_lr` (a cosine either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeSchedule {
    /// Updated every mini-batch: lr_t = min + (lr − min)(1 + cos(π t / T))/2 over all T steps.
    CosinePerStep,
    /// Updated once per epoch, as PyTorch's `CosineAnnealingLR(T_max = epochs)` stepped after each
    /// epoch (CorInfoMax's `main_linear.py`): epoch e trains at min + (lr − min)(1 + cos(π e / E))/2.
    CosinePerEpoch,
}

/// Train-time views of the probe's training images (the test images are never augmented): a random
/// resized crop and flip, optionally a reflected pixel shift (the pad-and-crop of CIFAR probes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeAugment {
    pub crop_scale: [f64; 2],
    pub crop_ratio: [f64; 2],
    pub hflip: f64,
    pub interpolation: Interpolation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translate: Option<Translate>,
}

impl ProbeAugment {
    /// The same views as a pre-training `augment:` block with every colour operation off.
    pub fn as_views(&self) -> Augment {
        Augment {
            crop_scale: self.crop_scale,
            crop_ratio: self.crop_ratio,
            hflip: self.hflip,
            interpolation: self.interpolation,
            translate: self.translate.clone(),
            jitter: None,
            grayscale: None,
            blur: None,
            solarize: None,
        }
    }

    /// e.g. `rrc0.08-1_r0.75-1.3333333_bicubic_flip0.5` (+ `_shift4p0.8`).
    fn label(&self) -> String {
        let interp = match self.interpolation {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        };
        let [s0, s1] = self.crop_scale;
        let [r0, r1] = self.crop_ratio;
        let mut s = format!("rrc{s0}-{s1}_r{r0}-{r1}_{interp}_flip{}", self.hflip);
        if let Some(t) = &self.translate {
            s += &format!("_shift{}p{}", t.pixels, t.p);
        }
        s
    }
}

/// One linear-probe protocol: multinomial logistic regression on frozen backbone features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub schedule: ProbeSchedule,
    /// End of the cosine (CorInfoMax: 2e-3; the harness's standard probe: 0).
    pub min_lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Shift and scale features by the training split's per-feature mean and std.
    pub standardize: bool,
    /// Re-embed augmented training images through ONNX Runtime every epoch (None: fixed features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<ProbeAugment>,
    /// Test images resized (bicubic) to this side, then centre-cropped back to the image size
    /// (CorInfoMax: `Resize(int(32·8/7))` + `CenterCrop(32)`). None: as decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_resize: Option<usize>,
    /// Fit on the first N training images (None: all).
    pub train_subset: Option<usize>,
    /// MAE's probe head: BatchNorm without affine before the layer (`eval::linear`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batchnorm: bool,
    /// LARS with this trust coefficient η instead of SGD (MAE's probe: 0.001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lars_eta: Option<f64>,
    /// Linear warm-up epochs before the cosine (MAE's probe: 10 of 90).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: f64,
    /// Std of the layer's normal initialisation (0: zeros; MAE's probe: 0.01).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub init_std: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Linear {
    /// Metric name carrying every parameter, e.g.
    /// `linear_top1@e30_b256_lr0.1_cosstep_min0_m0.9_wd0_std_noaug_fitall`.
    pub fn metric_name(&self) -> String {
        let schedule = match self.schedule {
            ProbeSchedule::CosinePerStep => "cosstep",
            ProbeSchedule::CosinePerEpoch => "cosepoch",
        };
        let aug = self.augment.as_ref().map_or_else(|| "noaug".to_owned(), ProbeAugment::label);
        let fit = self.train_subset.map_or_else(|| "all".to_owned(), |n| n.to_string());
        let mut s = format!(
            "linear_top1@e{}_b{}_lr{}_{schedule}_min{}_m{}_wd{}_{}_{aug}_fit{fit}",
            self.epochs,
            self.batch_size,
            self.lr,
            self.min_lr,
            self.momentum,
            self.weight_decay,
            if self.standardize { "std" } else { "raw" }
        );
        if let Some(side) = self.test_resize {
            s += &format!("_test{side}");
        }
        if self.batchnorm {
            s += "_bn";
        }
        if let Some(eta) = self.lars_eta {
            s += &format!("_lars{eta}");
        }
        if self.warmup_epochs != 0.0 {
            s += &format!("_wu{}", self.warmup_epochs);
        }
        if self.init_std != 0.0 {
            s += &format!("_init{}", self.init_std);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub batch_size: usize,
    pub knn: Knn,
    /// The harness's standard probe (the one tables compare methods with).
    pub linear: Linear,
    /// Further probe protocols, e.g. a paper's own (train-time augmentation, its schedule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_linear: Vec<Linear>,
}

impl Eval {
    /// Every linear protocol: the standard one first.
    pub fn linears(&self) -> impl Iterator<Item = &Linear> {
        std::iter::once(&self.linear).chain(&self.extra_linear)
    }

    /// The names of the accuracy metrics this protocol produces (what `expected:` may gate).
    pub fn metric_names(&self) -> Vec<String> {
        std::iter::once(self.knn.metric_name()).chain(self.linears().map(Linear::metric_name)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    pub parity_tolerance: f64,
    pub parity_images: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Verified,
    Secondary,
    Unverified,
}

impl Provenance {
    /// The word a suite uses (`verified`, `secondary`, `unverified`).
    pub fn word(self) -> &'static str {
        match self {
            Provenance::Verified => "verified",
            Provenance::Secondary => "secondary",
            Provenance::Unverified => "unverified",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub metric: String,
    pub value: f64,
    pub tolerance: f64,
    pub source: String,
    pub status: Provenance,
}

/// Collects problems as `path: message` lines.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }
    /// A required field: records "missing" and returns a placeholder.
    fn req<T: Clone>(&mut self, v: Option<T>, path: &str, fallback: T) -> T {
        match v {
            Some(v) => v,
            None => {
                self.push(path, "missing (set it in the target or in `defaults:`)");
                fallback
            }
        }
    }
    fn positive(&mut self, v: f64, path: &str) {
        if !(v.is_finite() && v > 0.0) {
            self.push(path, format!("expected a positive number, found {v}"));
        }
    }
    fn non_negative(&mut self, v: f64, path: &str) {
        if !(v.is_finite() && v >= 0.0) {
            self.push(path, format!("expected a number >= 0, found {v}"));
        }
    }
    fn unit(&mut self, v: f64, path: &str) {
        if !(0.0..=1.0).contains(&v) {
            self.push(path, format!("expected a value in [0, 1], found {v}"));
        }
    }
    fn at_least(&mut self, v: usize, min: usize, path: &str) {
        if v < min {
            self.push(path, format!("expected at least {min}, found {v}"));
        }
    }
}

/// Validates every merged target; the error lists every problem found, each with its key path.
pub fn build(suite: &LoadedSuite) -> anyhow::Result<Plan> {
    let mut problems = Problems::default();
    let mut targets = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, spec) in suite.targets.iter().enumerate() {
        let label = match &spec.id {
            Some(id) => format!("targets[{i}] ({id})"),
            None => format!("targets[{i}]"),
        };
        let t = target(spec, &label, &mut problems);
        if !seen.insert(t.id.clone()) {
            problems.push(&format!("{label}.id"), format!("duplicate target id {:?}; ids must be unique", t.id));
        }
        targets.push(t);
    }
    if suite.targets.is_empty() {
        problems.push("targets", "the suite has no targets");
    }
    if !problems.0.is_empty() {
        anyhow::bail!("{}: {} problem(s):\n  {}", suite.path.display(), problems.0.len(), problems.0.join("\n  "));
    }
    Ok(Plan { suite: suite.name.clone(), suite_version: suite.version, targets })
}

fn target(s: &TargetSpec, label: &str, p: &mut Problems) -> Target {
    let at = |k: &str| format!("{label}.{k}");
    let id = p.req(s.id.clone(), &at("id"), format!("target{label}"));
    // A sweep point's id is its sweep's id, '@' and the point's values (checked by `suite::sweep`).
    let base = s.sweep_point.as_ref().map_or(id.as_str(), |pt| pt.of.as_str());
    if !base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || base.is_empty() {
        p.push(&at("id"), format!("{base:?} must be non-empty and use only letters, digits, '_' and '-' (it names a folder)"));
    }
    let method_name = p.req(s.method.clone(), &at("method"), String::new());
    let method = Method::parse(&method_name, s.method_params.as_ref(), &at("method_params"), p).unwrap_or(Method::RandomInit);

    let backbone = backbone(s.backbone.clone().unwrap_or_default(), &at("backbone"), p);

    let d = s.data.clone().unwrap_or_default();
    let data = Data {
        image_size: d.image_size,
        train_subset: d.train_subset,
        monitor_holdout: p.req(d.monitor_holdout, &at("data.monitor_holdout"), 0),
        monitor_bank: p.req(d.monitor_bank, &at("data.monitor_bank"), 0),
        unlabeled: d.unlabeled.unwrap_or(false),
    };
    if let Some(size) = data.image_size {
        if !(8..=1024).contains(&size) {
            p.push(&at("data.image_size"), format!("expected 8..=1024 pixels, found {size}"));
        }
    }
    if let Some(why) = method.refuses(&backbone) {
        p.push(&at("backbone.arch"), why);
    }
    if data.train_subset == Some(0) {
        p.push(&at("data.train_subset"), "expected at least 1 image (omit the key to use all)");
    }

    let a = s.augment.clone().unwrap_or_default();
    let jitter = a.jitter.map(|j| {
        let j = Jitter {
            p: p.req(j.p, &at("augment.jitter.p"), 0.0),
            brightness: p.req(j.brightness, &at("augment.jitter.brightness"), 0.0),
            contrast: p.req(j.contrast, &at("augment.jitter.contrast"), 0.0),
            saturation: p.req(j.saturation, &at("augment.jitter.saturation"), 0.0),
            hue: p.req(j.hue, &at("augment.jitter.hue"), 0.0),
        };
        p.unit(j.p, &at("augment.jitter.p"));
        for (v, k) in [(j.brightness, "brightness"), (j.contrast, "contrast"), (j.saturation, "saturation")] {
            p.unit(v, &at(&format!("augment.jitter.{k}")));
        }
        if !(0.0..=0.5).contains(&j.hue) {
            p.push(&at("augment.jitter.hue"), format!("expected a value in [0, 0.5], found {}", j.hue));
        }
        j
    });
    let grayscale = a.grayscale.map(|g| {
        let g = Grayscale { p: p.req(g.p, &at("augment.grayscale.p"), [0.0; 2]) };
        g.p.iter().for_each(|&v| p.unit(v, &at("augment.grayscale.p")));
        g
    });
    let translate = translate(a.translate, &at("augment.translate"), p);
    let interpolation = interpolation(a.interpolation, &at("augment.interpolation"), p);
    let blur = a.blur.map(|b| {
        let b = Blur { p: p.req(b.p, &at("augment.blur.p"), [0.0; 2]), sigma: p.req(b.sigma, &at("augment.blur.sigma"), [1.0; 2]) };
        b.p.iter().for_each(|&v| p.unit(v, &at("augment.blur.p")));
        if !(b.sigma[0] > 0.0 && b.sigma[0] <= b.sigma[1] && b.sigma[1] <= 10.0) {
            p.push(&at("augment.blur.sigma"), format!("expected 0 < min <= max <= 10 pixels, found {:?}", b.sigma));
        }
        b
    });
    let solarize = a.solarize.map(|s| {
        let s = Solarize { p: p.req(s.p, &at("augment.solarize.p"), [0.0; 2]), threshold: p.req(s.threshold, &at("augment.solarize.threshold"), 0.5) };
        s.p.iter().for_each(|&v| p.unit(v, &at("augment.solarize.p")));
        p.unit(s.threshold, &at("augment.solarize.threshold"));
        s
    });
    let augment = Augment {
        crop_scale: p.req(a.crop_scale, &at("augment.crop_scale"), [1.0, 1.0]),
        crop_ratio: p.req(a.crop_ratio, &at("augment.crop_ratio"), [1.0, 1.0]),
        hflip: p.req(a.hflip, &at("augment.hflip"), 0.0),
        interpolation,
        translate,
        jitter,
        grayscale,
        blur,
        solarize,
    };
    crop_ranges(augment.crop_scale, augment.crop_ratio, &at("augment"), p);
    p.unit(augment.hflip, &at("augment.hflip"));

    let t = s.train.clone().unwrap_or_default();
    let optimizer = match t.optimizer.clone() {
        Some(v) => typed::<Optimizer>(v, &at("train.optimizer"), p),
        None => {
            p.push(&at("train.optimizer"), "missing: e.g. {name: sgd, momentum: 0.9}, {name: lars, momentum: 0.9, eta: 0.02, exclude_bias_and_norm: true}, {name: adam, beta1: 0.9, beta2: 0.999, eps: 1.0e-8} or adamw");
            None
        }
    }
    .unwrap_or(Optimizer::Sgd { momentum: 0.0 });
    match &optimizer {
        Optimizer::Sgd { momentum } => p.unit(*momentum, &at("train.optimizer.momentum")),
        Optimizer::Lars { momentum, eta, .. } => {
            p.unit(*momentum, &at("train.optimizer.momentum"));
            p.positive(*eta, &at("train.optimizer.eta"));
        }
        Optimizer::Adam { beta1, beta2, eps } | Optimizer::Adamw { beta1, beta2, eps, .. } => {
            p.unit(*beta1, &at("train.optimizer.beta1"));
            p.unit(*beta2, &at("train.optimizer.beta2"));
            p.positive(*eps, &at("train.optimizer.eps"));
        }
    }
    let schedule = match t.schedule.clone() {
        Some(v) => typed::<Schedule>(v, &at("train.schedule"), p),
        None => {
            p.push(&at("train.schedule"), "missing: {name: warmup_cosine} or {name: multistep, milestones: [EPOCH, ...], gamma: 0.2}");
            None
        }
    }
    .unwrap_or(Schedule::WarmupCosine);
    if let Schedule::Multistep { milestones, gamma } = &schedule {
        p.positive(*gamma, &at("train.schedule.gamma"));
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            p.push(&at("train.schedule.milestones"), format!("expected increasing epochs, found {milestones:?}"));
        }
    }
    let batch_size = p.req(t.batch_size, &at("train.batch_size"), 2);
    let base_lr = p.req(t.lr, &at("train.lr"), 0.1);
    // `rule: none` switches off a scaling rule that `defaults:` set (a null would keep it).
    let lr_scaling = t.lr_scaling.filter(|l| l.rule.as_deref() != Some("none")).map(|l| {
        let rule = match l.rule.as_deref() {
            Some("linear") => LrRule::Linear,
            Some("sqrt") => LrRule::Sqrt,
            other => {
                p.push(&at("train.lr_scaling.rule"), format!("expected linear (lr · batch / reference), sqrt (lr · √(batch / reference)) or none (lr as given), found {other:?}"));
                LrRule::Linear
            }
        };
        let reference_batch = p.req(l.reference_batch, &at("train.lr_scaling.reference_batch"), 256);
        p.at_least(reference_batch, 1, &at("train.lr_scaling.reference_batch"));
        LrScaling { rule, reference_batch: reference_batch.max(1), base_lr }
    });
    let train = Train {
        epochs: p.req(t.epochs, &at("train.epochs"), 0),
        batch_size,
        seeds: p.req(t.seeds.clone(), &at("train.seeds"), vec![0]),
        lr: lr_scaling.as_ref().map_or(base_lr, |l| l.apply(batch_size)),
        lr_scaling,
        optimizer,
        schedule,
        weight_decay: p.req(t.weight_decay, &at("train.weight_decay"), 0.0),
        warmup_epochs: p.req(t.warmup_epochs, &at("train.warmup_epochs"), 0.0),
        min_lr: p.req(t.min_lr, &at("train.min_lr"), 0.0),
        deterministic: t.deterministic.unwrap_or(false),
        precision: match t.precision.as_deref() {
            None | Some("auto") => Precision::Auto,
            Some("fp32") => Precision::Fp32,
            Some(other) => {
                p.push(&at("train.precision"), format!("unknown precision {other:?}; expected auto (bf16 autocast on CUDA) or fp32"));
                Precision::Auto
            }
        },
        on_divergence: t.on_divergence.clone().and_then(|v| typed::<OnDivergence>(v, &at("train.on_divergence"), p)).unwrap_or_default(),
    };
    if method.trains() {
        p.at_least(train.epochs, 1, &at("train.epochs"));
    }
    if !train.on_divergence.is_stop() {
        let d = &train.on_divergence;
        if !(d.lr_factor > 0.0 && d.lr_factor < 1.0) {
            p.push(&at("train.on_divergence.lr_factor"), format!("expected a factor in (0, 1) that lowers the rate at each restart, found {}", d.lr_factor));
        }
        p.at_least(d.max_restarts, 1, &at("train.on_divergence.max_restarts"));
    }
    if t.seed.is_some() {
        p.push(&at("train.seed"), "replaced by train.seeds, a list (one run per seed): write `seeds: [N]`");
    }
    if train.seeds.is_empty() {
        p.push(&at("train.seeds"), "expected at least one seed, e.g. [0] or [0, 1, 2]");
    }
    let mut unique = train.seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != train.seeds.len() {
        p.push(&at("train.seeds"), format!("each seed once; found {:?}", train.seeds));
    }
    p.at_least(train.batch_size, 2, &at("train.batch_size"));
    p.positive(train.lr, &at("train.lr"));
    p.non_negative(train.weight_decay, &at("train.weight_decay"));
    p.non_negative(train.warmup_epochs, &at("train.warmup_epochs"));
    p.non_negative(train.min_lr, &at("train.min_lr"));

    let e = s.eval.clone().unwrap_or_default();
    let k = e.knn.unwrap_or_default();
    let distance = match p.req(k.distance, &at("eval.knn.distance"), "cosine".into()).as_str() {
        "cosine" => Distance::Cosine,
        "euclidean" => Distance::Euclidean,
        other => {
            p.push(&at("eval.knn.distance"), format!("unknown distance {other:?}; expected cosine or euclidean"));
            Distance::Cosine
        }
    };
    let knn = Knn { k: p.req(k.k, &at("eval.knn.k"), 1), temperature: p.req(k.temperature, &at("eval.knn.temperature"), 1.0), distance, bank_subset: k.bank_subset };
    p.at_least(knn.k, 1, &at("eval.knn.k"));
    p.positive(knn.temperature, &at("eval.knn.temperature"));
    if knn.bank_subset == Some(0) {
        p.push(&at("eval.knn.bank_subset"), "expected at least 1 image (omit the key to use the whole training split)");
    }
    let standard = linear(e.linear.unwrap_or_default(), &at("eval.linear"), p);
    let extra_linear = e.extra_linear.unwrap_or_default().into_iter().enumerate().map(|(j, l)| linear(l, &at(&format!("eval.extra_linear[{j}]")), p)).collect();
    let eval = Eval { batch_size: p.req(e.batch_size, &at("eval.batch_size"), 1), knn, linear: standard, extra_linear };
    p.at_least(eval.batch_size, 1, &at("eval.batch_size"));
    let produced = eval.metric_names();
    for (j, l) in eval.linears().enumerate().skip(1) {
        if eval.linears().take(j).any(|m| m == l) {
            p.push(&at(&format!("eval.extra_linear[{}]", j - 1)), "the same protocol twice; remove one");
        }
    }

    let x = s.export.clone().unwrap_or_default();
    let export =
        Export { parity_tolerance: p.req(x.parity_tolerance, &at("export.parity_tolerance"), 1e-4), parity_images: p.req(x.parity_images, &at("export.parity_images"), 1) };
    p.positive(export.parity_tolerance, &at("export.parity_tolerance"));
    p.at_least(export.parity_images, 1, &at("export.parity_images"));

    let expected = s.expected.clone().unwrap_or_default().iter().enumerate().map(|(j, e)| expected(e, &at(&format!("expected[{j}]")), &produced, p)).collect();
    let dataset = p.req(s.dataset.clone(), &at("dataset"), String::new());
    Target { id, description: s.description.clone(), method, dataset, backbone, data, augment, train, eval, export, expected, sweep: s.sweep_point.clone() }
}

fn backbone(b: crate::suite::spec::BackboneSpec, at: &str, p: &mut Problems) -> Backbone {
    let k = |key: &str| format!("{at}.{key}");
    let refuse = |p: &mut Problems, set: bool, key: &str, arch: &str| {
        if set {
            p.push(&k(key), format!("not a field of arch {arch}; remove it"));
        }
    };
    // The convolutional backbones' width first (the order problems were always listed in).
    let width = if b.arch.as_deref() == Some("vit") { 0 } else { p.req(b.width, &k("width"), 8) };
    if b.arch.as_deref() != Some("vit") && !(1..=1024).contains(&width) {
        p.push(&k("width"), format!("expected 1..=1024, found {width}"));
    }
    let arch = p.req(b.arch.clone(), &k("arch"), "resnet18".into());
    if arch != "vit" {
        refuse(p, b.size.is_some(), "size", &arch);
        refuse(p, b.patch_size.is_some(), "patch_size", &arch);
        refuse(p, b.pool.is_some(), "pool", &arch);
    }
    if !arch.starts_with("resnet") {
        refuse(p, b.stem.is_some(), "stem", &arch);
    }
    match arch.as_str() {
        "resnet18" | "resnet50" => {
            for (set, key) in [(b.n_rkhs.is_some(), "n_rkhs"), (b.n_depth.is_some(), "n_depth"), (b.depth.is_some(), "depth"), (b.use_bn.is_some(), "use_bn")] {
                refuse(p, set, key, &arch);
            }
            let zero_init_residual = p.req(b.zero_init_residual, &k("zero_init_residual"), true);
            let stem = match p.req(b.stem.clone(), &k("stem"), "cifar".into()).as_str() {
                "cifar" => ResnetStem::Cifar,
                "imagenet" => ResnetStem::Imagenet,
                other => {
                    p.push(&k("stem"), format!("unknown stem {other:?}; expected cifar (3x3 stride 1, no max-pool) or imagenet (7x7 stride 2 and max-pool)"));
                    ResnetStem::Cifar
                }
            };
            if arch == "resnet18" {
                Backbone::Resnet18 { width, zero_init_residual, stem }
            } else {
                Backbone::Resnet50 { width, zero_init_residual, stem }
            }
        }
        "amdim" => {
            refuse(p, b.zero_init_residual.is_some(), "zero_init_residual", "amdim");
            refuse(p, b.depth.is_some(), "depth", "amdim");
            let n_rkhs = p.req(b.n_rkhs, &k("n_rkhs"), 64);
            let n_depth = p.req(b.n_depth, &k("n_depth"), 1);
            if n_rkhs < 1 {
                p.push(&k("n_rkhs"), format!("expected a positive size, found {n_rkhs}"));
            }
            p.at_least(n_depth, 1, &k("n_depth"));
            Backbone::Amdim { width, n_rkhs, n_depth, use_bn: p.req(b.use_bn, &k("use_bn"), false) }
        }
        "vit" => {
            for (set, key) in [
                (b.width.is_some(), "width"),
                (b.zero_init_residual.is_some(), "zero_init_residual"),
                (b.n_rkhs.is_some(), "n_rkhs"),
                (b.n_depth.is_some(), "n_depth"),
                (b.use_bn.is_some(), "use_bn"),
            ] {
                refuse(p, set, key, "vit");
            }
            let size = match p.req(b.size, &k("size"), "tiny".into()).as_str() {
                "tiny" => VitSize::Tiny,
                "small" => VitSize::Small,
                "base" => VitSize::Base,
                other => {
                    p.push(&k("size"), format!("unknown ViT size {other:?}; expected tiny, small or base"));
                    VitSize::Tiny
                }
            };
            if b.depth == Some(0) {
                p.push(&k("depth"), "expected at least 1 block (omit the key for the size's 12)");
            }
            let depth = b.depth.filter(|&d| d != size.dims().1);
            let patch_size = p.req(b.patch_size, &k("patch_size"), 4);
            if patch_size < 1 {
                p.push(&k("patch_size"), format!("expected a positive patch side, found {patch_size}"));
            }
            let pool = match p.req(b.pool, &k("pool"), "cls".into()).as_str() {
                "cls" => VitPool::Cls,
                "mean" => VitPool::Mean,
                other => {
                    p.push(&k("pool"), format!("unknown pool {other:?}; expected cls (the cls token) or mean (of the patch tokens)"));
                    VitPool::Cls
                }
            };
            Backbone::Vit { size, depth, patch_size, pool }
        }
        other => {
            p.push(&k("arch"), format!("unknown backbone {other:?}; expected one of: resnet18, resnet50, amdim, vit"));
            Backbone::Resnet18 { width, zero_init_residual: true, stem: ResnetStem::Cifar }
        }
    }
}

/// Typed method parameters, or the problem at its key path.
fn typed<T: serde::de::DeserializeOwned>(params: Value, at: &str, p: &mut Problems) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(params) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { at.to_owned() } else { format!("{at}.{path}") };
            p.push(&path, e.into_inner());
            None
        }
    }
}

/// One linear-probe protocol (`eval.linear` or an entry of `eval.extra_linear`), every field explicit.
fn linear(l: crate::suite::spec::LinearSpec, at: &str, p: &mut Problems) -> Linear {
    let k = |key: &str| format!("{at}.{key}");
    let schedule = match p.req(l.schedule, &k("schedule"), "cosine_per_step".into()).as_str() {
        "cosine_per_step" => ProbeSchedule::CosinePerStep,
        "cosine_per_epoch" => ProbeSchedule::CosinePerEpoch,
        other => {
            p.push(&k("schedule"), format!("unknown schedule {other:?}; expected cosine_per_step or cosine_per_epoch"));
            ProbeSchedule::CosinePerStep
        }
    };
    let augment = l.augment.map(|a| {
        let a = ProbeAugment {
            crop_scale: p.req(a.crop_scale, &k("augment.crop_scale"), [1.0, 1.0]),
            crop_ratio: p.req(a.crop_ratio, &k("augment.crop_ratio"), [1.0, 1.0]),
            hflip: p.req(a.hflip, &k("augment.hflip"), 0.0),
            interpolation: interpolation(a.interpolation, &k("augment.interpolation"), p),
            translate: translate(a.translate, &k("augment.translate"), p),
        };
        crop_ranges(a.crop_scale, a.crop_ratio, &k("augment"), p);
        p.unit(a.hflip, &k("augment.hflip"));
        a
    });
    let linear = Linear {
        epochs: p.req(l.epochs, &k("epochs"), 1),
        batch_size: p.req(l.batch_size, &k("batch_size"), 1),
        lr: p.req(l.lr, &k("lr"), 0.1),
        schedule,
        min_lr: p.req(l.min_lr, &k("min_lr"), 0.0),
        momentum: p.req(l.momentum, &k("momentum"), 0.0),
        weight_decay: p.req(l.weight_decay, &k("weight_decay"), 0.0),
        standardize: p.req(l.standardize, &k("standardize"), true),
        augment,
        test_resize: l.test_resize,
        train_subset: l.train_subset,
        batchnorm: l.batchnorm.unwrap_or(false),
        lars_eta: match l.optimizer.as_deref() {
            None | Some("sgd") => {
                if l.eta.is_some() {
                    p.push(&k("eta"), "eta is LARS's trust coefficient; set optimizer: lars or remove eta");
                }
                None
            }
            Some("lars") => Some(p.req(l.eta, &k("eta"), 0.001)),
            Some(other) => {
                p.push(&k("optimizer"), format!("unknown probe optimizer {other:?}; expected sgd (the default) or lars (with eta, e.g. 0.001 as MAE's probe)"));
                None
            }
        },
        warmup_epochs: l.warmup_epochs.unwrap_or(0.0),
        init_std: l.init_std.unwrap_or(0.0),
    };
    if let Some(eta) = linear.lars_eta {
        p.positive(eta, &k("eta"));
    }
    p.non_negative(linear.init_std, &k("init_std"));
    p.non_negative(linear.warmup_epochs, &k("warmup_epochs"));
    if linear.warmup_epochs >= linear.epochs as f64 && linear.epochs > 0 {
        p.push(&k("warmup_epochs"), format!("expected fewer than epochs ({}), found {}", linear.epochs, linear.warmup_epochs));
    }
    if linear.batchnorm && linear.standardize {
        p.push(&k("batchnorm"), "batchnorm and standardize both normalise the features; set standardize: false (MAE's probe) or remove batchnorm");
    }
    if linear.batchnorm && linear.batch_size < 2 {
        p.push(&k("batch_size"), format!("batchnorm needs batches of at least 2 rows, found {}", linear.batch_size));
    }
    p.at_least(linear.epochs, 1, &k("epochs"));
    p.at_least(linear.batch_size, 1, &k("batch_size"));
    p.positive(linear.lr, &k("lr"));
    p.non_negative(linear.min_lr, &k("min_lr"));
    if linear.min_lr > linear.lr {
        p.push(&k("min_lr"), format!("expected at most lr ({}), found {}", linear.lr, linear.min_lr));
    }
    p.unit(linear.momentum, &k("momentum"));
    p.non_negative(linear.weight_decay, &k("weight_decay"));
    if linear.train_subset == Some(0) {
        p.push(&k("train_subset"), "expected at least 1 image (omit the key to fit on the whole training split)");
    }
    if let Some(side) = linear.test_resize {
        if !(8..=2048).contains(&side) {
            p.push(&k("test_resize"), format!("expected 8..=2048 pixels, found {side}"));
        }
    }
    linear
}

/// `bilinear` or `bicubic` (required).
fn interpolation(v: Option<String>, at: &str, p: &mut Problems) -> Interpolation {
    match p.req(v, at, "bilinear".into()).as_str() {
        "bilinear" => Interpolation::Bilinear,
        "bicubic" => Interpolation::Bicubic,
        other => {
            p.push(at, format!("unknown interpolation {other:?}; expected bilinear or bicubic"));
            Interpolation::Bilinear
        }
    }
}

/// An optional `translate: {pixels, p}` block.
fn translate(t: Option<crate::suite::spec::TranslateSpec>, at: &str, p: &mut Problems) -> Option<Translate> {
    t.map(|t| {
        let t = Translate { pixels: p.req(t.pixels, &format!("{at}.pixels"), 0), p: p.req(t.p, &format!("{at}.p"), 0.0) };
        p.unit(t.p, &format!("{at}.p"));
        t
    })
}

/// `crop_scale` and `crop_ratio` of a random resized crop.
fn crop_ranges(scale: [f64; 2], ratio: [f64; 2], at: &str, p: &mut Problems) {
    let [s0, s1] = scale;
    if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
        p.push(&format!("{at}.crop_scale"), format!("expected 0 < min <= max <= 1, found [{s0}, {s1}]"));
    }
    let [r0, r1] = ratio;
    if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
        p.push(&format!("{at}.crop_ratio"), format!("expected 0 < min <= max, found [{r0}, {r1}]"));
    }
}

/// An `expected:` entry; its metric must be one the target produces (else the nearest is named).
fn expected(e: &ExpectedSpec, at: &str, produced: &[String], p: &mut Problems) -> Expected {
    if !produced.contains(&e.metric) {
        // The nearest of the same kind (the part before '@'), else of all.
        let family = |m: &str| m.split('@').next().unwrap_or_default().to_owned();
        let same: Vec<&String> = produced.iter().filter(|m| family(m) == family(&e.metric)).collect();
        let pool: Vec<&String> = if same.is_empty() { produced.iter().collect() } else { same };
        let nearest = pool.into_iter().min_by_key(|m| strsim::levenshtein(m, &e.metric)).cloned().unwrap_or_default();
        p.push(&format!("{at}.metric"), format!("{:?} is not a metric this target produces; the nearest is {nearest:?} (it produces: {})", e.metric, produced.join(", ")));
    }
    let status = match e.status.as_str() {
        "verified" => Provenance::Verified,
        "secondary" => Provenance::Secondary,
        "unverified" => Provenance::Unverified,
        other => {
            p.push(&format!("{at}.status"), format!("unknown status {other:?}; expected verified, secondary or unverified"));
            Provenance::Unverified
        }
    };
    if e.source.trim().is_empty() {
        p.push(&format!("{at}.source"), "every expected number cites its source (paper, table, arXiv id)");
    }
    p.non_negative(e.tolerance, &format!("{at}.tolerance"));
    Expected { metric: e.metric.clone(), value: e.value, tolerance: e.tolerance, source: e.source.clone(), status }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite;

    fn load(text: &str) -> anyhow::Result<Plan> {
        let spec = suite::parse_str(text).map_err(anyhow::Error::msg)?;
        let targets = suite::merge_targets(&spec, &[])?;
        build(&LoadedSuite { path: "t.yaml".into(), name: "t".into(), version: 1, description: None, targets })
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let err = load("version: 1\ntargets:\n  - id: a\n    method: corinfomax\n    method_params: {alpha: -1, projector: [8], la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1.0e-8, normalize: true}\n    train: {epochs: 0}\n").unwrap_err().to_string();
        assert!(err.contains("targets[0] (a).method_params.alpha: expected a number >= 0"), "{err}");
        assert!(err.contains("targets[0] (a).train.epochs: expected at least 1"), "{err}");
        assert!(err.contains("targets[0] (a).dataset: missing"), "{err}");
        assert!(err.contains("targets[0] (a).eval.knn.k: missing"), "{err}");
    }

    #[test]
    fn on_divergence_is_checked_and_absent_from_records_by_default() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../suites/quickstart.yaml")).unwrap();
        let with = |set: &[&str]| {
            let spec = suite::parse_str(&text).unwrap();
            let o: Vec<_> = set.iter().map(|s| suite::Override::parse(s).unwrap()).collect();
            build(&LoadedSuite { path: "t.yaml".into(), name: "t".into(), version: 1, description: None, targets: suite::merge_targets(&spec, &o).unwrap() })
        };
        let plain = with(&[]).unwrap();
        let t = &plain.targets[0];
        assert!(t.train.on_divergence.is_stop() && t.train.on_divergence.restarts_left(0) == 0);
        assert!(serde_json::to_value(&t.train).unwrap().get("on_divergence").is_none(), "the default must not change any run key");
        let r = with(&["train.on_divergence={action: restart, max_restarts: 3}"]).unwrap();
        let d = &r.targets[0].train.on_divergence;
        assert_eq!((d.action, d.lr_factor, d.restarts_left(1)), (DivergenceAction::Restart, 0.5, 2));
        let err = with(&["train.on_divergence={action: restart, lr_factor: 2, max_restarts: 0}"]).unwrap_err().to_string();
        assert!(err.contains("train.on_divergence.lr_factor: expected a factor in (0, 1)") && err.contains("train.on_divergence.max_restarts: expected at least 1"), "{err}");
        let err = with(&["train.on_divergence={action: retry}"]).unwrap_err().to_string();
        assert!(err.contains("train.on_divergence") && err.contains("retry"), "{err}");
    }

    #[test]
    fn unknown_method_and_param() {
        let err = load("version: 1\ntargets:\n  - id: a\n    method: simclrr\n  - id: b\n    method: corinfomax\n    method_params: {alpah: 1}\n").unwrap_err().to_string();
        assert!(err.contains("unknown method \"simclrr\""), "{err}");
        assert!(err.contains("alpah"), "{err}");
    }

    #[test]
    fn augment_blocks_are_checked() {
        let base = "version: 1\ntargets:\n  - id: a\n    method: random_init\n    augment: {crop_scale: [0.2, 1.0], crop_ratio: [0.75, 1.33], hflip: 0.5, blur: {p: [1.0, 1.5], sigma: [2.0, 1.0]}, jitter: {p: 0.8}}\n";
        let err = load(base).unwrap_err().to_string();
        assert!(err.contains("augment.blur.p: expected a value in [0, 1], found 1.5"), "{err}");
        assert!(err.contains("augment.blur.sigma: expected 0 < min <= max <= 10 pixels"), "{err}");
        assert!(err.contains("augment.jitter.brightness: missing"), "{err}");
    }

    #[test]
    fn vit_backbones_are_checked() {
        let t = |b: &str| format!("version: 1\ntargets:\n  - id: a\n    method: random_init\n    backbone: {b}\n");
        let err = load(&t("{arch: vit, size: huge, patch_size: 0, pool: max, width: 8}")).unwrap_err().to_string();
        assert!(err.contains("backbone.size: unknown ViT size \"huge\"; expected tiny, small or base"), "{err}");
        assert!(err.contains("backbone.patch_size: expected a positive patch side, found 0"), "{err}");
        assert!(err.contains("backbone.pool: unknown pool \"max\""), "{err}");
        assert!(err.contains("backbone.width: not a field of arch vit; remove it"), "{err}");
        let err = load(&t("{arch: resnet18, width: 8, zero_init_residual: true, patch_size: 4}")).unwrap_err().to_string();
        assert!(err.contains("backbone.patch_size: not a field of arch resnet18; remove it"), "{err}");
        assert!(!err.contains("backbone.width"), "{err}");
        let err = load(&t("{arch: vit, size: tiny, patch_size: 4, pool: cls, depth: 0}")).unwrap_err().to_string();
        assert!(err.contains("backbone.depth: expected at least 1 block"), "{err}");
        let err = load(&t("{arch: amdim, width: 8, n_rkhs: 64, n_depth: 1, use_bn: false, depth: 2}")).unwrap_err().to_string();
        assert!(err.contains("backbone.depth: not a field of arch amdim; remove it"), "{err}");
    }

    #[test]
    fn resnet_stems_are_checked() {
        let t = |b: &str| format!("version: 1\ntargets:\n  - id: a\n    method: random_init\n    backbone: {b}\n");
        let err = load(&t("{arch: resnet50, width: 8, zero_init_residual: true, stem: imagenett}")).unwrap_err().to_string();
        assert!(err.contains("backbone.stem: unknown stem \"imagenett\"; expected cifar"), "{err}");
        let err = load(&t("{arch: resnet18, width: 8, zero_init_residual: true}")).unwrap_err().to_string();
        assert!(err.contains("backbone.stem: missing"), "{err}");
        let err = load(&t("{arch: amdim, width: 8, n_rkhs: 64, n_depth: 1, use_bn: false, stem: cifar}")).unwrap_err().to_string();
        assert!(err.contains("backbone.stem: not a field of arch amdim; remove it"), "{err}");
    }

    /// The shipped Imagenette suite: ResNets with the ImageNet stem at a learning rate scaled from
    /// CorInfoMax's batch 1024, and AMDIM switching the scaling off with `rule: none`.
    #[test]
    fn imagenette_scales_the_resnet_rate_and_not_amdims() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites/imagenette.yaml");
        let plan = build(&suite::load(&path, &[]).unwrap()).unwrap();
        let get = |id: &str| plan.targets.iter().find(|t| t.id == id).unwrap();
        let c = get("corinfomax");
        assert_eq!(c.backbone, Backbone::Resnet18 { width: 64, zero_init_residual: true, stem: ResnetStem::Imagenet });
        assert_eq!((c.train.lr, c.train.batch_size), (0.25, 256));
        let a = get("amdim");
        assert_eq!((a.train.lr, a.train.lr_scaling.is_none(), a.data.image_size), (2.0e-4, true, Some(128)));
        assert_eq!(a.backbone.label(), "amdim w192 r1536 d8");
        // AMDIM's views have no blur or solarization; the defaults' CorInfoMax views do.
        assert_eq!((a.augment.blur.as_ref().map(|b| b.p), a.augment.solarize.as_ref().map(|s| s.p)), (Some([0.0; 2]), Some([0.0; 2])));
        assert_eq!(c.augment.blur.as_ref().map(|b| b.p), Some([1.0, 0.1]));
        assert_eq!(get("random_init").backbone.label(), "resnet18 w64 in-stem");
    }

    /// The masked auto-encoders refuse a ResNet, and MAE's probe settings are checked.
    #[test]
    fn masked_autoencoders_and_the_mae_probe_are_checked() {
        let err = load("version: 1\ntargets:\n  - id: a\n    method: mmae\n    method_params: {mask_ratio: 1.0, norm_pix: true, decoder: {width: 30, depth: 0, heads: 4}, lambda: 0.01, mu: 3, centering: false}\n    backbone: {arch: resnet18, width: 8, zero_init_residual: true, stem: cifar}\n").unwrap_err().to_string();
        assert!(err.contains("method_params.mask_ratio: expected a fraction strictly between 0 and 1, found 1"), "{err}");
        assert!(err.contains("method_params.decoder: expected a positive width divisible by heads"), "{err}");
        assert!(err.contains("method_params.decoder.depth: expected at least 1 block"), "{err}");
        assert!(err.contains("mmae masks the patches of a ViT"), "{err}");
        let probe = "{epochs: 4, batch_size: 1, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.9, weight_decay: 0.0, standardize: true, batchnorm: true, optimizer: lars, warmup_epochs: 4, init_std: -1}";
        let err = load(&format!("version: 1\ntargets:\n  - id: a\n    method: random_init\n    eval: {{extra_linear: [{probe}]}}\n")).unwrap_err().to_string();
        for want in [
            "extra_linear[0].eta: missing",
            "extra_linear[0].warmup_epochs: expected fewer than epochs (4), found 4",
            "extra_linear[0].init_std: expected a number >= 0",
            "extra_linear[0].batchnorm: batchnorm and standardize both normalise",
            "extra_linear[0].batch_size: batchnorm needs batches of at least 2",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
