//! Checkpoints: one safetensors file with the model's variables (`model.<name>`), the optimizer's
//! state (`optim.<name>[.<buffer>]`, `optim.step`) and the method's running state, plus `checkpoint.json` saying
//! how many epochs it holds. Both are written atomically, tensors first, so the JSON never points
//! at a half-written file.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::optim::Optimizer;
use crate::methods::Model;
use crate::util;

pub const TENSORS: &str = "checkpoint.safetensors";
const PROGRESS: &str = "checkpoint.json";

/// `checkpoint.json`: the epochs the tensors hold and, after `train.on_divergence` restarts, the
/// rate multiplier in force and each restart (so that a resumed run goes on as the killed one would).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    pub epochs_done: usize,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub lr_scale: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<crate::results::Restart>,
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

impl Progress {
    pub fn start() -> Self {
        Self { epochs_done: 0, lr_scale: 1.0, restarts: Vec::new() }
    }
}

/// Rewrites `checkpoint.json` alone (a restart changes the rate, not the tensors).
pub fn save_progress(dir: &Path, progress: &Progress) -> Result<()> {
    util::write_json(&dir.join(PROGRESS), progress)
}

pub fn save(dir: &Path, model: &Model, opt: &Optimizer, progress: &Progress) -> Result<()> {
    // Contiguous in the default layout (channels-last weights are stored as NCHW; loading copies them back).
    let host = |t: Tensor| t.detach().to_device(tch::Device::Cpu).contiguous();
    let mut named: Vec<(String, Tensor)> = model.vs.variables().into_iter().map(|(n, t)| (format!("model.{n}"), host(t))).collect();
    named.extend(opt.state().into_iter().map(|(n, t)| (n, host(t))));
    named.extend(model.method_state().into_iter().map(|(n, t)| (n, host(t))));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    util::write_atomic_with(&dir.join(TENSORS), |tmp| Tensor::write_safetensors(&named, tmp).with_context(|| format!("cannot write {}", tmp.display())))?;
    save_progress(dir, progress)
}

/// Loads model variables only (for export and evaluation of a finished checkpoint).
pub fn load_model(path: &Path, model: &mut Model) -> Result<Vec<(String, Tensor)>> {
    let named = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let vars = model.vs.variables();
    for (name, var) in vars {
        let key = format!("model.{name}");
        let (_, t) = named.iter().find(|(k, _)| *k == key).with_context(|| format!("{}: no tensor {key}; was it written for another backbone or width?", path.display()))?;
        if t.size() != var.size() {
            anyhow::bail!("{}: {key} has shape {:?}, the model expects {:?}", path.display(), t.size(), var.size());
        }
        let mut var = var;
        tch::no_grad(|| var.copy_(t));
    }
    model.load_method_state(&named)?;
    Ok(named)
}

/// Restores the latest checkpoint in `dir`, if any; returns its progress.
pub fn load(dir: &Path, model: &mut Model, opt: &mut Optimizer) -> Result<Option<Progress>> {
    let progress = dir.join(PROGRESS);
    if !progress.exists() {
        return Ok(None);
    }
    let p: Progress = util::read_json(&progress)?;
    let named = load_model(&dir.join(TENSORS), model)?;
    opt.load_state(&named)?;
    Ok(Some(p))
}
