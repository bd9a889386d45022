//! BYOL (Grill et al., NeurIPS 2020, arXiv 2006.07733): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// BYOL (`methods::byol`): projector and predictor heads and the target's EMA momentum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByolParams {
    /// Projector sizes, e.g. [4096, 256] (Linear-BN-ReLU, plain last Linear).
    pub projector: Vec<i64>,
    /// Predictor sizes, e.g. [4096, 256]; the last must equal the projector's.
    pub predictor: Vec<i64>,
    /// Base EMA coefficient τ_base of the target (0.996 in the paper); τ rises to 1 on a cosine.
    pub momentum: f64,
}

/// The official defaults: the W-MSE paper's CIFAR-10 BYOL head (`htdt/self-supervised` README commands, as `suites/cifar10.yaml` runs it): projector and predictor 1024-64, τ_base 0.99 (the BYOL paper's ImageNet heads are 4096-256 with τ_base 0.996).
impl Default for ByolParams {
    fn default() -> Self {
        Self { projector: vec![1024, 64], predictor: vec![1024, 64], momentum: 0.99 }
    }
}

impl Params for ByolParams {
    const NAME: &'static str = "byol";
    const ABOUT: About = About {
        paper: "Grill et al., NeurIPS 2020, arXiv 2006.07733",
        code: "`deepmind/deepmind-research` `byol/byol_experiment.py`; solo-learn `solo/methods/byol.py`",
        fields: "`projector`, `predictor`, `momentum` (τ_base)",
        notes: "2 − 2·cos both ways; target = EMA of backbone + projector (BN statistics included; `src/methods/ema.rs`, shared with ER's EMA heads), τ from τ_base to 1 on a cosine over all steps; target in train mode under no_grad; checkpointed",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        c.sizes("predictor", &self.predictor);
        c.same_last("predictor", &self.projector, &self.predictor);
        c.unit("momentum", self.momentum);
    }
}
