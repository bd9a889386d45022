//! Networks: backbones (each with its tch forward and its ONNX emitter in one file) and the
//! training-only heads that are never exported.

pub mod heads;
pub mod resnet;
