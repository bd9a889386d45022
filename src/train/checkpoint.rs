//! Checkpoints: one safetensors file with the model's variables (`model.<name>`), the optimizer's
//! state (`optim.<name>[.<buffer>]`, `optim.step`) and the method's running state, plus `checkpoint.json` saying
//! how many epochs it holds. Both are written atomically, tensors first, so the JSON never points
//! at a half-written file. The tensors carry their own epoch count and rate multiplier
//! (`progress.epochs_done`, `progress.lr_scale`): a kill between the two writes leaves a JSON one
//! epoch behind its tensors, and the tensors' count is then the true one.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::optim::Optimizer;
use crate::methods::Model;
use crate::util;

pub const TENSORS: &str = "checkpoint.safetensors";
const PROGRESS: &str = "checkpoint.json";
const EPOCHS_KEY: &str = "progress.epochs_done";
const LR_SCALE_KEY: &str = "progress.lr_scale";

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
    named.push((EPOCHS_KEY.into(), Tensor::from(progress.epochs_done as i64)));
    named.push((LR_SCALE_KEY.into(), Tensor::from(progress.lr_scale)));
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
    let scalar = |key: &str| named.iter().find(|(k, _)| k == key).map(|(_, t)| t.double_value(&[]));
    let held = scalar(EPOCHS_KEY).map(|e| (e as usize, scalar(LR_SCALE_KEY).unwrap_or(p.lr_scale)));
    Ok(Some(reconcile(p, held)))
}

/// The progress to resume from, given `checkpoint.json` and what the tensors say they hold
/// (`None` for checkpoints from before they said). The tensors are written first: when they hold
/// more epochs, the JSON lags a kill between the two writes and the tensors' count and rate are
/// the true ones. When both hold the same epochs the JSON is newer (an `on_divergence` restart
/// rewrites only it, with its new rate).
pub fn reconcile(json: Progress, held: Option<(usize, f64)>) -> Progress {
    match held {
        Some((epochs_done, lr_scale)) if epochs_done > json.epochs_done => Progress { epochs_done, lr_scale, ..json },
        _ => json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_ahead_of_their_json_are_believed() {
        let json = Progress { epochs_done: 2, lr_scale: 0.5, restarts: Vec::new() };
        // Killed after the epoch-3 tensors, before their JSON.
        let p = reconcile(json.clone(), Some((3, 0.5)));
        assert_eq!((p.epochs_done, p.lr_scale), (3, 0.5));
        // A restart rewrote the JSON (rate 0.25) over tensors of the same epoch (rate 0.5).
        let p = reconcile(Progress { lr_scale: 0.25, ..json.clone() }, Some((2, 0.5)));
        assert_eq!((p.epochs_done, p.lr_scale), (2, 0.25));
        // Checkpoints from before the tensors said.
        assert_eq!(reconcile(json, None).epochs_done, 2);
    }
}
