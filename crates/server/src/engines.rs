//! Loading the real engines for `smai serve` from the models folder.

use crate::config::ServeConfig;
use crate::serve::Engines;
use smai_core::{Synthesizer, Transcriber};
use smai_inference::tts::cli::VoicesArgs;
use std::sync::Arc;

/// Loads every installed Whisper model of the configuration and the voices. A service whose
/// models are all missing is left off (its routes answer 404) with a warning that says how to
/// install them.
pub async fn load(config: &ServeConfig) -> anyhow::Result<Engines> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let device = smai_inference::engine::device_from_name(&config.device)?;
        let installed: Vec<String> =
            config.asr_models.iter().filter(|id| config.models_dir.join(id).join("model.bin").exists()).cloned().collect();
        let transcriber: Option<Arc<dyn Transcriber>> = if installed.is_empty() {
            tracing::warn!(dir = %config.models_dir.display(), "no Whisper model installed; run `smai models pull`");
            None
        } else {
            tracing::info!(models = ?installed, "loading Whisper models");
            let engine = smai_inference::WhisperEngine::load(&config.models_dir, &installed, &device, config.queue_depth)?;
            Some(Arc::new(engine))
        };
        let voices = VoicesArgs { models_dir: Some(config.models_dir.clone()), voices_config: config.voices_config.clone() };
        let synthesizer: Option<Arc<dyn Synthesizer>> = match voices.load() {
            Ok(synth) => Some(Arc::new(synth)),
            Err(e) => {
                tracing::warn!(error = %e.message, "no voices loaded; run `smai models pull`");
                None
            }
        };
        Ok(Engines { transcriber, synthesizer })
    })
    .await?
}
