//! AMDIM as a method (`Philip-Bachman/amdim-public` @ 8754ae1, `model.py`, `costs.py`): the
//! encoder's (`nn::amdim`) 5×5 and 7×7 maps go through their `FakeRKHSConvNet` projections to n_rkhs
//! channels; r1 is already n_rkhs wide. `losses::amdim` then scores 1→5, 1→7 and 5→5 in both
//! directions, with one random 5×5 source location per image and view.
//!
//! `FakeRKHSConvNet`: `bn_out(conv1x1(relu(bn?(conv1x1(x)))) + shortcut(x))`, the shortcut a 1×1
//! convolution with bias started near the identity (U(±0.01), ones on the diagonal), the second
//! 1×1 convolution started at 0, `bn_out` always on.
//!
//! Not reproduced: the official run trains linear and MLP classifiers on detached r1 features at
//! the same time (they do not touch the encoder's gradients; this harness's probe runs after
//! training), and its flip is drawn once per image for both views (here per view).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Kind, Tensor};

use super::{Objective, Parts, StepLoss, Trains};
use crate::losses::amdim::{self as loss, Views};
use crate::nn::amdim::Maps;
use crate::nn::{torch_default, Encoder};
use crate::plan::{AmdimParams, Backbone};

/// The projection of a local map to n_rkhs channels.
#[derive(Debug)]
struct FakeRkhs {
    conv1: nn::Conv2D,
    bn_hid: Option<nn::BatchNorm>,
    conv2: nn::Conv2D,
    shortcut: nn::Conv2D,
    bn_out: nn::BatchNorm,
}

impl FakeRkhs {
    fn new(root: &nn::Path, c_in: i64, n: i64, use_bn: bool) -> Self {
        let cfg = |bias: bool, ws_init: nn::Init| nn::ConvConfig { bias, ws_init, bs_init: torch_default(c_in), ..Default::default() };
        let shortcut = nn::conv2d(root / "shortcut", c_in, n, 1, cfg(true, nn::Init::Uniform { lo: -0.01, up: 0.01 }));
        tch::no_grad(|| {
            // Ones on the diagonal: the shortcut starts near the identity on the first c_in channels.
            let eye = Tensor::eye_m(n, c_in, (Kind::Float, root.device())).reshape([n, c_in, 1, 1]);
            let w = &shortcut.ws * (1.0 - &eye) + &eye;
            shortcut.ws.shallow_clone().copy_(&w);
        });
        Self {
            conv1: nn::conv2d(root / "conv1", c_in, n, 1, cfg(false, torch_default(c_in))),
            bn_hid: use_bn.then(|| nn::batch_norm2d(root / "bn_hid", n, Default::default())),
            conv2: nn::conv2d(root / "conv2", n, n, 1, cfg(false, nn::Init::Const(0.0))),
            shortcut,
            bn_out: nn::batch_norm2d(root / "bn_out", n, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.apply(&self.conv1);
        if let Some(bn) = &self.bn_hid {
            h = h.apply_t(bn, true);
        }
        (h.relu().apply(&self.conv2) + x.apply(&self.shortcut)).apply_t(&self.bn_out, true)
    }
}

pub struct Amdim {
    proj5: FakeRkhs,
    proj7: FakeRkhs,
    params: AmdimParams,
}

impl Amdim {
    /// `map_channels`: the trunk's channels at 5×5 and 7×7; `n_rkhs`: the width of r1.
    pub fn new(root: &nn::Path, map_channels: i64, n_rkhs: i64, use_bn: bool, params: &AmdimParams) -> Self {
        Self {
            proj5: FakeRkhs::new(&(root / "rkhs_5"), map_channels, n_rkhs, use_bn),
            proj7: FakeRkhs::new(&(root / "rkhs_7"), map_channels, n_rkhs, use_bn),
            params: params.clone(),
        }
    }

    /// The loss of the two views' encoder maps.
    pub fn step(&self, m1: &Maps, m2: &Maps) -> Result<StepLoss> {
        let (r5_1, r7_1) = (self.proj5.forward(&m1.f5), self.proj7.forward(&m1.f7));
        let (r5_2, r7_2) = (self.proj5.forward(&m2.f5), self.proj7.forward(&m2.f7));
        let n = m1.r1.size()[0];
        let dev = m1.r1.device();
        let (i1, i2) = (Tensor::randint(25, [n], (Kind::Int64, dev)), Tensor::randint(25, [n], (Kind::Int64, dev)));
        let a = Views { r1: &m1.r1, r5: &r5_1, r7: &r7_1, source5: &i1 };
        let b = Views { r1: &m2.r1, r5: &r5_2, r7: &r7_2, source5: &i2 };
        loss::loss(&a, &b, self.params.tclip, self.params.score_reg)
    }
}

impl Objective for Amdim {
    /// Two encoder calls, so BatchNorm statistics are per view, as the official model.
    fn loss(&mut self, encoder: &Encoder, v1: &Tensor, v2: &Tensor) -> Result<StepLoss> {
        let Encoder::Amdim(e) = encoder else {
            bail!("method amdim needs backbone.arch: amdim");
        };
        self.step(&e.maps(v1, true), &e.maps(v2, true))
    }
}

/// `repro loss amdim` arguments: the method's, plus the seed of the random 5×5 source locations.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmdimLoss {
    tclip: f64,
    score_reg: f64,
    seed: i64,
}

impl Default for AmdimLoss {
    fn default() -> Self {
        let p = AmdimParams::default();
        Self { tclip: p.tclip, score_reg: p.score_reg, seed: 0 }
    }
}

impl Trains for AmdimParams {
    type LossArgs = AmdimLoss;
    fn objective(&self, parts: Parts) -> Result<Box<dyn Objective>> {
        let (Encoder::Amdim(a), Backbone::Amdim { n_rkhs, use_bn, .. }) = (parts.encoder, parts.backbone) else {
            bail!("method amdim needs backbone.arch: amdim (its loss reads the encoder's 5x5 and 7x7 maps)");
        };
        Ok(Box::new(Amdim::new(&parts.root, a.map_channels(), *n_rkhs, *use_bn, self)))
    }
    /// Each row is one image's [r1 | r5 | r7], channel-major: D + 25·D + 49·D = 75·D columns.
    fn loss_on(p: &AmdimLoss, z1: &Tensor, z2: &Tensor) -> Result<StepLoss> {
        let (s1, s2) = (z1.size(), z2.size());
        if s1.len() != 2 || s1[1] % 75 != 0 || s1 != s2 {
            bail!("repro loss amdim: each row must hold [r1 | r5 | r7] of one image, 75·D columns (D + 25·D + 49·D); got {s1:?} and {s2:?}");
        }
        let (n, d) = (s1[0], s1[1] / 75);
        let split = |t: &Tensor| (t.narrow(1, 0, d), t.narrow(1, d, 25 * d).reshape([n, d, 5, 5]), t.narrow(1, 26 * d, 49 * d).reshape([n, d, 7, 7]));
        let ((a1, a5, a7), (b1, b5, b7)) = (split(z1), split(z2));
        tch::manual_seed(p.seed);
        let (i1, i2) = (Tensor::randint(25, [n], tch::kind::INT64_CPU), Tensor::randint(25, [n], tch::kind::INT64_CPU));
        let va = Views { r1: &a1, r5: &a5, r7: &a7, source5: &i1 };
        let vb = Views { r1: &b1, r5: &b5, r7: &b7, source5: &i2 };
        loss::loss(&va, &vb, p.tclip, p.score_reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_start_near_identity_and_the_loss_trains() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = crate::nn::amdim::Amdim::new(&(vs.root() / "enc"), 3, 32, 2, 16, 1, false).unwrap();
        let m = Amdim::new(&(vs.root() / "method"), net.map_channels(), 16, false, &AmdimParams { tclip: 20.0, score_reg: 0.05 });
        let w = m.proj5.shortcut.ws.reshape([16, 8]);
        assert!(f64::try_from(w.narrow(1, 0, 8).diagonal(0, 0, 1).min()).unwrap() == 1.0);
        let mut opt = nn::OptimizerConfig::build(nn::Adam { beta1: 0.8, ..Default::default() }, &vs, 1e-2).unwrap();
        let x = Tensor::rand([8, 3, 32, 32], tch::kind::FLOAT_CPU);
        let mut losses = Vec::new();
        for _ in 0..20 {
            let v1 = &x + Tensor::randn_like(&x) * 0.05;
            let v2 = &x + Tensor::randn_like(&x) * 0.05;
            let l = m.step(&net.maps(&v1, true), &net.maps(&v2, true)).unwrap();
            losses.push(l.total.double_value(&[]));
            opt.backward_step(&l.total);
        }
        let (first, last) = (losses[..3].iter().sum::<f64>(), losses[17..].iter().sum::<f64>());
        assert!(last < first - 0.3, "{losses:?}");
    }
}
