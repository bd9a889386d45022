//! Projector and predictor heads (training only, never exported): one MLP with the two styles the
//! reference codes use.
//! - [`Style::Plain`]: `Linear → ReLU` blocks, bias-free last `Linear`, no BatchNorm (CorInfoMax's
//!   CIFAR projector, `serdarozsoy/corinfomax-ssl` @ c0b917e, `cifars-tiny/model_base_resnet.py`).
//! - [`Style::BatchNorm`]: `Linear → BatchNorm1d → ReLU` blocks and a plain last `Linear` (SimCLR /
//!   VICReg / BYOL projectors and BYOL's predictor, as solo-learn and the official codes build them;
//!   Barlow Twins' official projector is the same with `bias=False` in every Linear, `last_bias`).

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Unit-norm prototypes (DINO's weight-normalised last layer with its norm fixed at 1, SwAV's
/// normalised prototypes): logits = ⟨z, w_c⟩ / ‖w_c‖.
pub struct Prototypes {
    w: Tensor,
}

impl Prototypes {
    pub fn new(root: &nn::Path, dim: i64, k: i64) -> Self {
        Self { w: root.var("weight", &[k, dim], crate::nn::torch_default(dim)) }
    }

    pub fn logits(&self, z: &Tensor) -> Tensor {
        z.matmul(&crate::losses::l2_normalize(&self.w).transpose(0, 1))
    }
}

/// How the hidden layers are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Linear → ReLU; the last Linear has no bias.
    Plain,
    /// Linear → BatchNorm1d → ReLU; the last Linear has a bias when `last_bias`.
    BatchNorm { last_bias: bool },
}

/// An MLP `in → sizes[0] → … → sizes[last]`.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(nn::Linear, Option<nn::BatchNorm>)>,
}

impl Mlp {
    pub fn new(root: &nn::Path, input: i64, sizes: &[i64], style: Style) -> Self {
        let mut layers = Vec::with_capacity(sizes.len());
        let mut d = input;
        for (i, &o) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let bias = match style {
                Style::Plain => !last,
                Style::BatchNorm { last_bias } => !last || last_bias,
            };
            let linear = nn::linear(root / i.to_string(), d, o, nn::LinearConfig { bias, ..Default::default() });
            let bn = (matches!(style, Style::BatchNorm { .. }) && !last).then(|| nn::batch_norm1d(root / format!("bn{i}"), o, Default::default()));
            layers.push((linear, bn));
            d = o;
        }
        Self { layers }
    }
}

impl ModuleT for Mlp {
    /// # Shapes
    /// `xs`: [N, input] → [N, sizes[last]].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = xs.shallow_clone();
        for (i, (l, bn)) in self.layers.iter().enumerate() {
            y = y.apply(l);
            if let Some(bn) = bn {
                y = y.apply_t(bn, train);
            }
            if i + 1 < self.layers.len() {
                y = y.relu_(); // a Linear's or BatchNorm's backward needs its input, not its output
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_shape_bias_and_batch_norm() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let plain = Mlp::new(&(vs.root() / "p"), 6, &[5, 3], Style::Plain);
        let bn = Mlp::new(&(vs.root() / "b"), 6, &[5, 3], Style::BatchNorm { last_bias: true });
        let x = Tensor::randn([4, 6], tch::kind::FLOAT_CPU);
        assert_eq!(plain.forward_t(&x, true).size(), [4, 3]);
        assert_eq!(bn.forward_t(&x, true).size(), [4, 3]);
        let names = vs.variables();
        assert!(names.contains_key("p.0.bias") && !names.contains_key("p.1.bias"));
        assert!(names.contains_key("b.bn0.running_mean") && names.contains_key("b.1.bias") && !names.contains_key("b.bn1.weight"));
    }
}
