//! `repro bench`: how fast one suite target runs on this machine, stage by stage, on synthetic data
//! of the target's shapes (no dataset needed): the two training views, the training step (views,
//! loss, backward, optimizer, EMA), the ONNX Runtime embedding of the exported encoder, and the
//! k-NN at a given bank × query size; on a GPU also the model-FLOP utilisation (MFU).
//!
//! MFU counts the backbone only, as the usual convention (PaLM's appendix B; Chinchilla): training
//! FLOPs per image = 3 (forward + backward) × 2 × the multiply-accumulates of the backbone's forward
//! passes on one image's views (`nn::count_macs` over convolutions, linear layers and attention;
//! the masked auto-encoders' one pass over the kept patches), divided by the chip's dense bf16
//! peak. Heads, losses and EMA targets are not counted, so the figure is a lower bound.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::augment::{random_view, Normalize};
use crate::data::DatasetInfo;
use crate::methods::Model;
use crate::plan::Target;
use crate::train::{self, optim, Precision};

/// What `repro bench` measured for one target.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub target: String,
    pub method: String,
    pub backbone: String,
    pub device: String,
    pub precision: String,
    pub channels_last: bool,
    pub image: [usize; 3],
    pub batch_size: usize,
    pub steps: usize,
    /// Backbone multiply-accumulates per image, one forward pass.
    pub backbone_gmacs_per_image: f64,
    /// Two views of a batch, images (of the batch) per second.
    pub views_images_per_s: f64,
    /// Whole training steps, images (of the batch, two views each) per second.
    pub train_images_per_s: Option<f64>,
    pub train_tflops_per_s: Option<f64>,
    pub peak_tflops: Option<f64>,
    /// Where the peak comes from (a GPU's name, or `--peak-tflops`).
    pub peak_source: Option<String>,
    pub mfu: Option<f64>,
    pub embed_provider: String,
    pub embed_batch: usize,
    pub embed_images_per_s: f64,
    /// k-NN (the suite's k, T, distance) of `knn_queries` against `knn_bank` rows of the embedding width.
    pub knn_bank: usize,
    pub knn_queries: usize,
    pub knn_dim: usize,
    pub knn_s: f64,
    /// The first training steps from the same weights and views on the CPU and on this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_trace: Option<LossTrace>,
}

/// Losses of the first steps on two devices from one starting point.
#[derive(Debug, Clone, Serialize)]
pub struct LossTrace {
    pub device: String,
    /// Arithmetic of the device's steps (fp32 for the comparison; the CPU is always fp32).
    pub precision: String,
    pub deterministic: bool,
    pub cpu: Vec<f64>,
    pub on_device: Vec<f64>,
    /// max over steps of |device − cpu| / max(|cpu|, 1e-12).
    pub max_rel_diff: f64,
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub steps: usize,
    pub embed_images: usize,
    pub knn_bank: usize,
    pub knn_queries: usize,
    pub peak_tflops: Option<f64>,
    /// Also train this many steps on the CPU and on the device from the same weights and views.
    pub trace_steps: usize,
}

/// A GPU class: a substring of its name as `nvidia-smi` prints it, its dense bf16 peak (TFLOP/s,
/// without sparsity) and its memory (GiB), from NVIDIA's data sheets (SXM figures; PCIe parts
/// are lower; the largest memory variant). The first match wins.
pub const GPUS: &[(&str, f64, f64)] =
    &[("H200", 989.4, 141.0), ("H100", 989.4, 80.0), ("A100", 312.0, 80.0), ("L40S", 362.1, 48.0), ("L4", 121.0, 24.0), ("A10", 125.0, 24.0), ("V100", 125.0, 32.0)];

/// The GPU class of a name, if known: (class, peak TFLOP/s, memory GiB).
pub fn gpu_class(gpu: &str) -> Option<(&'static str, f64, f64)> {
    let upper = gpu.to_uppercase();
    GPUS.iter().find(|(name, _, _)| upper.contains(name)).copied()
}

/// The dense bf16 peak of a GPU by its name, if known.
pub fn peak_for(gpu: &str) -> Option<f64> {
    gpu_class(gpu).map(|g| g.1)
}

/// Waits for the device's queued work (a no-op on the CPU), so a timer reads finished work.
pub(crate) fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Measures `t` on `device` with synthetic images of the dataset's (or `data.image_size`'s) shape.
pub fn bench_target(t: &Target, info: &DatasetInfo, device: Device, o: &BenchOptions) -> Result<BenchReport> {
    if o.steps == 0 {
        bail!("--steps 0: expected at least 1 measured step");
    }
    let (c, s, b) = (info.channels as i64, t.data.image_size.unwrap_or(info.image_size) as i64, t.train.batch_size as i64);
    crate::machine::set_deterministic(t.train.deterministic)?;
    let precision = Precision::of(t, device);
    tch::manual_seed(0);
    let mut model = Model::new(t, c, s as usize, device)?;
    let norm = Normalize::new(&info.mean, &info.std, device);
    let images = Tensor::randint(256, [b, c, s, s], (Kind::Uint8, device));
    let batch = || images.to_kind(Kind::Float) / 255.0;

    // Views alone (one warm-up batch).
    let _ = train::two_views(&model, &batch(), t, &norm)?;
    sync(device);
    let started = Instant::now();
    for _ in 0..o.steps {
        let _ = train::two_views(&model, &batch(), t, &norm)?;
    }
    sync(device);
    let views_images_per_s = (b as usize * o.steps) as f64 / started.elapsed().as_secs_f64();

    let macs = model.encoder.macs_per_image(c, s, device);
    let (train_images_per_s, train_tflops_per_s) = if t.method.trains() {
        let train_macs = model.train_macs_per_image(c, s)?;
        let mut opt = optim::Optimizer::new(&model.vs, &t.train.optimizer, t.train.weight_decay)?;
        let total = o.steps + 2;
        let mut step = |i: usize, model: &mut Model| -> Result<Tensor> {
            let (v1, v2) = train::two_views(model, &batch(), t, &norm)?;
            Ok(train::step(model, &mut opt, precision, &v1, &v2, t.train.lr, i, total)?.loss.total.detach())
        };
        for i in 0..2 {
            let _ = step(i, &mut model)?; // warm-up: cuDNN's benchmark mode picks its kernels here
        }
        sync(device);
        let started = Instant::now();
        let mut last = Tensor::zeros([], (Kind::Float, device));
        for i in 0..o.steps {
            last = step(i + 2, &mut model)?;
        }
        let loss = last.double_value(&[]);
        sync(device);
        let per_s = (b as usize * o.steps) as f64 / started.elapsed().as_secs_f64();
        if !loss.is_finite() {
            bail!("the loss became {loss} while benchmarking {} (synthetic data at lr {}); the speed figures would be meaningless", t.id, t.train.lr);
        }
        (Some(per_s), Some(per_s * 3.0 * 2.0 * train_macs as f64 / 1e12))
    } else {
        (None, None)
    };
    let (peak_tflops, peak_source) = match (o.peak_tflops, device) {
        (Some(p), _) => (Some(p), Some("--peak-tflops".to_owned())),
        (None, Device::Cuda(_)) => match crate::machine::gpu_name() {
            Some(name) => (peak_for(&name), Some(name)),
            None => (None, None),
        },
        _ => (None, None),
    };
    let mfu = match (train_tflops_per_s, peak_tflops) {
        (Some(f), Some(p)) if p > 0.0 => Some(f / p),
        _ => None,
    };

    // The exported encoder through ONNX Runtime (one warm-up batch).
    let onnx = crate::export::encoder_onnx(&model.encoder, c, &[])?;
    let mut enc = crate::eval::session::Encoder::from_bytes(&onnx, true)?;
    let embed_batch = enc.batch_for(t.eval.batch_size);
    let x = ndarray::Array4::<f32>::from_shape_fn((embed_batch, c as usize, s as usize, s as usize), |(i, j, k, l)| ((i * 31 + j * 17 + k * 7 + l) % 255) as f32 / 255.0 - 0.5);
    let dim = enc.run(x.view())?.ncols();
    let calls = o.embed_images.div_ceil(embed_batch).max(1);
    let started = Instant::now();
    for _ in 0..calls {
        let _ = enc.run(x.view())?;
    }
    let embed_images_per_s = (calls * embed_batch) as f64 / started.elapsed().as_secs_f64();

    // k-NN on random embeddings of the encoder's width.
    let gauss = |rows: usize, seed: i64| -> Result<ndarray::Array2<f32>> {
        tch::manual_seed(seed);
        let v = Vec::<f32>::try_from(Tensor::randn([rows as i64, dim as i64], (Kind::Float, Device::Cpu)).flatten(0, -1))?;
        Ok(ndarray::Array2::from_shape_vec((rows, dim), v)?)
    };
    let (bank, queries) = (gauss(o.knn_bank, 1)?, gauss(o.knn_queries, 2)?);
    let classes = info.classes.max(1);
    let labels: Vec<u32> = (0..o.knn_bank as u32).map(|i| i % classes as u32).collect();
    let p = crate::eval::knn::KnnParams::of(&t.eval.knn);
    let started = Instant::now();
    let _ = crate::eval::knn::knn_predict(bank.view(), &labels, queries.view(), classes, &p)?;
    let knn_s = started.elapsed().as_secs_f64();

    let loss_trace = if o.trace_steps > 0 && t.method.trains() { Some(loss_trace(t, info, c, s, device, o.trace_steps)?) } else { None };

    Ok(BenchReport {
        target: t.id.clone(),
        method: t.method.name().to_owned(),
        backbone: t.backbone.label(),
        device: format!("{device:?}"),
        precision: precision.label().to_owned(),
        channels_last: model.channels_last,
        image: [c as usize, s as usize, s as usize],
        batch_size: b as usize,
        steps: o.steps,
        backbone_gmacs_per_image: macs as f64 / 1e9,
        views_images_per_s,
        train_images_per_s,
        train_tflops_per_s,
        peak_tflops,
        peak_source,
        mfu,
        embed_provider: enc.provider.to_owned(),
        embed_batch,
        embed_images_per_s,
        knn_bank: o.knn_bank,
        knn_queries: o.knn_queries,
        knn_dim: dim,
        knn_s,
        loss_trace,
    })
}

/// Trains `steps` steps of `t` on the CPU and on `device` in fp32, with deterministic algorithms,
/// from one set of initial weights (drawn on the CPU and copied, method state included, as a
/// checkpoint is loaded) and one set of views (made on the CPU): what is left is the devices'
/// arithmetic.
fn loss_trace(t: &Target, info: &DatasetInfo, c: i64, s: i64, device: Device, steps: usize) -> Result<LossTrace> {
    crate::machine::set_deterministic(true)?;
    let b = t.train.batch_size as i64;
    tch::manual_seed(1);
    let norm = Normalize::new(&info.mean, &info.std, Device::Cpu);
    let views: Vec<(Tensor, Tensor)> = (0..steps)
        .map(|_| {
            let x = Tensor::randint(256, [b, c, s, s], (Kind::Uint8, Device::Cpu)).to_kind(Kind::Float) / 255.0;
            Ok((norm.apply(&random_view(&x, &t.augment, 0)?), norm.apply(&random_view(&x, &t.augment, 1)?)))
        })
        .collect::<Result<_>>()?;
    tch::manual_seed(2);
    let start = Model::new(t, c, s as usize, Device::Cpu)?;
    let run = |dev: Device| -> Result<Vec<f64>> {
        let mut model = Model::new(t, c, s as usize, dev)?;
        model.vs.copy(&start.vs)?;
        model.load_method_state(&start.method_state())?;
        let mut opt = optim::Optimizer::new(&model.vs, &t.train.optimizer, t.train.weight_decay)?;
        let mut losses = Vec::with_capacity(steps);
        for (i, (v1, v2)) in views.iter().enumerate() {
            let (v1, v2) = (model.layout(&v1.to_device(dev)), model.layout(&v2.to_device(dev)));
            losses.push(train::step(&mut model, &mut opt, Precision::Fp32, &v1, &v2, t.train.lr, i, steps)?.loss.total.double_value(&[]));
        }
        Ok(losses)
    };
    let cpu = run(Device::Cpu)?;
    let on_device = run(device)?;
    crate::machine::set_deterministic(t.train.deterministic)?;
    let max_rel_diff = cpu.iter().zip(&on_device).map(|(a, d)| (d - a).abs() / a.abs().max(1e-12)).fold(0.0, f64::max);
    Ok(LossTrace { device: format!("{device:?}"), precision: "fp32".into(), deterministic: true, cpu, on_device, max_rel_diff })
}

/// The report as aligned lines for the terminal.
pub fn render(r: &BenchReport) -> String {
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_owned(), f);
    let rows = [
        ("target", format!("{} ({} on {}, {}×{}×{}, batch {})", r.target, r.method, r.backbone, r.image[0], r.image[1], r.image[2], r.batch_size)),
        ("device", format!("{} ({}, channels-last {})", r.device, r.precision, r.channels_last)),
        ("backbone", format!("{:.4} GMAC per image (forward)", r.backbone_gmacs_per_image)),
        ("views", format!("{:.0} images/s (two views each)", r.views_images_per_s)),
        ("training", opt(r.train_images_per_s, &|v| format!("{v:.1} images/s over {} steps", r.steps))),
        ("model FLOP/s", opt(r.train_tflops_per_s, &|v| format!("{v:.3} TFLOP/s (backbone only: 2 views × 6 FLOPs per MAC)"))),
        ("MFU", opt(r.mfu, &|v| format!("{:.1}% of {:.1} TFLOP/s ({})", 100.0 * v, r.peak_tflops.unwrap_or(0.0), r.peak_source.as_deref().unwrap_or("")))),
        ("ONNX embedding", format!("{:.0} images/s ({}, batch {})", r.embed_images_per_s, r.embed_provider, r.embed_batch)),
        ("k-NN", format!("{:.2} s ({} queries × {} bank × {} dims)", r.knn_s, r.knn_queries, r.knn_bank, r.knn_dim)),
    ];
    let mut out: Vec<String> = rows.iter().map(|(k, v)| format!("{k:<15} {v}")).collect();
    if let Some(tr) = &r.loss_trace {
        out.push(format!("{:<15} first {} steps from the same weights and views (fp32, deterministic)", "loss", tr.cpu.len()));
        for (i, (a, d)) in tr.cpu.iter().zip(&tr.on_device).enumerate() {
            out.push(format!("{:<15} step {:<3} CPU {a:.6}  {} {d:.6}", "", i + 1, tr.device));
        }
        out.push(format!("{:<15} {:.2e}", "max rel. diff", tr.max_rel_diff));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_by_gpu_name() {
        assert_eq!(peak_for("NVIDIA H200"), Some(989.4));
        assert_eq!(peak_for("NVIDIA A100-SXM4-80GB"), Some(312.0));
        assert_eq!(peak_for("NVIDIA L40S"), Some(362.1));
        assert_eq!(peak_for("Tesla T4"), None);
    }
}
