//! Loading the real engines for `smai serve` from the models folder.

mod loading;

pub use loading::{LoadingSynthesizer, LoadingTranscriber};

use crate::config::ServeConfig;
use crate::serve::Engines;
use smai_core::{Synthesizer, Transcriber};
use smai_inference::asr::SileroVad;
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};
use smai_inference::WhisperEngine;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Engines that list what is installed at once and load their weights on the returned task,
/// so the server can listen while they load; the task fails when loading does.
pub fn start_loading(config: &ServeConfig) -> anyhow::Result<(Engines, JoinHandle<anyhow::Result<()>>)> {
    let dir = &config.models_dir;
    let planned_models = installed_models(config)
        .iter()
        .map(|id| smai_inference::asr::preview_model(dir, id))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let transcriber = (!planned_models.is_empty())
        .then(|| Arc::new(LoadingTranscriber::new(planned_models, SileroVad::is_installed(dir))));
    // A voices configuration that cannot be read, or voices not installed, are reported (and
    // the service left off) by the load below, as before the server listened early.
    let voices = VoicesConfig::load(config.voices_config.as_deref()).ok();
    let previewed = voices.and_then(|voices| PiperSynthesizer::preview(&voices, dir).ok());
    let synthesizer = previewed.map(|v| Arc::new(LoadingSynthesizer::new(v)));
    let engines = Engines {
        transcriber: transcriber.clone().map(|t| t as Arc<dyn Transcriber>),
        synthesizer: synthesizer.clone().map(|s| s as Arc<dyn Synthesizer>),
    };
    let config = config.clone();
    let task = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let loaded = load(&config).await?;
        if let (Some(slot), Some(engine)) = (transcriber, loaded.transcriber) {
            slot.loaded(engine);
        }
        if let (Some(slot), Some(engine)) = (synthesizer, loaded.synthesizer) {
            slot.loaded(engine);
        }
        tracing::info!(seconds = started.elapsed().as_secs_f64(), "models loaded");
        Ok(())
    });
    Ok((engines, task))
}

/// The configured Whisper models whose files are in the models folder.
fn installed_models(config: &ServeConfig) -> Vec<String> {
    let dir = &config.models_dir;
    config.asr_models.iter().filter(|id| dir.join(id).join("model.bin").exists()).cloned().collect()
}

/// Loads every installed Whisper model of the configuration and the voices, both on
/// `--device` with `--queue-depth`. A service whose models are all missing is left off (its
/// routes answer 404) with a warning that says how to install them.
pub async fn load(config: &ServeConfig) -> anyhow::Result<Engines> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let device = smai_inference::device_from_name(&config.device)?;
        let installed = installed_models(&config);
        let transcriber: Option<Arc<dyn Transcriber>> = if installed.is_empty() {
            tracing::warn!(dir = %config.models_dir.display(), "no Whisper model installed; run `smai models pull`");
            None
        } else {
            tracing::info!(models = ?installed, device = %config.device, "loading Whisper models");
            let engine = WhisperEngine::load_as(
                &config.models_dir,
                &installed,
                &device,
                config.queue_depth,
                &config.compute_type,
            )?
            .with_decode_limits(smai_inference::audio::DecodeLimits { max_seconds: config.max_audio_seconds });
            Some(Arc::new(with_vad(engine, &config)?))
        };
        let synthesizer: Option<Arc<dyn Synthesizer>> = match load_voices(&config, &device) {
            Ok(synth) => Some(Arc::new(synth)),
            Err(e) => {
                tracing::warn!(error = %e.message, "no voices loaded; run `smai models pull`");
                None
            }
        };
        smai_inference::runtime::release_freed_memory();
        Ok(Engines { transcriber, synthesizer })
    })
    .await?
}

/// Enables `vad_filter` when the Silero VAD is installed; without it those requests are refused.
fn with_vad(engine: WhisperEngine, config: &ServeConfig) -> anyhow::Result<WhisperEngine> {
    match SileroVad::installed(&config.models_dir)? {
        Some(vad) => Ok(engine.with_vad(Arc::new(vad))),
        None => {
            tracing::info!("Silero VAD not installed: vad_filter is unavailable (smai models pull --only silero-vad)");
            Ok(engine)
        }
    }
}

fn load_voices(config: &ServeConfig, device: &smai_inference::Device) -> Result<PiperSynthesizer, smai_core::Error> {
    let voices =
        VoicesConfig::load(config.voices_config.as_deref()).map_err(|e| smai_core::Error::invalid(e.to_string()))?;
    PiperSynthesizer::load_as(&voices, &config.models_dir, device, config.queue_depth, &config.compute_type)
}
