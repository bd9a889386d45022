//! Barlow Twins (Zbontar et al., ICML 2021, arXiv 2103.03230): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// Barlow Twins (`losses::barlow_twins`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarlowTwinsParams {
    /// Projector sizes (Linear-BN-ReLU blocks, bias-free Linears as the official code), e.g. [2048, 2048, 2048].
    pub projector: Vec<i64>,
    /// Weight λ of the off-diagonal (redundancy) term; 0.0051 in the official code.
    pub lambda: f64,
    /// Factor on the whole loss (solo-learn's `scale_loss`); 1 in the official code.
    pub scale: f64,
}

/// The official defaults: `facebookresearch/barlowtwins` `main.py` (λ 0.0051, no loss scale) with the 2048-wide CIFAR projector of `suites/cifar10.yaml`.
impl Default for BarlowTwinsParams {
    fn default() -> Self {
        Self { projector: vec![2048, 2048, 2048], lambda: 0.0051, scale: 1.0 }
    }
}

impl Params for BarlowTwinsParams {
    const NAME: &'static str = "barlow_twins";
    const ABOUT: About = About {
        paper: "Zbontar et al., ICML 2021, arXiv 2103.03230",
        code: "`facebookresearch/barlowtwins` `main.py`",
        fields: "`projector`, `lambda` (0.0051), `scale` (1)",
        notes: "BatchNorm1d(affine=False) standardisation (biased var, eps 1e-5); `scale` is solo-learn's `scale_loss`; hidden Linears keep a bias (official: none; BN follows, so it is redundant)",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        c.non_negative("lambda", self.lambda);
        c.positive("scale", self.scale);
    }
}
