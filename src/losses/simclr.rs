//! SimCLR's NT-Xent / InfoNCE loss (Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for
//! Contrastive Learning of Visual Representations", ICML 2020, arXiv 2002.05709), as
//! `google-research/simclr` (`objective.py`, `add_contrastive_loss`) and solo-learn
//! (`solo/losses/simclr.py`) compute it: both views L2-normalised, for each of the 2N embeddings the
//! logits are its cosine similarities to the 2N − 1 others divided by the temperature T, and the
//! loss is the cross-entropy of picking the other view of the same image, averaged over all 2N.
//!
//! # Shapes
//! `z1`, `z2`: [N, D] projector outputs, N ≥ 2 (each needs at least one negative).

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_pair, l2_normalize, Loss};
use crate::plan::SimclrParams;

pub fn loss(z1: &Tensor, z2: &Tensor, p: &SimclrParams) -> Result<Loss> {
    check_pair("simclr", z1, z2, 2)?;
    let n = z1.size()[0];
    let z = l2_normalize(&Tensor::cat(&[z1, z2], 0).to_kind(Kind::Float)); // [2N, D]
    let logits = z.matmul(&z.transpose(0, 1)) / p.temperature; // [2N, 2N]
    let self_mask = Tensor::eye(2 * n, (Kind::Bool, z.device()));
    let logits = logits.masked_fill(&self_mask, f64::NEG_INFINITY);
    let idx = Tensor::arange(2 * n, (Kind::Int64, z.device()));
    let positives = (&idx + n).remainder(2 * n); // the other view of the same image
    let log_prob = logits.log_softmax(1, Kind::Float);
    let infonce = -log_prob.gather(1, &positives.unsqueeze(1), false).mean(Kind::Float);
    Ok(Loss { total: infonce.shallow_clone(), terms: vec![("infonce", infonce)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    #[test]
    fn golden_values_from_the_formula() {
        // tests/fixtures/losses/baselines_golden.py
        for (t, want) in [(0.5, 1.6586458123867864), (0.1, 1.3720527178407718)] {
            let l = loss(&fixed(8, 4, 0.0), &fixed(8, 4, 0.5), &SimclrParams { projector: vec![], temperature: t }).unwrap();
            assert!((value(&l.total) - want).abs() < 1e-5, "T {t}: {} vs {want}", value(&l.total));
        }
    }

    #[test]
    fn symmetric_scale_free_and_checked() {
        let p = SimclrParams { projector: vec![], temperature: 0.2 };
        symmetric_and_refuses_one(|a, b| loss(a, b, &p));
        let (a, b) = (fixed(8, 4, 0.0), fixed(8, 4, 2.0));
        let ab = value(&loss(&a, &b, &p).unwrap().total);
        assert!((ab - value(&loss(&(&a * 3.0), &b, &p).unwrap().total)).abs() < 1e-5, "inputs are normalised");
        assert!(loss(&fixed(8, 4, 0.0), &fixed(8, 3, 0.0), &p).unwrap_err().to_string().contains("same shape"));
    }

    #[test]
    fn decreases_when_optimised() {
        let (first, last) = descends(30, 0.5, |a, b| loss(a, b, &SimclrParams { projector: vec![], temperature: 0.5 }).unwrap());
        assert!(last < first - 1e-2, "{first} -> {last}");
    }
}
