//! CorInfoMax loss (Ozsoy, Hamdan, Arik, Yuret, Erdogan, "Self-Supervised Learning with an Information
//! Maximization Criterion", NeurIPS 2022, arXiv 2209.07999), as the official code computes it:
//! `serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/loss.py` (`CovarianceLoss`) and
//! `cifars-tiny/pretrain_base.py`.
//!
//! Per branch b ∈ {1, 2}, in float64, with state (μ_b, R_b) started at (0, R_ini·I):
//! - μ_new = la_mu·μ_old + (1 − la_mu)·mean(z_b)
//! - R_upd = (z_b − μ_new)ᵀ(z_b − μ_new) / N        (centred on the EMA mean; divides by N)
//! - R_new = la_R·R_old + (1 − la_R)·R_upd
//!
//! covariance = −[logdet(R1_new + εI) + logdet(R2_new + εI)] / D, invariance = mean((z1 − z2)²) over
//! N·D elements, total = α·invariance + covariance. Gradients flow only through the current batch:
//! the stored state is detached after each step. No known deviation from the reference code.
//!
//! # Shapes
//! `z1`, `z2`: [N, D] projector outputs (L2-normalised by the method when `normalize` is on).

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::plan::CorInfoMaxParams;

/// Running mean and covariance of one branch (float64, detached).
#[derive(Debug)]
pub struct BranchState {
    pub mu: Tensor,
    pub r: Tensor,
}

impl BranchState {
    /// μ = 0, R = R_ini·I, on the device of the embeddings.
    pub fn new(dim: i64, r_ini: f64, device: tch::Device) -> Self {
        Self {
            mu: Tensor::zeros([dim], (Kind::Double, device)),
            r: Tensor::eye(dim, (Kind::Double, device)) * r_ini,
        }
    }
}

/// The loss, its named terms and the branch states to keep for the next step.
#[derive(Debug)]
pub struct Output {
    pub total: Tensor,
    pub invariance: Tensor,
    pub covariance: Tensor,
    pub next: [BranchState; 2],
}

/// Checks what tch would otherwise panic on: ranks, matching shapes, batch size, state dims.
pub fn check_inputs(z1: &Tensor, z2: &Tensor, states: &[BranchState; 2]) -> Result<()> {
    let (s1, s2) = (z1.size(), z2.size());
    if s1.len() != 2 || s2.len() != 2 {
        bail!("corinfomax: embeddings must be 2-D [N, D]; got z1 {s1:?}, z2 {s2:?}");
    }
    if s1 != s2 {
        bail!("corinfomax: z1 and z2 must have the same shape; got {s1:?} and {s2:?}");
    }
    if s1[0] < 2 {
        bail!("corinfomax: batch size must be at least 2 for a covariance estimate; got N = {}", s1[0]);
    }
    for (b, st) in states.iter().enumerate() {
        if st.r.size() != [s1[1], s1[1]] || st.mu.size() != [s1[1]] {
            bail!(
                "corinfomax: branch {} state is {:?}/{:?} but embeddings have D = {}",
                b + 1,
                st.mu.size(),
                st.r.size(),
                s1[1]
            );
        }
    }
    Ok(())
}

/// One branch's covariance update and −logdet(R_new + εI)/D.
fn branch(z: &Tensor, st: &BranchState, p: &CorInfoMaxParams) -> (Tensor, BranchState) {
    let (n, d) = (z.size()[0], z.size()[1]);
    let z = z.to_kind(Kind::Double);
    let mu = &st.mu * p.la_mu + z.mean_dim(0, false, Kind::Double) * (1.0 - p.la_mu); // [D]
    let zc = &z - &mu; // [N, D]
    let r_upd = zc.transpose(0, 1).matmul(&zc) / (n as f64); // [D, D]
    let r = &st.r * p.la_r + r_upd * (1.0 - p.la_r);
    let eye = Tensor::eye(d, (Kind::Double, z.device()));
    let term = -(&r + eye * p.eps).logdet() / (d as f64);
    (term, BranchState { mu: mu.detach(), r: r.detach() })
}

/// The CorInfoMax objective for one step. Call [`check_inputs`] first at a user boundary.
pub fn loss(z1: &Tensor, z2: &Tensor, states: &[BranchState; 2], p: &CorInfoMaxParams) -> Output {
    let invariance = (z1 - z2).square().mean(Kind::Float);
    let (c1, n1) = branch(z1, &states[0], p);
    let (c2, n2) = branch(z2, &states[1], p);
    let covariance = (c1 + c2).to_kind(Kind::Float);
    let total = &invariance * p.alpha + &covariance;
    Output { total, invariance, covariance, next: [n1, n2] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> CorInfoMaxParams {
        CorInfoMaxParams { projector: vec![4], alpha: 250.0, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1e-8, normalize: true }
    }

    /// z[i][j] = sin(0.7·i + 1.3·j + s); rows L2-normalised. Deterministic inputs shared with
    /// tests/fixtures/losses/corinfomax_golden.py, which computed the golden numbers below.
    pub(crate) fn fixed(n: i64, d: i64, s: f64) -> Tensor {
        let v: Vec<f64> = (0..n).flat_map(|i| (0..d).map(move |j| (0.7 * i as f64 + 1.3 * j as f64 + s).sin())).collect();
        let z = Tensor::from_slice(&v).reshape([n, d]);
        let norm = z.square().sum_dim_intlist(1, true, Kind::Double).sqrt();
        (z / norm).to_kind(Kind::Float)
    }

    #[test]
    fn golden_values_from_the_formula() {
        // Two consecutive steps from the initial state, N = 8, D = 4, so the EMA path is covered.
        let golden = [(5.336220994099906, 0.05874258623797543, 20.021867553593765), (9.952847717961372, 0.05874258623797543, 24.63849427745523)];
        let p = params();
        let (z1, z2) = (fixed(8, 4, 0.0), fixed(8, 4, 0.5));
        let mut st = [BranchState::new(4, 1.0, tch::Device::Cpu), BranchState::new(4, 1.0, tch::Device::Cpu)];
        for (cov, inv, total) in golden {
            check_inputs(&z1, &z2, &st).unwrap();
            let out = loss(&z1, &z2, &st, &p);
            assert!((f64::try_from(&out.covariance).unwrap() - cov).abs() < 1e-6);
            assert!((f64::try_from(&out.invariance).unwrap() - inv).abs() < 1e-6);
            assert!((f64::try_from(&out.total).unwrap() - total).abs() < 1e-4);
            st = out.next;
        }
    }

    #[test]
    fn symmetric_in_the_two_views() {
        let p = params();
        let (z1, z2) = (fixed(16, 6, 0.0), fixed(16, 6, 2.0));
        let s = || [BranchState::new(6, 1.0, tch::Device::Cpu), BranchState::new(6, 1.0, tch::Device::Cpu)];
        let a = f64::try_from(loss(&z1, &z2, &s(), &p).total).unwrap();
        let b = f64::try_from(loss(&z2, &z1, &s(), &p).total).unwrap();
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let st = [BranchState::new(4, 1.0, tch::Device::Cpu), BranchState::new(4, 1.0, tch::Device::Cpu)];
        let e = check_inputs(&fixed(1, 4, 0.0), &fixed(1, 4, 0.0), &st).unwrap_err();
        assert!(e.to_string().contains("N = 1"), "{e}");
        let e = check_inputs(&fixed(8, 4, 0.0), &fixed(8, 3, 0.0), &st).unwrap_err();
        assert!(e.to_string().contains("same shape"), "{e}");
        let e = check_inputs(&fixed(8, 5, 0.0), &fixed(8, 5, 0.0), &st).unwrap_err();
        assert!(e.to_string().contains("D = 5"), "{e}");
    }

    #[test]
    fn loss_decreases_when_optimised() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let p = params();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().randn("w", &[32, 8], 0.0, 1.0);
        let x1 = Tensor::randn([32, 32], tch::kind::FLOAT_CPU);
        let x2 = &x1 + Tensor::randn([32, 32], tch::kind::FLOAT_CPU) * 0.1;
        let mut opt = tch::nn::OptimizerConfig::build(tch::nn::Sgd::default(), &vs, 0.01).unwrap();
        let norm = |z: Tensor| &z / z.square().sum_dim_intlist(1, true, Kind::Float).sqrt();
        let mut st = [BranchState::new(8, 1.0, tch::Device::Cpu), BranchState::new(8, 1.0, tch::Device::Cpu)];
        // The first step mixes in the R_ini·I prior; compare from the second step on.
        let mut first = None;
        let mut last = 0.0;
        for step in 0..30 {
            let out = loss(&norm(x1.matmul(&w)), &norm(x2.matmul(&w)), &st, &p);
            last = f64::try_from(&out.total).unwrap();
            if step == 1 {
                first = Some(last);
            }
            opt.backward_step(&out.total);
            st = out.next;
        }
        assert!(last < first.unwrap() - 1e-3, "{first:?} -> {last}");
    }
}
