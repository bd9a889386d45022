//! ER, entropy + reconstruction (Rodríguez-Gálvez et al., ICML 2023, arXiv 2307.10907): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// ER (`losses::er`): the head the objective is attached to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErParams {
    /// Projector sizes after the backbone (Linear-BN-ReLU, plain last Linear).
    pub projector: Vec<i64>,
    /// "expectation" (plug-in) or "average" (Joe's estimator) entropy.
    pub reduction: ErReduction,
    pub head: ErHead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErReduction {
    Expectation,
    Average,
}

/// How the ER terms attach to the network (`head: {name: ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ErHead {
    /// SimCLR-like: both views through one projector, L2-normalised; von Mises–Fisher (sphere) terms.
    Simclr { kappa: f64 },
    /// BYOL-like: online projector + predictor reconstructs the EMA target's projection (sphere).
    Byol { kappa: f64, predictor: Vec<i64>, momentum: f64 },
    /// DINO/SwAV-like: softmax over `prototypes`; the EMA teacher's probabilities are the targets (discrete).
    Dino { prototypes: i64, momentum: f64, student_temperature: f64, teacher_temperature: f64 },
}

/// The official defaults: the harness's CIFAR-10 ER-SimCLR target (`suites/cifar10.yaml`: projector 2048-128, plug-in entropy, vMF κ 10, the κ of `repro loss er`); the paper's own heads are unverified (see the notes).
impl Default for ErParams {
    fn default() -> Self {
        Self { projector: vec![2048, 128], reduction: ErReduction::Expectation, head: ErHead::Simclr { kappa: 10.0 } }
    }
}

impl Params for ErParams {
    const NAME: &'static str = "er";
    const ABOUT: About = About {
        paper: "Rodríguez-Gálvez et al., ICML 2023, arXiv 2307.10907",
        code: "`apple/ml-entropy-reconstruction` @ f523f11 (`entropy_reconstruction.py`)",
        fields: "`projector`, `reduction` (`expectation` = plug-in, `average` = Joe), `head`: `{name: simclr, kappa}` \\| `{name: byol, kappa, predictor, momentum}` \\| `{name: dino, prototypes, momentum, student_temperature, teacher_temperature}`",
        notes: "vMF KDE entropy and reconstruction (sphere) and the discrete versions as the code; log I_ν(κ) from a log-space series, exact at any dimension where the code's `log(iv + 1e-7)` underflows (d = 1000, κ = 10: 1785.8 nats off; gradients unaffected). **Unverified**: which branch's entropy each head raises and the DINO head's shape (the repo has only the estimators)",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        match &self.head {
            ErHead::Simclr { kappa } => c.positive("head.kappa", *kappa),
            ErHead::Byol { kappa, predictor, momentum } => {
                c.positive("head.kappa", *kappa);
                c.sizes("head.predictor", predictor);
                c.same_last("head.predictor", &self.projector, predictor);
                c.unit("head.momentum", *momentum);
            }
            ErHead::Dino { prototypes, momentum, student_temperature, teacher_temperature } => {
                if *prototypes < 2 {
                    c.push("head.prototypes", format!("expected at least 2, found {prototypes}"));
                }
                c.unit("head.momentum", *momentum);
                c.positive("head.student_temperature", *student_temperature);
                c.positive("head.teacher_temperature", *teacher_temperature);
            }
        }
    }
}
