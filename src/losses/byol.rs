//! BYOL's regression loss (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, arXiv
//! 2006.07733), as `deepmind/deepmind-research` (`byol/byol_experiment.py`, `regression_loss`) and
//! solo-learn (`solo/losses/byol.py`) compute it: 2 − 2·cos(p, z) averaged over the batch, between
//! the online network's prediction p of one view and the target network's projection z of the other
//! (the target is not differentiated: the method passes it detached). The method symmetrises by
//! adding the loss with the views swapped; `repro loss byol` evaluates one direction, z1 = p, z2 = z.
//!
//! # Shapes
//! `p`, `z`: [N, D], N ≥ 1.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_pair, l2_normalize, Loss};

pub fn loss(p: &Tensor, z: &Tensor) -> Result<Loss> {
    check_pair("byol", p, z, 1)?;
    let cos = (l2_normalize(&p.to_kind(Kind::Float)) * l2_normalize(&z.to_kind(Kind::Float))).sum_dim_intlist(1, false, Kind::Float);
    let regression = (cos * -2.0 + 2.0).mean(Kind::Float);
    Ok(Loss { total: regression.shallow_clone(), terms: vec![("regression", regression)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    #[test]
    fn golden_value_bounds_and_checks() {
        // tests/fixtures/losses/baselines_golden.py
        let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5)).unwrap();
        assert!((value(&l.total) - 0.23497034269692546).abs() < 1e-6, "{}", value(&l.total));
        let a = fixed(8, 4, 0.0);
        assert!(value(&loss(&a, &(&a * 5.0)).unwrap().total).abs() < 1e-6, "same direction: 0");
        assert!((value(&loss(&a, &(-&a)).unwrap().total) - 4.0).abs() < 1e-6, "opposite: 4");
        assert!(loss(&fixed(8, 4, 0.0), &fixed(8, 5, 0.0)).unwrap_err().to_string().contains("same shape"));
    }

    #[test]
    fn decreases_when_optimised() {
        let (first, last) = descends(30, 1.0, |a, b| loss(a, &b.detach()).unwrap());
        assert!(last < 0.9 * first, "{first} -> {last}");
    }
}
