//! Barlow Twins loss (Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via
//! Redundancy Reduction", ICML 2021, arXiv 2103.03230), as `facebookresearch/barlowtwins`
//! (`main.py`, `BarlowTwins.forward`) computes it: each view standardised per feature over the batch
//! by `BatchNorm1d(affine=False)` (batch mean, biased variance, eps 1e-5), cross-correlation
//! c = z1ᵀz2 / N, loss = Σ_i (1 − c_ii)² + λ·Σ_{i≠j} c_ij². λ = 0.0051 in the official code.
//! `scale` multiplies the whole loss (solo-learn's `scale_loss`, 0.1 in its CIFAR configs); the
//! official code has no such factor (scale 1).
//!
//! # Shapes
//! `z1`, `z2`: [N, D] projector outputs, N ≥ 2.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_pair, off_diagonal, Loss};
use crate::plan::BarlowTwinsParams;

/// BatchNorm1d(affine=False) in training mode: (z − mean) / sqrt(biased var + 1e-5).
fn standardise(z: &Tensor) -> Tensor {
    let mean = z.mean_dim(0, true, Kind::Float);
    let var = z.var_dim(0, false, true);
    (z - mean) / (var + 1e-5).sqrt()
}

pub fn loss(z1: &Tensor, z2: &Tensor, p: &BarlowTwinsParams) -> Result<Loss> {
    check_pair("barlow_twins", z1, z2, 2)?;
    let n = z1.size()[0] as f64;
    let c = standardise(&z1.to_kind(Kind::Float)).transpose(0, 1).matmul(&standardise(&z2.to_kind(Kind::Float))) / n; // [D, D]
    let on_diagonal = (c.diagonal(0, 0, 1) - 1.0).square().sum(Kind::Float);
    let off = off_diagonal(&c).square().sum(Kind::Float);
    let total = (&on_diagonal + &off * p.lambda) * p.scale;
    Ok(Loss { total, terms: vec![("on_diagonal", on_diagonal), ("off_diagonal", off)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    fn official() -> BarlowTwinsParams {
        BarlowTwinsParams { projector: vec![], lambda: 0.0051, scale: 1.0 }
    }

    #[test]
    fn golden_values_from_the_formula() {
        // tests/fixtures/losses/baselines_golden.py
        let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5), &official()).unwrap();
        assert!((value(&l.total) - 0.08045851629894789).abs() < 1e-4, "{}", value(&l.total));
        assert!((term(&l, "on_diagonal") - 0.05409650806347631).abs() < 1e-4);
        assert!((term(&l, "off_diagonal") - 5.169021222641486).abs() < 1e-3);
    }

    #[test]
    fn symmetric_and_checked() {
        symmetric_and_refuses_one(|a, b| loss(a, b, &official()));
        assert!(loss(&fixed(8, 4, 0.0), &fixed(7, 4, 0.0), &official()).is_err());
    }

    #[test]
    fn decreases_when_optimised() {
        let (first, last) = descends(30, 0.5, |a, b| loss(a, b, &official()).unwrap());
        assert!(last < 0.9 * first, "{first} -> {last}");
    }
}
