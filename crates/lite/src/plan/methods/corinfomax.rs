//! CorInfoMax (Ozsoy et al., NeurIPS 2022, arXiv 2209.07999): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// CorInfoMax hyper-parameters; names follow the official code's arguments
/// (`serdarozsoy/corinfomax-ssl`, `cifars-tiny/parsing_file.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorInfoMaxParams {
    /// Projector layer sizes after the backbone, e.g. [512, 512, 64].
    pub projector: Vec<i64>,
    /// Weight of the MSE attraction term (`sim_loss_weight`, README's α).
    pub alpha: f64,
    /// EMA factor of the covariance (`la_R`).
    pub la_r: f64,
    /// EMA factor of the mean (`la_mu`).
    pub la_mu: f64,
    /// Initial covariance scale (`R_ini`).
    pub r_ini: f64,
    /// Diagonal loading inside the log-det (`R_eps_weight`).
    pub eps: f64,
    /// L2-normalise the projector output (`--normalize_on`).
    pub normalize: bool,
}

/// The official defaults: the CIFAR-10 run of the official README (`serdarozsoy/corinfomax-ssl` @ c0b917e, "Commands for original runs", as `suites/cifar10.yaml` runs it): projector 2048-2048-64, α 250, la_R = la_mu 0.01, R_ini 1, ε 1e-8, `--normalize_on`.
impl Default for CorInfoMaxParams {
    fn default() -> Self {
        Self { projector: vec![2048, 2048, 64], alpha: 250.0, la_r: 0.01, la_mu: 0.01, r_ini: 1.0, eps: 1e-8, normalize: true }
    }
}

impl Params for CorInfoMaxParams {
    const NAME: &'static str = "corinfomax";
    const ABOUT: About = About {
        paper: r#"Ozsoy et al., "Self-Supervised Learning with an Information Maximization Criterion", NeurIPS 2022, arXiv 2209.07999"#,
        code: "`serdarozsoy/corinfomax-ssl` @ c0b917e (`cifars-tiny/loss.py`, `pretrain_base.py`, `transform_utils.py`)",
        fields: "`projector`, `alpha`, `la_r`, `la_mu`, `r_ini`, `eps`, `normalize`",
        notes: "loss exactly as the code: per-branch float64 EMA mean/covariance from R_ini·I, centred on the EMA mean, ÷N, −[logdet(R1+εI)+logdet(R2+εI)]/D + α·MSE, L2-normalised projector output. Views as `transform_utils.py` (bicubic crop, flip, jitter with hue in random order, grayscale 0.2, blur 1.0/0.1, solarize 0/0.2); per-dataset projector and α in `suites/cifar10.yaml`, `cifar100.yaml`, `tiny_imagenet.yaml`",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        c.non_negative("alpha", self.alpha);
        c.unit("la_r", self.la_r);
        c.unit("la_mu", self.la_mu);
        c.positive("r_ini", self.r_ini);
        c.non_negative("eps", self.eps);
    }
}
