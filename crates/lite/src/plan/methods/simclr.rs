//! SimCLR (Chen et al., ICML 2020, arXiv 2002.05709): its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// SimCLR NT-Xent (`losses::simclr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimclrParams {
    /// Projector sizes after the backbone (Linear-BN-ReLU blocks, plain last Linear), e.g. [2048, 128].
    pub projector: Vec<i64>,
    /// Softmax temperature T of the logits.
    pub temperature: f64,
}

/// The official defaults: the W-MSE paper's CIFAR-10 SimCLR head (`htdt/self-supervised` README commands, as `suites/cifar10.yaml` runs it): projector 1024-64, T 0.5.
impl Default for SimclrParams {
    fn default() -> Self {
        Self { projector: vec![1024, 64], temperature: 0.5 }
    }
}

impl Params for SimclrParams {
    const NAME: &'static str = "simclr";
    const ABOUT: About = About {
        paper: "Chen et al., ICML 2020, arXiv 2002.05709",
        code: "`google-research/simclr` `objective.py`; solo-learn `solo/losses/simclr.py`",
        fields: "`projector`, `temperature`",
        notes: "NT-Xent over the 2N − 1 others, mean over 2N; projector Linear–BN–ReLU–Linear",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        c.positive("temperature", self.temperature);
    }
}
