//! EMI (Chang et al., arXiv 2409.04747; loss details unverified): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// EMI (`losses::emi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmiParams {
    /// Projector sizes (Linear-BN-ReLU blocks, plain last Linear; unverified against the paper).
    pub projector: Vec<i64>,
    /// ε·I added to each covariance before its log-determinant (unverified against the paper).
    pub eps: f64,
    /// Standardise each view's dimensions over the batch first, so ε is relative to unit variance
    /// (the harness's choice, `true` in its suites: without it the loss rewards inflating the
    /// features and collapsed a smoke run; the Gaussian MI itself is unchanged).
    pub standardize: bool,
}

/// The official defaults: no official code was found: the harness's own choices (`suites/cifar10.yaml`), unverified against the paper.
impl Default for EmiParams {
    fn default() -> Self {
        Self { projector: vec![2048, 2048, 64], eps: 1e-3, standardize: true }
    }
}

impl Params for EmiParams {
    const NAME: &'static str = "emi";
    const ABOUT: About = About {
        paper: "Chang et al., arXiv 2409.04747",
        code: "none found",
        fields: "`projector`, `eps`, `standardize`",
        notes: "½[logdet Σ1 + logdet Σ2 − logdet Σ12], loss = −I; with `standardize` (the suites' choice) each view's dimensions are first scaled to unit variance over the batch, which leaves the Gaussian MI unchanged and makes ε relative (see below); covariance estimator (÷ N − 1), the ε·I regulariser, the standardisation, float64 and the BN projector are **unverified** choices (the paper's loss section could not be read)",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        c.non_negative("eps", self.eps);
    }
}
