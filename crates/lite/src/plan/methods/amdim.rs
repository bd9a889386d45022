//! AMDIM (Bachman et al., NeurIPS 2019, arXiv 1906.00910); needs `backbone.arch: amdim`: its `method_params`.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};
use crate::plan::Backbone;

/// AMDIM (`losses::amdim`); the feature sizes live in `backbone` (`n_rkhs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmdimParams {
    /// Soft clip of the scores, c·tanh(s/c) (`--tclip`, 20 in train.py).
    pub tclip: f64,
    /// Weight of the score regulariser mean(s²) (0.05 in costs.py).
    pub score_reg: f64,
}

/// The official defaults: `Philip-Bachman/amdim-public` @ 8754ae1: `--tclip` 20 in `train.py`, the 0.05 score regulariser in `costs.py`.
impl Default for AmdimParams {
    fn default() -> Self {
        Self { tclip: 20.0, score_reg: 0.05 }
    }
}

impl Params for AmdimParams {
    const NAME: &'static str = "amdim";
    const ABOUT: About = About {
        paper: "Bachman, Hjelm, Buchwalter, NeurIPS 2019, arXiv 1906.00910",
        code: "`Philip-Bachman/amdim-public` @ 8754ae1 (`model.py`, `costs.py`, `datasets.py`, `task_self_supervised.py`)",
        fields: "`tclip` (20), `score_reg` (0.05); needs `backbone: {arch: amdim, width (ndf), n_rkhs, n_depth, use_bn}`",
        notes: "the official encoder at 32/64/128 px (set `data.image_size`), no ReLU on the residual path, zero-started 1×1 convs; FakeRKHS projections of the 5×5 and 7×7 maps; 1→5, 1→7, 5→5 NCE both ways, scores ÷√n_rkhs, tanh clip, 0.05·mean(s²); Adam (0.8, 0.999) with warm-up and multistep in the suites. Exported embedding: r1 (n_rkhs). Not reproduced: the online classifiers trained beside the encoder (detached in the original), one flip shared by both views, the Fast-AutoAugment policy of the paper",
    };

    fn check(&self, c: &mut Check) {
        c.positive("tclip", self.tclip);
        c.non_negative("score_reg", self.score_reg);
    }
    fn refuses(&self, backbone: &Backbone) -> Option<String> {
        (!matches!(backbone, Backbone::Amdim { .. })).then(|| "method amdim needs backbone.arch: amdim (its loss reads the encoder's 5x5 and 7x7 maps)".to_owned())
    }
}
