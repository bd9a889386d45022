//! The evaluation stage, through ONNX Runtime only (no tch): embed the train and test splits with an
//! encoder file, then weighted k-NN and a linear probe on the frozen embeddings, with every protocol
//! parameter taken from the suite (or the `repro eval` flags).

pub mod knn;
pub mod linear;
pub mod session;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{Array2, Array4, Axis};
use serde::Serialize;

use crate::data::ImageSet;
use crate::plan;
use session::Encoder;

/// How images become encoder inputs: pixel/255, then per-channel (x − mean)/std.
#[derive(Debug, Clone, Serialize)]
pub struct Preprocess {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocess {
    /// From the model's `repro.mean`/`repro.std` metadata when present, else the given defaults.
    pub fn from_metadata(enc: &Encoder, fallback_mean: &[f32], fallback_std: &[f32]) -> Result<Self> {
        let parse = |key: &str, fallback: &[f32]| -> Result<Vec<f32>> {
            match enc.metadata.get(key) {
                Some(s) => serde_json::from_str(s).with_context(|| format!("model metadata {key} = {s:?} is not a JSON list of numbers")),
                None => Ok(fallback.to_vec()),
            }
        };
        Ok(Self { mean: parse("repro.mean", fallback_mean)?, std: parse("repro.std", fallback_std)? })
    }
}

/// uint8 pixels → floats in [0, 1]: the one conversion the fixed and the augmented paths share.
pub fn unit_pixels(px: &[u8]) -> Vec<f32> {
    px.iter().map(|&v| f32::from(v) / 255.0).collect()
}

/// Embeds every image of `set` in batches; returns [N, D].
pub fn embed(enc: &mut Encoder, set: &ImageSet, pre: &Preprocess, batch: usize) -> Result<Array2<f32>> {
    let l = set.image_len();
    embed_with(enc, set.n, [set.c, set.h, set.w], pre, batch, &mut |start, n| Ok(unit_pixels(&set.pixels[start * l..(start + n) * l])))
}

/// Embeds `n` images of shape `[c, h, w]` whose pixels in [0, 1] `pixels(start, count)` returns
/// (row-major, `count` images), `batch` at a time; normalises them with `pre`. Returns [n, D].
pub fn embed_with(
    enc: &mut Encoder,
    n: usize,
    [c, h, w]: [usize; 3],
    pre: &Preprocess,
    batch: usize,
    pixels: &mut dyn FnMut(usize, usize) -> Result<Vec<f32>>,
) -> Result<Array2<f32>> {
    let want_c = enc.input_dims[1];
    let c_out = if want_c > 0 { want_c as usize } else { c };
    if c_out != c && !(c == 1 && c_out == 3) {
        bail!("the model expects {c_out} input channels but the images have {c}");
    }
    for (axis, (&want, have)) in enc.input_dims[2..].iter().zip([h, w]).enumerate() {
        if want > 0 && want as usize != have {
            bail!("the model expects images of {} {want} but the dataset's are {have}; export it with dynamic H/W or evaluate on a matching dataset", ["height", "width"][axis]);
        }
    }
    for (name, v) in [("mean", &pre.mean), ("std", &pre.std)] {
        if v.len() != c_out && v.len() != c {
            bail!("normalisation {name} has {} values but the model takes {c_out} channels", v.len());
        }
    }
    let channel = |v: &Vec<f32>, ch: usize| if v.len() == c_out { v[ch] } else { v[0] };
    let l = c * h * w;
    let plane = h * w;
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch.max(1)) {
        let count = batch.min(n - start);
        let px = pixels(start, count)?;
        if px.len() != count * l {
            bail!("{} pixel values for {count} images of {c}x{h}x{w}", px.len());
        }
        let x = Array4::from_shape_fn((count, c_out, h, w), |(i, ch, y, xx)| {
            let src_c = if c == 1 { 0 } else { ch };
            (px[i * l + src_c * plane + y * w + xx] - channel(&pre.mean, ch)) / channel(&pre.std, ch)
        });
        parts.push(enc.run(x.view())?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).context("embeddings of different widths")
}

/// Embeddings of both splits.
pub struct Embeddings {
    pub train: Array2<f32>,
    pub test: Array2<f32>,
    pub seconds: f64,
}

pub fn embed_splits(enc: &mut Encoder, train: &ImageSet, test: &ImageSet, pre: &Preprocess, batch: usize) -> Result<Embeddings> {
    let started = Instant::now();
    let tr = embed(enc, train, pre, batch)?;
    let te = embed(enc, test, pre, batch)?;
    Ok(Embeddings { train: tr, test: te, seconds: started.elapsed().as_secs_f64() })
}

/// Embeddings the probes need beyond the fixed ones: augmented training images and resized test
/// images, both through the same encoder. `repro run` implements it with the training views.
pub trait ProbeViews {
    /// Features of the first `n` training images, each under a random view of `augment` drawn
    /// from `seed`, in their original order.
    fn augmented_train(&mut self, augment: &plan::ProbeAugment, n: usize, seed: u64) -> Result<Array2<f32>>;
    /// Features of the test images resized to `side` (bicubic) and centre-cropped back.
    fn resized_test(&mut self, side: usize) -> Result<Array2<f32>>;
}

/// For callers without image views: protocols that need them are refused.
pub struct NoViews;

impl ProbeViews for NoViews {
    fn augmented_train(&mut self, _: &plan::ProbeAugment, _: usize, _: u64) -> Result<Array2<f32>> {
        bail!("this linear protocol augments its training images; only `repro run` evaluates it")
    }
    fn resized_test(&mut self, _: usize) -> Result<Array2<f32>> {
        bail!("this linear protocol resizes its test images; only `repro run` evaluates it")
    }
}

/// One linear protocol's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub metric: String,
    pub protocol: plan::Linear,
    pub outcome: linear::LinearOutcome,
    pub seconds: f64,
}

/// Results of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    pub knn_metric: String,
    pub knn_top1: f64,
    /// The standard probe first, then `extra_linear` in order.
    pub linear: Vec<ProbeResult>,
    pub embedding_dim: usize,
    pub embed_s: f64,
    pub knn_s: f64,
}

/// k-NN and every linear probe of `eval` on the embeddings; `seed` is the run's. Every probe shuffles
/// with the same seed derived from it, so two protocols that differ only in their augmentation
/// differ only by it (and a protocol's result does not depend on its position in the list).
pub fn evaluate(emb: &Embeddings, train: &ImageSet, test: &ImageSet, classes: usize, eval: &plan::Eval, seed: u64, views: &mut dyn ProbeViews) -> Result<EvalOutcome> {
    let t0 = Instant::now();
    let kp = knn::KnnParams::of(&eval.knn);
    let n_bank = eval.knn.bank_subset.unwrap_or(train.n).min(train.n);
    let knn_top1 = knn::knn_top1(emb.train.slice(ndarray::s![..n_bank, ..]), &train.labels[..n_bank], emb.test.view(), &test.labels, classes, &kp)?;
    let knn_s = t0.elapsed().as_secs_f64();
    let mut results = Vec::new();
    for l in eval.linears() {
        let t1 = Instant::now();
        let metric = l.metric_name();
        let probe_seed = crate::util::derive_seed(seed, "linear");
        let n_fit = l.train_subset.unwrap_or(train.n).min(train.n);
        let lp = linear::LinearParams {
            epochs: l.epochs,
            batch_size: l.batch_size,
            lr: l.lr as f32,
            min_lr: l.min_lr as f32,
            per_epoch: l.schedule == plan::ProbeSchedule::CosinePerEpoch,
            momentum: l.momentum as f32,
            weight_decay: l.weight_decay as f32,
            standardize: l.standardize,
            seed: probe_seed,
            batchnorm: l.batchnorm,
            lars_eta: l.lars_eta.map(|e| e as f32),
            warmup_epochs: l.warmup_epochs as f32,
            init_std: l.init_std as f32,
        };
        let resized;
        let test_features = match l.test_resize {
            Some(side) => {
                resized = views.resized_test(side).with_context(|| format!("{metric}: test images resized to {side}"))?;
                resized.view()
            }
            None => emb.test.view(),
        };
        let mut epoch_features = |e: usize| -> Result<Option<Array2<f32>>> {
            match &l.augment {
                None => Ok(None),
                Some(a) => views.augmented_train(a, n_fit, crate::util::derive_seed(probe_seed, &format!("views{e}"))).map(Some),
            }
        };
        let outcome = linear::linear_probe_epochs(
            emb.train.slice(ndarray::s![..n_fit, ..]),
            &train.labels[..n_fit],
            test_features,
            &test.labels,
            classes,
            &lp,
            &mut epoch_features,
        )
        .with_context(|| metric.clone())?;
        results.push(ProbeResult { metric, protocol: l.clone(), outcome, seconds: t1.elapsed().as_secs_f64() });
    }
    Ok(EvalOutcome { knn_metric: eval.knn.metric_name(), knn_top1, linear: results, embedding_dim: emb.train.ncols(), embed_s: emb.seconds, knn_s })
}

/// Writes embeddings and labels as .npy files (`train_embeddings.npy`, `train_labels.npy`, ...).
pub fn save_embeddings(dir: &Path, emb: &Embeddings, train: &ImageSet, test: &ImageSet) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (split, e, set) in [("train", &emb.train, train), ("test", &emb.test, test)] {
        let labels = ndarray::Array1::from_iter(set.labels.iter().map(|&l| l as i64));
        let p = dir.join(format!("{split}_embeddings.npy"));
        crate::util::write_atomic_with(&p, |tmp| ndarray_npy::write_npy(tmp, e).with_context(|| format!("cannot write {}", tmp.display())))?;
        let p = dir.join(format!("{split}_labels.npy"));
        crate::util::write_atomic_with(&p, |tmp| ndarray_npy::write_npy(tmp, &labels).with_context(|| format!("cannot write {}", tmp.display())))?;
    }
    Ok(())
}
