//! Networks: backbones (each with its tch forward and its ONNX emitter in one file) and the
//! training-only heads that are never exported. [`Encoder`] is the one type the rest of the crate
//! sees: a backbone chosen by `backbone.arch`.

pub mod amdim;
pub mod heads;
pub mod resnet;

use anyhow::Result;
use tch::nn::{self as tnn, ModuleT};
use tch::Tensor;

use crate::export::graph::GraphBuilder;
use crate::plan::Backbone;

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
