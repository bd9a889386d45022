//! Networks: backbones (each with its tch forward and its ONNX emitter in one file) and the
//! training-only heads that are never exported. [`Encoder`] is the one type the rest of the crate
//! sees: a backbone chosen by `backbone.arch`. The ONNX emitters of the layers every backbone shares
//! (convolution, BatchNorm) and the PyTorch-default initialiser live here.

pub mod amdim;
pub mod heads;
pub mod resnet;

use anyhow::Result;
use tch::nn::{self as tnn, ModuleT};
use tch::Tensor;

use crate::export::graph::{attr_float, attr_int, attr_ints, GraphBuilder};
use crate::plan::Backbone;

/// BatchNorm epsilon of every backbone (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// PyTorch's default initialisation of a layer with `fan_in` inputs: U(±1/√fan_in)
/// (`kaiming_uniform_(a=√5)` for weights, and the bias default).
pub fn torch_default(fan_in: i64) -> tnn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    tnn::Init::Uniform { lo: -b, up: b }
}

/// A nested path from a dotted name (tch's `Path::sub` refuses dots), e.g. `layer1.0.conv1`.
pub fn sub<'a>(root: &tnn::Path<'a>, dotted: &str) -> tnn::Path<'a> {
    dotted.split('.').fold(root.clone(), |p, part| p.sub(part))
}

/// ONNX `Conv` of a square `kernel` with `stride` and symmetric padding `pad`, reading `x`; the
/// weights are named `{name}.weight` (and `{name}.bias` when the convolution has one).
pub fn emit_conv(g: &mut GraphBuilder, name: &str, c: &tnn::Conv2D, x: &str, kernel: i64, stride: i64, pad: i64) -> Result<String> {
    let w = g.weight(&format!("{name}.weight"), &c.ws)?;
    let mut inputs = vec![x.to_owned(), w];
    if let Some(b) = &c.bs {
        inputs.push(g.weight(&format!("{name}.bias"), b)?);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let attrs = vec![
        attr_ints("kernel_shape", &[kernel, kernel]),
        attr_ints("strides", &[stride, stride]),
        attr_ints("pads", &[pad, pad, pad, pad]),
        attr_ints("dilations", &[1, 1]),
        attr_int("group", 1),
    ];
    g.node("Conv", &refs, &format!("{name}.out"), attrs)
}

/// ONNX `BatchNormalization` (inference: running statistics) of an affine BatchNorm, reading `x`.
pub fn emit_batch_norm(g: &mut GraphBuilder, name: &str, bn: &tnn::BatchNorm, x: &str) -> Result<String> {
    let (Some(scale), Some(bias)) = (&bn.ws, &bn.bs) else { anyhow::bail!("batch norm {name} has no affine parameters") };
    let s = g.weight(&format!("{name}.weight"), scale)?;
    let b = g.weight(&format!("{name}.bias"), bias)?;
    let m = g.weight(&format!("{name}.running_mean"), &bn.running_mean)?;
    let v = g.weight(&format!("{name}.running_var"), &bn.running_var)?;
    g.node("BatchNormalization", &[x, &s, &b, &m, &v], &format!("{name}.out"), vec![attr_float("epsilon", BN_EPS as f32), attr_float("momentum", 0.9)])
}

/// A backbone: images → features [N, D] (what is exported and evaluated).
#[derive(Debug)]
pub enum Encoder {
    Resnet18(resnet::ResNet18),
    Amdim(amdim::Amdim),
}

impl Encoder {
    /// Builds the backbone's variables under `root`; `image_size` is the side of the training images.
    pub fn new(root: &tnn::Path, b: &Backbone, in_channels: i64, image_size: usize) -> Result<Self> {
        Ok(match b {
            Backbone::Resnet18 { width, zero_init_residual } => Encoder::Resnet18(resnet::ResNet18::new(root, in_channels, *width, *zero_init_residual)),
            Backbone::Amdim { width, n_rkhs, n_depth, use_bn } => {
                Encoder::Amdim(amdim::Amdim::new(root, in_channels, image_size, *width, *n_rkhs, *n_depth, *use_bn)?)
            }
        })
    }

    /// Feature dimension D of the output.
    pub fn out_dim(&self) -> i64 {
        match self {
            Encoder::Resnet18(n) => n.out_dim(),
            Encoder::Amdim(n) => n.out_dim(),
        }
    }

    /// Appends the network's ONNX nodes reading `input`; returns the name of the [N, D] output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, input: &str, output: &str) -> Result<String> {
        match self {
            Encoder::Resnet18(n) => n.emit_onnx(g, input, output),
            Encoder::Amdim(n) => n.emit_onnx(g, input, output),
        }
    }
}

impl ModuleT for Encoder {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Encoder::Resnet18(n) => n.forward_t(xs, train),
            Encoder::Amdim(n) => n.forward_t(xs, train),
        }
    }
}
