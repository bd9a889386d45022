//! Methods on the training side: a method = backbone + heads + loss (+ its view pipeline). Each
//! `methods/<name>.rs` implements [`Trains`] for its parameters (`plan::methods::<name>`): it builds
//! the method's [`Objective`] (heads, state) and evaluates its loss on given embeddings for `repro
//! loss`. The dispatch below is generated from the registry (`for_each_method!`); the training loop
//! only sees [`Model`].

pub mod amdim;
pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod dino;
pub mod ema;
pub mod emi;
pub mod er;
pub mod mae;
pub mod masked;
pub mod mmae;
pub mod projected;
pub mod simclr;
pub mod umae;
pub mod vicreg;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::nn::Encoder;
use crate::plan::{Backbone, Method, Params, Target};

/// A loss and its named terms for logging.
pub use crate::losses::Loss as StepLoss;

/// What a method's objective is built from.
pub struct Parts<'a> {
    /// Where the method's own variables live (`method.` in the checkpoint).
    pub root: nn::Path<'a>,
    /// The backbone's output features.
    pub feature_dim: i64,
    pub encoder: &'a Encoder,
    pub backbone: &'a Backbone,
    /// Builds another backbone like the online one (EMA targets).
    pub make_encoder: &'a dyn Fn(&nn::Path) -> Result<Encoder>,
}

/// A method's training-only part: heads, running state, EMA targets.
pub trait Objective {
    /// The SSL loss for two augmented, normalised views, through the online `encoder`.
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss>;
    /// How many augmented views of each image the loss reads (2; the masked auto-encoders read
    /// one, and the loop then draws only `v1`, passing it again as `v2`).
    fn views(&self) -> usize {
        2
    }
    /// Multiply-accumulates of the online encoder's forward passes per training image (MFU's
    /// numerator, with ×3 for the backward): `views()` full passes; the masked auto-encoders count
    /// their masked pass, which sees only the kept patches.
    fn encoder_macs_per_image(&self, encoder: &Encoder, in_channels: i64, image_size: i64, device: tch::Device) -> Result<u64> {
        Ok(self.views() as u64 * encoder.macs_per_image(in_channels, image_size, device))
    }
    /// The EMA target, for methods that keep one.
    fn target(&self) -> Option<&ema::Ema> {
        None
    }
    fn target_mut(&mut self) -> Option<&mut ema::Ema> {
        None
    }
    /// Non-variable state (running statistics, EMA targets) for checkpoints.
    fn state(&self) -> Vec<(String, Tensor)> {
        self.target().map(|t| t.state()).unwrap_or_default()
    }
    fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        match self.target_mut() {
            Some(t) => t.load_state(named).context("loading the EMA target"),
            None => Ok(()),
        }
    }
}

/// The training side of a method's parameters.
pub trait Trains: Params {
    /// What `repro loss` reads from `--set`: the method's own parameters unless it needs others.
    type LossArgs: Default + Serialize + DeserializeOwned;
    /// `repro loss` reads only `--z1` (the loss is a function of one set of features); `z2` is
    /// then `z1` again.
    const ONE_INPUT: bool = false;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>>;
    /// The objective on two given embeddings (`repro loss`).
    fn loss_on(args: &Self::LossArgs, z1: &Tensor, z2: &Tensor) -> Result<StepLoss>;
}

/// The `repro loss` arguments of a loss that takes none.
#[derive(Default, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Both views' backbone features, in training mode.
pub fn features(encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> (Tensor, Tensor) {
    (encoder.forward_t(v1, true), encoder.forward_t(v2, true))
}

macro_rules! dispatch {
    ($($name:ident $variant:ident $params:ident,)*) => {
        fn objective(method: &Method, parts: Parts) -> Result<Option<Box<dyn Objective>>> {
            Ok(match method {
                $(Method::$variant(p) => Some(p.objective(parts)?),)*
                Method::RandomInit => None,
            })
        }

        /// `repro loss NAME`: the method's objective on `z1`, `z2` with its `--set` arguments
        /// (defaults: the official values), and those arguments. Errors of the loss itself name
        /// `inputs`.
        pub fn loss_on(name: &str, set: &[String], z1: &Tensor, z2: Option<&Tensor>, inputs: &str) -> Result<(StepLoss, serde_json::Value)> {
            match name {
                $(n if n == <crate::plan::$params as Params>::NAME => {
                    let one = <crate::plan::$params as Trains>::ONE_INPUT;
                    let z2 = match (z2, one) {
                        (Some(_), true) => bail!("repro loss {n} reads only --z1 (the features the loss is a function of); remove --z2"),
                        (None, false) => bail!("repro loss {n} needs --z2 as well as --z1"),
                        (Some(z2), false) => z2,
                        (None, true) => z1,
                    };
                    let args: <crate::plan::$params as Trains>::LossArgs = loss_args(n, set)?;
                    let out = <crate::plan::$params as Trains>::loss_on(&args, z1, z2).map_err(|e| anyhow!("{e:#} {inputs}"))?;
                    Ok((out, serde_json::to_value(&args)?))
                })*
                other => {
                    let mut names = vec![$(<crate::plan::$params as Params>::NAME,)*];
                    names.sort_unstable();
                    bail!("repro loss: unknown method {other:?}; available: {}", names.join(", "))
                }
            }
        }
    };
}

repro_lite::for_each_method!(dispatch);

/// The defaults with `--set key=value` applied, checked by their type (unknown keys refused).
fn loss_args<A: Default + Serialize + DeserializeOwned>(name: &str, set: &[String]) -> Result<A> {
    let mut args = serde_yaml::to_value(A::default())?;
    if !set.is_empty() && args.as_mapping().is_some_and(|m| m.is_empty()) {
        bail!("repro loss {name} takes no parameters; remove --set");
    }
    for s in set {
        let o = crate::suite::Override::parse(s)?;
        if let serde_yaml::Value::Mapping(m) = &mut args {
            m.insert(serde_yaml::Value::String(o.path.join(".")), o.value);
        }
    }
    serde_yaml::from_value(args).map_err(|e| anyhow!("--set: {e}"))
}

/// Everything a target trains: the encoder (exported later) and the method's training-only parts.
pub struct Model {
    pub vs: nn::VarStore,
    pub encoder: Encoder,
    objective: Option<Box<dyn Objective>>,
    /// Weights in the channels-last layout; inputs should be too (`nn::trains_channels_last`).
    pub channels_last: bool,
}

impl Model {
    /// Builds the variables on `device`; `in_channels` and `image_size` come from the dataset.
    pub fn new(t: &Target, in_channels: i64, image_size: usize, device: tch::Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let make_encoder = |r: &nn::Path| Encoder::new(r, &t.backbone, in_channels, image_size);
        let encoder = make_encoder(&root)?;
        let parts = Parts { root: &root / "method", feature_dim: encoder.out_dim(), encoder: &encoder, backbone: &t.backbone, make_encoder: &make_encoder };
        let objective = objective(&t.method, parts)?;
        let channels_last = crate::nn::trains_channels_last(&t.backbone, device);
        let mut model = Self { vs, encoder, objective, channels_last };
        if channels_last {
            crate::nn::channels_last(&model.vs);
        }
        if let Some(target) = model.objective.as_mut().and_then(|o| o.target_mut()) {
            if channels_last {
                target.channels_last();
            }
            target.init(&model.vs)?;
        }
        Ok(model)
    }

    /// `x` in the layout the model's weights have.
    pub fn layout(&self, x: &Tensor) -> Tensor {
        if self.channels_last {
            crate::nn::to_channels_last(x)
        } else {
            x.shallow_clone()
        }
    }

    /// After each optimizer step (`step` of `total`, 0-based): the methods' own updates (EMA targets).
    pub fn after_step(&mut self, step: usize, total: usize) -> Result<()> {
        if let Some(target) = self.objective.as_mut().and_then(|o| o.target_mut()) {
            target.after_step(step, total);
        }
        Ok(())
    }

    /// Views per image the objective reads (1 or 2).
    pub fn views(&self) -> usize {
        self.objective.as_ref().map_or(2, |o| o.views())
    }

    /// Multiply-accumulates of the online encoder per training image ([`Objective::encoder_macs_per_image`]).
    pub fn train_macs_per_image(&self, in_channels: i64, image_size: i64) -> Result<u64> {
        match &self.objective {
            Some(o) => o.encoder_macs_per_image(&self.encoder, in_channels, image_size, self.vs.device()),
            None => bail!("this method has no training objective"),
        }
    }

    /// The SSL loss for two augmented, normalised views.
    pub fn loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        match &mut self.objective {
            Some(o) => o.loss(&self.encoder, v1, v2),
            None => bail!("this method has no training objective"),
        }
    }

    /// Non-variable method state (running statistics, EMA targets) for checkpoints.
    pub fn method_state(&self) -> Vec<(String, Tensor)> {
        self.objective.as_ref().map(|o| o.state()).unwrap_or_default()
    }

    pub fn load_method_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        match &mut self.objective {
            Some(o) => o.load_state(named),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EMA target (BYOL; ER's byol and dino heads) survives a checkpoint round trip exactly.
    #[test]
    fn ema_targets_round_trip_through_method_state() {
        let _rng = crate::rng_lock();
        let yaml = |method: &str, params: &str| {
            format!(
                "version: 1\ntargets:\n  - id: t\n    dataset: d\n    method: {method}\n    method_params: {params}\n    backbone: {{arch: resnet18, width: 2, zero_init_residual: false, stem: cifar}}\n    data: {{monitor_holdout: 1, monitor_bank: 1}}\n    augment: {{crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0], hflip: 0.0, interpolation: bilinear}}\n    train: {{epochs: 1, batch_size: 2, seeds: [0], lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 0.0, warmup_epochs: 0.0, min_lr: 0.0}}\n    eval: {{batch_size: 1, knn: {{k: 1, temperature: 1.0, distance: cosine}}, linear: {{epochs: 1, batch_size: 1, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.0, weight_decay: 0.0, standardize: true}}}}\n    export: {{parity_tolerance: 1.0e-4, parity_images: 1}}\n"
            )
        };
        for (method, params) in [
            ("byol", "{projector: [8, 4], predictor: [8, 4], momentum: 0.9}"),
            ("er", "{projector: [8, 4], reduction: average, head: {name: dino, prototypes: 6, momentum: 0.9, student_temperature: 0.1, teacher_temperature: 0.05}}"),
        ] {
            let spec = crate::suite::parse_str(&yaml(method, params)).unwrap();
            let targets = crate::suite::merge_targets(&spec, &[]).unwrap();
            let plan = crate::plan::build(&crate::suite::LoadedSuite { path: "t.yaml".into(), name: "t".into(), version: 1, description: None, targets }).unwrap();
            let t = &plan.targets[0];
            tch::manual_seed(0);
            let mut a = Model::new(t, 1, 8, tch::Device::Cpu).unwrap();
            tch::no_grad(|| {
                for (_, mut v) in a.vs.variables() {
                    let _ = v.g_add_scalar_(0.5);
                }
            });
            a.after_step(0, 4).unwrap();
            let sorted = |mut v: Vec<(String, Tensor)>| {
                v.sort_by(|x, y| x.0.cmp(&y.0));
                v
            };
            let state = sorted(a.method_state());
            assert!(!state.is_empty(), "{method}");
            tch::manual_seed(1);
            let mut b = Model::new(t, 1, 8, tch::Device::Cpu).unwrap();
            b.load_method_state(&state).unwrap();
            for ((ka, va), (kb, vb)) in state.iter().zip(sorted(b.method_state()).iter()) {
                assert_eq!(ka, kb);
                assert!(va.equal(vb), "{method}: {ka}");
            }
            // A checkpoint without the target is refused with the missing key named.
            let e = format!("{:#}", b.load_method_state(&[]).unwrap_err());
            assert!(e.contains("checkpoint lacks"), "{e}");
        }
    }
}
