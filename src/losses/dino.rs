//! DINO's objective (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
//! ICCV 2021, arXiv 2104.14294), as `facebookresearch/dino` (`main_dino.py`, `DINOLoss`) computes
//! it with its two global crops: the teacher's logits, centred by a running mean and sharpened at
//! temperature τ_t, are the targets of the student's softmax at τ_s; each view's teacher output is
//! the target of the other view's student output, and the two cross-entropies are averaged. After
//! each step the centre moves towards the batch mean of both views' teacher logits with momentum
//! m (`update_center`). The teacher is not differentiated (the method passes it detached).
//! `repro loss dino` evaluates one pair with a zero centre: z1 = student logits, z2 = teacher logits.
//!
//! # Shapes
//! student and teacher logits: [N, K], N ≥ 1; centre: [K].

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{check_pair, Loss};

/// −Σ_k softmax((t − c)/τ_t)_k · log_softmax(s/τ_s)_k, averaged over the batch.
pub fn cross_entropy(student: &Tensor, teacher: &Tensor, center: &Tensor, ts: f64, tt: f64) -> Result<Tensor> {
    check_pair("dino", student, teacher, 1)?;
    let k = student.size()[1];
    if center.size() != [k] {
        bail!("dino: the centre must have K = {k} entries (one per prototype); got shape {:?}", center.size());
    }
    if !(ts > 0.0 && tt > 0.0) {
        bail!("dino: temperatures must be positive; got student {ts}, teacher {tt}");
    }
    let q = ((teacher.to_kind(Kind::Float) - center.to_kind(Kind::Float)) / tt).softmax(-1, Kind::Float);
    let log_p = (student.to_kind(Kind::Float) / ts).log_softmax(-1, Kind::Float);
    Ok((-(q * log_p)).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float))
}

/// Both views: the teacher of each view is the target of the student of the other, averaged.
pub fn loss(s1: &Tensor, s2: &Tensor, t1: &Tensor, t2: &Tensor, center: &Tensor, ts: f64, tt: f64) -> Result<Loss> {
    let total = (cross_entropy(s2, t1, center, ts, tt)? + cross_entropy(s1, t2, center, ts, tt)?) * 0.5;
    Ok(Loss { total: total.shallow_clone(), terms: vec![("cross_entropy", total)] })
}

/// The centre after a step: m·c + (1 − m)·mean of the teacher logits of both views.
pub fn updated_center(center: &Tensor, t1: &Tensor, t2: &Tensor, momentum: f64) -> Tensor {
    let batch = Tensor::cat(&[t1.to_kind(Kind::Float), t2.to_kind(Kind::Float)], 0).mean_dim(0, false, Kind::Float);
    center * momentum + batch * (1.0 - momentum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    /// tests/fixtures/losses/dino_golden.py
    #[test]
    fn golden_values_from_the_formulas() {
        let (s1, s2, t1, t2) = (fixed(8, 6, 0.0), fixed(8, 6, 0.5), fixed(8, 6, 1.0), fixed(8, 6, 1.5));
        let zero = Tensor::zeros([6], tch::kind::FLOAT_CPU);
        let one = cross_entropy(&s1, &t1, &zero, 0.1, 0.04).unwrap();
        assert!((value(&one) - 2.807172274821607).abs() < 2e-6, "{}", value(&one));
        let c = Tensor::from_slice(&[0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5]);
        let l = loss(&s1, &s2, &t1, &t2, &c, 0.1, 0.04).unwrap();
        assert!((value(&l.total) - 3.3126370755445538).abs() < 2e-6, "{}", value(&l.total));
        let got: Vec<f32> = Vec::try_from(updated_center(&c, &t1, &t2, 0.9)).unwrap();
        let want = [-0.0036336770514026288, 0.08329071140964517, 0.1800442238058895, 0.2767329482058995, 0.36355788797605787, 0.4451705136219971];
        for (a, b) in got.iter().zip(want) {
            assert!((*a as f64 - b).abs() < 1e-6, "{got:?}");
        }
        assert!(cross_entropy(&s1, &t1, &Tensor::zeros([5], tch::kind::FLOAT_CPU), 0.1, 0.04).unwrap_err().to_string().contains("K = 6"));
        assert!(cross_entropy(&s1, &fixed(8, 5, 0.0), &zero, 0.1, 0.04).unwrap_err().to_string().contains("same shape"));
    }

    /// The minimum over student logits is the entropy of the sharpened teacher, reached when the
    /// student's softmax equals it (logits τ_s·log q); any other student scores higher.
    #[test]
    fn the_minimum_is_the_sharpened_teachers_entropy() {
        let t = fixed(8, 6, 1.0);
        let zero = Tensor::zeros([6], tch::kind::FLOAT_CPU);
        let q = (&t / 0.04).softmax(-1, Kind::Float);
        let h = value(&(-(&q * q.log())).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float));
        let at_min = value(&cross_entropy(&(q.log() * 0.1), &t, &zero, 0.1, 0.04).unwrap());
        assert!((at_min - h).abs() < 1e-5, "{at_min} vs entropy {h}");
        for s in [0.0, 0.3, 2.0] {
            let other = value(&cross_entropy(&fixed(8, 6, s), &t, &zero, 0.1, 0.04).unwrap());
            assert!(other > h + 1e-3, "{other} vs {h}");
        }
    }
}
