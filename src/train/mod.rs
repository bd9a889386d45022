//! The single training loop: seeded epochs of two-view batches, the suite's optimizer and schedule, one JSON
//! line per epoch in `train_log.jsonl` (loss terms, learning rate, images/s, held-out k-NN), a
//! checkpoint after every epoch from which an interrupted run resumes exactly, and the divergence
//! verdict (the first non-finite loss or gradient; `train.on_divergence`).

pub mod checkpoint;
pub mod optim;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

use crate::data::augment::{random_view, Normalize};
use crate::data::{ImageSet, Splits};
use crate::methods::Model;
use crate::plan::Target;
use crate::util;

pub use crate::results::EpochLog;

/// What training produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOutcome {
    pub epochs: usize,
    pub train_images: usize,
    pub train_s: f64,
    pub images_per_s: f64,
    pub final_loss: Option<f64>,
    pub monitor_knn_top1: Option<f64>,
    /// `train.on_divergence` restarts on the way (recorded in env.json).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<crate::results::Restart>,
}

/// Uint8 image set → tensor [N, C, H, W] on `device`.
pub fn to_tensor(set: &ImageSet, device: Device) -> Tensor {
    Tensor::from_slice(&set.pixels).reshape([set.n as i64, set.c as i64, set.h as i64, set.w as i64]).to_device(device)
}

/// The pre-training images (train split minus the monitor hold-out, plus the unlabeled split when
/// asked for, optionally a seeded subset), the monitor bank and the monitor hold-out.
pub struct TrainData {
    pub images: Tensor,
    pub bank: (Tensor, Tensor),
    pub holdout: (Tensor, Tensor),
}

impl TrainData {
    pub fn new(t: &Target, seed: u64, splits: &Splits, device: Device) -> Result<Self> {
        let n = splits.train.n;
        let (hold, bank) = (t.data.monitor_holdout, t.data.monitor_bank);
        if hold + bank >= n || hold == 0 || bank == 0 {
            bail!("data.monitor_holdout ({hold}) and data.monitor_bank ({bank}) must be >= 1 and leave training images out of the {n} in {}'s train split", t.dataset);
        }
        let pool = n - hold;
        let all = to_tensor(&splits.train, Device::Cpu);
        let mut images = all.narrow(0, 0, pool as i64);
        if t.data.unlabeled {
            let Some(unl) = &splits.unlabeled else { bail!("data.unlabeled: dataset {} has no unlabeled split", t.dataset) };
            if (unl.c, unl.h, unl.w) != (splits.train.c, splits.train.h, splits.train.w) {
                bail!("data.unlabeled: unlabeled images are {}x{}x{}, training images {}x{}x{}", unl.c, unl.h, unl.w, splits.train.c, splits.train.h, splits.train.w);
            }
            images = Tensor::cat(&[images, to_tensor(unl, Device::Cpu)], 0);
        }
        let available = images.size()[0] as usize;
        if let Some(k) = t.data.train_subset {
            if k > available {
                bail!("data.train_subset = {k} but only {available} pre-training images remain after the monitor hold-out");
            }
            tch::manual_seed(util::derive_seed(seed, "subset") as i64);
            let idx = Tensor::randperm(available as i64, (Kind::Int64, Device::Cpu)).narrow(0, 0, k as i64);
            images = images.index_select(0, &idx);
        }
        let labels = Tensor::from_slice(&splits.train.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let holdout = (all.narrow(0, pool as i64, hold as i64).to_device(device), labels.narrow(0, pool as i64, hold as i64).to_device(device));
        let bank = (all.narrow(0, 0, bank as i64).to_device(device), labels.narrow(0, 0, bank as i64).to_device(device));
        Ok(Self { images: images.to_device(device), bank, holdout })
    }
}

/// The arithmetic a run trains in (`train.precision` on this device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// CUDA autocast to bf16 for the network; float64 tensors (covariances, log-dets) are not cast.
    Bf16Autocast,
}

impl Precision {
    pub fn of(t: &Target, device: Device) -> Self {
        match (t.train.precision, device) {
            (crate::plan::Precision::Auto, Device::Cuda(_)) => Precision::Bf16Autocast,
            _ => Precision::Fp32,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16Autocast => "bf16 autocast",
        }
    }

    /// Runs `f` under this precision.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> T {
        match self {
            Precision::Fp32 => f(),
            Precision::Bf16Autocast => tch::autocast(true, f),
        }
    }
}

/// The two normalised training views of a batch `x` (float, [0, 1]) in the model's layout; for an
/// objective that reads one view (`Model::views`), the first twice (the second is not drawn).
pub fn two_views(model: &Model, x: &Tensor, t: &Target, norm: &Normalize) -> Result<(Tensor, Tensor)> {
    let view = |i| random_view(x, &t.augment, i).map(|v| model.layout(&norm.apply(&v)));
    let v1 = view(0)?;
    let v2 = if model.views() == 1 { v1.shallow_clone() } else { view(1)? };
    Ok((v1, v2))
}

/// What one step leaves on the device (nothing here waits for it).
pub struct Step {
    pub loss: crate::methods::StepLoss,
    /// The sum of all gradients (non-finite exactly when one is), `None` without gradients.
    pub grad_sum: Option<Tensor>,
}

/// One training step on two views: the loss under `precision`, backward, the optimizer at `lr`, then
/// the method's own update for step `step` of `total` (EMA targets).
#[allow(clippy::too_many_arguments)]
pub fn step(model: &mut Model, opt: &mut optim::Optimizer, precision: Precision, v1: &Tensor, v2: &Tensor, lr: f64, step: usize, total: usize) -> Result<Step> {
    let out = precision.run(|| model.loss(v1, v2))?;
    opt.zero_grad();
    out.total.backward();
    let grad_sum = opt.step(lr);
    model.after_step(step, total)?;
    Ok(Step { loss: out, grad_sum })
}

/// A run's training met a non-finite loss or gradient (and `train.on_divergence` allowed no more
/// restarts): the error `repro run` records as `diverged`.
#[derive(Debug)]
pub struct Diverged(pub crate::results::Divergence);

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.0;
        let restarts = match d.restarts.len() {
            0 => String::new(),
            n => format!(" after {n} restart(s) at lower rates (last ×{})", d.restarts[n - 1].lr_scale),
        };
        write!(
            f,
            "diverged at epoch {}, step {} of the epoch (step {} of training): the {} became non-finite (loss {}, lr {:.4e}){restarts}. \
             The run ends here with its last checkpoint kept; lower train.lr, or set train.on_divergence: {{action: restart, lr_factor: 0.5, max_restarts: 2}}",
            d.epoch,
            d.step_in_epoch,
            d.step,
            d.what,
            d.loss.as_str().map_or_else(|| d.loss.to_string(), str::to_owned),
            d.lr
        )
    }
}

impl std::error::Error for Diverged {}

/// Steps between two reads of the divergence flag (one wait for the device each).
const DIVERGENCE_CHECK_STEPS: usize = 50;

/// The first non-finite step of an epoch, tracked on the device without waiting for it: the step,
/// what was non-finite (the loss, a gradient, or the parameters the step left), and the loss and
/// terms at that step.
pub struct DivergenceWatch {
    step: Tensor,
    /// 0: a gradient, 1: the loss, 2: the parameters.
    what: Tensor,
    loss: Tensor,
    terms: std::collections::BTreeMap<String, Tensor>,
}

impl DivergenceWatch {
    pub fn new(device: Device) -> Self {
        let f = |v: f64| Tensor::full([], v, (Kind::Double, device));
        Self { step: f(-1.0), what: f(0.0), loss: f(0.0), terms: Default::default() }
    }

    /// Notes step `s` of the epoch if it is the first non-finite one (a few scalar operations on
    /// the device; nothing is read).
    pub fn note(&mut self, s: usize, out: &Step) {
        let loss_bad = out.loss.total.detach().isfinite().logical_not();
        let bad = match &out.grad_sum {
            Some(g) => loss_bad.logical_or(&g.isfinite().logical_not()),
            None => loss_bad.shallow_clone(),
        };
        self.mark(s, &bad, &loss_bad.to_kind(Kind::Double), out);
    }

    /// Notes the epoch's last step `s` if it left a parameter non-finite with a finite loss and
    /// gradient (the next step's loss would say so, but the last epoch has no next step).
    pub fn note_parameters(&mut self, s: usize, out: &Step, params: &[Tensor]) {
        let Some(sum) = params.iter().map(|p| p.detach().sum(Kind::Double)).reduce(|a, b| a + b) else { return };
        let bad = sum.isfinite().logical_not();
        self.mark(s, &bad, &sum.full_like(2.0), out);
    }

    fn mark(&mut self, s: usize, bad: &Tensor, what: &Tensor, out: &Step) {
        let first = bad.logical_and(&self.step.lt(0.0));
        let at = |new: &Tensor, old: &Tensor| new.where_self(&first, old);
        self.step = at(&self.step.full_like(s as f64), &self.step);
        self.what = at(what, &self.what);
        self.loss = at(&out.loss.total.detach().to_kind(Kind::Double), &self.loss);
        for (k, v) in &out.loss.terms {
            let v = v.detach().to_kind(Kind::Double);
            let old = self.terms.remove(*k).unwrap_or_else(|| v.zeros_like());
            self.terms.insert((*k).to_owned(), at(&v, &old));
        }
    }

    /// What was non-finite at the first such step.
    fn what(&self) -> &'static str {
        match self.what.double_value(&[]) as i64 {
            1 => "loss",
            2 => "parameters",
            _ => "gradient",
        }
    }

    /// The first non-finite step so far (one read of the device).
    pub fn first(&self) -> Option<usize> {
        let s = self.step.double_value(&[]);
        (s >= 0.0).then_some(s as usize)
    }
}

/// Trains `model` for the target's epochs at `seed`, resuming from `dir`'s checkpoint when one exists.
/// Nothing inside a step waits for the device: the loss and its terms are summed where they are
/// computed and read once per epoch, and a device-side flag marks the first non-finite loss or
/// gradient, read every [`DIVERGENCE_CHECK_STEPS`] steps. A divergence ends the run as [`Diverged`]
/// before that epoch's checkpoint, or, under `train.on_divergence: {action: restart}`, reloads the
/// last checkpoint (the start, before the first) and goes on at a lower rate.
#[allow(clippy::too_many_arguments)]
pub fn train(t: &Target, seed: u64, precision: Precision, model: &mut Model, data: &TrainData, norm: &Normalize, dir: &Path, classes: i64) -> Result<TrainOutcome> {
    let n = data.images.size()[0] as usize;
    let bs = t.train.batch_size;
    let steps_per_epoch = n / bs; // drop_last, as the reference loaders do
    if steps_per_epoch == 0 {
        bail!("train.batch_size = {bs} is larger than the {n} pre-training images");
    }
    let total = steps_per_epoch * t.train.epochs;
    let warmup = (t.train.warmup_epochs * steps_per_epoch as f64).round() as usize;
    let mut opt = optim::Optimizer::new(&model.vs, &t.train.optimizer, t.train.weight_decay)?;
    let log_path = dir.join("train_log.jsonl");
    let label = t.run_label(seed);
    let mut progress = checkpoint::Progress::start();
    let mut logs: Vec<EpochLog> = Vec::new();
    if let Some(p) = checkpoint::load(dir, model, &mut opt)? {
        let done = p.epochs_done;
        logs = read_log(&log_path)?.into_iter().filter(|l| l.epoch <= done).collect();
        if done >= t.train.epochs {
            eprintln!("  {label}: training finished earlier ({done} epochs in its checkpoint)");
        } else {
            eprintln!("  resuming {label} from epoch {done}/{}", t.train.epochs);
        }
        progress = p;
    } else if !t.train.on_divergence.is_stop() {
        // A restart before the first epoch's checkpoint goes back to the start.
        checkpoint::save(dir, model, &opt, &progress)?;
    }
    let mut epoch = progress.epochs_done;
    while epoch < t.train.epochs {
        let started = Instant::now();
        tch::manual_seed(util::derive_seed(seed, &format!("epoch{epoch}")) as i64);
        let device = data.images.device();
        let perm = Tensor::randperm(n as i64, (Kind::Int64, device));
        let zero = || Tensor::zeros([], (Kind::Double, device));
        let mut sum = zero();
        let mut term_sums: std::collections::BTreeMap<String, Tensor> = Default::default();
        let mut bad = DivergenceWatch::new(device);
        let mut diverged = None;
        let rate = |at: usize| optim::learning_rate(&t.train.schedule, at, total, steps_per_epoch, warmup, t.train.lr, t.train.min_lr) * progress.lr_scale;
        let mut lr = 0.0;
        for s in 0..steps_per_epoch {
            let idx = perm.narrow(0, (s * bs) as i64, bs as i64);
            let x = data.images.index_select(0, &idx).to_kind(Kind::Float) / 255.0;
            let (v1, v2) = two_views(model, &x, t, norm)?;
            let at = epoch * steps_per_epoch + s;
            lr = rate(at);
            let out = step(model, &mut opt, precision, &v1, &v2, lr, at, total)?;
            let _ = sum.g_add_(&out.loss.total.detach().to_kind(Kind::Double));
            for (k, v) in &out.loss.terms {
                let _ = term_sums.entry((*k).to_owned()).or_insert_with(zero).g_add_(&v.detach().to_kind(Kind::Double));
            }
            bad.note(s, &out);
            if s + 1 == steps_per_epoch {
                bad.note_parameters(s, &out, &model.vs.trainable_variables());
            }
            if (s + 1) % DIVERGENCE_CHECK_STEPS == 0 || s + 1 == steps_per_epoch {
                if let Some(first) = bad.first() {
                    diverged = Some(first);
                    break;
                }
            }
        }
        if let Some(first) = diverged {
            let value = |x: &Tensor| crate::results::json_float(x.double_value(&[]));
            let d = crate::results::Divergence {
                epoch: epoch + 1,
                step_in_epoch: first + 1,
                step: epoch * steps_per_epoch + first + 1,
                what: bad.what().into(),
                loss: value(&bad.loss),
                terms: bad.terms.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
                lr: rate(epoch * steps_per_epoch + first),
                restarts: progress.restarts.clone(),
            };
            if t.train.on_divergence.restarts_left(progress.restarts.len()) == 0 {
                return Err(Diverged(d).into());
            }
            let last = checkpoint::load(dir, model, &mut opt)?.context("on_divergence restart: the checkpoint to go back to is missing")?;
            let lr_scale = progress.lr_scale * t.train.on_divergence.lr_factor;
            eprintln!(
                "  {label}: the {} became non-finite at epoch {}, step {}; going back to epoch {} at {lr_scale:.3e} × the rate (restart {} of {}, train.on_divergence)",
                d.what,
                d.epoch,
                d.step_in_epoch,
                last.epochs_done,
                progress.restarts.len() + 1,
                t.train.on_divergence.max_restarts
            );
            progress.restarts.push(crate::results::Restart { epoch: d.epoch, step: d.step, from_epoch: last.epochs_done, lr_scale });
            progress.lr_scale = lr_scale;
            progress.epochs_done = last.epochs_done;
            checkpoint::save_progress(dir, &progress)?;
            epoch = last.epochs_done;
            logs.retain(|l| l.epoch <= epoch);
            continue;
        }
        let steps = steps_per_epoch as f64;
        let loss = sum.double_value(&[]) / steps; // the epoch's one read of the loss
        let epoch_s = started.elapsed().as_secs_f64();
        let monitor = monitor_knn(model, data, norm, t, classes)?;
        let log = EpochLog {
            epoch: epoch + 1,
            loss,
            terms: term_sums.iter().map(|(k, v)| (k.clone(), v.double_value(&[]) / steps)).collect(),
            lr,
            images_per_s: (steps_per_epoch * bs) as f64 / epoch_s,
            monitor_knn_top1: Some(monitor),
            epoch_s,
        };
        eprintln!("  {label} epoch {}/{}: loss {:.4}  lr {:.4}  {:.0} img/s  held-out k-NN {:.2}%", log.epoch, t.train.epochs, log.loss, lr, log.images_per_s, monitor);
        logs.push(log);
        // The log first: a run killed between the two writes resumes from the previous checkpoint
        // and drops the extra line (`l.epoch <= done`); the other order would lose this epoch's line.
        write_log(&log_path, &logs)?;
        epoch += 1;
        progress.epochs_done = epoch;
        checkpoint::save(dir, model, &opt, &progress)?;
    }
    let last = logs.last();
    let all_s: f64 = logs.iter().map(|l| l.epoch_s).sum();
    Ok(TrainOutcome {
        epochs: t.train.epochs,
        train_images: n,
        train_s: all_s,
        images_per_s: if all_s > 0.0 { (logs.len() * steps_per_epoch * bs) as f64 / all_s } else { 0.0 },
        final_loss: last.map(|l| l.loss),
        monitor_knn_top1: last.and_then(|l| l.monitor_knn_top1),
        restarts: progress.restarts,
    })
}

/// Backbone features of uint8 images, eval mode, in chunks.
pub fn features(model: &Model, images: &Tensor, norm: &Normalize, chunk: i64) -> Tensor {
    tch::no_grad(|| {
        let n = images.size()[0];
        let parts: Vec<Tensor> = (0..n).step_by(chunk as usize).map(|s| model.encoder.forward_t(&norm.apply_u8(&images.narrow(0, s, chunk.min(n - s))), false)).collect();
        Tensor::cat(&parts, 0)
    })
}

/// Weighted k-NN (cosine, the suite's k and T) of the hold-out against the bank, in percent: the
/// evaluation's own k-NN (`eval::knn`) on the features copied to the host.
fn monitor_knn(model: &Model, data: &TrainData, norm: &Normalize, t: &Target, classes: i64) -> Result<f64> {
    let host = |x: &Tensor| -> Result<ndarray::Array2<f32>> {
        let h = features(model, x, norm, t.eval.batch_size as i64).to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let (n, d) = (h.size()[0] as usize, h.size()[1] as usize);
        let values = Vec::<f32>::try_from(h.flatten(0, -1)).context("monitor k-NN: cannot read the features")?;
        ndarray::Array2::from_shape_vec((n, d), values).context("monitor k-NN: feature shape")
    };
    let labels = |y: &Tensor| -> Result<Vec<u32>> {
        let v = Vec::<i64>::try_from(y.to_device(Device::Cpu).to_kind(Kind::Int64)).context("monitor k-NN: cannot read the labels")?;
        Ok(v.into_iter().map(|l| l as u32).collect())
    };
    let p = crate::eval::knn::KnnParams { distance: crate::eval::knn::Distance::Cosine, ..crate::eval::knn::KnnParams::of(&t.eval.knn) };
    let (bank, query) = (host(&data.bank.0)?, host(&data.holdout.0)?);
    crate::eval::knn::knn_top1(bank.view(), &labels(&data.bank.1)?, query.view(), &labels(&data.holdout.1)?, classes as usize, &p)
}

fn read_log(path: &Path) -> Result<Vec<EpochLog>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad line {l:?}", path.display()))).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_log(path: &Path, logs: &[EpochLog]) -> Result<()> {
    let mut buf = Vec::new();
    for l in logs {
        serde_json::to_writer(&mut buf, l)?;
        buf.write_all(b"\n")?;
    }
    util::write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(loss: f64, grad: f64) -> Step {
        let total = Tensor::from(loss);
        Step { loss: crate::methods::StepLoss { total: total.shallow_clone(), terms: vec![("align", total)] }, grad_sum: Some(Tensor::from(grad)) }
    }

    #[test]
    fn the_watch_names_the_first_non_finite_step_and_what() {
        let mut w = DivergenceWatch::new(Device::Cpu);
        w.note(0, &out(1.0, 2.0));
        assert_eq!(w.first(), None);
        w.note(1, &out(1.0, f64::INFINITY));
        w.note(2, &out(f64::NAN, 2.0));
        assert_eq!((w.first(), w.what()), (Some(1), "gradient"));
        let mut w = DivergenceWatch::new(Device::Cpu);
        w.note(3, &out(f64::NAN, 2.0));
        assert_eq!((w.first(), w.what(), w.loss.double_value(&[]).is_nan()), (Some(3), "loss", true));
        // Finite loss and gradient, but the step left a parameter at infinity.
        let mut w = DivergenceWatch::new(Device::Cpu);
        let params = [Tensor::from_slice(&[1.0f32, 2.0]), Tensor::from_slice(&[f32::INFINITY])];
        w.note(4, &out(0.5, 2.0));
        w.note_parameters(4, &out(0.5, 2.0), &params[..1]);
        assert_eq!(w.first(), None);
        w.note_parameters(4, &out(0.5, 2.0), &params);
        assert_eq!((w.first(), w.what(), w.loss.double_value(&[])), (Some(4), "parameters", 0.5));
    }
}
