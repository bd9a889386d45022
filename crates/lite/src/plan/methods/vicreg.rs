//! VICReg (Bardes et al., ICLR 2022, arXiv 2105.04906): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// VICReg (`losses::vicreg`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VicregParams {
    /// Expander sizes (Linear-BN-ReLU blocks, plain last Linear), e.g. [2048, 2048, 2048].
    pub projector: Vec<i64>,
    /// Invariance weight λ (25 officially).
    pub sim_coeff: f64,
    /// Variance weight μ (25 officially).
    pub std_coeff: f64,
    /// Covariance weight ν (1 officially).
    pub cov_coeff: f64,
}

/// The official defaults: `facebookresearch/vicreg` `main_vicreg.py` (λ = μ = 25, ν = 1) with the 2048-wide CIFAR expander of `suites/cifar10.yaml`.
impl Default for VicregParams {
    fn default() -> Self {
        Self { projector: vec![2048, 2048, 2048], sim_coeff: 25.0, std_coeff: 25.0, cov_coeff: 1.0 }
    }
}

impl Params for VicregParams {
    const NAME: &'static str = "vicreg";
    const ABOUT: About = About {
        paper: "Bardes et al., ICLR 2022, arXiv 2105.04906",
        code: "`facebookresearch/vicreg` `main_vicreg.py`",
        fields: "`projector`, `sim_coeff`, `std_coeff`, `cov_coeff` (25, 25, 1)",
        notes: "unbiased var + 1e-4 under the sqrt; covariance ÷ (N − 1), off-diagonal squares ÷ D",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        for (v, key) in [(self.sim_coeff, "sim_coeff"), (self.std_coeff, "std_coeff"), (self.cov_coeff, "cov_coeff")] {
            c.non_negative(key, v);
        }
    }
}
