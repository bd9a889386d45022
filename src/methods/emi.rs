//! EMI as a method: projector of `Linear → BN → ReLU` blocks and a plain last `Linear` → `losses::emi`
//! (−MI from second-order statistics). UNVERIFIED: no official code was found, so the projector
//! style, its sizes and the views are the harness's choices, not the paper's (arXiv 2409.04747).

use tch::nn;

use super::projected::Projected;
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::EmiParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &EmiParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::emi::loss(a, b, &p2)))
}
