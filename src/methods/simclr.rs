//! SimCLR as a method: projector `Linear → BN → ReLU → Linear` (solo-learn `solo/methods/simclr.py`;
//! the paper's 2-layer MLP head, arXiv 2002.05709 §2.1) → NT-Xent (`losses::simclr`). Views: the
//! suite's `augment:` block (the paper's crop, flip, colour jitter, grayscale and blur).

use tch::nn;

use super::projected::Projected;
use crate::losses;
use crate::nn::heads::Style;
use crate::plan::SimclrParams;

pub fn new(root: &nn::Path, feature_dim: i64, p: &SimclrParams) -> Projected {
    let p2 = p.clone();
    Projected::new(root, feature_dim, &p.projector, Style::BatchNorm { last_bias: true }, Box::new(move |a, b| losses::simclr::loss(a, b, &p2)))
}
