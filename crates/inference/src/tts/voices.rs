//! Voice configuration: named voices backed by Piper models, so one model can serve several
//! voices (e.g. `joe` and the slower `joe-slow`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default model: Piper's en_US-joe-medium.
pub const DEFAULT_MODEL: &str = "en_US-joe-medium";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceSpec {
    pub id: String,
    /// A model id installed under the models folder (`<dir>/<id>/<id>.onnx`) or a path to an
    /// `.onnx` file (its `.onnx.json` beside it).
    pub model: String,
    /// Speaker name or number for multi-speaker models.
    #[serde(default)]
    pub speaker: Option<String>,
    /// Overrides of the model's inference scales.
    #[serde(default)]
    pub length_scale: Option<f32>,
    #[serde(default)]
    pub noise_scale: Option<f32>,
    #[serde(default)]
    pub noise_w: Option<f32>,
    /// Overrides the model's language code (e.g. `en_US`).
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoicesConfig {
    pub voices: Vec<VoiceSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum VoicesConfigError {
    #[error("cannot read voices config {0}: {1}")]
    Io(String, std::io::Error),
    #[error("voices config {0}: {1}")]
    Parse(String, serde_json::Error),
    #[error("voices config: {0}")]
    Invalid(String),
}

impl Default for VoicesConfig {
    fn default() -> Self {
        let joe = VoiceSpec {
            id: "joe".into(),
            model: DEFAULT_MODEL.into(),
            speaker: None,
            length_scale: None,
            noise_scale: None,
            noise_w: None,
            language: None,
        };
        let slow = VoiceSpec { id: "joe-slow".into(), length_scale: Some(1.3), ..joe.clone() };
        Self { voices: vec![joe, slow] }
    }
}

impl VoicesConfig {
    /// The configuration file at `path`, or the built-in voices when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, VoicesConfigError> {
        path.map_or_else(|| Ok(Self::default()), Self::from_file)
    }

    /// Reads a JSON file `{"voices": [{"id": ..., "model": ..., ...}]}`.
    pub fn from_file(path: &Path) -> Result<Self, VoicesConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| VoicesConfigError::Io(name.clone(), e))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| VoicesConfigError::Parse(name, e))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), VoicesConfigError> {
        let mut seen = std::collections::HashSet::new();
        for v in &self.voices {
            if v.id.is_empty() || !seen.insert(v.id.as_str()) {
                return Err(VoicesConfigError::Invalid(format!("voice id {:?} is empty or repeated", v.id)));
            }
            for (name, value) in
                [("length_scale", v.length_scale), ("noise_scale", v.noise_scale), ("noise_w", v.noise_w)]
            {
                if value.is_some_and(|x| !(0.0..=10.0).contains(&x) || (name == "length_scale" && x == 0.0)) {
                    return Err(VoicesConfigError::Invalid(format!("voice {}: {name} out of range", v.id)));
                }
            }
        }
        if self.voices.is_empty() {
            return Err(VoicesConfigError::Invalid("no voices".into()));
        }
        Ok(())
    }
}

/// `$SMAI_MODELS_DIR`, else `models/cache` under the current directory.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("SMAI_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/cache"))
}

/// Path of a voice's `.onnx` file.
pub fn model_path(models_dir: &Path, model: &str) -> PathBuf {
    if model.ends_with(".onnx") {
        PathBuf::from(model)
    } else {
        models_dir.join(model).join(format!("{model}.onnx"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_joe_and_joe_slow_on_one_model() {
        let c = VoicesConfig::default();
        c.validate().unwrap();
        assert_eq!(c.voices[0].id, "joe");
        assert_eq!(c.voices[1].id, "joe-slow");
        assert_eq!(c.voices[1].length_scale, Some(1.3));
        assert_eq!(c.voices[0].model, c.voices[1].model);
    }

    #[test]
    fn config_file_is_validated() {
        let dir = std::env::temp_dir().join(format!("smai-voices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("voices.json");
        std::fs::write(&path, r#"{"voices":[{"id":"a","model":"m"},{"id":"a","model":"m"}]}"#).unwrap();
        assert!(VoicesConfig::from_file(&path).is_err());
        std::fs::write(&path, r#"{"voices":[{"id":"a","model":"/x/m.onnx","length_scale":1.1}]}"#).unwrap();
        let c = VoicesConfig::from_file(&path).unwrap();
        assert_eq!(model_path(Path::new("/models"), &c.voices[0].model), PathBuf::from("/x/m.onnx"));
        assert_eq!(model_path(Path::new("/models"), "v"), PathBuf::from("/models/v/v.onnx"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
