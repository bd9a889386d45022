//! Linear probe on frozen features: multinomial logistic regression (softmax
//! cross-entropy, W [D×C] and b [C] zero-initialised) trained by mini-batch SGD.
//!
//! Protocol: the standard linear evaluation of SSL papers (SimCLR / solo-learn
//! `solo/methods/linear.py`, CorInfoMax `cifars-tiny/main_linear.py`): PyTorch
//! `torch.optim.SGD` semantics (g += weight_decay·W for W only, v = μ·v + g, W -= lr_t·v)
//! with a cosine from `lr` to `min_lr`, either per step, lr_t = min + (lr − min)(1 +
//! cos(π·t/T))/2 over all T = epochs × batches steps, or per epoch, as `CosineAnnealingLR`
//! stepped after each epoch: epoch e trains at min + (lr − min)(1 + cos(π·e/E))/2.
//! Each epoch visits the train rows in an order shuffled by `StdRng::seed_from_u64(seed)`;
//! the last batch of an epoch may be smaller (a batch_size above the row count gives
//! full-batch training). With `standardize`, features are shifted and scaled by the
//! train per-feature mean and std (population std, floored at 1e-6), test included.
//!
//! Train-time augmentation ([`linear_probe_epochs`]): each epoch's training features come from
//! a caller that embeds freshly augmented images (the same rows, in the same order); the
//! standardisation statistics, the train accuracy and the final loss use the fixed features of
//! the un-augmented images. When the caller returns the fixed features every epoch, the result is
//! [`linear_probe`]'s to the last bit (one code path).
//! Outcome: top-1 accuracies in percent and `final_train_loss`, the mean cross-entropy
//! of the final model over the whole train set (without the weight-decay term).
//!
//! MAE's probe (`facebookresearch/mae` @ efb2a806 `main_linprobe.py`, `util/lars.py`,
//! `util/lr_sched.py`) is the same loop with four settings: `batchnorm` puts
//! `BatchNorm1d(affine=False, eps=1e-6)` before the linear layer (batch statistics, biased variance,
//! while training; running statistics, momentum 0.1 with the unbiased variance, for every
//! evaluation; the last partial batch dropped, as its loader's `drop_last`), `lars_eta` replaces SGD
//! by MAE's LARS for W (g ← g + wd·W, then g ← g·η‖W‖/‖g‖, 1 when either norm is 0; the bias, 1-D,
//! plain momentum without decay), `warmup_epochs` warms the rate up linearly per step over that
//! many (fractional) epochs before a half-cycle cosine over the rest, and `init_std` draws W from
//! N(0, std²) (MAE: trunc-normal std 0.01, whose ±2 truncation is 200 std away) from the probe's seed.

use std::borrow::Cow;

use anyhow::{ensure, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::knn::check_inputs;

/// SGD settings for the probe; `lr` is the peak of the cosine schedule, `min_lr` its end.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct LinearParams {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub min_lr: f32,
    /// The cosine is stepped once per epoch (else every mini-batch).
    pub per_epoch: bool,
    pub momentum: f32,
    pub weight_decay: f32,
    pub standardize: bool,
    pub seed: u64,
    /// BatchNorm without affine before the layer (MAE's probe head).
    pub batchnorm: bool,
    /// LARS trust coefficient η for W (None: SGD).
    pub lars_eta: Option<f32>,
    /// Linear warm-up epochs (fractional) before the cosine, per step.
    pub warmup_epochs: f32,
    /// Std of W's normal initialisation (0: zeros).
    pub init_std: f32,
}

/// Accuracies in percent (0..=100) and the final mean train cross-entropy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinearOutcome {
    pub test_top1: f64,
    pub train_top1: f64,
    pub final_train_loss: f64,
}

/// Trains the probe on `train` and reports train / test top-1 and the final train loss.
pub fn linear_probe(
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    test_labels: &[u32],
    n_classes: usize,
    p: &LinearParams,
) -> Result<LinearOutcome> {
    linear_probe_epochs(train, train_labels, test, test_labels, n_classes, p, &mut |_| Ok(None))
}

/// The probe with each epoch's training features from `epoch_features(e)`: `Some(features)` of
/// augmented images (same rows and order as `train`) or `None` for the fixed `train` features.
pub fn linear_probe_epochs(
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    test_labels: &[u32],
    n_classes: usize,
    p: &LinearParams,
    epoch_features: &mut dyn FnMut(usize) -> Result<Option<Array2<f32>>>,
) -> Result<LinearOutcome> {
    check_inputs("linear probe", train, train_labels, test, Some(test_labels), n_classes)?;
    check_params(p)?;
    let (xtr, xte, stats) = prepare(train, test, p.standardize);
    let mut features = |e: usize| -> Result<Cow<'_, Array2<f32>>> {
        Ok(match epoch_features(e)? {
            None => Cow::Borrowed(&xtr),
            Some(mut x) => {
                ensure!(x.dim() == xtr.dim(), "linear probe: epoch {e} features are {:?}, expected {:?}", x.dim(), xtr.dim());
                check_inputs("linear probe (augmented epoch)", x.view(), train_labels, test, None, n_classes)?;
                if let Some((mean, std)) = &stats {
                    x -= mean;
                    x /= std;
                }
                Cow::Owned(x)
            }
        })
    };
    let model = fit(&mut features, train_labels, n_classes, p)?;
    let mut logits = model.logits(xtr.view());
    let train_top1 = accuracy(&predict(&logits), train_labels);
    let final_train_loss = softmax_xent_grad(&mut logits, train_labels);
    let test_top1 = accuracy(&model.predict(xte.view()), test_labels);
    Ok(LinearOutcome { test_top1, train_top1, final_train_loss })
}

fn check_params(p: &LinearParams) -> Result<()> {
    ensure!(p.epochs >= 1, "linear probe: epochs = 0, expected epochs >= 1");
    ensure!(p.batch_size >= 1, "linear probe: batch_size = 0, expected batch_size >= 1");
    ensure!(p.lr.is_finite() && p.lr > 0.0, "linear probe: lr = {}, expected a finite value > 0", p.lr);
    ensure!(
        p.min_lr.is_finite() && p.min_lr >= 0.0 && p.min_lr <= p.lr,
        "linear probe: min_lr = {}, expected a finite value in [0, lr = {}]",
        p.min_lr,
        p.lr
    );
    ensure!(
        p.momentum.is_finite() && p.momentum >= 0.0,
        "linear probe: momentum = {}, expected a finite value >= 0",
        p.momentum
    );
    ensure!(
        p.weight_decay.is_finite() && p.weight_decay >= 0.0,
        "linear probe: weight_decay = {}, expected a finite value >= 0",
        p.weight_decay
    );
    ensure!(
        p.warmup_epochs.is_finite() && p.warmup_epochs >= 0.0 && (p.warmup_epochs as usize) < p.epochs.max(1),
        "linear probe: warmup_epochs = {}, expected a value in [0, epochs = {})",
        p.warmup_epochs,
        p.epochs
    );
    ensure!(p.init_std.is_finite() && p.init_std >= 0.0, "linear probe: init_std = {}, expected a finite value >= 0", p.init_std);
    if let Some(eta) = p.lars_eta {
        ensure!(eta.is_finite() && eta > 0.0, "linear probe: LARS eta = {eta}, expected a finite value > 0");
    }
    if p.batchnorm {
        ensure!(!p.standardize, "linear probe: batchnorm and standardize both normalise the features; choose one");
        ensure!(p.batch_size >= 2, "linear probe: batchnorm needs batches of at least 2 rows; found batch_size = {}", p.batch_size);
    }
    Ok(())
}

/// Per-feature mean and std of the training features (the standardisation).
type Stats = (Array1<f32>, Array1<f32>);

/// Owned copies of train / test, standardised with train statistics if asked (and those statistics).
fn prepare(train: ArrayView2<f32>, test: ArrayView2<f32>, standardize: bool) -> (Array2<f32>, Array2<f32>, Option<Stats>) {
    let (mut xtr, mut xte) = (train.to_owned(), test.to_owned());
    if !standardize {
        return (xtr, xte, None);
    }
    let n = train.nrows() as f64;
    let x64 = train.mapv(f64::from);
    let mean = x64.sum_axis(Axis(0)) / n;
    let var = (&x64 - &mean).mapv(|v| v * v).sum_axis(Axis(0)) / n;
    let mean = mean.mapv(|v| v as f32);
    let std = var.mapv(|v| v.sqrt().max(1e-6) as f32);
    for x in [&mut xtr, &mut xte] {
        *x -= &mean;
        *x /= &std;
    }
    (xtr, xte, Some((mean, std)))
}

struct Linear {
    w: Array2<f32>,
    b: Array1<f32>,
    /// The BatchNorm's running mean and variance (with `batchnorm`), applied at evaluation.
    bn: Option<(Array1<f32>, Array1<f32>)>,
}

/// BatchNorm's epsilon in MAE's probe head.
const BN_EPS: f64 = 1e-6;

impl Linear {
    fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        match &self.bn {
            None => x.dot(&self.w) + &self.b,
            Some((mean, var)) => {
                let scale = var.mapv(|v| (1.0 / (f64::from(v) + BN_EPS).sqrt()) as f32);
                ((&x - mean) * &scale).dot(&self.w) + &self.b
            }
        }
    }

    fn predict(&self, x: ArrayView2<f32>) -> Vec<u32> {
        predict(&self.logits(x))
    }
}

/// The learning rate of `step` (of `steps_per_epoch` per epoch) under the probe's cosine.
fn learning_rate(p: &LinearParams, step: usize, steps_per_epoch: usize) -> f32 {
    if p.warmup_epochs > 0.0 {
        // MAE's `adjust_learning_rate`, per iteration at the fractional epoch.
        let (e, w, total) = (step as f64 / steps_per_epoch as f64, f64::from(p.warmup_epochs), p.epochs as f64);
        let (lr, min) = (f64::from(p.lr), f64::from(p.min_lr));
        let at = if e < w { lr * e / w } else { min + (lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * (e - w) / (total - w)).cos()) };
        return at as f32;
    }
    let (t, total) = if p.per_epoch { (step / steps_per_epoch, p.epochs) } else { (step, p.epochs * steps_per_epoch) };
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos());
    (f64::from(p.min_lr) + (f64::from(p.lr) - f64::from(p.min_lr)) * cos) as f32
}

/// Mini-batch SGD with momentum on inputs already validated and prepared; epoch e trains on
/// `features(e)` (rows matching `y`).
fn fit<'a>(features: &mut dyn FnMut(usize) -> Result<Cow<'a, Array2<f32>>>, y: &[u32], n_classes: usize, p: &LinearParams) -> Result<Linear> {
    let mut x = features(0)?;
    let (n, d) = x.dim();
    let mut rng = StdRng::seed_from_u64(p.seed);
    let w = if p.init_std > 0.0 {
        let normal = rand_distr::Normal::new(0.0f32, p.init_std).map_err(|e| anyhow::anyhow!("linear probe: init_std: {e}"))?;
        Array2::from_shape_simple_fn((d, n_classes), || rand::Rng::sample(&mut rng, normal))
    } else {
        Array2::zeros((d, n_classes))
    };
    let mut m = Linear { w, b: Array1::zeros(n_classes), bn: p.batchnorm.then(|| (Array1::zeros(d), Array1::ones(d))) };
    let (mut vw, mut vb) = (Array2::zeros((d, n_classes)), Array1::zeros(n_classes));
    let bs = p.batch_size.min(n);
    // BatchNorm's loader drops the last partial batch (MAE's `drop_last=True`).
    let steps_per_epoch = if p.batchnorm { (n / bs).max(1) } else { n.div_ceil(bs) };
    let mut order: Vec<usize> = (0..n).collect();
    let mut yb = Vec::with_capacity(bs);
    let mut step = 0usize;
    for epoch in 0..p.epochs {
        if epoch > 0 {
            x = features(epoch)?;
        }
        order.shuffle(&mut rng);
        for batch in order.chunks(bs).take(steps_per_epoch) {
            let mut xb = x.select(Axis(0), batch);
            yb.clear();
            yb.extend(batch.iter().map(|&i| y[i]));
            if let Some((rm, rv)) = &mut m.bn {
                batch_norm(&mut xb, rm, rv);
            }
            let (_, mut gw, gb) = loss_grad(xb.view(), &yb, &m.w, &m.b);
            gw.scaled_add(p.weight_decay, &m.w);
            if let Some(eta) = p.lars_eta {
                let (pn, gn) = (norm(&m.w), norm(&gw));
                if pn > 0.0 && gn > 0.0 {
                    gw *= (f64::from(eta) * pn / gn) as f32;
                }
            }
            let lr = learning_rate(p, step, steps_per_epoch);
            vw *= p.momentum;
            vw += &gw;
            vb *= p.momentum;
            vb += &gb;
            m.w.scaled_add(-lr, &vw);
            m.b.scaled_add(-lr, &vb);
            step += 1;
        }
    }
    Ok(m)
}

fn norm(a: &Array2<f32>) -> f64 {
    a.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt()
}

/// Training-mode BatchNorm without affine on the batch `x` in place (batch mean, biased variance,
/// ε 1e-6); updates the running mean and (unbiased) variance with momentum 0.1 as PyTorch.
fn batch_norm(x: &mut Array2<f32>, running_mean: &mut Array1<f32>, running_var: &mut Array1<f32>) {
    let n = x.nrows() as f64;
    let x64 = x.mapv(f64::from);
    let mean = x64.sum_axis(Axis(0)) / n;
    let var = (&x64 - &mean).mapv(|v| v * v).sum_axis(Axis(0)) / n;
    for (j, mut col) in x.columns_mut().into_iter().enumerate() {
        let (mu, s) = (mean[j], 1.0 / (var[j] + BN_EPS).sqrt());
        col.mapv_inplace(|v| ((f64::from(v) - mu) * s) as f32);
        running_mean[j] = (0.9 * f64::from(running_mean[j]) + 0.1 * mu) as f32;
        running_var[j] = (0.9 * f64::from(running_var[j]) + 0.1 * var[j] * n / (n - 1.0).max(1.0)) as f32;
    }
}

/// Mean cross-entropy of a batch and its gradients w.r.t. W and b.
/// (`x` already normalised: the training batch's BatchNorm is applied by the caller.)
fn loss_grad(x: ArrayView2<f32>, y: &[u32], w: &Array2<f32>, b: &Array1<f32>) -> (f64, Array2<f32>, Array1<f32>) {
    let mut g = x.dot(w) + b;
    let loss = softmax_xent_grad(&mut g, y);
    (loss, x.t().dot(&g), g.sum_axis(Axis(0)))
}

/// Turns logits into d(mean loss)/d(logits) = (softmax - onehot) / B in place and
/// returns the mean cross-entropy. Max-shifted for stability.
fn softmax_xent_grad(logits: &mut Array2<f32>, y: &[u32]) -> f64 {
    let scale = 1.0 / logits.nrows() as f32;
    let mut loss = 0f64;
    for (mut row, &yi) in logits.rows_mut().into_iter().zip(y) {
        let top = row.fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let shifted_y = row[yi as usize] - top;
        row.mapv_inplace(|v| (v - top).exp());
        let z = row.sum();
        loss += f64::from(z.ln() - shifted_y);
        row *= scale / z;
        row[yi as usize] -= scale;
    }
    loss / y.len() as f64
}

/// Argmax per row; ties go to the lowest class index.
fn predict(logits: &Array2<f32>) -> Vec<u32> {
    logits
        .rows()
        .into_iter()
        .map(|r| r.iter().enumerate().fold(0, |best, (i, &v)| if v > r[best] { i } else { best }) as u32)
        .collect()
}

fn accuracy(pred: &[u32], labels: &[u32]) -> f64 {
    let correct = pred.iter().zip(labels).filter(|(a, b)| a == b).count();
    100.0 * correct as f64 / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};
    use rand::Rng;

    fn params() -> LinearParams {
        LinearParams {
            epochs: 10,
            batch_size: 32,
            lr: 0.1,
            min_lr: 0.0,
            per_epoch: false,
            momentum: 0.9,
            weight_decay: 1e-4,
            standardize: false,
            seed: 0,
            batchnorm: false,
            lars_eta: None,
            warmup_epochs: 0.0,
            init_std: 0.0,
        }
    }

    fn fit_fixed(x: ArrayView2<f32>, y: &[u32], c: usize, p: &LinearParams) -> Linear {
        let x = x.to_owned();
        fit(&mut |_| Ok(Cow::Borrowed(&x)), y, c, p).unwrap()
    }

    fn gauss(rng: &mut StdRng) -> f32 {
        // Box-Muller
        let (u, v): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// Random features and labels from a noisy linear teacher (not separable).
    fn problem(rng: &mut StdRng, n: usize, d: usize, c: usize) -> (Array2<f32>, Vec<u32>) {
        let teacher = Array2::from_shape_fn((d, c), |_| gauss(rng));
        let x = Array2::from_shape_fn((n, d), |_| gauss(rng));
        let noisy = x.dot(&teacher) + Array2::from_shape_fn((n, c), |_| 1.5 * gauss(rng));
        (x, predict(&noisy))
    }

    /// f64 oracle: mean cross-entropy + (wd/2)·|W|², by direct loops.
    fn objective(x: &Array2<f32>, y: &[u32], w: &Array2<f64>, b: &Array1<f64>, wd: f64) -> f64 {
        let (n, d) = x.dim();
        let c = b.len();
        let mut loss = 0.0;
        for i in 0..n {
            let z: Vec<f64> = (0..c).map(|k| b[k] + (0..d).map(|j| f64::from(x[[i, j]]) * w[[j, k]]).sum::<f64>()).collect();
            let top = z.iter().cloned().fold(f64::MIN, f64::max);
            let lse = top + z.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
            loss += lse - z[y[i] as usize];
        }
        loss / n as f64 + 0.5 * wd * w.iter().map(|v| v * v).sum::<f64>()
    }

    /// MAE's probe (BatchNorm without affine, LARS, warm-up, normal init, dropped last batch)
    /// against a direct f64 re-implementation of `main_linprobe.py`'s loop with `util/lars.py` and
    /// `util/lr_sched.py`: the same weights, running statistics and evaluation logits.
    #[test]
    fn mae_probe_matches_a_direct_oracle() {
        let mut rng = StdRng::seed_from_u64(3);
        let (x, y) = problem(&mut rng, 10, 3, 2);
        let (lr, wd, eta, mom) = (0.5, 0.01, 0.1, 0.9);
        let p = LinearParams { epochs: 3, batch_size: 4, lr, min_lr: 0.0, per_epoch: false, momentum: mom, weight_decay: wd, standardize: false, seed: 7, batchnorm: true, lars_eta: Some(eta), warmup_epochs: 1.0, init_std: 0.01 };
        let m = fit_fixed(x.view(), &y, 2, &p);
        let (lr, wd, eta, mom) = (f64::from(lr), f64::from(wd), f64::from(eta), f64::from(mom));
        let mut r = StdRng::seed_from_u64(7);
        let normal = rand_distr::Normal::new(0.0f32, 0.01).unwrap();
        let mut w: Vec<Vec<f64>> = (0..3).map(|_| (0..2).map(|_| f64::from(r.sample(normal))).collect()).collect();
        let mut b = [0.0f64; 2];
        let (mut vw, mut vb) = (vec![vec![0.0f64; 2]; 3], [0.0f64; 2]);
        let (mut rm, mut rv) = ([0.0f64; 3], [1.0f64; 3]);
        let mut order: Vec<usize> = (0..10).collect();
        let mut step = 0;
        for _ in 0..3 {
            order.shuffle(&mut r);
            for batch in order.chunks(4).take(2) {
                let nb = batch.len() as f64;
                let mut xb: Vec<Vec<f64>> = batch.iter().map(|&i| (0..3).map(|j| f64::from(x[[i, j]])).collect()).collect();
                for j in 0..3 {
                    let mean = xb.iter().map(|r| r[j]).sum::<f64>() / nb;
                    let var = xb.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / nb;
                    for row in xb.iter_mut() {
                        row[j] = (row[j] - mean) / (var + 1e-6).sqrt();
                    }
                    rm[j] = 0.9 * rm[j] + 0.1 * mean;
                    rv[j] = 0.9 * rv[j] + 0.1 * var * nb / (nb - 1.0);
                }
                let (mut gw, mut gb) = (vec![vec![0.0f64; 2]; 3], [0.0f64; 2]);
                for (row, &i) in xb.iter().zip(batch) {
                    let z: Vec<f64> = (0..2).map(|k| b[k] + (0..3).map(|j| row[j] * w[j][k]).sum::<f64>()).collect();
                    let top = z[0].max(z[1]);
                    let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
                    for k in 0..2 {
                        let d = (e[k] / (e[0] + e[1]) - if y[i] as usize == k { 1.0 } else { 0.0 }) / nb;
                        gb[k] += d;
                        for j in 0..3 {
                            gw[j][k] += row[j] * d;
                        }
                    }
                }
                let norm = |a: &Vec<Vec<f64>>| a.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
                for j in 0..3 {
                    for k in 0..2 {
                        gw[j][k] += wd * w[j][k];
                    }
                }
                let q = eta * norm(&w) / norm(&gw);
                let e = step as f64 / 2.0;
                let at = if e < 1.0 { lr * e } else { lr * 0.5 * (1.0 + (std::f64::consts::PI * (e - 1.0) / 2.0).cos()) };
                for j in 0..3 {
                    for k in 0..2 {
                        vw[j][k] = mom * vw[j][k] + gw[j][k] * q;
                        w[j][k] -= at * vw[j][k];
                    }
                }
                for k in 0..2 {
                    vb[k] = mom * vb[k] + gb[k];
                    b[k] -= at * vb[k];
                }
                step += 1;
            }
        }
        for j in 0..3 {
            for k in 0..2 {
                assert!((f64::from(m.w[[j, k]]) - w[j][k]).abs() < 1e-5, "W[{j},{k}] {} vs {}", m.w[[j, k]], w[j][k]);
            }
        }
        for k in 0..2 {
            assert!((f64::from(m.b[k]) - b[k]).abs() < 1e-5, "b[{k}] {} vs {}", m.b[k], b[k]);
        }
        let (mean, var) = m.bn.as_ref().unwrap();
        for j in 0..3 {
            assert!((f64::from(mean[j]) - rm[j]).abs() < 1e-5 && (f64::from(var[j]) - rv[j]).abs() < 1e-5);
        }
        // Evaluation normalises with the running statistics.
        let got = m.logits(x.slice(ndarray::s![..1, ..]));
        for k in 0..2 {
            let want = b[k] + (0..3).map(|j| (f64::from(x[[0, j]]) - rm[j]) / (rv[j] + 1e-6).sqrt() * w[j][k]).sum::<f64>();
            assert!((f64::from(got[[0, k]]) - want).abs() < 1e-5);
        }
        let e = linear_probe(x.view(), &y, x.view(), &y, 2, &LinearParams { standardize: true, ..p.clone() }).unwrap_err().to_string();
        assert!(e.contains("choose one"), "{e}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(1);
        let (x, y) = problem(&mut rng, 7, 4, 3);
        let m = Linear { w: Array2::from_shape_fn((4, 3), |_| gauss(&mut rng)), b: array![0.3, -0.2, 0.1], bn: None };
        let (loss, gw, gb) = loss_grad(x.view(), &y, &m.w, &m.b);
        let (w64, b64) = (m.w.mapv(f64::from), m.b.mapv(f64::from));
        assert!((loss - objective(&x, &y, &w64, &b64, 0.0)).abs() < 1e-5);
        let h = 1e-5;
        for j in 0..4 {
            for k in 0..3 {
                let (mut wp, mut wm) = (w64.clone(), w64.clone());
                wp[[j, k]] += h;
                wm[[j, k]] -= h;
                let fd = (objective(&x, &y, &wp, &b64, 0.0) - objective(&x, &y, &wm, &b64, 0.0)) / (2.0 * h);
                assert!((f64::from(gw[[j, k]]) - fd).abs() < 1e-5, "dW[{j},{k}] {} vs {fd}", gw[[j, k]]);
            }
        }
        for k in 0..3 {
            let (mut bp, mut bm) = (b64.clone(), b64.clone());
            bp[k] += h;
            bm[k] -= h;
            let fd = (objective(&x, &y, &w64, &bp, 0.0) - objective(&x, &y, &w64, &bm, 0.0)) / (2.0 * h);
            assert!((f64::from(gb[k]) - fd).abs() < 1e-5, "db[{k}] {} vs {fd}", gb[k]);
        }
    }

    #[test]
    fn reaches_the_convex_optimum() {
        let mut rng = StdRng::seed_from_u64(2);
        let (n, d, c, wd) = (200, 5, 3, 0.02);
        let (x, y) = problem(&mut rng, n, d, c);
        let (xt, _) = problem(&mut rng, 500, d, c);
        // Oracle: full-batch gradient descent in f64 on the regularised objective.
        let x64 = x.mapv(f64::from);
        let onehot = Array2::from_shape_fn((n, c), |(i, k)| f64::from(u8::from(y[i] as usize == k)));
        let (mut w, mut b) = (Array2::<f64>::zeros((d, c)), Array1::<f64>::zeros(c));
        for _ in 0..20_000 {
            let mut p = x64.dot(&w) + &b;
            for mut r in p.rows_mut() {
                let top = r.fold(f64::MIN, |a, &v| a.max(v));
                r.mapv_inplace(|v| (v - top).exp());
                let z = r.sum();
                r /= z;
            }
            let g = (p - &onehot) / n as f64;
            let gw = x64.t().dot(&g) + wd * &w;
            w.scaled_add(-0.5, &gw);
            b.scaled_add(-0.5, &g.sum_axis(Axis(0)));
        }
        let best = objective(&x, &y, &w, &b, wd);
        let p = LinearParams { epochs: 1500, batch_size: n, lr: 0.5, weight_decay: wd as f32, ..params() };
        let m = fit_fixed(x.view(), &y, c, &p);
        let got = objective(&x, &y, &m.w.mapv(f64::from), &m.b.mapv(f64::from), wd);
        assert!(got >= best - 1e-9 && got - best < 1e-5, "probe {got} vs optimum {best}");
        let oracle_pred = predict(&(xt.mapv(f64::from).dot(&w) + &b).mapv(|v| v as f32));
        let agree = oracle_pred.iter().zip(m.predict(xt.view())).filter(|(a, b)| **a == *b).count();
        assert!(agree * 100 >= 99 * oracle_pred.len(), "agree on {agree}/500");
    }

    #[test]
    fn separable_blobs_are_learned() {
        let mut rng = StdRng::seed_from_u64(3);
        let (d, c) = (16, 4);
        let mut blobs = |n: usize| {
            let y: Vec<u32> = (0..n).map(|i| (i % c) as u32).collect();
            let x = Array2::from_shape_fn((n, d), |(i, j)| gauss(&mut rng) + if j == i % c { 8.0 } else { 0.0 });
            (x, y)
        };
        let ((xtr, ytr), (xte, yte)) = (blobs(2000), blobs(1000));
        let out = linear_probe(xtr.view(), &ytr, xte.view(), &yte, c, &params()).unwrap();
        assert!(out.test_top1 >= 99.0 && out.train_top1 >= 99.0, "{out:?}");
        assert!(out.final_train_loss < 0.05, "{out:?}");
    }

    #[test]
    fn standardize_is_invariant_to_feature_affine_maps() {
        let mut rng = StdRng::seed_from_u64(4);
        let (xtr, ytr) = problem(&mut rng, 600, 6, 3);
        let (xte, yte) = problem(&mut rng, 300, 6, 3);
        let scale = array![0.01f32, 3.0, 100.0, 0.5, 7.0, 1.0];
        let shift = array![5.0f32, -2.0, 1000.0, 0.0, 0.3, -40.0];
        let p = LinearParams { standardize: true, ..params() };
        let run = |tr: &Array2<f32>, te: &Array2<f32>| {
            let (a, b, _) = prepare(tr.view(), te.view(), true);
            fit_fixed(a.view(), &ytr, 3, &p).predict(b.view())
        };
        let (tr2, te2) = (&xtr * &scale + &shift, &xte * &scale + &shift);
        assert_eq!(run(&xtr, &xte), run(&tr2, &te2));
        let o1 = linear_probe(xtr.view(), &ytr, xte.view(), &yte, 3, &p).unwrap();
        let o2 = linear_probe(tr2.view(), &ytr, te2.view(), &yte, 3, &p).unwrap();
        assert_eq!((o1.test_top1, o1.train_top1), (o2.test_top1, o2.train_top1));
        assert!((o1.final_train_loss - o2.final_train_loss).abs() < 1e-4);
    }

    #[test]
    fn schedules_follow_pytorch() {
        // Per step: lr·(1 + cos(πt/T))/2 from lr down; per epoch: CosineAnnealingLR(T_max = E) values.
        let p = LinearParams { epochs: 4, lr: 0.2, min_lr: 0.002, per_epoch: true, ..params() };
        // torch: [0.2, 0.17100..., 0.101, 0.03099...] (eta_min + (lr − eta_min)(1 + cos(π e/4))/2)
        let want = [0.2, 0.002 + 0.198 * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0, 0.101, 0.002 + 0.198 * (1.0 + (3.0 * std::f64::consts::PI / 4.0).cos()) / 2.0];
        for (e, w) in want.iter().enumerate() {
            for s in 0..3 {
                assert!((f64::from(learning_rate(&p, e * 3 + s, 3)) - w).abs() < 1e-7, "epoch {e}");
            }
        }
        let p = LinearParams { epochs: 2, lr: 0.1, per_epoch: false, ..params() };
        assert_eq!(learning_rate(&p, 0, 5), 0.1);
        assert!((learning_rate(&p, 5, 5) - 0.05).abs() < 1e-7);
    }

    #[test]
    fn fixed_features_every_epoch_equal_the_fixed_probe_exactly() {
        let mut rng = StdRng::seed_from_u64(5);
        let (xtr, ytr) = problem(&mut rng, 300, 6, 3);
        let (xte, yte) = problem(&mut rng, 100, 6, 3);
        for standardize in [false, true] {
            let p = LinearParams { standardize, per_epoch: true, min_lr: 0.01, ..params() };
            let fixed = linear_probe(xtr.view(), &ytr, xte.view(), &yte, 3, &p).unwrap();
            let mut calls = 0;
            let again = linear_probe_epochs(xtr.view(), &ytr, xte.view(), &yte, 3, &p, &mut |_| {
                calls += 1;
                Ok(Some(xtr.clone()))
            })
            .unwrap();
            assert_eq!(calls, p.epochs);
            assert_eq!((fixed.test_top1, fixed.train_top1, fixed.final_train_loss), (again.test_top1, again.train_top1, again.final_train_loss));
        }
        // Other features per epoch change the outcome, and a wrong shape is refused.
        let p = params();
        let noisy = linear_probe_epochs(xtr.view(), &ytr, xte.view(), &yte, 3, &p, &mut |_| Ok(Some(xtr.mapv(|v| v * 0.2 + 0.5)))).unwrap();
        assert_ne!(noisy.final_train_loss, linear_probe(xtr.view(), &ytr, xte.view(), &yte, 3, &p).unwrap().final_train_loss);
        let err = linear_probe_epochs(xtr.view(), &ytr, xte.view(), &yte, 3, &p, &mut |_| Ok(Some(Array2::zeros((3, 6))))).unwrap_err();
        assert!(err.to_string().contains("epoch 0 features are (3, 6), expected (300, 6)"), "{err}");
    }

    #[test]
    fn validation_errors_name_the_bad_value() {
        let tr = array![[0.0f32, 1.0], [1.0, 0.0]];
        let te = array![[0.5f32, 0.5]];
        let err = |tr: &Array2<f32>, tl: &[u32], te: &Array2<f32>, el: &[u32], c: usize, p: &LinearParams| {
            linear_probe(tr.view(), tl, te.view(), el, c, p).unwrap_err().to_string()
        };
        let ok = params();
        let with = |f: fn(&mut LinearParams)| {
            let mut p = params();
            f(&mut p);
            err(&tr, &[0, 1], &te, &[0], 2, &p)
        };
        assert!(with(|p| p.epochs = 0).contains("epochs = 0"));
        assert!(with(|p| p.batch_size = 0).contains("batch_size = 0"));
        assert!(with(|p| p.lr = 0.0).contains("lr = 0"));
        assert!(with(|p| p.lr = f32::NAN).contains("lr = NaN"));
        assert!(with(|p| p.min_lr = 0.5).contains("min_lr = 0.5"));
        assert!(with(|p| p.momentum = -0.5).contains("momentum = -0.5"));
        assert!(with(|p| p.weight_decay = f32::INFINITY).contains("weight_decay = inf"));
        let wide = array![[0.5f32, 0.5, 0.5]];
        assert!(err(&tr, &[0, 1], &wide, &[0], 2, &ok).contains("test has 3 features"));
        assert!(err(&tr, &[0], &te, &[0], 2, &ok).contains("train_labels has 1 entries, expected 2"));
        assert!(err(&tr, &[0, 1], &te, &[3], 2, &ok).contains("test_labels[0] = 3"));
        let empty = Array2::<f32>::zeros((0, 2));
        assert!(err(&empty, &[], &te, &[0], 2, &ok).contains("train has 0 rows"));
        let bad = array![[0.5f32, f32::NAN]];
        assert!(err(&tr, &[0, 1], &bad, &[0], 2, &ok).contains("test row 0 has non-finite value NaN at column 1"));
    }
}
