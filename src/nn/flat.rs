//! Many tensors as one: [`Flat::adopt`] moves a list of tensors (a model's parameters, an EMA
//! target's variables) into one contiguous buffer and re-points each at its segment, in its own
//! layout (channels-last weights stay channels-last), so that an update over all of them is a
//! handful of operations on one tensor instead of a few per tensor (what PyTorch's `_foreach_`
//! kernels give its optimizers; tch 0.24 has no `_foreach_` bindings). [`Flat::gather`] lines up
//! other tensors of the same shapes (gradients, the online weights) in the same order with one `cat`.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
struct Segment {
    numel: i64,
    shape: Vec<i64>,
    /// A 4-D tensor stored channels-last (NHWC in memory).
    channels_last: bool,
}

/// One contiguous buffer holding every adopted tensor's values.
#[derive(Debug)]
pub struct Flat {
    /// [Σ numel], the adopted tensors' storage.
    pub values: Tensor,
    segments: Vec<Segment>,
}

fn is_channels_last(t: &Tensor) -> bool {
    let (s, st) = (t.size(), t.stride());
    t.dim() == 4 && !t.is_contiguous() && st == [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]]
}

impl Segment {
    /// `seg` ([numel], memory order) as a tensor of this segment's shape and layout.
    fn view(&self, seg: &Tensor) -> Tensor {
        if self.channels_last {
            let s = &self.shape;
            seg.view([s[0], s[2], s[3], s[1]]).permute([0, 3, 1, 2])
        } else {
            seg.view(self.shape.as_slice())
        }
    }

    /// `t` (this segment's shape) flattened in this segment's memory order (a view when `t` has the layout).
    fn memory_order(&self, t: &Tensor) -> Tensor {
        if self.channels_last {
            t.permute([0, 2, 3, 1]).reshape([-1])
        } else {
            t.reshape([-1])
        }
    }
}

impl Flat {
    /// Copies `tensors` into one buffer and makes each a view of its segment (`set_data`: every
    /// handle to the tensor sees the move; autograd leaves stay leaves). All must share dtype and device.
    pub fn adopt(tensors: &[Tensor]) -> Result<Self> {
        let Some(first) = tensors.first() else {
            return Ok(Self { values: Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)), segments: Vec::new() });
        };
        let (kind, device) = (first.kind(), first.device());
        if let Some(t) = tensors.iter().find(|t| t.kind() != kind || t.device() != device) {
            bail!("cannot flatten tensors of {kind:?} on {device:?} with one of {:?} on {:?}", t.kind(), t.device());
        }
        let segments: Vec<Segment> = tensors.iter().map(|t| Segment { numel: t.numel() as i64, shape: t.size(), channels_last: is_channels_last(t) }).collect();
        let total: i64 = segments.iter().map(|s| s.numel).sum();
        let values = Tensor::zeros([total], (kind, device));
        tch::no_grad(|| {
            let mut offset = 0;
            for (t, seg) in tensors.iter().zip(&segments) {
                let mut view = seg.view(&values.narrow(0, offset, seg.numel));
                view.copy_(t);
                let mut t = t.shallow_clone();
                t.set_data(&view);
                offset += seg.numel;
            }
        });
        Ok(Self { values, segments })
    }

    /// A zero buffer like [`Flat::values`] (optimizer state).
    pub fn zeros(&self) -> Tensor {
        self.values.zeros_like()
    }

    /// Segment `i` of a flat tensor laid out as this one, in the adopted tensor's shape and layout (a view).
    pub fn segment(&self, flat: &Tensor, i: usize) -> Tensor {
        let offset: i64 = self.segments[..i].iter().map(|s| s.numel).sum();
        self.segments[i].view(&flat.narrow(0, offset, self.segments[i].numel))
    }

    /// `others` (one per segment, same shapes; `None` reads as zeros) as one flat tensor in this
    /// buffer's order: a single `cat`.
    pub fn gather(&self, others: &[Option<Tensor>]) -> Tensor {
        let parts: Vec<Tensor> = self
            .segments
            .iter()
            .zip(others)
            .map(|(seg, t)| match t {
                Some(t) => seg.memory_order(t),
                None => Tensor::zeros([seg.numel], (self.values.kind(), self.values.device())),
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Per segment, the sum of squares of a flat tensor laid out as this one ([segments]).
    pub fn segment_sq_norms(&self, flat: &Tensor) -> Tensor {
        let lengths = Tensor::from_slice(&self.segments.iter().map(|s| s.numel).collect::<Vec<i64>>()).to_device(flat.device());
        Tensor::segment_reduce(&flat.square(), "sum", Some(&lengths), None, None, 0, false, 0.0)
    }

    /// A per-segment value ([segments]) spread over every element of its segment ([Σ numel]).
    pub fn spread(&self, per_segment: &Tensor) -> Tensor {
        let lengths = Tensor::from_slice(&self.segments.iter().map(|s| s.numel).collect::<Vec<i64>>()).to_device(per_segment.device());
        per_segment.repeat_interleave_self_tensor(&lengths, 0, Some(self.values.numel() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopted_tensors_are_views_of_one_buffer_in_their_own_layout() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = crate::nn::to_channels_last(&Tensor::arange(2 * 3 * 2 * 2, tch::kind::FLOAT_CPU).reshape([2, 3, 2, 2]));
        let b_values = b.contiguous();
        let flat = Flat::adopt(&[a.shallow_clone(), b.shallow_clone()]).unwrap();
        assert_eq!(flat.values.size(), [3 + 24]);
        assert!(b.equal(&b_values) && is_channels_last(&b), "values and layout kept");
        // Writing the buffer writes the tensors.
        let _ = flat.values.shallow_clone().g_mul_scalar_(2.0);
        assert!(a.equal(&Tensor::from_slice(&[2.0f32, 4.0, 6.0])));
        assert!(b.equal(&(&b_values * 2.0)));
        // Gather lines up same-shaped tensors in the buffer's order; segments read back.
        let g = flat.gather(&[Some(Tensor::ones([3], tch::kind::FLOAT_CPU)), Some(b_values.shallow_clone())]);
        assert!(flat.segment(&g, 1).equal(&b_values) && flat.segment(&g, 0).equal(&Tensor::ones([3], tch::kind::FLOAT_CPU)));
        let n = flat.segment_sq_norms(&g);
        assert!((n.double_value(&[0]) - 3.0).abs() < 1e-6);
        assert!((n.double_value(&[1]) - f64::try_from(b_values.square().sum(Kind::Float)).unwrap()).abs() < 1e-3);
        assert_eq!(flat.spread(&Tensor::from_slice(&[1.0f32, 2.0])).size(), [27]);
        assert!(Flat::adopt(&[a, Tensor::zeros([2], (Kind::Double, tch::Device::Cpu))]).is_err());
    }
}
