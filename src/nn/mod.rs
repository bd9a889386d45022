//! Networks: backbones (each with its tch forward and its ONNX emitter in one file) and the
//! training-only heads that are never exported. [`Encoder`] is the one type the rest of the crate
//! sees: a backbone chosen by `backbone.arch`. The ONNX emitters of the layers every backbone shares
//! (convolution, BatchNorm) and the PyTorch-default initialiser live here.

pub mod amdim;
pub mod flat;
pub mod heads;
pub mod resnet;
pub mod vit;

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

/// The same values in the channels-last layout (NHWC strides, NCHW shape; PyTorch's
/// `memory_format=torch.channels_last`), on which cuDNN's and oneDNN's convolutions run faster.
/// Not 4-D: as is.
pub fn to_channels_last(x: &Tensor) -> Tensor {
    if x.dim() == 4 {
        x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        x.shallow_clone()
    }
}

/// Whether a backbone trains in the channels-last layout on `device`: always on CUDA; on the CPU
/// only when its narrowest layer has at least 16 channels. libtorch 2.11's oneDNN convolutions
/// corrupt the heap (segfault or abort) in channels-last training with 4, 8 or 12 channels at 64 px
/// and more; 16 and more train (reproduced in plain PyTorch 2.11 on this project's CI CPU; README
/// "Speed").
pub fn trains_channels_last(b: &Backbone, device: tch::Device) -> bool {
    device.is_cuda() || b.width() >= 16
}

/// Gives every 4-D variable of `vs` (the convolution weights) the channels-last layout in place.
pub fn channels_last(vs: &tnn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                let data = to_channels_last(&v);
                v.set_data(&data);
            }
        }
    })
}

thread_local! {
    /// Multiply-accumulates counted by [`conv`], [`linear`] and [`add_macs`] while [`count_macs`]
    /// runs (None: not counting).
    static MACS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Adds `n` multiply-accumulates to the count when [`count_macs`] runs (the matrix products of
/// attention, which no layer object holds).
pub fn add_macs(n: u64) {
    MACS.with(|m| {
        if let Some(c) = m.get() {
            m.set(Some(c + n));
        }
    });
}

/// `x` through the convolution `c`. Every backbone's convolutions go through here, so that
/// [`count_macs`] counts them.
pub fn conv(x: &Tensor, c: &tnn::Conv2D) -> Tensor {
    let y = x.apply(c);
    let per_output: i64 = c.ws.size()[1..].iter().product(); // C_in/groups · kH · kW
    add_macs(y.numel() as u64 * per_output as u64);
    y
}

/// `x` through the fully connected layer `l` on its last axis, counted as [`conv`] is.
pub fn linear(x: &Tensor, l: &tnn::Linear) -> Tensor {
    let y = x.apply(l);
    add_macs(y.numel() as u64 * l.ws.size()[1] as u64);
    y
}

/// The multiply-accumulates of the convolutions, linear layers and attention products `f` runs
/// (the usual model-FLOP convention: fvcore, thop; normalisation, activations, softmax and pooling
/// not counted).
pub fn count_macs(f: impl FnOnce()) -> u64 {
    MACS.with(|m| m.set(Some(0)));
    f();
    MACS.with(|m| m.take()).unwrap_or(0)
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
    Resnet(resnet::ResNet),
    Amdim(amdim::Amdim),
    Vit(vit::Vit),
}

impl Encoder {
    /// Builds the backbone's variables under `root`; `image_size` is the side of the training images.
    pub fn new(root: &tnn::Path, b: &Backbone, in_channels: i64, image_size: usize) -> Result<Self> {
        Ok(match b {
            Backbone::Resnet18 { width, zero_init_residual, stem } => {
                Encoder::Resnet(resnet::ResNet::new(root, in_channels, crate::plan::ResnetDepth::R18, *stem, *width, *zero_init_residual))
            }
            Backbone::Resnet50 { width, zero_init_residual, stem } => {
                Encoder::Resnet(resnet::ResNet::new(root, in_channels, crate::plan::ResnetDepth::R50, *stem, *width, *zero_init_residual))
            }
            Backbone::Amdim { width, n_rkhs, n_depth, use_bn } => Encoder::Amdim(amdim::Amdim::new(root, in_channels, image_size, *width, *n_rkhs, *n_depth, *use_bn)?),
            Backbone::Vit { size, depth, patch_size, pool } => Encoder::Vit(vit::Vit::new(root, in_channels, image_size, *size, *depth, *patch_size, *pool)?),
        })
    }

    /// Feature dimension D of the output.
    /// Multiply-accumulates of one forward pass of one `in_channels` × `image_size`² image, counted on
    /// a real forward pass on `device` (the encoder's).
    pub fn macs_per_image(&self, in_channels: i64, image_size: i64, device: tch::Device) -> u64 {
        let x = Tensor::zeros([1, in_channels, image_size, image_size], (tch::Kind::Float, device));
        count_macs(|| {
            let _ = tch::no_grad(|| self.forward_t(&x, false));
        })
    }

    pub fn out_dim(&self) -> i64 {
        match self {
            Encoder::Resnet(n) => n.out_dim(),
            Encoder::Amdim(n) => n.out_dim(),
            Encoder::Vit(n) => n.out_dim(),
        }
    }

    /// Appends the network's ONNX nodes reading `input`; returns the name of the [N, D] output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, input: &str, output: &str) -> Result<String> {
        match self {
            Encoder::Resnet(n) => n.emit_onnx(g, input, output),
            Encoder::Amdim(n) => n.emit_onnx(g, input, output),
            Encoder::Vit(n) => n.emit_onnx(g, input, output),
        }
    }
}

impl ModuleT for Encoder {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Encoder::Resnet(n) => n.forward_t(xs, train),
            Encoder::Amdim(n) => n.forward_t(xs, train),
            Encoder::Vit(n) => n.forward_t(xs, train),
        }
    }
}
