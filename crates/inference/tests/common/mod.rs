//! Shared by the tests: where the weights and the dev set are, the device the models run on,
//! and for the decoding tests a FLAC writer and a resident-memory probe.
// Each test binary uses the part it needs.
#![allow(dead_code)]

pub mod flac;
pub mod memory;

use candle_core::Device;
use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `$SMAI_MODELS_DIR`, else models/cache at the workspace root (where `smai models pull` puts them).
pub fn models_root() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("models/cache"))
}

/// `$SMAI_EVAL_DIR`, else the dev set beside the workspace.
pub fn eval_root() -> PathBuf {
    std::env::var_os("SMAI_EVAL_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("../shared/eval/dev"))
}

/// `SMAI_TEST_DEVICE` (cpu, cuda, metal) picks where the model tests run; cpu when unset, so
/// the same assertions can be checked on a GPU build (`--features cuda`).
pub fn test_device() -> Device {
    let name = std::env::var("SMAI_TEST_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    smai_inference::device_from_name(&name).expect("SMAI_TEST_DEVICE names a usable device")
}
