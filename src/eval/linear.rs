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
}

impl Linear {
    fn logits(&self, x: ArrayView2<f32>) -> Array2<f32> {
        x.dot(&self.w) + &self.b
    }

    fn predict(&self, x: ArrayView2<f32>) -> Vec<u32> {
        predict(&self.logits(x))
    }
}

/// The learning rate of `step` (of `steps_per_epoch` per epoch) under the probe's cosine.
fn learning_rate(p: &LinearParams, step: usize, steps_per_epoch: usize) -> f32 {
    let (t, total) = if p.per_epoch { (step / steps_per_epoch, p.epochs) } else { (step, p.epochs * steps_per_epoch) };
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos());
    (f64::from(p.min_lr) + (f64::from(p.lr) - f64::from(p.min_lr)) * cos) as f32
}

/// Mini-batch SGD with momentum on inputs already validated and prepared; epoch e trains on
/// `features(e)` (rows matching `y`).
fn fit<'a>(features: &mut dyn FnMut(usize) -> Result<Cow<'a, Array2<f32>>>, y: &[u32], n_classes: usize, p: &LinearParams) -> Result<Linear> {
    let mut x = features(0)?;
    let (n, d) = x.dim();
    let mut m = Linear { w: Array2::zeros((d, n_classes)), b: Array1::zeros(n_classes) };
    let (mut vw, mut vb) = (m.w.clone(), m.b.clone());
    let bs = p.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(bs);
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut yb = Vec::with_capacity(bs);
    let mut step = 0usize;
    for epoch in 0..p.epochs {
        if epoch > 0 {
            x = features(epoch)?;
        }
        order.shuffle(&mut rng);
        for batch in order.chunks(bs) {
            let xb = x.select(Axis(0), batch);
            yb.clear();
            yb.extend(batch.iter().map(|&i| y[i]));
            let (_, mut gw, gb) = loss_grad(xb.view(), &yb, &m);
            gw.scaled_add(p.weight_decay, &m.w);
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

/// Mean cross-entropy of a batch and its gradients w.r.t. W and b.
fn loss_grad(x: ArrayView2<f32>, y: &[u32], m: &Linear) -> (f64, Array2<f32>, Array1<f32>) {
    let mut g = m.logits(x);
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

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(1);
        let (x, y) = problem(&mut rng, 7, 4, 3);
        let m = Linear { w: Array2::from_shape_fn((4, 3), |_| gauss(&mut rng)), b: array![0.3, -0.2, 0.1] };
        let (loss, gw, gb) = loss_grad(x.view(), &y, &m);
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
