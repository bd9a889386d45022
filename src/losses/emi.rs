//! EMI: explicit mutual information from second-order statistics (Chang, Liu, Guo, Wen, "Explicit
//! Mutual Information Maximization for Self-Supervised Learning", arXiv 2409.04747).
//!
//! What the text establishes (Theorem 1, read in the abstract and supplementary): MI is invariant
//! under homeomorphisms, so the MI of the two views' representations can be computed from
//! second-order statistics alone, I = H(Z1) + H(Z2) − H(Z1, Z2) with Gaussian entropies:
//! I = ½[logdet Σ1 + logdet Σ2 − logdet Σ12], Σ12 the 2D×2D covariance of [Z1, Z2]; loss = −I.
//!
//! `standardize` (the harness's default): each view's dimensions are centred and scaled to unit
//! variance over the batch first, so the Σ are correlation matrices. The Gaussian MI itself is
//! unchanged by any per-dimension affine map (the same invariance), but ε·I then acts relative to
//! unit variance: without it ε is absolute, so the loss rewards inflating the features' scale
//! (ε becomes negligible) and its gradient, (Σ + εI)⁻¹, grows with the alignment of the views. In
//! the smoke suite that drove a width-4 ResNet's features from std 0.05 to 160 within five SGD steps
//! and then every stem channel's ReLU dead (BN biases ≤ −1.1): a constant encoder, k-NN at chance,
//! at one seed on one CPU (README "Methods"). `standardize: false` is the unscaled loss.
//!
//! UNVERIFIED (no official code was found; the paper's loss section was not readable here): the
//! covariance estimator (we centre on the batch mean and divide by N − 1), the ε·I regulariser
//! added to each covariance before its log-determinant (`eps`, our choice), the standardisation,
//! computing in float64, and whether the paper adds further terms or weights (its supplementary §C
//! ablates "the loss function"). Numbers produced with this loss are the harness's, not the paper's.
//!
//! # Shapes
//! `z1`, `z2`: [N, D], N ≥ 2 (the joint covariance is full rank only for N > 2D; ε keeps it defined).

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_pair, Loss};
use crate::plan::EmiParams;

/// log det(cov(z) + εI), covariance centred on the batch mean over N − 1, in float64.
fn logdet_cov(z: &Tensor, eps: f64) -> Tensor {
    let n = z.size()[0] as f64;
    let zc = z - z.mean_dim(0, true, Kind::Double);
    let cov = zc.transpose(0, 1).matmul(&zc) / (n - 1.0);
    let eye = Tensor::eye(z.size()[1], (Kind::Double, z.device()));
    (cov + eye * eps).logdet()
}

/// Floor under each dimension's variance when standardising (a dead dimension stays 0).
const VAR_FLOOR: f64 = 1e-5;

/// (z − mean) / √(var + floor) per dimension, variance over N − 1 (unit diagonal covariance).
fn standardized(z: &Tensor) -> Tensor {
    let zc = z - z.mean_dim(0, true, Kind::Double);
    let var = zc.square().sum_dim_intlist(0, true, Kind::Double) / (z.size()[0] as f64 - 1.0);
    zc / (var + VAR_FLOOR).sqrt()
}

pub fn loss(z1: &Tensor, z2: &Tensor, p: &EmiParams) -> Result<Loss> {
    check_pair("emi", z1, z2, 2)?;
    let (mut z1, mut z2) = (z1.to_kind(Kind::Double), z2.to_kind(Kind::Double));
    if p.standardize {
        (z1, z2) = (standardized(&z1), standardized(&z2));
    }
    let l1 = logdet_cov(&z1, p.eps);
    let l2 = logdet_cov(&z2, p.eps);
    let joint = logdet_cov(&Tensor::cat(&[&z1, &z2], 1), p.eps);
    let mi = ((&l1 + &l2 - &joint) * 0.5).to_kind(Kind::Float);
    let f = |t: Tensor| t.to_kind(Kind::Float);
    Ok(Loss { total: -&mi, terms: vec![("mutual_information", mi), ("logdet_z1", f(l1)), ("logdet_z2", f(l2)), ("logdet_joint", f(joint))] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    fn p() -> EmiParams {
        EmiParams { projector: vec![], eps: 1e-3, standardize: false }
    }

    fn standardized_p(eps: f64) -> EmiParams {
        EmiParams { projector: vec![], eps, standardize: true }
    }

    #[test]
    fn golden_values_from_the_formula() {
        // tests/fixtures/losses/baselines_golden.py (rank-2 inputs, then full-rank ones)
        let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5), &p()).unwrap();
        assert!((value(&l.total) + 5.030764128326258).abs() < 1e-4, "{}", value(&l.total));
        let l = loss(&fixed2(32, 4, 0.0), &fixed2(32, 4, 0.3), &p()).unwrap();
        assert!((term(&l, "mutual_information") - 4.838259930056362).abs() < 1e-4, "{}", term(&l, "mutual_information"));
        assert!((term(&l, "logdet_z1") + 5.456499782838014).abs() < 1e-4);
        assert!((term(&l, "logdet_joint") + 20.57135658461058).abs() < 1e-3);
        // Standardised views (the same script, `standardize`).
        let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5), &standardized_p(1e-3)).unwrap();
        assert!((value(&l.total) + 5.55187505692124).abs() < 1e-4, "{}", value(&l.total));
        assert!((term(&l, "logdet_joint") + 36.080515501132524).abs() < 1e-3, "{}", term(&l, "logdet_joint"));
        let l = loss(&fixed2(32, 4, 0.0), &fixed2(32, 4, 0.3), &standardized_p(1e-3)).unwrap();
        assert!((term(&l, "mutual_information") - 4.968651825534338).abs() < 1e-4, "{}", term(&l, "mutual_information"));
        assert!((term(&l, "logdet_z2") + 0.023700607181628378).abs() < 1e-4, "{}", term(&l, "logdet_z2"));
    }

    #[test]
    fn symmetric_and_zero_for_independent_views() {
        symmetric_and_refuses_one(|a, b| loss(a, b, &p()));
        symmetric_and_refuses_one(|a, b| loss(a, b, &standardized_p(1e-3)));
        // Independent Gaussian views of many samples: MI ≈ 0.
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let (x, y) = (Tensor::randn([20000, 3], tch::kind::FLOAT_CPU), Tensor::randn([20000, 3], tch::kind::FLOAT_CPU));
        for standardize in [false, true] {
            let q = EmiParams { projector: vec![], eps: 0.0, standardize };
            let mi = term(&loss(&x, &y, &q).unwrap(), "mutual_information");
            assert!(mi.abs() < 2e-3, "{mi}");
            // y = x + noise of variance s²: per dimension MI = ½ log(1 + 1/s²).
            let noisy = &x + Tensor::randn([20000, 3], tch::kind::FLOAT_CPU) * 0.5;
            let mi = term(&loss(&x, &noisy, &q).unwrap(), "mutual_information");
            let want = 3.0 * 0.5 * (1.0f64 + 4.0).ln();
            assert!((mi - want).abs() < 0.05, "{mi} vs {want}");
        }
    }

    #[test]
    fn standardised_loss_ignores_the_features_scale() {
        // The unscaled loss rises as the features grow (ε fades): the pull that blew the smoke run up.
        let (a, b) = (fixed2(32, 4, 0.0), fixed2(32, 4, 0.3));
        // numpy (baselines_golden.py's emi): −4.8383 at scale 1, −5.0147 at 10, −5.0166 at 100.
        let raw = |k: f64| value(&loss(&(&a * k), &(&b * k), &p()).unwrap().total);
        assert!((raw(10.0) + 5.014722108819785).abs() < 1e-4 && raw(10.0) < raw(1.0) - 0.15, "{} vs {}", raw(10.0), raw(1.0));
        // Standardised: any per-dimension scale and shift of either view changes nothing (while the
        // variances stay well above the 1e-5 floor).
        let scale = Tensor::from_slice(&[0.2f32, 3.0, 100.0, 0.5]).reshape([1, 4]);
        let shift = Tensor::from_slice(&[5.0f32, -2.0, 0.3, 40.0]).reshape([1, 4]);
        let q = standardized_p(1e-3);
        let base = value(&loss(&a, &b, &q).unwrap().total);
        let moved = value(&loss(&(&a * &scale + &shift), &(&b * 7.0 - 1.0), &q).unwrap().total);
        assert!((base - moved).abs() < 1e-3, "{base} vs {moved}");
    }

    #[test]
    fn decreases_when_optimised() {
        for q in [p(), standardized_p(1e-3)] {
            let (first, last) = descends(30, 0.05, |a, b| loss(a, b, &q).unwrap());
            assert!(last < first - 1e-2, "{q:?}: {first} -> {last}");
        }
    }
}
