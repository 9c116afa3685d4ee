//! Devices by name, as `--device` gives them and engines report them.

use candle_core::Device;
use smai_core::Error;

/// `cpu`, `cuda` or `metal` (the latter two need the crate feature of that name).
pub fn device_from_name(name: &str) -> Result<Device, Error> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| Error::invalid(format!("cuda device unavailable: {e}"))),
        "metal" => Device::new_metal(0).map_err(|e| Error::invalid(format!("metal device unavailable: {e}"))),
        other => Err(Error::invalid(format!("unknown device {other:?} (cpu, cuda, metal)"))),
    }
}

/// The name [`device_from_name`] takes for `device`.
pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(device_name(&device_from_name("cpu").unwrap()), "cpu");
        assert_eq!(device_from_name("tpu").unwrap_err().code, smai_core::ErrorCode::InvalidRequest);
    }
}
