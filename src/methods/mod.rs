//! Methods: a method = backbone + heads + loss (+ its view pipeline). The registry is the one `match`
//! on `plan::Method` in [`Model::new`]; the training loop only sees [`Model`].

pub mod amdim;
pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod ema;
pub mod emi;
pub mod er;
pub mod projected;
pub mod simclr;
pub mod vicreg;

use anyhow::{bail, Context, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::nn::Encoder;
use crate::plan::{Backbone, Method, Target};

/// A loss and its named terms for logging.
pub use crate::losses::Loss as StepLoss;

enum Objective {
    CorInfoMax(corinfomax::CorInfoMax),
    /// SimCLR, Barlow Twins, VICReg, EMI: projector + loss.
    Projected(projected::Projected),
    Byol(Box<byol::Byol>),
    Amdim(amdim::Amdim),
    Er(Box<er::Er>),
    None,
}

impl Objective {
    /// The EMA target, for methods that keep one.
    fn ema_mut(&mut self) -> Option<&mut ema::Ema> {
        match self {
            Objective::Byol(b) => Some(&mut b.target),
            Objective::Er(e) => e.target_mut(),
            _ => None,
        }
    }
}

/// Everything a target trains: the encoder (exported later) and the method's training-only parts.
pub struct Model {
    pub vs: nn::VarStore,
    pub encoder: Encoder,
    objective: Objective,
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
        let (m, d) = (&root / "method", encoder.out_dim());
        let objective = match &t.method {
            Method::CorInfoMax(p) => Objective::CorInfoMax(corinfomax::CorInfoMax::new(&m, d, p)),
            Method::Simclr(p) => Objective::Projected(simclr::new(&m, d, p)),
            Method::BarlowTwins(p) => Objective::Projected(barlow_twins::new(&m, d, p)),
            Method::Vicreg(p) => Objective::Projected(vicreg::new(&m, d, p)),
            Method::Emi(p) => Objective::Projected(emi::new(&m, d, p)),
            Method::Byol(p) => Objective::Byol(Box::new(byol::Byol::new(&m, d, p, &make_encoder)?)),
            Method::Er(p) => Objective::Er(Box::new(er::Er::new(&m, d, p, &make_encoder)?)),
            Method::Amdim(p) => {
                let (Encoder::Amdim(a), Backbone::Amdim { n_rkhs, use_bn, .. }) = (&encoder, &t.backbone) else {
                    bail!("method amdim needs backbone.arch: amdim (its loss reads the encoder's 5x5 and 7x7 maps)");
                };
                Objective::Amdim(amdim::Amdim::new(&m, a.map_channels(), *n_rkhs, *use_bn, p))
            }
            Method::RandomInit => Objective::None,
        };
        let channels_last = crate::nn::trains_channels_last(&t.backbone, device);
        let mut model = Self { vs, encoder, objective, channels_last };
        if channels_last {
            crate::nn::channels_last(&model.vs);
        }
        if let Some(target) = model.objective.ema_mut() {
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
        if let Some(target) = self.objective.ema_mut() {
            target.after_step(step, total);
        }
        Ok(())
    }

    /// The SSL loss for two augmented, normalised views.
    pub fn loss(&mut self, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        if let (Objective::Amdim(m), Encoder::Amdim(e)) = (&self.objective, &self.encoder) {
            // Two encoder calls, so BatchNorm statistics are per view, as the official model.
            return m.step(&e.maps(v1, true), &e.maps(v2, true));
        }
        let h1 = self.encoder.forward_t(v1, true);
        let h2 = self.encoder.forward_t(v2, true);
        match &mut self.objective {
            Objective::CorInfoMax(m) => m.step(&h1, &h2),
            Objective::Projected(m) => m.step(&h1, &h2),
            Objective::Byol(m) => m.step(&h1, &h2, v1, v2),
            Objective::Er(m) => m.step(&h1, &h2, v1, v2),
            Objective::Amdim(_) => bail!("method amdim needs backbone.arch: amdim"),
            Objective::None => bail!("this method has no training objective"),
        }
    }

    /// Non-variable method state (running statistics, EMA targets) for checkpoints.
    pub fn method_state(&self) -> Vec<(String, Tensor)> {
        match &self.objective {
            Objective::CorInfoMax(m) => m.state(),
            Objective::Byol(m) => m.target.state(),
            Objective::Er(m) => m.target().map(|t| t.state()).unwrap_or_default(),
            Objective::Projected(_) | Objective::Amdim(_) | Objective::None => Vec::new(),
        }
    }

    pub fn load_method_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        if let Objective::CorInfoMax(m) = &mut self.objective {
            return m.load_state(named);
        }
        match self.objective.ema_mut() {
            Some(t) => t.load_state(named).context("loading the EMA target"),
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
                "version: 1\ntargets:\n  - id: t\n    dataset: d\n    method: {method}\n    method_params: {params}\n    backbone: {{arch: resnet18, width: 2, zero_init_residual: false}}\n    data: {{monitor_holdout: 1, monitor_bank: 1}}\n    augment: {{crop_scale: [1.0, 1.0], crop_ratio: [1.0, 1.0], hflip: 0.0, interpolation: bilinear}}\n    train: {{epochs: 1, batch_size: 2, seeds: [0], lr: 0.1, optimizer: {{name: sgd, momentum: 0.9}}, schedule: {{name: warmup_cosine}}, weight_decay: 0.0, warmup_epochs: 0.0, min_lr: 0.0}}\n    eval: {{batch_size: 1, knn: {{k: 1, temperature: 1.0, distance: cosine}}, linear: {{epochs: 1, batch_size: 1, lr: 0.1, schedule: cosine_per_step, min_lr: 0.0, momentum: 0.0, weight_decay: 0.0, standardize: true}}}}\n    export: {{parity_tolerance: 1.0e-4, parity_images: 1}}\n"
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
