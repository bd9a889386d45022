//! AMDIM's multi-scale InfoNCE, as the official code computes it: `Philip-Bachman/amdim-public`
//! @ 8754ae1, `costs.py` (`LossMultiNCE`, `NCE_MI_MULTI`, `_model_scores`).
//!
//! One term T(src → trg) for sources [B, D] (one vector per image) and targets [B, D, L] (L
//! locations per image):
//! - raw scores s[i, j, l] = ⟨src_i, trg_{j,l}⟩ / √D, in float32;
//! - regulariser `score_reg`·mean(s²) over all B·B·L scores, before clipping (0.05 officially);
//! - soft clip s ← c·tanh(s / c) (`tclip`, 20 in train.py; the class default 10 is overridden);
//! - positives s[i, i, l]; the negatives of image i are every location of every other image
//!   (other locations of the same image are not negatives);
//! - T = −mean_{i,l} [ s[i,i,l] − log(exp s[i,i,l] + Σ_{j≠i, l′} exp s[i,j,l′]) ].
//!
//! The loss sums three terms, each the mean of both directions: global → 5×5 map (1t5), global →
//! 7×7 map (1t7), and one randomly chosen 5×5 location per image → the other view's 5×5 map (5t5);
//! plus ½·(sum of the six regularisers). The official code shifts by the row maximum before
//! exponentiating; log-sum-exp here is the same number.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::Loss;

/// One view's encoder outputs, already projected to D channels.
pub struct Views<'a> {
    /// [B, D]
    pub r1: &'a Tensor,
    /// [B, D, 5, 5]
    pub r5: &'a Tensor,
    /// [B, D, 7, 7]
    pub r7: &'a Tensor,
    /// [B] int64: the 5×5 location (y·5 + x) each image's 5t5 source is taken from.
    pub source5: &'a Tensor,
}

/// Checks shapes up front (tch would panic deep inside the matmuls).
pub fn check(a: &Views, b: &Views) -> Result<()> {
    for (name, v) in [("view 1", a), ("view 2", b)] {
        let s1 = v.r1.size();
        if s1.len() != 2 {
            bail!("amdim: {name} r1 must be [B, D]; got {s1:?}");
        }
        let (n, d) = (s1[0], s1[1]);
        if n < 2 {
            bail!("amdim: batch size must be at least 2 (the negatives are the other images); got N = {n}");
        }
        for (key, t, side) in [("r5", v.r5, 5), ("r7", v.r7, 7)] {
            if t.size() != [n, d, side, side] {
                bail!("amdim: {name} {key} must be [{n}, {d}, {side}, {side}] to match r1 [{n}, {d}]; got {:?}", t.size());
            }
        }
        if v.source5.size() != [n] {
            bail!("amdim: {name} needs one 5x5 source location per image ([{n}]); got {:?}", v.source5.size());
        }
    }
    if a.r1.size() != b.r1.size() {
        bail!("amdim: the two views must have the same shapes; got r1 {:?} and {:?}", a.r1.size(), b.r1.size());
    }
    Ok(())
}

/// T(src → trg) and its regulariser. `src`: [B, D]; `trg`: [B, D, H, W].
fn term(src: &Tensor, trg: &Tensor, tclip: f64) -> (Tensor, Tensor) {
    let size = trg.size();
    let (b, d) = (size[0], size[1]);
    let l = size[2] * size[3];
    let src = src.to_kind(Kind::Float);
    let trg = trg.to_kind(Kind::Float).reshape([b, d, l]).permute([1, 0, 2]).reshape([d, b * l]);
    let raw = src.matmul(&trg).reshape([b, b, l]) / (d as f64).sqrt();
    let reg = raw.square().mean(Kind::Float);
    let s = (&raw / tclip).tanh() * tclip;
    let pos = s.diagonal(0, 0, 1).transpose(0, 1); // [B, L]
    let same = Tensor::eye(b, (Kind::Bool, s.device())).unsqueeze(2).expand([b, b, l], false);
    let neg = s.masked_fill(&same, f64::NEG_INFINITY).reshape([b, b * l]).logsumexp([1], true); // [B, 1]
    let log_den = Tensor::stack(&[pos.shallow_clone(), neg.expand([b, l], false)], 0).logsumexp([0], false);
    (-(pos - log_den).mean(Kind::Float), reg)
}

/// The 5×5 vector of each image at its `source5` location: [B, D].
fn at_location(r5: &Tensor, idx: &Tensor) -> Tensor {
    let size = r5.size();
    let (b, d) = (size[0], size[1]);
    let flat = r5.reshape([b, d, 25]);
    flat.gather(2, &idx.reshape([b, 1, 1]).expand([b, d, 1], false), false).squeeze_dim(2)
}

/// The AMDIM loss of two views; terms `nce_1t5`, `nce_1t7`, `nce_5t5`, `score_reg`.
pub fn loss(a: &Views, b: &Views, tclip: f64, score_reg: f64) -> Result<Loss> {
    check(a, b)?;
    let (s_a, s_b) = (at_location(a.r5, a.source5), at_location(b.r5, b.source5));
    let pairs = [(a.r1, b.r5), (b.r1, a.r5), (a.r1, b.r7), (b.r1, a.r7), (&s_a, b.r5), (&s_b, a.r5)];
    let terms: Vec<(Tensor, Tensor)> = pairs.iter().map(|(src, trg)| term(src, trg, tclip)).collect();
    let half = |i: usize| (&terms[i].0 + &terms[i + 1].0) * 0.5;
    let (t15, t17, t55) = (half(0), half(2), half(4));
    let reg = terms.iter().map(|(_, r)| r.shallow_clone()).reduce(|x, y| x + y).map(|r| r * (0.5 * score_reg)).unwrap_or_else(|| Tensor::zeros([], (Kind::Float, a.r1.device())));
    let total = &t15 + &t17 + &t55 + &reg;
    Ok(Loss { total, terms: vec![("nce_1t5", t15), ("nce_1t7", t17), ("nce_5t5", t55), ("score_reg", reg)] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::{term as named, value};

    /// The maps of tests/fixtures/losses/amdim_er_golden.py for a view with offset `s`.
    fn maps(s: f64) -> (Tensor, Tensor, Tensor) {
        let (b, d) = (3i64, 4i64);
        let r1: Vec<f64> = (0..b).flat_map(|i| (0..d).map(move |c| 2.0 * (0.7 * i as f64 + 1.3 * c as f64 + s).sin())).collect();
        let map = |side: i64, f: &dyn Fn(f64, f64, f64) -> f64| -> Tensor {
            let v: Vec<f64> = (0..b)
                .flat_map(|i| (0..d).flat_map(move |c| (0..side * side).map(move |l| (i as f64, c as f64, l as f64))))
                .map(|(i, c, l)| f(i, c, l))
                .collect();
            Tensor::from_slice(&v).reshape([b, d, side, side]).to_kind(Kind::Float)
        };
        let r5 = map(5, &|i, c, l| 2.0 * (0.37 * i * (c + 1.0) + 0.11 * l + 1.1 * c + s).sin());
        let r7 = map(7, &|i, c, l| 2.0 * (0.29 * i * (c + 1.0) + 0.07 * l + 0.9 * c + s).cos());
        (Tensor::from_slice(&r1).reshape([b, d]).to_kind(Kind::Float), r5, r7)
    }

    #[test]
    fn matches_the_independent_numpy_oracle() {
        // Golden values: tests/fixtures/losses/amdim_er_golden.py (float64 numpy from costs.py's formulas).
        let (a1, a5, a7) = maps(0.0);
        let (b1, b5, b7) = maps(2.0);
        let (i1, i2) = (Tensor::from_slice(&[3i64, 17, 24]), Tensor::from_slice(&[0i64, 12, 7]));
        let va = Views { r1: &a1, r5: &a5, r7: &a7, source5: &i1 };
        let vb = Views { r1: &b1, r5: &b5, r7: &b7, source5: &i2 };
        for (tclip, want) in [(20.0, [5.882033133, 6.144520158, 5.118919235, 1.044794112, 18.19026664]), (1.5, [4.559448462, 4.970819872, 4.294019513, 1.044794112, 14.86908196])] {
            let l = loss(&va, &vb, tclip, 0.05).unwrap();
            let got = [named(&l, "nce_1t5"), named(&l, "nce_1t7"), named(&l, "nce_5t5"), named(&l, "score_reg"), value(&l.total)];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 2e-5 * w.abs().max(1.0), "tclip {tclip}: {got:?} vs {want:?}");
            }
        }
        // Swapping the views (with their sources) gives the same loss: every term is symmetrised.
        let ab = value(&loss(&va, &vb, 20.0, 0.05).unwrap().total);
        let ba = value(&loss(&vb, &va, 20.0, 0.05).unwrap().total);
        assert!((ab - ba).abs() < 1e-5, "{ab} vs {ba}");
    }

    #[test]
    fn refuses_bad_shapes_and_a_batch_of_one() {
        let (a1, a5, a7) = maps(0.0);
        let i = Tensor::from_slice(&[0i64, 1, 2]);
        let v = Views { r1: &a1, r5: &a5, r7: &a7, source5: &i };
        let wrong7 = a7.narrow(2, 0, 5);
        let bad = Views { r7: &wrong7, ..Views { r1: &a1, r5: &a5, r7: &a7, source5: &i } };
        let e = loss(&v, &bad, 20.0, 0.05).unwrap_err().to_string();
        assert!(e.contains("r7 must be [3, 4, 7, 7]"), "{e}");
        let (o1, o5, o7, oi) = (a1.narrow(0, 0, 1), a5.narrow(0, 0, 1), a7.narrow(0, 0, 1), i.narrow(0, 0, 1));
        let one = Views { r1: &o1, r5: &o5, r7: &o7, source5: &oi };
        let e = loss(&one, &one, 20.0, 0.05).unwrap_err().to_string();
        assert!(e.contains("N = 1"), "{e}");
    }

    #[test]
    fn matching_views_score_better_than_unrelated_ones() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let r5 = Tensor::randn([8, 16, 5, 5], tch::kind::FLOAT_CPU);
        let r7 = Tensor::randn([8, 16, 7, 7], tch::kind::FLOAT_CPU);
        let r1 = r5.mean_dim(&[2i64, 3][..], false, Kind::Float) * 5.0;
        let i = Tensor::zeros([8], (Kind::Int64, tch::Device::Cpu));
        let v = Views { r1: &r1, r5: &r5, r7: &r7, source5: &i };
        let same = value(&loss(&v, &v, 20.0, 0.0).unwrap().total);
        let other5 = r5.roll([1], [0]);
        let w = Views { r5: &other5, ..Views { r1: &r1, r5: &r5, r7: &r7, source5: &i } };
        let shuffled = value(&loss(&v, &w, 20.0, 0.0).unwrap().total);
        assert!(same < shuffled, "{same} vs {shuffled}");
    }
}
