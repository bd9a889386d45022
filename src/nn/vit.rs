//! Vision Transformer, as MAE's encoder (`facebookresearch/mae` @ efb2a806, `models_mae.py`, with
//! timm's `PatchEmbed` and `Block`): a p×p patch embedding (a stride-p convolution), a cls token,
//! the fixed 2-D sin-cos position embedding (`util/pos_embed.py`: the first half of each row encodes
//! the patch's column, the second half its row; the cls row is zeros), pre-norm blocks (LayerNorm
//! ε 1e-6, multi-head self-attention with a qkv bias, an MLP of ratio 4 with exact (erf) GELU) and a
//! final LayerNorm. The embedding is the final-normed cls token, or the mean of the final-normed
//! patch tokens (`pool: mean`; MAE's own `global_pool` uses a separate `fc_norm` trained only in
//! fine-tuning, which pre-training never reaches). This file holds the tch forward, the masked
//! forward MAE trains (`forward_masked`) and the ONNX emitter of the same network; `export::parity`
//! and the tests here check them against each other through ONNX Runtime.
//!
//! Initialisation as MAE's `initialize_weights`: Xavier-uniform Linear weights and the patch
//! convolution's weight viewed as [D, C·p·p], zero biases, LayerNorm 1/0, cls token N(0, 0.02).
//! Parameter names follow timm (`blocks.0.attn.qkv.weight`, `patch_embed.proj.weight`).

use anyhow::{bail, Result};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::{emit_conv, linear as lin, sub};
use crate::export::graph::{attr_float, attr_int, attr_ints, GraphBuilder};
use crate::plan::{VitPool, VitSize};

/// LayerNorm epsilon of MAE's ViTs (`partial(nn.LayerNorm, eps=1e-6)`).
pub const LN_EPS: f64 = 1e-6;

/// The fixed 2-D sin-cos position embedding of a `grid`×`grid` patch grid, [grid², D] (float64
/// arithmetic as numpy's, then float32), without the cls row.
pub fn sincos_2d(dim: i64, grid: i64) -> Tensor {
    let quarter = (dim / 4) as usize;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut rows = Vec::with_capacity((grid * grid * dim) as usize);
    for r in 0..grid {
        for c in 0..grid {
            // MAE: meshgrid(grid_w, grid_h) puts the column index first.
            for pos in [c as f64, r as f64] {
                rows.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                rows.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    Tensor::from_slice(&rows).reshape([grid * grid, dim])
}

fn xavier(fan_in: i64, fan_out: i64) -> nn::Init {
    let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// A Linear with Xavier-uniform weight and zero bias (MAE's `_init_weights`).
pub fn linear(p: &nn::Path, name: &str, i: i64, o: i64) -> nn::Linear {
    nn::linear(sub(p, name), i, o, nn::LinearConfig { ws_init: xavier(i, o), bs_init: Some(nn::Init::Const(0.0)), bias: true })
}

/// A LayerNorm of MAE's ViTs (ε 1e-6, weight 1, bias 0).
pub fn layer_norm(p: &nn::Path, name: &str, d: i64) -> nn::LayerNorm {
    nn::layer_norm(sub(p, name), vec![d], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() })
}

/// ONNX `LayerNormalization` over the last axis.
fn emit_layer_norm(g: &mut GraphBuilder, name: &str, ln: &nn::LayerNorm, x: &str) -> Result<String> {
    let (Some(w), Some(b)) = (&ln.ws, &ln.bs) else { bail!("layer norm {name} has no affine parameters") };
    let w = g.weight(&format!("{name}.weight"), w)?;
    let b = g.weight(&format!("{name}.bias"), b)?;
    g.node("LayerNormalization", &[x, &w, &b], &format!("{name}.out"), vec![attr_int("axis", -1), attr_float("epsilon", LN_EPS as f32)])
}

/// ONNX x·Wᵀ + b of a Linear on the last axis.
fn emit_linear(g: &mut GraphBuilder, name: &str, l: &nn::Linear, x: &str) -> Result<String> {
    let w = g.weight(&format!("{name}.weight_t"), &l.ws.transpose(0, 1))?;
    let y = g.node("MatMul", &[x, &w], &format!("{name}.matmul"), vec![])?;
    match &l.bs {
        Some(b) => {
            let b = g.weight(&format!("{name}.bias"), b)?;
            g.node("Add", &[&y, &b], &format!("{name}.out"), vec![])
        }
        None => Ok(y),
    }
}

/// A pre-norm transformer block (timm `Block`, MLP ratio 4); MAE's decoder uses it too.
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
    name: String,
}

impl Block {
    pub fn new(p: &nn::Path, name: &str, dim: i64, heads: i64) -> Self {
        let q = sub(p, name);
        Self {
            norm1: layer_norm(&q, "norm1", dim),
            qkv: linear(&q, "attn.qkv", dim, 3 * dim),
            proj: linear(&q, "attn.proj", dim, dim),
            norm2: layer_norm(&q, "norm2", dim),
            fc1: linear(&q, "mlp.fc1", dim, 4 * dim),
            fc2: linear(&q, "mlp.fc2", 4 * dim, dim),
            heads,
            name: name.to_owned(),
        }
    }

    /// `x`: [N, L, D] → [N, L, D].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (n, l, d) = x.size3().unwrap_or((0, 0, 0));
        let hd = d / self.heads;
        let qkv = lin(&self.norm1.forward(x), &self.qkv).reshape([n, l, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2)); // [N, heads, L, hd]
        let attn = (q.matmul(&k.transpose(-2, -1)) * (hd as f64).powf(-0.5)).softmax(-1, Kind::Float);
        super::add_macs(2 * (n * l * l * d) as u64); // q·kᵀ and attn·v, each N·heads·L·L·hd
        let y = lin(&attn.matmul(&v).transpose(1, 2).reshape([n, l, d]), &self.proj);
        let x = x + y;
        let h = lin(&lin(&self.norm2.forward(&x), &self.fc1).gelu("none"), &self.fc2);
        x + h
    }

    fn emit(&self, g: &mut GraphBuilder, x: &str, dim: i64) -> Result<String> {
        let p = &self.name;
        let hd = dim / self.heads;
        let h = emit_layer_norm(g, &format!("{p}.norm1"), &self.norm1, x)?;
        let qkv = emit_linear(g, &format!("{p}.attn.qkv"), &self.qkv, &h)?;
        let heads_shape = g.ints(&format!("{p}.attn.heads_shape"), &[0, 0, self.heads, hd])?;
        let axis = g.ints(&format!("{p}.attn.axis"), &[2])?;
        let mut qkv_parts = Vec::new();
        for (i, part) in ["q", "k", "v"].iter().enumerate() {
            let start = g.ints(&format!("{p}.attn.{part}.start"), &[i as i64 * dim])?;
            let end = g.ints(&format!("{p}.attn.{part}.end"), &[(i as i64 + 1) * dim])?;
            let t = g.node("Slice", &[&qkv, &start, &end, &axis], &format!("{p}.attn.{part}"), vec![])?;
            let t = g.node("Reshape", &[&t, &heads_shape], &format!("{p}.attn.{part}.heads"), vec![])?;
            // q and v: [N, heads, L, hd]; k: [N, heads, hd, L].
            let perm: &[i64] = if *part == "k" { &[0, 2, 3, 1] } else { &[0, 2, 1, 3] };
            qkv_parts.push(g.node("Transpose", &[&t], &format!("{p}.attn.{part}.t"), vec![attr_ints("perm", perm)])?);
        }
        let scores = g.node("MatMul", &[&qkv_parts[0], &qkv_parts[1]], &format!("{p}.attn.scores"), vec![])?;
        let scale = g.weight(&format!("{p}.attn.scale"), &Tensor::from((hd as f64).powf(-0.5) as f32))?;
        let scores = g.node("Mul", &[&scores, &scale], &format!("{p}.attn.scaled"), vec![])?;
        let attn = g.node("Softmax", &[&scores], &format!("{p}.attn.softmax"), vec![attr_int("axis", -1)])?;
        let y = g.node("MatMul", &[&attn, &qkv_parts[2]], &format!("{p}.attn.mix"), vec![])?;
        let y = g.node("Transpose", &[&y], &format!("{p}.attn.mix.t"), vec![attr_ints("perm", &[0, 2, 1, 3])])?;
        let merged = g.ints(&format!("{p}.attn.merged_shape"), &[0, 0, dim])?;
        let y = g.node("Reshape", &[&y, &merged], &format!("{p}.attn.merged"), vec![])?;
        let y = emit_linear(g, &format!("{p}.attn.proj"), &self.proj, &y)?;
        let x = g.node("Add", &[x, &y], &format!("{p}.residual1"), vec![])?;
        let h = emit_layer_norm(g, &format!("{p}.norm2"), &self.norm2, &x)?;
        let h = emit_linear(g, &format!("{p}.mlp.fc1"), &self.fc1, &h)?;
        let h = emit_gelu(g, &format!("{p}.mlp.gelu"), &h)?;
        let h = emit_linear(g, &format!("{p}.mlp.fc2"), &self.fc2, &h)?;
        g.node("Add", &[&x, &h], &format!("{p}.out"), vec![])
    }
}

/// ONNX exact GELU: x · ½ · (1 + erf(x / √2)).
fn emit_gelu(g: &mut GraphBuilder, name: &str, x: &str) -> Result<String> {
    let sqrt2 = g.weight(&format!("{name}.sqrt2"), &Tensor::from(std::f32::consts::SQRT_2))?;
    let one = g.weight(&format!("{name}.one"), &Tensor::from(1.0f32))?;
    let half = g.weight(&format!("{name}.half"), &Tensor::from(0.5f32))?;
    let t = g.node("Div", &[x, &sqrt2], &format!("{name}.div"), vec![])?;
    let t = g.node("Erf", &[&t], &format!("{name}.erf"), vec![])?;
    let t = g.node("Add", &[&t, &one], &format!("{name}.add"), vec![])?;
    let t = g.node("Mul", &[x, &t], &format!("{name}.mul"), vec![])?;
    g.node("Mul", &[&t, &half], &format!("{name}.out"), vec![])
}

/// What a masked forward returns: the encoded visible tokens (cls first) and, per image, which
/// patches were removed and how to undo the shuffle (MAE's `forward_encoder`).
pub struct Masked {
    /// [N, 1 + kept, D], after the final LayerNorm.
    pub latent: Tensor,
    /// [N, L], 1 for a removed patch, 0 for a kept one, in the original patch order.
    pub mask: Tensor,
    /// [N, L]: the argsort that restores the original order (MAE's `ids_restore`).
    pub ids_restore: Tensor,
}

/// The ViT encoder: images [N, C, S, S] → [N, D].
#[derive(Debug)]
pub struct Vit {
    patch: nn::Conv2D,
    cls_token: Tensor,
    /// [1, 1 + L, D], fixed (not a variable).
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    dim: i64,
    patch_size: i64,
    grid: i64,
    in_channels: i64,
    pool: VitPool,
}

impl Vit {
    pub fn new(root: &nn::Path, in_channels: i64, image_size: usize, size: VitSize, depth: Option<usize>, patch_size: i64, pool: VitPool) -> Result<Self> {
        let s = image_size as i64;
        if patch_size < 1 || s % patch_size != 0 {
            bail!("backbone.patch_size {patch_size} must divide the {s} px images (4 for 32 px, 8 for 64 px, 16 for 224 px)");
        }
        let (dim, size_depth, heads) = size.dims();
        let depth = depth.unwrap_or(size_depth);
        let grid = s / patch_size;
        let fan_in = in_channels * patch_size * patch_size;
        let cfg = nn::ConvConfig { stride: patch_size, ws_init: xavier(fan_in, dim), bs_init: nn::Init::Const(0.0), ..Default::default() };
        let patch = nn::conv2d(sub(root, "patch_embed.proj"), in_channels, dim, patch_size, cfg);
        let cls_token = root.var("cls_token", &[1, 1, dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let pos = Tensor::cat(&[Tensor::zeros([1, dim], tch::kind::FLOAT_CPU), sincos_2d(dim, grid)], 0).unsqueeze(0).to_device(root.device());
        let blocks = (0..depth).map(|i| Block::new(root, &format!("blocks.{i}"), dim, heads)).collect();
        Ok(Self { patch, cls_token, pos_embed: pos, blocks, norm: layer_norm(root, "norm", dim), dim, patch_size, grid, in_channels, pool })
    }

    pub fn out_dim(&self) -> i64 {
        self.dim
    }

    pub fn patch_size(&self) -> i64 {
        self.patch_size
    }

    /// Patches per side.
    pub fn grid(&self) -> i64 {
        self.grid
    }

    pub fn in_channels(&self) -> i64 {
        self.in_channels
    }

    /// The final LayerNorm applied to `x` once more (M-MAE's and U-MAE's `self.norm(latent)[:, 0]`).
    pub fn renorm(&self, x: &Tensor) -> Tensor {
        self.norm.forward(x)
    }

    /// Patches of `xs` embedded, [N, L, D], with their position embedding added.
    fn embed(&self, xs: &Tensor) -> Tensor {
        let t = super::conv(xs, &self.patch).flatten(2, -1).transpose(1, 2); // [N, L, D]
        t + self.pos_embed.narrow(1, 1, self.grid * self.grid)
    }

    /// The cls token (with its position row, zeros) prepended, then the blocks and the final norm.
    fn encode(&self, tokens: &Tensor) -> Tensor {
        let n = tokens.size()[0];
        let cls = (&self.cls_token + self.pos_embed.narrow(1, 0, 1)).expand([n, 1, self.dim], true);
        let mut x = Tensor::cat(&[cls, tokens.shallow_clone()], 1);
        for b in &self.blocks {
            x = b.forward(&x);
        }
        self.norm.forward(&x)
    }

    /// The embedding of final-normed tokens [N, 1 + L', D].
    fn pooled(&self, x: &Tensor) -> Tensor {
        match self.pool {
            VitPool::Cls => x.select(1, 0),
            VitPool::Mean => x.narrow(1, 1, x.size()[1] - 1).mean_dim(1, false, Kind::Float),
        }
    }

    /// MAE's masked encoder pass: per image, a random `ratio` of the patches is removed (the argsort
    /// of uniform noise from libtorch's generator; the first ⌊L·(1 − ratio)⌋ are kept), after the
    /// position embedding is added.
    pub fn forward_masked(&self, xs: &Tensor, ratio: f64) -> Masked {
        let x = self.embed(xs);
        let (n, l, d) = x.size3().unwrap_or((0, 0, 0));
        let keep = ((l as f64) * (1.0 - ratio)) as i64;
        let noise = Tensor::rand([n, l], (Kind::Float, xs.device()));
        let ids_shuffle = noise.argsort(1, false);
        let ids_restore = ids_shuffle.argsort(1, false);
        let ids_keep = ids_shuffle.narrow(1, 0, keep);
        let visible = x.gather(1, &ids_keep.unsqueeze(-1).expand([n, keep, d], true), false);
        let mask = Tensor::ones([n, l], (Kind::Float, xs.device()));
        let _ = mask.narrow(1, 0, keep).fill_(0.0);
        let mask = mask.gather(1, &ids_restore, false);
        Masked { latent: self.encode(&visible), mask, ids_restore }
    }

    /// Appends this network's nodes reading `input`; returns the name of the [N, D] output.
    pub fn emit_onnx(&self, g: &mut GraphBuilder, input: &str, output: &str) -> Result<String> {
        let d = self.dim;
        let t = emit_conv(g, "patch_embed.proj", &self.patch, input, self.patch_size, self.patch_size, 0)?;
        let flat_shape = g.ints("patch_embed.flat_shape", &[0, d, -1])?;
        let t = g.node("Reshape", &[&t, &flat_shape], "patch_embed.flat", vec![])?;
        let t = g.node("Transpose", &[&t], "patch_embed.tokens", vec![attr_ints("perm", &[0, 2, 1])])?;
        let pos = g.weight("pos_embed.patches", &self.pos_embed.narrow(1, 1, self.grid * self.grid))?;
        let t = g.node("Add", &[&t, &pos], "tokens", vec![])?;
        // The cls token, broadcast to the batch: Expand to [N, 1, D] with N read from the input.
        let cls = g.weight("cls_token_with_pos", &(&self.cls_token + self.pos_embed.narrow(1, 0, 1)))?;
        let shape = g.node("Shape", &[input], "input_shape", vec![])?;
        let (zero, one) = (g.ints("axis0.start", &[0])?, g.ints("axis0.end", &[1])?);
        let batch = g.node("Slice", &[&shape, &zero, &one], "batch", vec![])?;
        let rest = g.ints("cls.rest_shape", &[1, d])?;
        let cls_shape = g.node("Concat", &[&batch, &rest], "cls.shape", vec![attr_int("axis", 0)])?;
        let cls = g.node("Expand", &[&cls, &cls_shape], "cls", vec![])?;
        let mut x = g.node("Concat", &[&cls, &t], "sequence", vec![attr_int("axis", 1)])?;
        for b in &self.blocks {
            x = b.emit(g, &x, d)?;
        }
        let x = emit_layer_norm(g, "norm", &self.norm, &x)?;
        match self.pool {
            VitPool::Cls => {
                let idx = g.ints("cls.index", &[0])?;
                let c = g.node("Gather", &[&x, &idx], "cls.out", vec![attr_int("axis", 1)])?;
                g.node("Flatten", &[&c], output, vec![attr_int("axis", 1)])
            }
            VitPool::Mean => {
                let (start, end, axis) = (g.ints("patches.start", &[1])?, g.ints("patches.end", &[i64::MAX])?, g.ints("patches.axis", &[1])?);
                let p = g.node("Slice", &[&x, &start, &end, &axis], "patches", vec![])?;
                g.node("ReduceMean", &[&p], output, vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)])
            }
        }
    }
}

impl ModuleT for Vit {
    /// # Shapes
    /// `xs`: [N, C, S, S] normalised images → [N, D]. No dropout or BatchNorm: `train` changes nothing.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.pooled(&self.encode(&self.embed(xs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sincos_matches_maes_formula() {
        // MAE get_2d_sincos_pos_embed(embed_dim=8, grid_size=2): row for (row 1, column 0).
        let e = sincos_2d(8, 2);
        assert_eq!(e.size(), [4, 8]);
        let row: Vec<f32> = Vec::try_from(e.get(2)).unwrap(); // grid position (r = 1, c = 0)
                                                              // Column half (pos 0): sin 0, sin 0, cos 0, cos 0; row half (pos 1): sin(1), sin(1e-2), cos(1), cos(1e-2).
        let want = [0.0, 0.0, 1.0, 1.0, 1f32.sin(), 0.01f32.sin(), 1f32.cos(), 0.01f32.cos()];
        for (a, b) in row.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{row:?}");
        }
    }

    #[test]
    fn shapes_names_and_masking() {
        let _rng = crate::rng_lock();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let v = Vit::new(&vs.root(), 3, 32, VitSize::Tiny, None, 4, VitPool::Cls).unwrap();
        let names = vs.variables();
        for n in ["cls_token", "patch_embed.proj.weight", "blocks.11.attn.qkv.bias", "blocks.0.mlp.fc2.weight", "norm.weight"] {
            assert!(names.contains_key(n), "{n}");
        }
        let x = Tensor::randn([2, 3, 32, 32], tch::kind::FLOAT_CPU);
        assert_eq!(v.forward_t(&x, true).size(), [2, 192]);
        tch::manual_seed(5);
        let m = v.forward_masked(&x, 0.75);
        assert_eq!(m.latent.size(), [2, 1 + 16, 192]);
        assert_eq!(f64::try_from(m.mask.sum(Kind::Float)).unwrap(), 2.0 * 48.0);
        tch::manual_seed(5);
        assert!(v.forward_masked(&x, 0.75).mask.equal(&m.mask), "masking is seeded");
        assert!(Vit::new(&(vs.root() / "other"), 3, 30, VitSize::Tiny, None, 4, VitPool::Cls).is_err());
    }

    /// Multiply-accumulates of ViT-Tiny/16 at 224 px counted on a real forward pass equal the
    /// closed form: per block L·(3D² + D² + 8D²) for qkv, proj and the MLP plus 2·L²·D for the two
    /// attention products (L = 197 tokens with the cls token), and 196·D·3·16² for the patch
    /// embedding; 1.2535 GMAC, DeiT-Ti's published "1.3 GFLOPs" (fvcore counts a MAC as one FLOP).
    #[test]
    fn macs_match_the_closed_form() {
        let _rng = crate::rng_lock();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let v = super::super::Encoder::Vit(Vit::new(&vs.root(), 3, 224, VitSize::Tiny, None, 16, VitPool::Cls).unwrap());
        let (l, d) = (197u64, 192u64);
        let want = 12 * (l * 12 * d * d + 2 * l * l * d) + 196 * d * 3 * 16 * 16;
        assert_eq!(v.macs_per_image(3, 224, tch::Device::Cpu), want);
        assert!((want as f64 / 1e9 - 1.2535).abs() < 1e-4, "{want}");
    }

    /// The ONNX graph equals the tch forward through ONNX Runtime, for both embeddings, after a few
    /// optimizer steps (so no weight is at its initial value), at batch 1 and 5.
    #[test]
    fn onnx_export_matches_tch_after_training_steps() {
        let _rng = crate::rng_lock();
        for pool in [VitPool::Cls, VitPool::Mean] {
            tch::manual_seed(2);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = Vit::new(&vs.root(), 3, 16, VitSize::Tiny, None, 4, pool).unwrap();
            let mut opt = nn::OptimizerConfig::build(nn::Adam::default(), &vs, 1e-3).unwrap();
            for _ in 0..3 {
                let x = Tensor::randn([4, 3, 16, 16], tch::kind::FLOAT_CPU);
                let loss = (net.forward_t(&x, true) - 0.5).square().mean(Kind::Float);
                opt.backward_step(&loss);
            }
            let meta = vec![("repro.method".to_owned(), "test".to_owned())];
            let net = crate::nn::Encoder::Vit(net);
            let bytes = crate::export::encoder_onnx(&net, 3, &meta).unwrap();
            for n in [1, 5] {
                let x = Tensor::randn([n, 3, 16, 16], tch::kind::FLOAT_CPU);
                let p = crate::export::parity::check(&net, &bytes, &x, 1e-4).unwrap();
                assert!(p.rel_diff < 1e-5, "{pool:?}: {p:?}");
            }
        }
    }
}
