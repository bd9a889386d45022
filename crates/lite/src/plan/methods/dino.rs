//! DINO, self-distillation with no labels (Caron et al., ICCV 2021, arXiv 2104.14294): its
//! `method_params`. A baseline of ER's DINO-style head: the same network, DINO's own objective.

use serde::{Deserialize, Serialize};

use super::{About, Check, Params};

/// DINO (`methods::dino`): the head, the EMA teacher and the centring of its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoParams {
    /// Projector sizes after the backbone (Linear-BN-ReLU, plain last Linear), then L2
    /// normalisation: the head of ER's `dino` head, so the two differ only in their objective.
    pub projector: Vec<i64>,
    /// Unit-norm prototypes K (the weight-normalised last layer, `out_dim`).
    pub prototypes: i64,
    /// Base EMA coefficient of the teacher (`momentum_teacher`), raised to 1 on a cosine.
    pub momentum: f64,
    pub student_temperature: f64,
    pub teacher_temperature: f64,
    /// Momentum of the running centre of the teacher's logits (`center_momentum`).
    pub center_momentum: f64,
}

/// The official defaults (`facebookresearch/dino` `main_dino.py`: `--out_dim 65536`,
/// `--momentum_teacher 0.996`, `--teacher_temp 0.04` with `--warmup_teacher_temp_epochs 0`,
/// `DINOLoss(student_temp=0.1, center_momentum=0.9)`; the head's bottleneck is 256 after 2048-wide
/// hidden layers).
impl Default for DinoParams {
    fn default() -> Self {
        Self { projector: vec![2048, 2048, 256], prototypes: 65536, momentum: 0.996, student_temperature: 0.1, teacher_temperature: 0.04, center_momentum: 0.9 }
    }
}

impl Params for DinoParams {
    const NAME: &'static str = "dino";
    const ABOUT: About = About {
        paper: "Caron et al., ICCV 2021, arXiv 2104.14294",
        code: "`facebookresearch/dino` `main_dino.py` (`DINOLoss`, `DINOHead`)",
        fields: "`projector`, `prototypes` (K), `momentum` (teacher τ_base), `student_temperature`, `teacher_temperature`, `center_momentum`",
        notes: "cross-entropy of the student's softmax (τ_s) to the centred, sharpened teacher's (τ_t) of the other view, averaged over the two views; centre = running mean of the teacher logits (checkpointed); teacher = EMA of backbone + head (`src/methods/ema.rs`). Two global views, no multi-crop, constant τ_t (the code's default). **Deviation**: the head is ER's `dino` head (Linear-BN-ReLU projector, unit-norm prototypes), not DINO's GELU MLP without BN, so that ER and DINO differ only in the objective",
    };

    fn check(&self, c: &mut Check) {
        c.sizes("projector", &self.projector);
        if self.prototypes < 2 {
            c.push("prototypes", format!("expected at least 2, found {}", self.prototypes));
        }
        c.unit("momentum", self.momentum);
        c.positive("student_temperature", self.student_temperature);
        c.positive("teacher_temperature", self.teacher_temperature);
        c.unit("center_momentum", self.center_momentum);
    }
}
