//! A small ONNX graph builder over the prost types generated from `onnx.proto` (opset 17, IR 9:
//! what ONNX Runtime 1.30/1.31 and the onnx checker accept; ../shared/reference/onnx-writer.md).
//! Backbones call it from their `emit_onnx`, next to their tch forward. Owns naming (single static
//! assignment), initializers (f32, little-endian raw_data) and model assembly; knows no architecture.

use std::collections::HashSet;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use super::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

pub const OPSET: i64 = 17;
pub const IR_VERSION: i64 = 9;

/// A dimension of a graph input or output: fixed, or symbolic (`N`).
#[derive(Debug, Clone)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// Accumulates nodes and initializers; every value name is unique.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn claim(&mut self, name: &str) -> Result<String> {
        if !self.names.insert(name.to_owned()) {
            bail!("ONNX graph: value name {name:?} defined twice");
        }
        Ok(name.to_owned())
    }

    /// Adds a float32 initializer holding `t` (any device, any float kind, any layout).
    pub fn weight(&mut self, name: &str, t: &Tensor) -> Result<String> {
        let t = t.detach().to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let dims = t.size();
        let values = Vec::<f32>::try_from(t.flatten(0, -1)).with_context(|| format!("reading tensor {name}"))?;
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let name = self.claim(name)?;
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims,
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        Ok(name)
    }

    /// Adds an int64 initializer (shapes, axes, indices).
    pub fn ints(&mut self, name: &str, values: &[i64]) -> Result<String> {
        let name = self.claim(name)?;
        self.initializers.push(TensorProto {
            name: Some(name.clone()),
            dims: vec![values.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            int64_data: values.to_vec(),
            ..Default::default()
        });
        Ok(name)
    }

    /// Adds a node whose single output is named `output`; returns that name.
    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> Result<String> {
        let output = self.claim(output)?;
        self.nodes.push(NodeProto {
            op_type: Some(op.to_owned()),
            name: Some(format!("{output}/{op}")),
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            domain: Some(String::new()),
            attribute: attributes,
            ..Default::default()
        });
        Ok(output)
    }

    /// Assembles the model: one float32 input, one float32 output, metadata_props.
    pub fn finish(
        self,
        input: (&str, &[Dim]),
        output: (&str, &[Dim]),
        metadata: &[(String, String)],
        producer: &str,
    ) -> Result<ModelProto> {
        if !self.nodes.iter().any(|n| n.output.iter().any(|o| o == output.0)) {
            bail!("ONNX graph: output {:?} is produced by no node", output.0);
        }
        let graph = GraphProto {
            name: Some("encoder".into()),
            node: self.nodes,
            initializer: self.initializers,
            input: vec![value_info(input.0, input.1)],
            output: vec![value_info(output.0, output.1)],
            ..Default::default()
        };
        Ok(ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
            producer_name: Some(producer.to_owned()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            graph: Some(graph),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: Some(k.clone()), value: Some(v.clone()) })
                .collect(),
            ..Default::default()
        })
    }
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
                Dim::Named(s) => tensor_shape_proto::dimension::Value::DimParam((*s).to_owned()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_owned()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}

pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::String as i32), s: Some(v.as_bytes().to_vec()), ..Default::default() }
}
