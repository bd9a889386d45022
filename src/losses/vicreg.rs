//! VICReg loss (Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
//! Self-Supervised Learning", ICLR 2022, arXiv 2105.04906), as `facebookresearch/vicreg`
//! (`main_vicreg.py`, `VICReg.forward`) computes it:
//! - invariance = mean((z1 − z2)²);
//! - per view, centred: std = sqrt(unbiased var + 1e-4), variance = mean(relu(1 − std)) / 2 summed
//!   over the two views;
//! - per view: cov = zᵀz / (N − 1), covariance = Σ_{i≠j} cov_ij² / D summed over the two views;
//! - total = sim_coeff·invariance + std_coeff·variance + cov_coeff·covariance (25, 25, 1 officially).
//!
//! # Shapes
//! `z1`, `z2`: [N, D] expander outputs, N ≥ 2.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_pair, off_diagonal, Loss};
use crate::plan::VicregParams;

pub fn loss(z1: &Tensor, z2: &Tensor, p: &VicregParams) -> Result<Loss> {
    check_pair("vicreg", z1, z2, 2)?;
    let (n, d) = (z1.size()[0] as f64, z1.size()[1] as f64);
    let (z1, z2) = (z1.to_kind(Kind::Float), z2.to_kind(Kind::Float));
    let invariance = (&z1 - &z2).square().mean(Kind::Float);
    let mut variance = Tensor::zeros([], (Kind::Float, z1.device()));
    let mut covariance = Tensor::zeros([], (Kind::Float, z1.device()));
    for z in [&z1, &z2] {
        let zc = z - z.mean_dim(0, true, Kind::Float);
        let std = (zc.var_dim(0, true, false) + 1e-4).sqrt();
        variance = variance + (std * -1.0 + 1.0).relu().mean(Kind::Float) / 2.0;
        let cov = zc.transpose(0, 1).matmul(&zc) / (n - 1.0);
        covariance = covariance + off_diagonal(&cov).square().sum(Kind::Float) / d;
    }
    let total = &invariance * p.sim_coeff + &variance * p.std_coeff + &covariance * p.cov_coeff;
    Ok(Loss { total, terms: vec![("invariance", invariance), ("variance", variance), ("covariance", covariance)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    fn official() -> VicregParams {
        VicregParams { projector: vec![], sim_coeff: 25.0, std_coeff: 25.0, cov_coeff: 1.0 }
    }

    #[test]
    fn golden_values_from_the_formula() {
        // tests/fixtures/losses/baselines_golden.py
        let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5), &official()).unwrap();
        assert!((value(&l.total) - 13.390602565028342).abs() < 1e-4, "{}", value(&l.total));
        assert!((term(&l, "invariance") - 0.05874258623797543).abs() < 1e-6);
        assert!((term(&l, "variance") - 0.4697313247096391).abs() < 1e-5);
        assert!((term(&l, "covariance") - 0.1787547913379791).abs() < 1e-5);
    }

    #[test]
    fn symmetric_and_checked() {
        symmetric_and_refuses_one(|a, b| loss(a, b, &official()));
        assert!(loss(&Tensor::zeros([4], tch::kind::FLOAT_CPU), &fixed(4, 1, 0.0), &official()).unwrap_err().to_string().contains("2-D"));
    }

    #[test]
    fn decreases_when_optimised() {
        let (first, last) = descends(30, 0.01, |a, b| loss(a, b, &official()).unwrap());
        assert!(last < first - 1e-2, "{first} -> {last}");
    }
}
