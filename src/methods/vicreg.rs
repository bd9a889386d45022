//! VICReg as a method: expander of `Linear → BN → ReLU` blocks and a plain last `Linear`
//! (`facebookresearch/vicreg` `main_vicreg.py`, `Projector`) → `losses::vicreg`. Views: the suite's
//! `augment:` block (the paper's: BYOL's asymmetric views).

use tch::nn;

use super::projected::Projected;
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::VicregParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &VicregParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::vicreg::loss(a, b, &p2)))
}
