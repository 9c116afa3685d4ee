//! smai-tools: what measures smai's models without being part of the product. Dev-set
//! evaluation against faster-whisper's recorded transcripts (`eval`), word error rate
//! (`wer`), and the speed comparison with faster-whisper (`bench`). The `smai-tools` binary
//! runs them (`asr-eval`, `asr-bench`); `examples/` holds the smaller benches.

pub mod bench;
pub mod eval;
pub mod wer;

use std::path::PathBuf;

/// The root of this repository (the folder above `tools/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `$SMAI_EVAL_DIR`, else the dev set beside the repository (`../shared/eval/dev`).
pub fn default_eval_dir() -> PathBuf {
    std::env::var_os("SMAI_EVAL_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/eval/dev"))
}

/// `$SMAI_MODELS_DIR`, else `models/cache` in the repository (where `smai models pull` puts them).
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models/cache"))
}
