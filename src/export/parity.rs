//! Parity of an exported encoder: ONNX Runtime (graph optimisations off, so the file itself is what
//! is checked) against the tch forward in eval mode, on the same normalised real images.

use anyhow::{bail, Result};
use ndarray::Array4;
use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use crate::eval::session::Encoder as Session;
use crate::nn::Encoder;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parity {
    pub images: usize,
    pub max_abs_diff: f64,
    /// max |ort − tch| / max |tch|.
    pub rel_diff: f64,
    pub tolerance: f64,
}

/// `x`: normalised float images [N, C, H, W] on any device.
pub fn check(encoder: &Encoder, onnx: &[u8], x: &Tensor, tolerance: f64) -> Result<Parity> {
    let reference = tch::no_grad(|| encoder.forward_t(x, false)).to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let xs = x.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let dims: Vec<usize> = xs.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(xs.flatten(0, -1))?;
    let input = Array4::from_shape_vec((dims[0], dims[1], dims[2], dims[3]), values)?;
    let mut session = Session::from_bytes(onnx, false)?;
    let got = session.run(input.view())?;
    let want = Vec::<f32>::try_from(reference.flatten(0, -1))?;
    if got.len() != want.len() {
        bail!("parity: ONNX output has {} values, tch has {}", got.len(), want.len());
    }
    let max_abs_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs() as f64).fold(0.0, f64::max).max(1e-12);
    let rel_diff = max_abs_diff / scale;
    let p = Parity { images: dims[0], max_abs_diff, rel_diff, tolerance };
    if !(rel_diff <= tolerance) {
        bail!("ONNX parity failed: relative difference {rel_diff:.3e} (max |Δ| {max_abs_diff:.3e}) exceeds export.parity_tolerance {tolerance:.1e}");
    }
    Ok(p)
}
