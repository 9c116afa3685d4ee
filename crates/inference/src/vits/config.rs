//! A Piper voice's `.onnx.json`: audio rate, espeak voice, inference scales, phoneme ids and
//! speakers.

use std::collections::HashMap;

use serde::Deserialize;

use super::VoiceError;

#[derive(Debug, Clone, Deserialize)]
pub struct PiperConfig {
    pub audio: AudioConfig,
    #[serde(default)]
    pub espeak: Option<EspeakConfig>,
    #[serde(default)]
    pub inference: InferenceScales,
    #[serde(default = "default_phoneme_type")]
    pub phoneme_type: String,
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    pub num_symbols: usize,
    #[serde(default = "one")]
    pub num_speakers: usize,
    #[serde(default)]
    pub speaker_id_map: HashMap<String, i64>,
    #[serde(default)]
    pub language: Option<LanguageConfig>,
    #[serde(default)]
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
    #[serde(default)]
    pub quality: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LanguageConfig {
    pub code: String,
}

/// VITS sampling scales; Piper's defaults when the file leaves them out.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct InferenceScales {
    #[serde(default = "default_noise_scale")]
    pub noise_scale: f32,
    #[serde(default = "one_f32")]
    pub length_scale: f32,
    #[serde(default = "default_noise_w")]
    pub noise_w: f32,
}

impl Default for InferenceScales {
    fn default() -> Self {
        Self { noise_scale: default_noise_scale(), length_scale: 1.0, noise_w: default_noise_w() }
    }
}

fn default_phoneme_type() -> String {
    "espeak".into()
}
fn one() -> usize {
    1
}
fn one_f32() -> f32 {
    1.0
}
fn default_noise_scale() -> f32 {
    0.667
}
fn default_noise_w() -> f32 {
    0.8
}

impl PiperConfig {
    pub fn parse(json: &str) -> Result<Self, VoiceError> {
        let config: PiperConfig =
            serde_json::from_str(json).map_err(|e| VoiceError::Corrupt(format!("voice config (.onnx.json): {e}")))?;
        if config.phoneme_type != "espeak" {
            return Err(VoiceError::Unsupported(format!(
                "phoneme_type {:?} (only espeak voices are supported)",
                config.phoneme_type
            )));
        }
        if config.espeak.is_none() {
            return Err(VoiceError::Corrupt("voice config lacks espeak.voice".into()));
        }
        if config.audio.sample_rate == 0 {
            return Err(VoiceError::Corrupt("voice config has audio.sample_rate 0".into()));
        }
        Ok(config)
    }

    pub fn espeak_voice(&self) -> &str {
        self.espeak.as_ref().map_or("en-us", |e| e.voice.as_str())
    }

    /// Speaker id for a name or a number; `None` picks speaker 0.
    pub fn speaker_id(&self, speaker: Option<&str>) -> Result<i64, VoiceError> {
        let Some(speaker) = speaker else { return Ok(0) };
        if let Some(&id) = self.speaker_id_map.get(speaker) {
            return Ok(id);
        }
        match speaker.parse::<i64>() {
            Ok(id) if id >= 0 && (id as usize) < self.num_speakers.max(1) => Ok(id),
            _ => Err(VoiceError::Speaker(speaker.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_speakers() {
        let json = r#"{"audio":{"sample_rate":22050,"quality":"medium"},"espeak":{"voice":"en-us"},
            "phoneme_id_map":{"_":[0]},"num_speakers":2,"speaker_id_map":{"amy":1}}"#;
        let c = PiperConfig::parse(json).unwrap();
        assert_eq!(c.inference, InferenceScales::default());
        assert_eq!(c.speaker_id(Some("amy")).unwrap(), 1);
        assert_eq!(c.speaker_id(Some("0")).unwrap(), 0);
        assert!(c.speaker_id(Some("bob")).is_err());
    }

    #[test]
    fn missing_fields_are_named() {
        let err = PiperConfig::parse(r#"{"audio":{"sample_rate":22050}}"#).unwrap_err();
        assert!(err.to_string().contains("phoneme_id_map"), "{err}");
    }
}
