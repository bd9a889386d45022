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

/// Embeds every image of `set` in batches; returns [N, D].
pub fn embed(enc: &mut Encoder, set: &ImageSet, pre: &Preprocess, batch: usize) -> Result<Array2<f32>> {
    let want_c = enc.input_dims[1];
    let c_out = if want_c > 0 { want_c as usize } else { set.c };
    if c_out != set.c && !(set.c == 1 && c_out == 3) {
        bail!("the model expects {c_out} input channels but the images have {}", set.c);
    }
    for (axis, (&want, have)) in enc.input_dims[2..].iter().zip([set.h, set.w]).enumerate() {
        if want > 0 && want as usize != have {
            bail!("the model expects images of {} {want} but the dataset's are {have}; export it with dynamic H/W or evaluate on a matching dataset", ["height", "width"][axis]);
        }
    }
    for (name, v) in [("mean", &pre.mean), ("std", &pre.std)] {
        if v.len() != c_out && v.len() != set.c {
            bail!("normalisation {name} has {} values but the model takes {c_out} channels", v.len());
        }
    }
    let channel = |v: &Vec<f32>, c: usize| if v.len() == c_out { v[c] } else { v[0] };
    let l = set.image_len();
    let plane = set.h * set.w;
    let mut parts = Vec::new();
    for start in (0..set.n).step_by(batch.max(1)) {
        let n = batch.min(set.n - start);
        let px = &set.pixels[start * l..(start + n) * l];
        let x = Array4::from_shape_fn((n, c_out, set.h, set.w), |(i, c, y, xx)| {
            let src_c = if set.c == 1 { 0 } else { c };
            let v = px[i * l + src_c * plane + y * set.w + xx] as f32 / 255.0;
            (v - channel(&pre.mean, c)) / channel(&pre.std, c)
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

/// Results of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutcome {
    pub knn_metric: String,
    pub knn_top1: f64,
    pub linear_metric: String,
    pub linear: linear::LinearOutcome,
    pub embedding_dim: usize,
    pub embed_s: f64,
    pub knn_s: f64,
    pub linear_s: f64,
}

/// k-NN and linear probe on embeddings, with the protocol of `eval`.
pub fn evaluate(emb: &Embeddings, train: &ImageSet, test: &ImageSet, classes: usize, eval: &plan::Eval, seed: u64) -> Result<EvalOutcome> {
    let t0 = Instant::now();
    let kp = knn::KnnParams {
        k: eval.knn.k,
        temperature: eval.knn.temperature as f32,
        distance: match eval.knn.distance {
            plan::Distance::Cosine => knn::Distance::Cosine,
            plan::Distance::Euclidean => knn::Distance::Euclidean,
        },
    };
    let knn_top1 = knn::knn_top1(emb.train.view(), &train.labels, emb.test.view(), &test.labels, classes, &kp)?;
    let knn_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let l = &eval.linear;
    let n_fit = l.train_subset.unwrap_or(train.n).min(train.n);
    let lp = linear::LinearParams {
        epochs: l.epochs,
        batch_size: l.batch_size,
        lr: l.lr as f32,
        momentum: l.momentum as f32,
        weight_decay: l.weight_decay as f32,
        standardize: l.standardize,
        seed,
    };
    let lin = linear::linear_probe(emb.train.slice(ndarray::s![..n_fit, ..]), &train.labels[..n_fit], emb.test.view(), &test.labels, classes, &lp)?;
    Ok(EvalOutcome {
        knn_metric: eval.knn.metric_name(),
        knn_top1,
        linear_metric: eval.linear.metric_name(),
        linear: lin,
        embedding_dim: emb.train.ncols(),
        embed_s: emb.seconds,
        knn_s,
        linear_s: t1.elapsed().as_secs_f64(),
    })
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
