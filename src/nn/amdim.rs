//! The AMDIM encoder (Bachman, Hjelm, Buchwalter, NeurIPS 2019, arXiv 1906.00910), as the official
//! code builds it: `Philip-Bachman/amdim-public` @ 8754ae1, `model.py` (`Encoder`, `Conv3x3`,
//! `ConvResNxN`, `ConvResBlock`, `MaybeBatchNorm2d`). This file holds the tch forward and the ONNX
//! emitter of the same network; `export::parity` checks them.
//!
//! The trunk has no ReLU on its main path: a residual unit is `shortcut(x) + conv1x1(relu(bn?(convKxK(x))))`
//! with nothing after the sum; the shortcut is an average pool of the unit's window (zero-padded with
//! new channels when the unit widens). `conv1x1` starts at zero, so every unit starts as its shortcut.
//! The layer list is chosen by the input size, as the official `encoder_size`:
//! - 32 (CIFAR): conv3×3 → W; unit 1×1; block(→2W, 4/2); block(→4W, 2/2); [7×7] block(3/1) [5×5];
//!   block(3/1); unit(→n_rkhs, 3/1); BatchNorm [1×1].
//! - 64 (STL-10): conv3×3 → W; block(→2W, 4/2); block(→4W, 4/2); block(→8W, 2/2); [7×7] … as above.
//! - 128 (ImageNet): conv5×5/2 with reflect padding 2; conv3×3; then as 64.
//!
//! `[7×7]` is followed by an optional BatchNorm (`use_bn`, off in the official runs), as is every
//! unit's hidden layer. A block is one unit with the window and `n_depth − 1` 1×1 units. The output,
//! and the exported embedding, is r1: the final always-on BatchNorm's n_rkhs channels at 1×1,
//! flattened, which is what the official evaluators read (`flatten(r1)`). The 5×5 and 7×7 trunk
//! maps feed the method's projections (`methods::amdim`).
//!
//! Initialisation as the official code: unit convolutions `kaiming_uniform_(a=√5)` (PyTorch's
//! default U(±1/√fan_in)), the unit's 1×1 convolution 0; stem convolutions and their biases PyTorch's
//! default; BatchNorm weight 1, bias 0.

use anyhow::{bail, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::{emit_batch_norm, emit_conv, sub, torch_default, BN_EPS};
use crate::export::graph::{attr_int, attr_ints, attr_string, GraphBuilder};

fn conv(root: &nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, bias: bool, ws_init: nn::Init) -> nn::Conv2D {
    let fan_in = c_in * k * k;
    nn::conv2d(root, c_in, c_out, k, nn::ConvConfig { stride, padding: 0, bias, ws_init, bs_init: torch_default(fan_in), ..Default::default() })
}

fn batch_norm(root: &nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(root, c, nn::BatchNormConfig { eps: BN_EPS, ..Default::default() })
}

/// `Conv3x3`: optional explicit padding, convolution with bias, ReLU (the official stem never uses BN).
#[derive(Debug)]
struct Stem {
    conv: nn::Conv2D,
    k: i64,
    stride: i64,
    /// Reflect padding on every side (ImageNet's first layer), 0 for none.
    pad: i64,
    name: String,
}

impl Stem {
    fn new(root: &nn::Path, name: &str, c_in: i64, c_out: i64, k: i64, stride: i64, pad: i64) -> Self {
        let conv = conv(&(root / name), c_in, c_out, k, stride, true, torch_default(c_in * k * k));
        Self { conv, k, stride, pad, name: name.to_owned() }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = if self.pad > 0 { x.pad([self.pad; 4], "reflect", None::<f64>) } else { x.shallow_clone() };
        super::conv(&x, &self.conv).relu()
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> Result<String> {
        let mut x = x.to_owned();
        if self.pad > 0 {
            let p = self.pad;
            let pads = g.ints(&format!("{}.pads", self.name), &[0, 0, p, p, 0, 0, p, p])?;
            x = g.node("Pad", &[&x, &pads], &format!("{}.padded", self.name), vec![attr_string("mode", "reflect")])?;
        }
        let y = emit_conv(g, &self.name, &self.conv, &x, self.k, self.stride, 0)?;
        g.node("Relu", &[&y], &format!("{}.relu", self.name), vec![])
    }
}

/// `ConvResNxN`: `avgpool_k(x)` (channels zero-padded to `c_out`) + conv1x1(relu(bn?(conv_k(x)))).
#[derive(Debug)]
struct Unit {
    conv1: nn::Conv2D,
    bn1: Option<nn::BatchNorm>,
    conv2: nn::Conv2D,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    name: String,
}

impl Unit {
    fn new(root: &nn::Path, name: &str, c_in: i64, c_out: i64, k: i64, stride: i64, use_bn: bool) -> Self {
        let p = sub(root, name);
        Self {
            conv1: conv(&(&p / "conv1"), c_in, c_out, k, stride, false, torch_default(c_in * k * k)),
            bn1: use_bn.then(|| batch_norm(&(&p / "bn1"), c_out)),
            conv2: conv(&(&p / "conv2"), c_out, c_out, 1, 1, false, nn::Init::Const(0.0)),
            c_in,
            c_out,
            k,
            stride,
            name: name.to_owned(),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = super::conv(x, &self.conv1);
        if let Some(bn) = &self.bn1 {
            h = h.apply_t(bn, train);
        }
        let h = super::conv(&h.relu(), &self.conv2);
        let mut s = if self.k == 1 && self.stride == 1 {
            x.shallow_clone()
        } else {
            x.avg_pool2d([self.k, self.k], [self.stride, self.stride], [0, 0], false, true, None::<i64>)
        };
        if self.c_out > self.c_in {
            s = s.pad([0, 0, 0, 0, 0, self.c_out - self.c_in], "constant", Some(0.0));
        }
        h + s
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str) -> Result<String> {
        let n = &self.name;
        let mut h = emit_conv(g, &format!("{n}.conv1"), &self.conv1, x, self.k, self.stride, 0)?;
        if let Some(bn) = &self.bn1 {
            h = emit_batch_norm(g, &format!("{n}.bn1"), bn, &h)?;
        }
        let h = g.node("Relu", &[&h], &format!("{n}.relu"), vec![])?;
        let h = emit_conv(g, &format!("{n}.conv2"), &self.conv2, &h, 1, 1, 0)?;
        let mut s = x.to_owned();
        if !(self.k == 1 && self.stride == 1) {
            let (k, st) = (self.k, self.stride);
            s = g.node("AveragePool", &[&s], &format!("{n}.pool"), vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[st, st]), attr_ints("pads", &[0, 0, 0, 0]), attr_int("count_include_pad", 1)])?;
        }
        if self.c_out > self.c_in {
            let pads = g.ints(&format!("{n}.widen"), &[0, 0, 0, 0, 0, self.c_out - self.c_in, 0, 0])?;
            s = g.node("Pad", &[&s, &pads], &format!("{n}.shortcut"), vec![])?;
        }
        g.node("Add", &[&h, &s], &format!("{n}.out"), vec![])
    }
}

#[derive(Debug)]
enum Layer {
    Stem(Stem),
    Unit(Unit),
    /// A BatchNorm (named), applied when present (`MaybeBatchNorm2d` with `use_bn` off is absent).
    Norm(Option<nn::BatchNorm>, String),
}

/// The AMDIM encoder: images → r1 [N, n_rkhs]; [`Amdim::maps`] also gives the 5×5 and 7×7 trunk maps.
#[derive(Debug)]
pub struct Amdim {
    layers: Vec<Layer>,
    /// Index of the layer whose output is the 7×7 map, and of the 5×5 one.
    at7: usize,
    at5: usize,
    n_rkhs: i64,
    /// Channels of the 5×5 and 7×7 maps (4W at 32 px, 8W at 64 and 128).
    map_channels: i64,
}

/// The three outputs the AMDIM loss reads.
pub struct Maps {
    /// [N, n_rkhs]
    pub r1: Tensor,
    /// [N, C, 5, 5]
    pub f5: Tensor,
    /// [N, C, 7, 7]
    pub f7: Tensor,
}

impl Amdim {
    /// `image_size` chooses the layout (32, 64 or 128, as the official `encoder_size`).
    pub fn new(root: &nn::Path, in_channels: i64, image_size: usize, width: i64, n_rkhs: i64, n_depth: usize, use_bn: bool) -> Result<Self> {
        let w = width;
        let mut layers = Vec::new();
        let block = |layers: &mut Vec<Layer>, i: usize, c_in: i64, c_out: i64, k: i64, stride: i64| {
            layers.push(Layer::Unit(Unit::new(root, &format!("block{i}.0"), c_in, c_out, k, stride, use_bn)));
            for d in 1..n_depth {
                layers.push(Layer::Unit(Unit::new(root, &format!("block{i}.{d}"), c_out, c_out, 1, 1, use_bn)));
            }
        };
        let c = match image_size {
            32 => {
                layers.push(Layer::Stem(Stem::new(root, "stem0", in_channels, w, 3, 1, 0)));
                layers.push(Layer::Unit(Unit::new(root, "unit0", w, w, 1, 1, use_bn)));
                block(&mut layers, 1, w, 2 * w, 4, 2);
                block(&mut layers, 2, 2 * w, 4 * w, 2, 2);
                4 * w
            }
            64 | 128 => {
                if image_size == 128 {
                    layers.push(Layer::Stem(Stem::new(root, "stem0", in_channels, w, 5, 2, 2)));
                    layers.push(Layer::Stem(Stem::new(root, "stem1", w, w, 3, 1, 0)));
                } else {
                    layers.push(Layer::Stem(Stem::new(root, "stem0", in_channels, w, 3, 1, 0)));
                }
                block(&mut layers, 1, w, 2 * w, 4, 2);
                block(&mut layers, 2, 2 * w, 4 * w, 4, 2);
                block(&mut layers, 3, 4 * w, 8 * w, 2, 2);
                8 * w
            }
            other => bail!(
                "the amdim backbone takes 32, 64 or 128 px images (the official encoder_size); these are {other} px: set data.image_size to 32, 64 or 128"
            ),
        };
        if n_rkhs < c {
            bail!("backbone.n_rkhs = {n_rkhs} must be at least the trunk's {c} channels (8·width at 64/128 px, 4·width at 32 px)");
        }
        layers.push(Layer::Norm(use_bn.then(|| batch_norm(&(root / "bn7"), c)), "bn7".into()));
        let at7 = layers.len() - 1;
        block(&mut layers, 8, c, c, 3, 1);
        let at5 = layers.len() - 1;
        block(&mut layers, 9, c, c, 3, 1);
        layers.push(Layer::Unit(Unit::new(root, "unit_rkhs", c, n_rkhs, 3, 1, use_bn)));
        layers.push(Layer::Norm(Some(batch_norm(&(root / "bn_rkhs"), n_rkhs)), "bn_rkhs".into()));
        Ok(Self { layers, at7, at5, n_rkhs, map_channels: c })
    }

    pub fn out_dim(&self) -> i64 {
        self.n_rkhs
    }

    pub fn map_channels(&self) -> i64 {
        self.map_channels
    }

    /// r1 and the 5×5 and 7×7 trunk maps.
    ///
    /// # Shapes
    /// `xs`: [N, C, S, S] with S the size given at construction → r1 [N, n_rkhs], f5 [N, c, 5, 5], f7 [N, c, 7, 7].
    pub fn maps(&self, xs: &Tensor, train: bool) -> Maps {
        let mut y = xs.shallow_clone();
        let (mut f5, mut f7) = (None, None);
        for (i, l) in self.layers.iter().enumerate() {
            y = match l {
                Layer::Stem(s) => s.forward(&y),
                Layer::Unit(u) => u.forward_t(&y, train),
                Layer::Norm(Some(bn), _) => y.apply_t(bn, train),
                Layer::Norm(None, _) => y,
            };
            if i == self.at7 {
                f7 = Some(y.shallow_clone());
            }
            if i == self.at5 {
                f5 = Some(y.shallow_clone());
            }
        }
        let pick = |t: Option<Tensor>| t.unwrap_or_else(|| y.shallow_clone());
        Maps { f5: pick(f5), f7: pick(f7), r1: y.flatten(1, -1) }
    }

    /// Appends this network's nodes reading `input`; returns the name of the [N, n_rkhs] output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, input: &str, output: &str) -> Result<String> {
        let mut y = input.to_owned();
        for l in &self.layers {
            y = match l {
                Layer::Stem(s) => s.emit(g, &y)?,
                Layer::Unit(u) => u.emit(g, &y)?,
                Layer::Norm(Some(bn), name) => emit_batch_norm(g, name, bn, &y)?,
                Layer::Norm(None, _) => y,
            };
        }
        g.node("Flatten", &[&y], output, vec![attr_int("axis", 1)])
    }
}

impl ModuleT for Amdim {
    /// # Shapes
    /// `xs`: [N, C, S, S] normalised images → r1 [N, n_rkhs].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.maps(xs, train).r1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_give_7_5_1_maps_at_each_size() {
        let _rng = crate::rng_lock();
        for (size, c) in [(32usize, 8i64), (64, 16), (128, 16)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = Amdim::new(&vs.root(), 3, size, 2, 24, 2, false).unwrap();
            let m = net.maps(&Tensor::randn([2, 3, size as i64, size as i64], tch::kind::FLOAT_CPU), true);
            assert_eq!(m.r1.size(), [2, 24], "{size}");
            assert_eq!(m.f5.size(), [2, c, 5, 5], "{size}");
            assert_eq!(m.f7.size(), [2, c, 7, 7], "{size}");
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let e = Amdim::new(&vs.root(), 1, 28, 2, 24, 2, false).unwrap_err().to_string();
        assert!(e.contains("28 px") && e.contains("data.image_size"), "{e}");
        assert!(Amdim::new(&vs.root(), 1, 32, 8, 16, 1, false).unwrap_err().to_string().contains("n_rkhs"));
    }

    #[test]
    fn units_start_as_their_shortcut() {
        // conv2 = 0: an average pool, channels zero-padded.
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let u = Unit::new(&vs.root(), "u", 2, 3, 2, 2, false);
        let x = Tensor::randn([1, 2, 4, 4], tch::kind::FLOAT_CPU);
        let y = u.forward_t(&x, true);
        let want = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        assert!(y.narrow(1, 0, 2).allclose(&want, 1e-6, 1e-6, false));
        assert_eq!(f64::try_from(y.narrow(1, 2, 1).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn onnx_export_matches_tch_after_training_steps() {
        let _rng = crate::rng_lock();
        tch::manual_seed(2);
        for (size, use_bn) in [(32usize, true), (128, false)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = Amdim::new(&vs.root(), 3, size, 2, 20, 2, use_bn).unwrap();
            let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-2).unwrap();
            for _ in 0..4 {
                let x = Tensor::randn([4, 3, size as i64, size as i64], tch::kind::FLOAT_CPU);
                let m = net.maps(&x, true);
                let loss = m.r1.square().mean(tch::Kind::Float) + m.f5.mean(tch::Kind::Float) + m.f7.square().mean(tch::Kind::Float);
                opt.backward_step(&loss);
            }
            let enc = crate::nn::Encoder::Amdim(net);
            let bytes = crate::export::encoder_onnx(&enc, 3, &[]).unwrap();
            let x = Tensor::randn([3, 3, size as i64, size as i64], tch::kind::FLOAT_CPU);
            let p = crate::export::parity::check(&enc, &bytes, &x, 1e-4).unwrap();
            assert!(p.rel_diff < 1e-5, "{size}: {p:?}");
        }
    }
}
