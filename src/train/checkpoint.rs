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

#[derive(Serialize, Deserialize)]
struct Progress {
    epochs_done: usize,
}

pub fn save(dir: &Path, model: &Model, opt: &Optimizer, epochs_done: usize) -> Result<()> {
    // Contiguous in the default layout (channels-last weights are stored as NCHW; loading copies them back).
    let host = |t: Tensor| t.detach().to_device(tch::Device::Cpu).contiguous();
    let mut named: Vec<(String, Tensor)> = model.vs.variables().into_iter().map(|(n, t)| (format!("model.{n}"), host(t))).collect();
    named.extend(opt.state().into_iter().map(|(n, t)| (n, host(t))));
    named.extend(model.method_state().into_iter().map(|(n, t)| (n, host(t))));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    util::write_atomic_with(&dir.join(TENSORS), |tmp| {
        Tensor::write_safetensors(&named, tmp).with_context(|| format!("cannot write {}", tmp.display()))
    })?;
    util::write_json(&dir.join(PROGRESS), &Progress { epochs_done })
}

/// Loads model variables only (for export and evaluation of a finished checkpoint).
pub fn load_model(path: &Path, model: &mut Model) -> Result<Vec<(String, Tensor)>> {
    let named = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let vars = model.vs.variables();
    for (name, var) in vars {
        let key = format!("model.{name}");
        let (_, t) = named
            .iter()
            .find(|(k, _)| *k == key)
            .with_context(|| format!("{}: no tensor {key}; was it written for another backbone or width?", path.display()))?;
        if t.size() != var.size() {
            anyhow::bail!("{}: {key} has shape {:?}, the model expects {:?}", path.display(), t.size(), var.size());
        }
        let mut var = var;
        tch::no_grad(|| var.copy_(t));
    }
    model.load_method_state(&named)?;
    Ok(named)
}

/// Restores the latest checkpoint in `dir`, if any; returns the epochs it holds.
pub fn load(dir: &Path, model: &mut Model, opt: &mut Optimizer) -> Result<Option<usize>> {
    let progress = dir.join(PROGRESS);
    if !progress.exists() {
        return Ok(None);
    }
    let p: Progress = util::read_json(&progress)?;
    let named = load_model(&dir.join(TENSORS), model)?;
    opt.load_state(&named)?;
    Ok(Some(p.epochs_done))
}
