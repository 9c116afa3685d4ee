//! Reader for CTranslate2's `model.bin` (binary versions 5 and 6), following the writer in
//! CTranslate2's `specs/model_spec.py`: a little-endian header, then named variables
//! (rank, dims, dtype id, byte count, raw bytes), then aliases. Variables are returned as
//! float32 candle tensors; int8 weights are dequantised with their `weight_scale`.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("model.bin is truncated at byte {0}")]
    Truncated(usize),
    #[error("model.bin binary version {0} is not supported (5 or 6 expected)")]
    Version(u32),
    #[error("model.bin variable {name}: {message}")]
    Variable { name: String, message: String },
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// One stored variable before conversion.
#[derive(Debug, Clone)]
pub struct RawVariable {
    pub dims: Vec<usize>,
    pub dtype: Ct2Dtype,
    pub bytes: Vec<u8>,
}

/// Type ids in the order of CTranslate2's `_dtype_to_type_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// A parsed model: spec name and revision, variables by name (aliases resolved).
#[derive(Debug)]
pub struct Ct2Model {
    pub spec: String,
    pub revision: u32,
    pub variables: HashMap<String, RawVariable>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Ct2Error::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Ct2Error> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, Ct2Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    /// u16 length (including a trailing NUL), then the bytes.
    fn string(&mut self) -> Result<String, Ct2Error> {
        let n = self.u16()? as usize;
        let raw = self.take(n)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        Ok(String::from_utf8_lossy(raw).into_owned())
    }
}

impl Ct2Model {
    pub fn parse(buf: &[u8]) -> Result<Self, Ct2Error> {
        let mut r = Reader { buf, pos: 0 };
        let version = r.u32()?;
        if !(5..=6).contains(&version) {
            return Err(Ct2Error::Version(version));
        }
        let spec = r.string()?;
        let revision = r.u32()?;
        let count = r.u32()?;
        let mut variables = HashMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let dims = (0..rank).map(|_| r.u32().map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
            let type_id = r.u8()?;
            let dtype = Ct2Dtype::from_id(type_id).ok_or_else(|| Ct2Error::Variable {
                name: name.clone(),
                message: format!("unknown dtype id {type_id}"),
            })?;
            let nbytes = r.u32()? as usize;
            let elements: usize = dims.iter().product();
            if elements.checked_mul(dtype.size()) != Some(nbytes) {
                return Err(Ct2Error::Variable { name, message: format!("{nbytes} bytes for shape {dims:?}") });
            }
            let bytes = r.take(nbytes)?.to_vec();
            variables.insert(name, RawVariable { dims, dtype, bytes });
        }
        let aliases = r.u32()?;
        for _ in 0..aliases {
            let alias = r.string()?;
            let target = r.string()?;
            let var = variables.get(&target).cloned().ok_or_else(|| Ct2Error::Variable {
                name: alias.clone(),
                message: format!("alias of missing {target}"),
            })?;
            variables.insert(alias, var);
        }
        Ok(Self { spec, revision, variables })
    }

    /// Scalar integer attribute (e.g. `encoder/num_heads`).
    pub fn scalar_int(&self, name: &str) -> Option<i64> {
        let v = self.variables.get(name)?;
        if !v.dims.is_empty() {
            return None;
        }
        Some(match v.dtype {
            Ct2Dtype::I8 => v.bytes[0] as i8 as i64,
            Ct2Dtype::I16 => i16::from_le_bytes([v.bytes[0], v.bytes[1]]) as i64,
            Ct2Dtype::I32 => i32::from_le_bytes(v.bytes[..4].try_into().ok()?) as i64,
            _ => return None,
        })
    }

    /// A variable as a float32 tensor on `device`; int8 weights use `<name>_scale`.
    pub fn tensor_f32(&self, name: &str, device: &Device) -> Result<Tensor, Ct2Error> {
        let missing = || Ct2Error::Variable { name: name.to_string(), message: "missing".into() };
        let v = self.variables.get(name).ok_or_else(missing)?;
        let t = raw_tensor(v, device)?;
        if v.dtype != Ct2Dtype::I8 {
            return Ok(t);
        }
        // Quantised rows: w = q / scale[row].
        let scale_name = format!("{}_scale", name);
        let scale = self.variables.get(&scale_name).ok_or_else(|| Ct2Error::Variable {
            name: name.to_string(),
            message: format!("int8 weight without {scale_name}"),
        })?;
        let scale = raw_tensor(scale, device)?.reshape((v.dims[0], 1))?;
        Ok(t.broadcast_div(&scale)?)
    }
}

fn raw_tensor(v: &RawVariable, device: &Device) -> Result<Tensor, Ct2Error> {
    let shape = v.dims.clone();
    let t = match v.dtype {
        Ct2Dtype::F32 => Tensor::from_raw_buffer(&v.bytes, DType::F32, &shape, device)?,
        Ct2Dtype::F16 => Tensor::from_raw_buffer(&v.bytes, DType::F16, &shape, device)?.to_dtype(DType::F32)?,
        Ct2Dtype::BF16 => Tensor::from_raw_buffer(&v.bytes, DType::BF16, &shape, device)?.to_dtype(DType::F32)?,
        Ct2Dtype::I8 => {
            let vals: Vec<f32> = v.bytes.iter().map(|&b| b as i8 as f32).collect();
            Tensor::from_vec(vals, shape, device)?
        }
        Ct2Dtype::I16 => {
            let vals: Vec<f32> = v.bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32).collect();
            Tensor::from_vec(vals, shape, device)?
        }
        Ct2Dtype::I32 => {
            let vals: Vec<f32> =
                v.bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect();
            Tensor::from_vec(vals, shape, device)?
        }
    };
    Ok(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes the format the way CTranslate2's `_serialize` does.
    pub(crate) fn write_model(vars: &[(&str, Vec<usize>, u8, Vec<u8>)], aliases: &[(&str, &str)]) -> Vec<u8> {
        fn s(out: &mut Vec<u8>, x: &str) {
            out.extend_from_slice(&((x.len() + 1) as u16).to_le_bytes());
            out.extend_from_slice(x.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&6u32.to_le_bytes());
        s(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, dims, dt, bytes) in vars {
            s(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend_from_slice(&(*d as u32).to_le_bytes());
            }
            out.push(*dt);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            s(&mut out, a);
            s(&mut out, t);
        }
        out
    }

    #[test]
    fn parses_dtypes_aliases_and_int8_scales() {
        let f16: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect();
        let q: Vec<u8> = vec![10i8 as u8, (-20i8) as u8, 4, 8];
        let scale: Vec<u8> = [10.0f32, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let buf = write_model(
            &[
                ("a/weight", vec![2], 4, f16),
                ("b/weight", vec![2, 2], 1, q),
                ("b/weight_scale", vec![2], 0, scale),
                ("enc/num_heads", vec![], 2, 6i16.to_le_bytes().to_vec()),
            ],
            &[("c/weight", "a/weight")],
        );
        let m = Ct2Model::parse(&buf).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.scalar_int("enc/num_heads"), Some(6));
        let dev = Device::Cpu;
        assert_eq!(m.tensor_f32("c/weight", &dev).unwrap().to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        let b = m.tensor_f32("b/weight", &dev).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(b, vec![vec![1.0, -2.0], vec![1.0, 2.0]]);
        // Every truncation is an error, never a panic.
        for cut in 0..buf.len() {
            assert!(Ct2Model::parse(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
