//! `repro plan SUITE`: what a suite will cost before it runs. Per target: training FLOPs per image
//! (6 × the backbone's multiply-accumulates over the image's views, `Model::train_macs_per_image`,
//! the MFU convention of `bench`), images per epoch (the lock's `train_images`, or
//! `data.train_subset`), the total over epochs and seeds, the time on this machine from a short
//! measured calibration (two warm-up and a few measured training steps on synthetic images of the
//! target's shape), the time on a named GPU class at an assumed MFU, and the memory it needs (the
//! uint8 training tensor, the `data.image_size` resize, weights, gradients and optimizer state,
//! and activations measured as the peak resident-memory growth of the first calibration step, per
//! image). Targets that will not fit are flagged. Estimates, not measurements of the run:
//! evaluation, data loading and the heads are not counted.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::augment::Normalize;
use crate::data::lock::{DatasetEntry, Lock};
use crate::methods::Model;
use crate::plan::{Optimizer, Plan, Target};
use crate::train::{self, optim, Precision};

/// One target's estimate.
#[derive(Debug, Clone, Serialize)]
pub struct TargetEstimate {
    pub target: String,
    pub method: String,
    pub backbone: String,
    pub image_size: usize,
    pub batch_size: usize,
    pub epochs: usize,
    pub seeds: usize,
    pub params: u64,
    /// Training FLOPs per image (forward + backward over its views).
    pub train_gflop_per_image: f64,
    pub images_per_epoch: Option<usize>,
    pub total_pflop: Option<f64>,
    /// Training images per second measured here (None: not calibrated or does not train).
    pub measured_images_per_s: Option<f64>,
    pub here_hours: Option<f64>,
    pub gpu_hours: Option<f64>,
    /// Resident bytes per training image of the calibration step (activations and views).
    pub activation_bytes_per_image: Option<f64>,
    pub host_gib: f64,
    pub gpu_gib: Option<f64>,
    /// Why it will not fit, if it will not.
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteEstimate {
    pub suite: String,
    pub device: String,
    pub gpu: String,
    pub gpu_peak_tflops: f64,
    pub gpu_memory_gib: f64,
    pub mfu: f64,
    pub host_memory_gib: Option<f64>,
    pub targets: Vec<TargetEstimate>,
    pub total_pflop: f64,
    pub here_hours: Option<f64>,
    pub gpu_hours: f64,
    /// Targets whose images per epoch are unknown (left out of the totals).
    pub uncounted: Vec<String>,
}

pub struct EstimateOptions {
    pub gpu: String,
    pub mfu: f64,
    pub calibrate_steps: usize,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The images a target trains on per epoch, if known before the data is fetched: the labelled
/// training split less the monitor's held-out images, plus the unlabeled split where used, or
/// `data.train_subset` of those (as `train::TrainData` draws them).
fn images_per_epoch(t: &Target, e: &DatasetEntry) -> Option<usize> {
    let pool = || -> Option<usize> { Some(e.train_images?.saturating_sub(t.data.monitor_holdout) + if t.data.unlabeled { e.unlabeled_images? } else { 0 }) };
    match t.data.train_subset {
        Some(k) => Some(pool().map_or(k, |p| k.min(p))),
        None => pool(),
    }
}

/// Images held as the training tensor: the whole training split (and the unlabeled one), plus
/// the copy of a `data.train_subset`.
fn images_held(t: &Target, e: &DatasetEntry) -> Option<usize> {
    let all = e.train_images? + if t.data.unlabeled { e.unlabeled_images? } else { 0 };
    Some(all + t.data.train_subset.unwrap_or(0))
}

/// Training FLOPs one CPU calibration step may cost (a few seconds on 2 cores).
const CPU_STEP_FLOP: f64 = 0.25e12;

/// The calibration batch: the target's own on a GPU; on a CPU as much of it as one step of
/// [`CPU_STEP_FLOP`] allows, at least 8 (a small batch under-uses the cores and misstates the speed).
fn calibration_batch(t: &Target, flop_per_image: f64, device: Device) -> usize {
    if device.is_cuda() || flop_per_image <= 0.0 {
        return t.train.batch_size;
    }
    t.train.batch_size.min(((CPU_STEP_FLOP / flop_per_image) as usize).max(8))
}

/// A `Name:  N kB` field of a /proc file, in bytes (Linux; None elsewhere).
fn proc_bytes(file: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(file).ok()?;
    let kb: f64 = s.lines().find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Peak resident memory (VmHWM) of this process, in bytes; reset by [`reset_peak_rss`].
fn peak_rss() -> Option<f64> {
    proc_bytes("/proc/self/status", "VmHWM")
}

fn rss() -> Option<f64> {
    proc_bytes("/proc/self/status", "VmRSS")
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn host_memory() -> Option<f64> {
    proc_bytes("/proc/meminfo", "MemTotal")
}

/// Bytes of optimizer state per parameter (fp32): momentum for SGD and LARS, two moments for Adam.
fn optimizer_bytes_per_param(t: &Target) -> f64 {
    match t.train.optimizer {
        Optimizer::Adam { .. } | Optimizer::Adamw { .. } => 8.0,
        _ => 4.0,
    }
}

/// Estimates one target: counts, a calibration of `steps` training steps on `device`, memory.
fn estimate_target(t: &Target, entry: &DatasetEntry, lock: &Lock, device: Device, o: &EstimateOptions, gpu: (f64, f64)) -> Result<TargetEstimate> {
    let info = lock.info(&t.dataset)?;
    let (c, s) = (info.channels as i64, t.data.image_size.unwrap_or(info.image_size) as i64);
    tch::manual_seed(0);
    let mut model = Model::new(t, c, s as usize, device)?;
    let params: u64 = model.vs.trainable_variables().iter().map(|v| v.numel() as u64).sum();
    let trains = t.method.trains();
    let train_macs = if trains { model.train_macs_per_image(c, s)? } else { 0 };
    let flop_per_image = 6.0 * train_macs as f64;
    let per_epoch = images_per_epoch(t, entry);
    let seeds = t.train.seeds.len();
    let epochs = if trains { t.train.epochs } else { 0 };
    let total_flop = per_epoch.map(|n| flop_per_image * (n * epochs * seeds) as f64);
    let (gpu_peak, gpu_mem) = gpu;
    let gpu_hours = total_flop.map(|f| f / (gpu_peak * 1e12 * o.mfu) / 3600.0);

    // Calibration: a warm-up step at the calibration batch (its peak memory is the activations'),
    // then the measured steps.
    let (mut measured, mut act_per_image, mut calibration_note) = (None, None, None);
    if trains && o.calibrate_steps > 0 {
        let b = calibration_batch(t, flop_per_image, device) as i64;
        let precision = Precision::of(t, device);
        let norm = Normalize::new(&info.mean, &info.std, device);
        let images = Tensor::randint(256, [b, c, s, s], (Kind::Uint8, device));
        let mut opt = optim::Optimizer::new(&model.vs, &t.train.optimizer, t.train.weight_decay)?;
        let total = o.calibrate_steps + 2;
        let mut step = |i: usize, model: &mut Model| -> Result<f64> {
            let (v1, v2) = train::two_views(model, &(images.to_kind(Kind::Float) / 255.0), t, &norm)?;
            Ok(train::step(model, &mut opt, precision, &v1, &v2, t.train.lr, i, total)?.loss.total.double_value(&[]))
        };
        // Return the heap's free pages (repro keeps freed tensor memory, `machine::tune_allocator`),
        // so the peak below is this step's growth, not what earlier targets left.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
        unsafe {
            libc::malloc_trim(0);
        }
        let base = rss();
        reset_peak_rss();
        let _ = step(0, &mut model)?;
        if let (Some(base), Some(peak), false) = (base, peak_rss(), device.is_cuda()) {
            // Gradients and optimizer state are per parameter, not per image.
            let state = params as f64 * (4.0 + optimizer_bytes_per_param(t));
            act_per_image = Some(((peak - base - state) / b as f64).max(0.0));
        }
        // A second warm-up step: kernels and caches for the backward are settled after it.
        let _ = step(1, &mut model)?;
        let started = Instant::now();
        let mut loss = 0.0;
        for i in 0..o.calibrate_steps {
            loss = step(i + 2, &mut model)?;
        }
        crate::bench::sync(device);
        if !loss.is_finite() {
            calibration_note = Some(format!("the loss became {loss} on the synthetic calibration images (lr {}); the time is kept, the run itself uses real data", t.train.lr));
        }
        measured = Some((b as usize * o.calibrate_steps) as f64 / started.elapsed().as_secs_f64());
    }
    let here_hours = match (per_epoch, measured) {
        (Some(n), Some(per_s)) => Some((n * epochs * seeds) as f64 / per_s / 3600.0),
        (Some(_), None) if !trains => Some(0.0),
        _ => None,
    };

    // Memory. The training tensor is uint8 N×C×S×S, on the training device; a `data.image_size`
    // resize is a second host copy; the decoded cache is memory-mapped (page cache, evictable).
    let n_images = images_held(t, entry).or(per_epoch).unwrap_or(0);
    let tensor = (n_images as f64) * (c * s * s) as f64;
    let resize = if t.data.image_size.is_some_and(|x| x != info.image_size) { tensor } else { 0.0 };
    let weights = params as f64 * (8.0 + optimizer_bytes_per_param(t));
    let activations = act_per_image.map(|a| a * t.train.batch_size as f64);
    let on_cpu = !device.is_cuda();
    let host = tensor + resize + if on_cpu { weights + activations.unwrap_or(0.0) } else { 0.0 };
    let gpu_bytes = activations.map(|a| tensor + weights + a);
    let mut flags: Vec<String> = calibration_note.into_iter().collect();
    if let Some(total) = host_memory() {
        if host > 0.9 * total {
            flags.push(format!("needs ~{:.1} GiB of host memory, this machine has {:.1} GiB", host / GIB, total / GIB));
        }
    }
    if let Some(g) = gpu_bytes.filter(|g| *g > 0.9 * gpu_mem * GIB) {
        flags.push(format!("needs ~{:.0} GiB on the GPU ({:.0} GiB there): lower train.batch_size or use a larger GPU", g / GIB, gpu_mem));
    }
    if per_epoch.is_none() {
        flags.push(format!("images per epoch unknown: the lock gives no train_images for {}; set data.train_subset or add it", t.dataset));
    }
    Ok(TargetEstimate {
        target: t.id.clone(),
        method: t.method.name().to_owned(),
        backbone: t.backbone.label(),
        image_size: s as usize,
        batch_size: t.train.batch_size,
        epochs,
        seeds,
        params,
        train_gflop_per_image: flop_per_image / 1e9,
        images_per_epoch: per_epoch,
        total_pflop: total_flop.map(|f| f / 1e15),
        measured_images_per_s: measured,
        here_hours,
        gpu_hours,
        activation_bytes_per_image: act_per_image,
        host_gib: host / GIB,
        gpu_gib: gpu_bytes.map(|g| g / GIB),
        flags,
    })
}

/// Estimates every target of the plan (in order).
pub fn estimate(plan: &Plan, targets: &[&Target], lock: &Lock, device: Device, o: &EstimateOptions) -> Result<SuiteEstimate> {
    if !(o.mfu > 0.0 && o.mfu <= 1.0) {
        bail!("--mfu {}: expected a fraction in (0, 1], e.g. 0.3", o.mfu);
    }
    let Some((class, peak, mem)) = crate::bench::gpu_class(&o.gpu) else {
        let known: Vec<&str> = crate::bench::GPUS.iter().map(|g| g.0).collect();
        bail!("--gpu {:?}: unknown GPU class; expected one of {}", o.gpu, known.join(", "));
    };
    let mut out = Vec::new();
    for t in targets {
        let entry = lock.get(&t.dataset)?;
        eprintln!("  calibrating {} ({}) …", t.id, t.backbone.label());
        out.push(estimate_target(t, entry, lock, device, o, (peak, mem))?);
    }
    let here_hours = out.iter().map(|e| e.here_hours).sum::<Option<f64>>();
    Ok(SuiteEstimate {
        suite: plan.suite.clone(),
        device: format!("{device:?}"),
        gpu: class.to_owned(),
        gpu_peak_tflops: peak,
        gpu_memory_gib: mem,
        mfu: o.mfu,
        host_memory_gib: host_memory().map(|m| m / GIB),
        total_pflop: out.iter().filter_map(|e| e.total_pflop).sum(),
        here_hours,
        gpu_hours: out.iter().filter_map(|e| e.gpu_hours).sum(),
        uncounted: out.iter().filter(|e| e.total_pflop.is_none()).map(|e| e.target.clone()).collect(),
        targets: out,
    })
}

fn hours(h: Option<f64>) -> String {
    match h {
        None => "–".into(),
        Some(h) if h == 0.0 => "0".into(),
        Some(h) if h < 1.0 / 60.0 => format!("{:.0}s", h * 3600.0),
        Some(h) if h < 1.0 => format!("{:.0}m", h * 60.0),
        Some(h) if h < 48.0 => format!("{h:.1}h"),
        Some(h) => format!("{:.1}d", h / 24.0),
    }
}

/// The estimate as a terminal table with its assumptions.
pub fn render(e: &SuiteEstimate) -> String {
    let mut b = tabled::builder::Builder::default();
    let gpu_col = format!("{} @ {:.0}% MFU", e.gpu, e.mfu * 100.0);
    b.push_record(
        ["target", "backbone", "px", "batch", "GFLOP/img", "img/epoch", "epochs×seeds", "PFLOP", "here img/s", "here", gpu_col.as_str(), "host GiB", "GPU GiB", "flags"]
            .map(String::from),
    );
    for t in &e.targets {
        b.push_record([
            t.target.clone(),
            t.backbone.clone(),
            t.image_size.to_string(),
            t.batch_size.to_string(),
            format!("{:.3}", t.train_gflop_per_image),
            t.images_per_epoch.map_or("?".into(), |n| n.to_string()),
            format!("{}×{}", t.epochs, t.seeds),
            t.total_pflop.map_or("?".into(), |p| format!("{p:.3}")),
            t.measured_images_per_s.map_or("–".into(), |v| format!("{v:.1}")),
            hours(t.here_hours),
            hours(t.gpu_hours),
            format!("{:.1}", t.host_gib),
            t.gpu_gib.map_or("–".into(), |g| format!("{g:.1}")),
            if t.flags.is_empty() { "ok".into() } else { t.flags.join("; ") },
        ]);
    }
    b.push_record([
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{:.3}", e.total_pflop),
        String::new(),
        hours(e.here_hours),
        hours(Some(e.gpu_hours)),
        String::new(),
        String::new(),
        String::new(),
    ]);
    let table = b.build().with(tabled::settings::Style::rounded()).to_string();
    let uncounted = if e.uncounted.is_empty() { String::new() } else { format!("\nnot in the totals (images per epoch unknown): {}", e.uncounted.join(", ")) };
    format!(
        "{table}\nsuite {}: training only (evaluation, data loading and heads not counted). GFLOP/img = 6 × the backbone's MACs over an image's views. \
\"here\": measured on {} over a few steps of synthetic images (on a CPU at the largest batch up to the target's whose step costs at most 0.25 TFLOP, at least 8). \
{}: {:.1} TFLOP/s dense bf16 at {:.0}% MFU (an assumption; `repro bench` measures it on a GPU), {:.0} GiB. \
Memory: uint8 training tensor (+ a data.image_size resize) + fp32 weights, gradients and optimizer state + activations per image measured on the CPU (fp32) × batch.{uncounted}\n",
        e.suite,
        e.device,
        e.gpu,
        e.gpu_peak_tflops,
        e.mfu * 100.0,
        e.gpu_memory_gib
    )
}
