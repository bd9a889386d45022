//! The masked auto-encoders' losses: MAE's reconstruction and the regularisers U-MAE and M-MAE add
//! on the cls features.
//! - [`patchify`]: images [N, C, H, W] → patches [N, L, p²·C] with the pixels of a patch in (p, q, c)
//!   order and the patches row by row (`facebookresearch/mae` @ efb2a806 `models_mae.py`
//!   `patchify`: `einsum('nchpwq->nhwpqc')`).
//! - [`reconstruction`] (MAE `forward_loss`): with `norm_pix`, each target patch becomes
//!   (t − mean)/sqrt(var + 1e-6), var unbiased (torch's `var(dim=-1)`); the squared error is averaged
//!   over a patch's values, then over the removed patches only (mask 1 = removed).
//! - [`uniformity`] (U-MAE, `zhangq327/U-MAE` @ 6a5b6dc0 `loss_func.py` `uniformity_loss`): rows
//!   L2-normalised, the mean over all N² entries (diagonal included) of the squared cosine
//!   similarities.
//! - [`tcr`] (M-MAE, `yifanzhang-pro/M-MAE` `loss_func.py` `uniformity_loss_TCR`):
//!   −log det(I_d + (μ/d)·ZᵀZ) on the row-L2-normalised Z [N, d]. The code's choices, kept: it
//!   divides by d = `sim.shape[0]` of the d×d matrix (its comment writes μ/m·ZZᵀ), there is no ε and
//!   no ½, centring (ZᵀJZ, J = I − 11ᵀ/N) is a flag (off in the shipped script; see
//!   `plan::methods::mmae`). Computed in float64 here (the code runs it under autocast, where
//!   `torch.logdet` is float32).
//!
//! `repro loss mae` reads the patches as rows: z1 the predictions, z2 the target pixels, both
//! [N·L, p²·C], with the removed rows as `masked` (absent: every row); `repro loss umae | mmae`
//! read the cls features [N, d] from z1 and give λ·regulariser (the reconstruction is `repro loss
//! mae`'s).

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::{l2_normalize, Loss};

/// `imgs` [N, C, H, W] → [N, (H/p)·(W/p), p·p·C].
pub fn patchify(imgs: &Tensor, p: i64) -> Result<Tensor> {
    let s = imgs.size();
    if s.len() != 4 || p < 1 || s[2] % p != 0 || s[3] % p != 0 {
        bail!("patchify: expected images [N, C, H, W] with H and W multiples of the patch side {p}, got {s:?}");
    }
    let (n, c, h, w) = (s[0], s[1], s[2] / p, s[3] / p);
    Ok(imgs.reshape([n, c, h, p, w, p]).permute([0, 2, 4, 3, 5, 1]).reshape([n, h * w, p * p * c]))
}

/// MAE's loss: `pred` and `target` [N, L, P] (or rows [R, P] with `mask` [R]), `mask` [N, L]
/// with 1 on removed patches. The mean over removed patches of each patch's mean squared error.
pub fn reconstruction(pred: &Tensor, target: &Tensor, mask: &Tensor, norm_pix: bool) -> Result<Tensor> {
    let (sp, st, sm) = (pred.size(), target.size(), mask.size());
    if sp != st || sp.len() < 2 || sm[..] != sp[..sp.len() - 1] {
        bail!("mae: predictions {sp:?} and targets {st:?} must have one shape [.., L, P] and the mask that shape without P; got mask {sm:?}");
    }
    if sp[sp.len() - 1] < 2 && norm_pix {
        bail!("mae: norm_pix needs at least 2 values per patch; got P = {}", sp[sp.len() - 1]);
    }
    let (pred, mut target, mask) = (pred.to_kind(Kind::Float), target.to_kind(Kind::Float), mask.to_kind(Kind::Float));
    if norm_pix {
        let mean = target.mean_dim(-1, true, Kind::Float);
        let var = target.var_dim(-1, true, true);
        target = (target - mean) / (var + 1e-6).sqrt();
    }
    let per_patch = (pred - target).square().mean_dim(-1, false, Kind::Float);
    let removed = mask.sum(Kind::Float);
    if removed.double_value(&[]) <= 0.0 {
        bail!("mae: the mask removes no patch (the loss averages over removed patches)");
    }
    Ok((per_patch * &mask).sum(Kind::Float) / removed)
}

/// U-MAE's uniformity: mean over all N² pairs of cos²(z_i, z_j) (diagonal included).
pub fn uniformity(z: &Tensor) -> Result<Tensor> {
    check_features("umae", z)?;
    let z = l2_normalize(&z.to_kind(Kind::Float));
    Ok(z.matmul(&z.transpose(0, 1)).square().mean(Kind::Float))
}

/// M-MAE's total coding rate term: −log det(I + (μ/d)·ZᵀZ), Z row-normalised (centred first with
/// `centering`), in float64; returned as float32.
pub fn tcr(z: &Tensor, mu: f64, centering: bool) -> Result<Tensor> {
    check_features("mmae", z)?;
    let z = l2_normalize(&z.to_kind(Kind::Double));
    let z = if centering { &z - z.mean_dim(0, true, Kind::Double) } else { z };
    let d = z.size()[1];
    let sim = z.transpose(0, 1).matmul(&z);
    let m = Tensor::eye(d, (Kind::Double, z.device())) + sim * (mu / d as f64);
    Ok((-m.logdet()).to_kind(Kind::Float))
}

fn check_features(method: &str, z: &Tensor) -> Result<()> {
    let s = z.size();
    if s.len() != 2 || s[0] < 2 || s[1] < 1 {
        bail!("{method}: cls features must be [N, d] with N ≥ 2 and d ≥ 1; got {s:?}");
    }
    Ok(())
}

/// λ·regulariser with its raw value as the term `name` (`repro loss umae | mmae`).
pub fn weighted(name: &'static str, reg: Tensor, lambda: f64) -> Loss {
    Loss { total: &reg * lambda, terms: vec![(name, reg)] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::testing::*;

    /// pred[r][j] = sin(0.3·r + 0.7·j), target[r][j] = cos(0.5·r − 0.2·j), 6 rows of 8 values:
    /// tests/fixtures/losses/mae_golden.py.
    fn rows() -> (Tensor, Tensor) {
        let f = |g: &dyn Fn(f64, f64) -> f64| {
            let v: Vec<f32> = (0..6).flat_map(|r| (0..8).map(move |j| (r as f64, j as f64))).map(|(r, j)| g(r, j) as f32).collect();
            Tensor::from_slice(&v).reshape([6, 8])
        };
        (f(&|r, j| (0.3 * r + 0.7 * j).sin()), f(&|r, j| (0.5 * r - 0.2 * j).cos()))
    }

    #[test]
    fn golden_values_from_the_formulas() {
        // tests/fixtures/losses/mae_golden.py
        let (pred, target) = rows();
        let mask = Tensor::from_slice(&[1f32, 0., 1., 1., 0., 1.]);
        let norm = value(&reconstruction(&pred, &target, &mask, true).unwrap());
        let raw = value(&reconstruction(&pred, &target, &mask, false).unwrap());
        assert!((norm - 1.8994348616141787).abs() < 1e-5, "{norm}");
        assert!((raw - 1.15915380732209).abs() < 1e-5, "{raw}");
        let z = fixed2(16, 6, 0.0);
        assert!((value(&uniformity(&z).unwrap()) - 0.17222163572628724).abs() < 1e-6, "{}", value(&uniformity(&z).unwrap()));
        let t = value(&tcr(&z, 3.0, false).unwrap());
        assert!((t - -5.048785599093048).abs() < 1e-5, "{t}");
        let tc = value(&tcr(&z, 3.0, true).unwrap());
        assert!((tc - -5.03849755878197).abs() < 1e-5, "{tc}");
    }

    #[test]
    fn patchify_orders_pixels_as_mae() {
        // 1 image, 2 channels, 4×4, patch 2: patch (row 0, col 1) holds pixels (y 0..2, x 2..4),
        // each pixel's channels adjacent.
        let x = Tensor::arange(32, tch::kind::FLOAT_CPU).reshape([1, 2, 4, 4]);
        let p = patchify(&x, 2).unwrap();
        assert_eq!(p.size(), [1, 4, 8]);
        let got: Vec<f32> = Vec::try_from(p.get(0).get(1)).unwrap();
        assert_eq!(got, [2., 18., 3., 19., 6., 22., 7., 23.]);
        assert!(patchify(&x, 3).unwrap_err().to_string().contains("multiples"));
    }

    #[test]
    fn only_removed_patches_count_and_shapes_are_checked() {
        let (pred, target) = rows();
        let mask = Tensor::from_slice(&[1f32, 0., 0., 0., 0., 0.]);
        let first = value(&reconstruction(&pred.narrow(0, 0, 1), &target.narrow(0, 0, 1), &mask.narrow(0, 0, 1), false).unwrap());
        assert!((value(&reconstruction(&pred, &target, &mask, false).unwrap()) - first).abs() < 1e-7);
        let e = reconstruction(&pred, &target.narrow(1, 0, 4), &mask, true).unwrap_err().to_string();
        assert!(e.contains("one shape"), "{e}");
        let e = reconstruction(&pred, &target, &Tensor::zeros([6], tch::kind::FLOAT_CPU), true).unwrap_err().to_string();
        assert!(e.contains("removes no patch"), "{e}");
        assert!(tcr(&fixed(1, 4, 0.0), 1.0, false).unwrap_err().to_string().contains("N ≥ 2"));
    }

    #[test]
    fn regularisers_fall_when_features_spread() {
        // Identical rows: uniformity 1 (its maximum) and log det of a rank-one matrix; spread rows lower both.
        let same = Tensor::ones([8, 4], tch::kind::FLOAT_CPU);
        let spread = fixed2(8, 4, 0.0);
        assert!((value(&uniformity(&same).unwrap()) - 1.0).abs() < 1e-6);
        assert!(value(&uniformity(&spread).unwrap()) < 0.6);
        assert!(value(&tcr(&spread, 3.0, false).unwrap()) < value(&tcr(&same, 3.0, false).unwrap()));
    }
}
