//! torchvision's ResNet family as the papers use it: ResNet-18 (basic blocks [2, 2, 2, 2]) and
//! ResNet-50 (bottleneck blocks [3, 4, 6, 3], stride on the 3×3 convolution as torchvision's "v1.5"),
//! with a configurable base width W (stages W, 2W, 4W, 8W, ×4 after a bottleneck; the papers' W = 64)
//! and either stem:
//! - `cifar`: 3×3 stride-1 convolution, no max-pool (CorInfoMax's CIFAR code: torchvision `resnet18`
//!   with conv1 → 3×3/1 and maxpool → Identity);
//! - `imagenet`: torchvision's own 7×7 stride-2 convolution and 3×3 stride-2 max-pool (CorInfoMax's
//!   Tiny-ImageNet and ImageNet-100 code, AMDIM's and every ImageNet baseline's ResNet).
//!
//! This file holds both the tch forward and the ONNX emitter of the same network so the two change
//! together; `export::parity` checks them.
//!
//! Parameter names mirror torchvision (`layer1.0.conv1.weight`, `layer2.0.downsample.1.running_var`).
//! Initialisation follows torchvision: Kaiming-normal (fan-out, ReLU) convs, BN weight 1 and bias 0,
//! and with `zero_init_residual` the last BN of every block starts at 0 (CorInfoMax's setting).

use anyhow::Result;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::{emit_batch_norm, emit_conv, sub, BN_EPS};
use crate::export::graph::{attr_int, attr_ints, GraphBuilder};
use crate::plan::{ResnetDepth, ResnetStem};

/// Convolution followed by batch norm (no conv bias), with the geometry the ONNX emitter needs.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    kernel: i64,
    stride: i64,
    padding: i64,
    name: String,
    bn_name: String,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn new(root: &nn::Path, conv_name: &str, bn_name: &str, c_in: i64, c_out: i64, kernel: i64, stride: i64, zero_bn: bool) -> Self {
        let padding = kernel / 2;
        let cfg = nn::ConvConfig {
            stride,
            padding,
            bias: false,
            ws_init: nn::Init::Kaiming { dist: nn::init::NormalOrUniform::Normal, fan: nn::init::FanInOut::FanOut, non_linearity: nn::init::NonLinearity::ReLU },
            ..Default::default()
        };
        let bn_cfg = nn::BatchNormConfig { eps: BN_EPS, ws_init: nn::Init::Const(if zero_bn { 0.0 } else { 1.0 }), bs_init: nn::Init::Const(0.0), ..Default::default() };
        Self {
            conv: nn::conv2d(sub(root, conv_name), c_in, c_out, kernel, cfg),
            bn: nn::batch_norm2d(sub(root, bn_name), c_out, bn_cfg),
            kernel,
            stride,
            padding,
            name: conv_name.to_owned(),
            bn_name: bn_name.to_owned(),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        super::conv(x, &self.conv).apply_t(&self.bn, train)
    }

    fn emit(&self, g: &mut GraphBuilder, prefix: &str, x: &str) -> Result<String> {
        let y = emit_conv(g, &format!("{prefix}{}", self.name), &self.conv, x, self.kernel, self.stride, self.padding)?;
        emit_batch_norm(g, &format!("{prefix}{}", self.bn_name), &self.bn, &y)
    }
}

#[derive(Debug)]
struct BasicBlock {
    conv1: ConvBn,
    conv2: ConvBn,
    downsample: Option<ConvBn>,
    prefix: String,
}

impl BasicBlock {
    fn new(root: &nn::Path, prefix: &str, c_in: i64, c_out: i64, stride: i64, zero_init_residual: bool) -> Self {
        let p = sub(root, prefix);
        let downsample = (stride != 1 || c_in != c_out).then(|| ConvBn::new(&p, "downsample.0", "downsample.1", c_in, c_out, 1, stride, false));
        Self {
            conv1: ConvBn::new(&p, "conv1", "bn1", c_in, c_out, 3, stride, false),
            conv2: ConvBn::new(&p, "conv2", "bn2", c_out, c_out, 3, 1, zero_init_residual),
            downsample,
            prefix: format!("{prefix}."),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        // In place as torchvision's `ReLU(inplace=True)` and `out += identity`: BatchNorm's backward
        // needs its input, not its output, so its output can be overwritten.
        let y = self.conv1.forward_t(x, train).relu_();
        let mut y = self.conv2.forward_t(&y, train);
        match &self.downsample {
            Some(d) => y += d.forward_t(x, train),
            None => y += x,
        };
        y.relu_()
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> Result<String> {
        let p = &self.prefix;
        let y = self.conv1.emit(g, p, x)?;
        let y = g.node("Relu", &[&y], &format!("{p}relu1"), vec![])?;
        let y = self.conv2.emit(g, p, &y)?;
        let shortcut = match &self.downsample {
            Some(d) => d.emit(g, p, x)?,
            None => x.to_owned(),
        };
        let s = g.node("Add", &[&y, &shortcut], &format!("{p}add"), vec![])?;
        g.node("Relu", &[&s], &format!("{p}out"), vec![])
    }
}

/// torchvision's `Bottleneck`: 1×1 → 3×3 (the block's stride) → 1×1 to 4× the planes.
#[derive(Debug)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
    prefix: String,
}

impl Bottleneck {
    fn new(root: &nn::Path, prefix: &str, c_in: i64, planes: i64, stride: i64, zero_init_residual: bool) -> Self {
        let p = sub(root, prefix);
        let c_out = planes * 4;
        let downsample = (stride != 1 || c_in != c_out).then(|| ConvBn::new(&p, "downsample.0", "downsample.1", c_in, c_out, 1, stride, false));
        Self {
            conv1: ConvBn::new(&p, "conv1", "bn1", c_in, planes, 1, 1, false),
            conv2: ConvBn::new(&p, "conv2", "bn2", planes, planes, 3, stride, false),
            conv3: ConvBn::new(&p, "conv3", "bn3", planes, c_out, 1, 1, zero_init_residual),
            downsample,
            prefix: format!("{prefix}."),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = self.conv1.forward_t(x, train).relu_();
        let y = self.conv2.forward_t(&y, train).relu_();
        let mut y = self.conv3.forward_t(&y, train);
        match &self.downsample {
            Some(d) => y += d.forward_t(x, train),
            None => y += x,
        };
        y.relu_()
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> Result<String> {
        let p = &self.prefix;
        let y = self.conv1.emit(g, p, x)?;
        let y = g.node("Relu", &[&y], &format!("{p}relu1"), vec![])?;
        let y = self.conv2.emit(g, p, &y)?;
        let y = g.node("Relu", &[&y], &format!("{p}relu2"), vec![])?;
        let y = self.conv3.emit(g, p, &y)?;
        let shortcut = match &self.downsample {
            Some(d) => d.emit(g, p, x)?,
            None => x.to_owned(),
        };
        let s = g.node("Add", &[&y, &shortcut], &format!("{p}add"), vec![])?;
        g.node("Relu", &[&s], &format!("{p}out"), vec![])
    }
}

/// A residual block of either kind.
#[derive(Debug)]
enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Block::Basic(b) => b.forward_t(x, train),
            Block::Bottleneck(b) => b.forward_t(x, train),
        }
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> Result<String> {
        match self {
            Block::Basic(b) => b.emit(g, x),
            Block::Bottleneck(b) => b.emit(g, x),
        }
    }
}

/// The encoder: images [N, C, H, W] → features [N, D] after global average pooling (D = 8W for
/// ResNet-18, 32W for ResNet-50).
#[derive(Debug)]
pub struct ResNet {
    stem: ConvBn,
    /// The ImageNet stem's 3×3 stride-2 max-pool (padding 1).
    max_pool: bool,
    blocks: Vec<Block>,
    out_dim: i64,
}

impl ResNet {
    pub fn new(root: &nn::Path, in_channels: i64, depth: ResnetDepth, stem: ResnetStem, width: i64, zero_init_residual: bool) -> Self {
        let (stem_kernel, stem_stride) = match stem {
            ResnetStem::Cifar => (3, 1),
            ResnetStem::Imagenet => (7, 2),
        };
        let stem_conv = ConvBn::new(root, "conv1", "bn1", in_channels, width, stem_kernel, stem_stride, false);
        let (layers, expansion) = match depth {
            ResnetDepth::R18 => ([2usize, 2, 2, 2], 1),
            ResnetDepth::R50 => ([3, 4, 6, 3], 4),
        };
        let mut blocks = Vec::new();
        let mut c_in = width;
        for (stage, n) in layers.into_iter().enumerate() {
            let planes = width << stage;
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let prefix = format!("layer{}.{i}", stage + 1);
                blocks.push(match depth {
                    ResnetDepth::R18 => Block::Basic(BasicBlock::new(root, &prefix, c_in, planes, stride, zero_init_residual)),
                    ResnetDepth::R50 => Block::Bottleneck(Bottleneck::new(root, &prefix, c_in, planes, stride, zero_init_residual)),
                });
                c_in = planes * expansion;
            }
        }
        Self { stem: stem_conv, max_pool: stem == ResnetStem::Imagenet, blocks, out_dim: c_in }
    }

    /// Feature dimension D of the output.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// Appends this network's nodes reading `input`; returns the name of the [N, D] output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, input: &str, output: &str) -> Result<String> {
        let y = self.stem.emit(g, "", input)?;
        let mut y = g.node("Relu", &[&y], "relu", vec![])?;
        if self.max_pool {
            y = g.node("MaxPool", &[&y], "maxpool", vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])])?;
        }
        for b in &self.blocks {
            y = b.emit(g, &y)?;
        }
        let pooled = g.node("GlobalAveragePool", &[&y], "avgpool", vec![])?;
        g.node("Flatten", &[&pooled], output, vec![attr_int("axis", 1)])
    }
}

impl ModuleT for ResNet {
    /// # Shapes
    /// `xs`: [N, C, H, W] normalised images → [N, D].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut y = self.stem.forward_t(xs, train).relu_(); // [N, W, H', W']
        if self.max_pool {
            y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for b in &self.blocks {
            y = b.forward_t(&y, train);
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1) // [N, D]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_names_follow_torchvision() {
        let _rng = crate::rng_lock();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = ResNet::new(&vs.root(), 1, ResnetDepth::R18, ResnetStem::Cifar, 4, true);
        let y = net.forward_t(&Tensor::randn([3, 1, 28, 28], tch::kind::FLOAT_CPU), false);
        assert_eq!(y.size(), vec![3, 32]);
        let names = vs.variables();
        for n in ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.weight"] {
            assert!(names.contains_key(n), "missing {n}");
        }
        // zero_init_residual: the last BN of each block starts at 0.
        assert_eq!(f64::try_from(names["layer1.0.bn2.weight"].abs().sum(tch::Kind::Float)).unwrap(), 0.0);
    }

    #[test]
    fn counts_the_cifar_resnet18_multiply_accumulates() {
        // Golden: Σ over the 20 convolutions of H_out·W_out·C_out·C_in·k², summed by hand for width 64
        // at 32 px: stem 1,769,472 + layer1 4 × 37,748,736 + layers 2-4 134,217,728 each =
        // 555,417,600 (the 0.56 GMac usually quoted for CIFAR ResNet-18, e.g. thop on kuangliu/pytorch-cifar).
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let enc = crate::nn::Encoder::Resnet(ResNet::new(&vs.root(), 3, ResnetDepth::R18, ResnetStem::Cifar, 64, false));
        assert_eq!(enc.macs_per_image(3, 32, tch::Device::Cpu), 555_417_600);
        // Width 8, one channel, 28 px (the quick start): the stem scales with C_in, the rest with W².
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let small = crate::nn::Encoder::Resnet(ResNet::new(&vs.root(), 1, ResnetDepth::R18, ResnetStem::Cifar, 8, false));
        let (hw, s2, s3, s4) = (28 * 28, 14 * 14, 7 * 7, 4 * 4);
        let want = hw * 8 * 9
            + 4 * hw * 64 * 9
            + s2 * (16 * 8 * 9 + 16 * 16 * 9 * 3 + 16 * 8)
            + s3 * (32 * 16 * 9 + 32 * 32 * 9 * 3 + 32 * 16)
            + s4 * (64 * 32 * 9 + 64 * 64 * 9 * 3 + 64 * 32);
        assert_eq!(small.macs_per_image(1, 28, tch::Device::Cpu), want as u64);
    }

    #[test]
    fn resnet50_and_the_imagenet_stem_follow_torchvision() {
        let _rng = crate::rng_lock();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = ResNet::new(&vs.root(), 3, ResnetDepth::R50, ResnetStem::Imagenet, 4, true);
        assert_eq!(net.out_dim(), 128); // 8W planes × 4
        let y = net.forward_t(&Tensor::randn([2, 3, 64, 64], tch::kind::FLOAT_CPU), false);
        assert_eq!(y.size(), vec![2, 128]);
        let names = vs.variables();
        for (n, shape) in [
            ("conv1.weight", vec![4, 3, 7, 7]),
            ("layer1.0.conv3.weight", vec![16, 4, 1, 1]),
            ("layer1.0.downsample.0.weight", vec![16, 4, 1, 1]), // widens at stride 1, as torchvision
            ("layer2.0.conv2.weight", vec![8, 8, 3, 3]),         // the stride sits on the 3×3 ("v1.5")
            ("layer3.5.bn3.running_var", vec![64]),
            ("layer4.2.conv3.weight", vec![128, 32, 1, 1]),
        ] {
            assert_eq!(names.get(n).map(Tensor::size), Some(shape), "{n}");
        }
        assert!(!names.contains_key("layer1.1.downsample.0.weight") && !names.contains_key("layer4.3.conv1.weight"));
        assert_eq!(f64::try_from(names["layer2.3.bn3.weight"].abs().sum(tch::Kind::Float)).unwrap(), 0.0);
    }

    #[test]
    fn counts_the_imagenet_resnets_multiply_accumulates() {
        // Golden: tests/fixtures/resnet_macs.py (closed form over torchvision's layer list), in line with
        // torchvision's model table (ResNet-18 1.81, ResNet-50 4.09 GFLOPS at 224 px with the fc layer).
        for (depth, size, want) in [(ResnetDepth::R18, 224, 1_813_561_344u64), (ResnetDepth::R50, 224, 4_087_136_256), (ResnetDepth::R50, 64, 333_643_776)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let enc = crate::nn::Encoder::Resnet(ResNet::new(&vs.root(), 3, depth, ResnetStem::Imagenet, 64, false));
            assert_eq!(enc.macs_per_image(3, size, tch::Device::Cpu), want, "{depth:?} at {size} px");
        }
    }

    #[test]
    fn onnx_export_matches_tch_after_training_steps() {
        let _rng = crate::rng_lock();
        for (depth, stem) in [(ResnetDepth::R18, ResnetStem::Cifar), (ResnetDepth::R18, ResnetStem::Imagenet), (ResnetDepth::R50, ResnetStem::Imagenet)] {
            tch::manual_seed(1);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = ResNet::new(&vs.root(), 3, depth, stem, 4, false);
            // A few SGD steps so weights and BN running statistics are far from their initial values.
            let mut opt = nn::OptimizerConfig::build(nn::Sgd { momentum: 0.9, ..Default::default() }, &vs, 0.05).unwrap();
            for _ in 0..5 {
                let x = Tensor::randn([8, 3, 32, 32], tch::kind::FLOAT_CPU) * 1.5 + 0.3;
                let loss = net.forward_t(&x, true).square().mean(tch::Kind::Float);
                opt.backward_step(&loss);
            }
            let meta = vec![("repro.method".to_owned(), "test".to_owned())];
            let net = crate::nn::Encoder::Resnet(net);
            let bytes = crate::export::encoder_onnx(&net, 3, &meta).unwrap();
            // Odd sides: the stride-2 stem, max-pool and downsampling round as PyTorch does.
            for shape in [[1, 3, 16, 16], [5, 3, 37, 29]] {
                let x = Tensor::randn(shape, tch::kind::FLOAT_CPU);
                let p = crate::export::parity::check(&net, &bytes, &x, 1e-4).unwrap();
                // ResNet-50's 16 blocks round more: 1.6e-5 seen at 16 px, where layer 4 is 1×1.
                let bound = if depth == ResnetDepth::R50 { 5e-5 } else { 1e-5 };
                assert!(p.rel_diff < bound, "{depth:?} {stem:?}: {p:?}");
            }
        }
    }
}
