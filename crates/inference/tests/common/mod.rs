//! Shared by the model tests: the device they run on.

use candle_core::Device;

/// `SMAI_TEST_DEVICE` (cpu, cuda, metal) picks where the model tests run; cpu when unset, so
/// the same assertions can be checked on a GPU build (`--features cuda`).
pub fn test_device() -> Device {
    let name = std::env::var("SMAI_TEST_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    smai_inference::engine::device_from_name(&name).expect("SMAI_TEST_DEVICE names a usable device")
}
