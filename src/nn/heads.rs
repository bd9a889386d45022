//! Projector heads (training only, never exported). CorInfoMax's CIFAR projector is
//! `Linear → ReLU` blocks with a bias-free last `Linear` and no BatchNorm
//! (`serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/model_base_resnet.py`).

use tch::nn::{self, Module};
use tch::Tensor;

/// An MLP `in → sizes[0] → … → sizes[last]`, ReLU between layers, no bias on the last layer.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
}

impl Mlp {
    pub fn new(root: &nn::Path, input: i64, sizes: &[i64]) -> Self {
        let mut layers = Vec::with_capacity(sizes.len());
        let mut d = input;
        for (i, &o) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let cfg = nn::LinearConfig { bias: !last, ..Default::default() };
            layers.push(nn::linear(root / i.to_string(), d, o, cfg));
            d = o;
        }
        Self { layers }
    }
}

impl Module for Mlp {
    /// # Shapes
    /// `xs`: [N, input] → [N, sizes[last]].
    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut y = xs.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            y = y.apply(l);
            if i + 1 < self.layers.len() {
                y = y.relu();
            }
        }
        y
    }
}
