//! ER, the entropy + reconstruction bound on the mutual information of two views (Rodríguez-Gálvez
//! et al., ICML 2023, arXiv 2307.10907), with the estimators of the official code:
//! `apple/ml-entropy-reconstruction` @ f523f11, `entropy_reconstruction.py`. The objective to
//! minimise is reconstruction − entropy.
//!
//! Sphere support (L2-normalised embeddings, k rows of dimension d): a von Mises–Fisher kernel
//! density estimate with concentration κ.
//! - C = −(d/2 − 1)·log κ + (d/2)·log 2π + log I_{d/2−1}(κ) (the vMF log-normaliser), and
//!   −log p̂_i = −logsumexp_j(κ⟨e_i, e_j⟩) + C + log k.
//! - `average` (Joe's estimator): H = mean_i(−log p̂_i); `expectation` (plug-in): H = Σ_i w_i·(−log p̂_i)
//!   with w = softmax(log p̂), as the code's `softmax(-logp) * logp`.
//! - Reconstruction: mean_i(−κ⟨p1_i, p2_i⟩ + C).
//!
//! Discrete support (rows are probability vectors, for DINO/SwAV-style heads), ε = 1e-7:
//! - `expectation`: H = −Σ_c p̄_c log(p̄_c + ε) of the batch-mean p̄; `average`: −mean_c log(p̄_c + ε).
//! - Reconstruction: mean_i ½[−Σ p1 log(p2 + ε) − Σ p2 log(p1 + ε)].
//!
//! Deviation, on purpose: the official code computes `log(scipy.special.iv(d/2 − 1, κ) + 1e-7)`.
//! `iv` underflows to 0 for large d (d = 1000, κ = 10: the constant is off by 1785.8 nats, see
//! tests/fixtures/losses/amdim_er_golden.py), so the reported entropy drifts by that constant. Here
//! log I_v(κ) is computed in log space from its power series ([`log_bessel_i`]), exact for every d.
//! The constant does not change gradients; it changes the logged values only.
//!
//! The two-view objective of `repro loss er`: reconstruction(z1, z2) − ½[H(z1) + H(z2)].

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{check_pair, Loss};
use crate::plan::ErReduction;

const EPS: f64 = 1e-7;

/// log I_v(x), the modified Bessel function of the first kind, for v ≥ 0 and x > 0, from
/// I_v(x) = Σ_k (x/2)^{2k+v} / (k! Γ(k+v+1)) summed in log space. The terms rise until
/// k* = (√(v² + x²) − v)/2 and then fall faster than geometrically; the sum stops 50 nats below the
/// largest term, so it neither overflows nor underflows for any order (d in the thousands).
pub fn log_bessel_i(v: f64, x: f64) -> f64 {
    let lx = (x / 2.0).ln();
    let term = |k: f64| (2.0 * k + v) * lx - libm::lgamma(k + 1.0) - libm::lgamma(k + v + 1.0);
    let peak = ((v * v + x * x).sqrt() - v) / 2.0;
    let top = term(peak.floor()).max(term(peak.ceil()));
    let mut sum = 0.0;
    let mut k = 0.0;
    loop {
        let t = term(k);
        sum += (t - top).exp();
        if k > peak && t < top - 50.0 {
            break;
        }
        k += 1.0;
    }
    top + sum.ln()
}

/// log of the vMF normaliser's inverse on S^{d−1}: −(d/2 − 1)·log κ + (d/2)·log 2π + log I_{d/2−1}(κ).
pub fn vmf_log_norm(d: i64, kappa: f64) -> f64 {
    let h = d as f64 / 2.0;
    -(h - 1.0) * kappa.ln() + h * (2.0 * std::f64::consts::PI).ln() + log_bessel_i(h - 1.0, kappa)
}

/// Entropy of unit rows `e` [k, d] under the vMF kernel density estimate.
pub fn entropy_sphere(e: &Tensor, kappa: f64, reduction: ErReduction) -> Tensor {
    let size = e.size();
    let (k, d) = (size[0], size[1]);
    let c = vmf_log_norm(d, kappa) + (k as f64).ln();
    let neg_log_p = -(e.matmul(&e.transpose(0, 1)) * kappa).logsumexp([1], false) + c; // [k]
    match reduction {
        ErReduction::Average => neg_log_p.mean(Kind::Float),
        ErReduction::Expectation => (neg_log_p.neg().softmax(0, Kind::Float) * &neg_log_p).sum(Kind::Float),
    }
}

/// vMF reconstruction error of unit rows `p1` from `p2` (both [k, d]).
pub fn reconstruction_sphere(p1: &Tensor, p2: &Tensor, kappa: f64) -> Tensor {
    let c = vmf_log_norm(p1.size()[1], kappa);
    ((p1 * p2).sum_dim_intlist(1, false, Kind::Float) * -kappa + c).mean(Kind::Float)
}

/// Entropy of the batch-mean distribution of probability rows `p` [k, K].
pub fn entropy_discrete(p: &Tensor, reduction: ErReduction) -> Tensor {
    let mean = p.mean_dim(&[0i64][..], false, Kind::Float);
    match reduction {
        ErReduction::Expectation => -(&mean * (&mean + EPS).log()).sum(Kind::Float),
        ErReduction::Average => -(&mean + EPS).log().mean(Kind::Float),
    }
}

/// Symmetric cross-entropy of probability rows.
pub fn reconstruction_discrete(p1: &Tensor, p2: &Tensor) -> Tensor {
    let ce = |a: &Tensor, b: &Tensor| -(a * (b + EPS).log()).sum_dim_intlist(1, false, Kind::Float);
    ((ce(p1, p2) + ce(p2, p1)) * 0.5).mean(Kind::Float)
}

/// Support of the embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Support {
    /// Unit rows, vMF terms with this κ.
    Sphere { kappa: f64 },
    /// Probability rows.
    Discrete,
}

/// The bound's parts for a reconstruction pair and the embeddings whose entropy is raised:
/// total = reconstruction − mean of the entropies. Terms `reconstruction`, `entropy`.
pub fn objective(recon: &[(&Tensor, &Tensor)], entropy_of: &[&Tensor], support: Support, reduction: ErReduction) -> Loss {
    let mean = |v: Vec<Tensor>| {
        let n = v.len() as f64;
        v.into_iter().reduce(|a, b| a + b).map(|s| s / n)
    };
    let (rec, ent): (Vec<Tensor>, Vec<Tensor>) = match support {
        Support::Sphere { kappa } => (
            recon.iter().map(|(a, b)| reconstruction_sphere(a, b, kappa)).collect(),
            entropy_of.iter().map(|e| entropy_sphere(e, kappa, reduction)).collect(),
        ),
        Support::Discrete => (
            recon.iter().map(|(a, b)| reconstruction_discrete(a, b)).collect(),
            entropy_of.iter().map(|e| entropy_discrete(e, reduction)).collect(),
        ),
    };
    let zero = || Tensor::zeros([], tch::kind::FLOAT_CPU);
    let (rec, ent) = (mean(rec).unwrap_or_else(zero), mean(ent).unwrap_or_else(zero));
    Loss { total: &rec - &ent, terms: vec![("reconstruction", rec), ("entropy", ent)] }
}

/// `repro loss er`: reconstruction(z1, z2) − ½[H(z1) + H(z2)] on given rows. Sphere rows are
/// L2-normalised first (as the method's projector output is); discrete rows must be probabilities.
pub fn loss(z1: &Tensor, z2: &Tensor, support: Support, reduction: ErReduction) -> Result<Loss> {
    check_pair("er", z1, z2, 2)?;
    let (a, b) = match support {
        Support::Sphere { .. } => {
            if z1.size()[1] < 2 {
                bail!("er: sphere support needs D >= 2 (the vMF density on S^(D-1)); got D = {}", z1.size()[1]);
            }
            (super::l2_normalize(z1), super::l2_normalize(z2))
        }
        Support::Discrete => {
            for (name, z) in [("z1", z1), ("z2", z2)] {
                let min = z.min().double_value(&[]);
                let sums = z.sum_dim_intlist(1, false, Kind::Double);
                let off = (sums - 1.0).abs().max().double_value(&[]);
                if min < 0.0 || off > 1e-3 {
                    bail!("er: discrete support needs probability rows (>= 0, summing to 1); {name} has a minimum {min} and a row sum off by {off}");
                }
            }
            (z1.shallow_clone(), z2.shallow_clone())
        }
    };
    Ok(objective(&[(&a, &b)], &[&a, &b], support, reduction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::{fixed2, symmetric_and_refuses_one, term, value};

    // Golden values: tests/fixtures/losses/amdim_er_golden.py (numpy float64, log I from mpmath).
    #[test]
    fn log_bessel_matches_mpmath_from_small_to_huge_orders() {
        let table = [
            (0.0, 1.0, 0.2359143585),
            (2.0, 10.0, 7.732596714),
            (2.5, 0.1, -8.689590057),
            (49.0, 10.0, -65.20570634),
            (499.0, 10.0, -1801.956335),
            (2047.0, 10.0, -10269.79474),
            (63.0, 200.0, 186.5659656),
            (1023.0, 50.0, -2777.760274),
            (4095.0, 10.0, -23379.67594),
        ];
        for (v, x, want) in table {
            let got = log_bessel_i(v, x);
            assert!((got - want).abs() < 1e-8 * want.abs().max(1.0), "log I_{v}({x}) = {got}, want {want}");
        }
        // d = 1000, κ = 10: the exact constant (the official code's underflows to log 1e-7).
        assert!((vmf_log_norm(1000, 10.0) - -2032.007763).abs() < 1e-5);
    }

    #[test]
    fn estimators_match_the_independent_numpy_oracle() {
        let (z1, z2) = (fixed2(8, 6, 0.0), fixed2(8, 6, 2.0));
        let close = |got: f64, want: f64| assert!((got - want).abs() < 2e-5 * want.abs().max(1.0), "{got} vs {want}");
        close(value(&entropy_sphere(&z1, 10.0, ErReduction::Expectation)), 0.6152926425);
        close(value(&entropy_sphere(&z1, 10.0, ErReduction::Average)), 0.6298882742);
        close(value(&reconstruction_sphere(&z1, &z2, 10.0)), 13.30995725);
        close(value(&entropy_sphere(&z1, 3.0, ErReduction::Expectation)), 2.646384242);
        close(value(&entropy_sphere(&z1, 3.0, ErReduction::Average)), 2.681555516);
        close(value(&reconstruction_sphere(&z1, &z2, 3.0)), 5.525876624);
        let (q1, q2) = ((fixed2(8, 6, 0.0) * 3.0).softmax(1, Kind::Float), (fixed2(8, 6, 2.0) * 3.0).softmax(1, Kind::Float));
        close(value(&entropy_discrete(&q1, ErReduction::Expectation)), 1.749291258);
        close(value(&entropy_discrete(&q1, ErReduction::Average)), 1.830034242);
        close(value(&reconstruction_discrete(&q1, &q2)), 2.961175582);
        let sphere = Support::Sphere { kappa: 10.0 };
        close(value(&loss(&z1, &z2, sphere, ErReduction::Expectation).unwrap().total), 12.71492364);
        close(value(&loss(&z1, &z2, sphere, ErReduction::Average).unwrap().total), 12.68913541);
        close(value(&loss(&q1, &q2, Support::Discrete, ErReduction::Expectation).unwrap().total), 1.197979644);
        let l = loss(&q1, &q2, Support::Discrete, ErReduction::Average).unwrap();
        close(value(&l.total), 1.142724764);
        close(term(&l, "reconstruction") - term(&l, "entropy"), 1.142724764);
    }

    #[test]
    fn properties() {
        symmetric_and_refuses_one(|a, b| loss(a, b, Support::Sphere { kappa: 10.0 }, ErReduction::Expectation));
        // Discrete support refuses rows that are not probabilities.
        let e = loss(&fixed2(4, 3, 0.0), &fixed2(4, 3, 1.0), Support::Discrete, ErReduction::Average).unwrap_err().to_string();
        assert!(e.contains("probability rows"), "{e}");
        // Spread-out embeddings have more entropy than collapsed ones; matching views reconstruct better.
        let spread = fixed2(16, 8, 0.0);
        let collapsed = super::super::l2_normalize(&(spread.narrow(0, 0, 1).repeat([16, 1]) + fixed2(16, 8, 1.0) * 0.01));
        assert!(value(&entropy_sphere(&spread, 10.0, ErReduction::Average)) > value(&entropy_sphere(&collapsed, 10.0, ErReduction::Average)));
        assert!(value(&reconstruction_sphere(&spread, &spread, 10.0)) < value(&reconstruction_sphere(&spread, &fixed2(16, 8, 3.0), 10.0)));
        // Training a map on the objective lowers it.
        let (first, last) = crate::losses::testing::descends(30, 0.05, |a, b| loss(a, b, Support::Sphere { kappa: 10.0 }, ErReduction::Expectation).unwrap());
        assert!(last < first, "{first} -> {last}");
    }
}
