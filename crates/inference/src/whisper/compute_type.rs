//! Which number type Whisper's products run in, as faster-whisper's `compute_type` names them:
//! `float32` (the weights as stored, widened; token-identical to faster-whisper float32),
//! `int8` (the attention and MLP products quantised, `cpu_int8`; CPU only), `bfloat16` (those
//! products in bf16 with f32 sums, `cpu_bf16`; CPU only) or `auto`.

use std::collections::HashMap;
use std::fmt;

use candle_core::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeType {
    #[default]
    Float32,
    Int8,
    Bfloat16,
    /// int8 where it has vector kernels (x86 with AVX2: VNNI or `vpmaddubsw`, the same sums
    /// bit for bit, so the accuracy the tests check holds on each, and both faster than
    /// float32 there); float32 elsewhere.
    Auto,
}

impl ComputeType {
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "float32" | "f32" => Some(Self::Float32),
            "int8" => Some(Self::Int8),
            "bfloat16" | "bf16" => Some(Self::Bfloat16),
            "auto" | "default" => Some(Self::Auto),
            _ => None,
        }
    }

    /// [`Self::parse`] with the error a command line shows.
    pub fn parse_arg(name: &str) -> Result<Self, String> {
        Self::parse(name).ok_or_else(|| format!("compute type {name:?}: expected float32, bfloat16, int8 or auto"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Int8 => "int8",
            Self::Bfloat16 => "bfloat16",
            Self::Auto => "auto",
        }
    }

    /// The type a model on `device` gets: `auto` resolved, int8 and bfloat16 only on the CPU
    /// (other devices run float32 and say so in the load log).
    pub fn resolve(self, device: &Device) -> Self {
        match self {
            Self::Int8 | Self::Bfloat16 if device.is_cpu() => self,
            Self::Auto if device.is_cpu() && int8_verified_here() => Self::Int8,
            _ => Self::Float32,
        }
    }
}

impl fmt::Display for ComputeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn int8_verified_here() -> bool {
    crate::cpu_isa::level() >= crate::cpu_isa::Isa::Avx2
}

/// The compute type of each model: one for all (`int8`), or per model id
/// (`base=int8,tiny.en=float32`; models not named get `float32`, or the entry without a name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComputeTypes {
    default: ComputeType,
    per_model: HashMap<String, ComputeType>,
}

impl ComputeTypes {
    pub fn all(compute: ComputeType) -> Self {
        Self { default: compute, per_model: HashMap::new() }
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut types = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, name) = match entry.split_once('=') {
                Some((model, name)) => (Some(model.trim()), name),
                None => (None, entry),
            };
            let compute = ComputeType::parse_arg(name)?;
            match model {
                Some(model) => {
                    types.per_model.insert(model.to_string(), compute);
                }
                None => types.default = compute,
            }
        }
        Ok(types)
    }

    pub fn for_model(&self, id: &str) -> ComputeType {
        self.per_model.get(id).copied().unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_type_for_all_or_per_model() {
        let all = ComputeTypes::parse("int8").unwrap();
        assert_eq!(all.for_model("base"), ComputeType::Int8);
        let mixed = ComputeTypes::parse("base=int8, tiny.en=float32").unwrap();
        assert_eq!(mixed.for_model("base"), ComputeType::Int8);
        assert_eq!(mixed.for_model("tiny.en"), ComputeType::Float32);
        assert_eq!(mixed.for_model("small"), ComputeType::Float32);
        assert_eq!(ComputeTypes::parse("auto,base=float32").unwrap().for_model("x"), ComputeType::Auto);
        assert!(ComputeTypes::parse("int4").unwrap_err().contains("int4"));
        assert_eq!(ComputeType::Int8.resolve(&Device::Cpu), ComputeType::Int8);
        assert_eq!(ComputeTypes::parse("bf16").unwrap().for_model("base"), ComputeType::Bfloat16);
        assert_eq!(ComputeType::Bfloat16.resolve(&Device::Cpu), ComputeType::Bfloat16);
        assert_ne!(ComputeType::Auto.resolve(&Device::Cpu), ComputeType::Auto);
    }
}
