//! Reads a Piper voice's ONNX graph and turns its initializers into named weights.
//!
//! Only the parts of the ONNX schema (onnx.proto3, IR 8) that carry weights are declared here;
//! prost skips every other field. The exporter renamed some parameters (`onnx::Conv_8168`,
//! `sid` for the phoneme embedding): their names are recovered from the node that consumes them
//! (`/flow/flows.6/enc/in_layers.0/Conv` input 1 is `flow.flows.6.enc.in_layers.0.weight`).
//! Constant folding turned `exp(-logs)` of the duration predictor's affine flow into
//! `/dp/flows.0/Exp_output_0`; `logs` is recovered from it.

use std::collections::HashMap;

use prost::Message;

use super::VoiceError;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

const FLOAT: i32 = 1;
const EXTERNAL: i32 = 1;

/// A float weight as stored in the file: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Convolution settings read off the graph, keyed by the layer name (`dec.ups.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvAttrs {
    pub stride: usize,
    pub dilation: usize,
    pub padding: usize,
    pub groups: usize,
}

/// Weights and layer settings of one voice graph.
#[derive(Debug, Default)]
pub struct OnnxWeights {
    pub tensors: HashMap<String, RawTensor>,
    pub convs: HashMap<String, ConvAttrs>,
    pub graph_inputs: Vec<String>,
}

impl OnnxWeights {
    pub fn parse(bytes: &[u8]) -> Result<Self, VoiceError> {
        let model =
            ModelProto::decode(bytes).map_err(|e| VoiceError::Corrupt(format!("not an ONNX model protobuf: {e}")))?;
        let graph = model.graph.ok_or_else(|| VoiceError::Corrupt("the ONNX model has no graph".into()))?;
        if graph.initializer.is_empty() {
            return Err(VoiceError::Corrupt("the ONNX graph has no initializers (weights)".into()));
        }
        let renamed = recovered_names(&graph.node);
        let mut out =
            OnnxWeights { graph_inputs: graph.input.iter().map(|i| i.name.clone()).collect(), ..Default::default() };
        for tensor in &graph.initializer {
            if tensor.data_type != FLOAT {
                continue; // shape constants and indices of the exported control flow
            }
            if tensor.data_location == EXTERNAL {
                return Err(VoiceError::Unsupported(format!(
                    "initializer {} is stored in an external data file",
                    tensor.name
                )));
            }
            let raw = float_values(tensor)?;
            if let Some(module) = folded_exp_of_neg_logs(&tensor.name) {
                // exp(-logs) -> logs
                let values = raw.values.iter().map(|v| -v.ln()).collect();
                out.tensors.insert(format!("{module}.logs"), RawTensor { values, ..raw });
            } else if let Some(name) = renamed.get(&tensor.name) {
                out.tensors.insert(name.clone(), raw);
            } else if !tensor.name.starts_with('/') && !tensor.name.contains("::") {
                out.tensors.insert(tensor.name.clone(), raw);
            }
        }
        for node in &graph.node {
            if node.op_type == "Conv" || node.op_type == "ConvTranspose" {
                if let Some(layer) = module_path(&node.name) {
                    out.convs.insert(layer, conv_attrs(node));
                }
            }
        }
        Ok(out)
    }
}

/// `/flow/flows.6/enc/in_layers.0/Conv` -> `flow.flows.6.enc.in_layers.0`
fn module_path(node_name: &str) -> Option<String> {
    let trimmed = node_name.strip_prefix('/')?;
    let (module, _op) = trimmed.rsplit_once('/')?;
    Some(module.replace('/', "."))
}

/// Names for initializers that the exporter renamed, from their consuming node.
fn recovered_names(nodes: &[NodeProto]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for node in nodes {
        let Some(module) = module_path(&node.name) else {
            continue;
        };
        let param = match node.op_type.as_str() {
            "Conv" | "ConvTranspose" => [None, Some("weight"), Some("bias")].as_slice(),
            "Gather" => [Some("weight")].as_slice(),
            _ => continue,
        };
        for (input, param) in node.input.iter().zip(param) {
            if let Some(param) = param {
                let renamed = input.starts_with("onnx::") || !input.contains('.');
                if renamed && !input.starts_with('/') {
                    names.insert(input.clone(), format!("{module}.{param}"));
                }
            }
        }
    }
    names
}

/// `/dp/flows.0/Exp_output_0` -> `dp.flows.0`: the affine flow's `exp(-logs)` run in reverse.
fn folded_exp_of_neg_logs(name: &str) -> Option<String> {
    let module = name.strip_prefix('/')?.strip_suffix("/Exp_output_0")?;
    module.starts_with("dp/flows.").then(|| module.replace('/', "."))
}

fn conv_attrs(node: &NodeProto) -> ConvAttrs {
    let mut attrs = ConvAttrs { stride: 1, dilation: 1, padding: 0, groups: 1 };
    for a in &node.attribute {
        let first = a.ints.first().copied().unwrap_or(0).max(0) as usize;
        match a.name.as_str() {
            "strides" => attrs.stride = first.max(1),
            "dilations" => attrs.dilation = first.max(1),
            "pads" => attrs.padding = first,
            "group" => attrs.groups = (a.i.max(1)) as usize,
            _ => {}
        }
    }
    attrs
}

fn float_values(tensor: &TensorProto) -> Result<RawTensor, VoiceError> {
    let shape: Vec<usize> = tensor.dims.iter().map(|&d| d.max(0) as usize).collect();
    let count: usize = shape.iter().product();
    let values = if !tensor.raw_data.is_empty() {
        if tensor.raw_data.len() != count * 4 {
            return Err(VoiceError::Corrupt(format!(
                "initializer {} holds {} bytes for shape {:?}",
                tensor.name,
                tensor.raw_data.len(),
                shape
            )));
        }
        tensor.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    } else {
        tensor.float_data.clone()
    };
    if values.len() != count {
        return Err(VoiceError::Corrupt(format!(
            "initializer {} has {} values for shape {:?}",
            tensor.name,
            values.len(),
            shape
        )));
    }
    Ok(RawTensor { shape, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn renamed_parameters_take_the_consumer_path() {
        let nodes = [
            node(
                "/flow/flows.6/enc/in_layers.0/Conv",
                "Conv",
                &["x", "onnx::Conv_8168", "flow.flows.6.enc.in_layers.0.bias"],
            ),
            node("/enc_p/emb/Gather", "Gather", &["sid", "input"]),
        ];
        let names = recovered_names(&nodes);
        assert_eq!(names["onnx::Conv_8168"], "flow.flows.6.enc.in_layers.0.weight");
        assert_eq!(names["sid"], "enc_p.emb.weight");
        assert!(!names.contains_key("flow.flows.6.enc.in_layers.0.bias"));
    }

    #[test]
    fn folded_exp_names_the_affine_flow() {
        assert_eq!(folded_exp_of_neg_logs("/dp/flows.0/Exp_output_0").as_deref(), Some("dp.flows.0"));
        assert_eq!(folded_exp_of_neg_logs("/dp/Exp_output_0"), None);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = OnnxWeights::parse(b"definitely not protobuf \xff\xff").unwrap_err();
        assert!(err.to_string().contains("ONNX"), "{err}");
        let empty = ModelProto { ir_version: 8, graph: Some(GraphProto::default()) }.encode_to_vec();
        let err = OnnxWeights::parse(&empty).unwrap_err();
        assert!(err.to_string().contains("initializers"), "{err}");
    }
}
