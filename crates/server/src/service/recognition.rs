//! Recognition of an uploaded file, for every protocol: the model for the task, charging from
//! the measured length before the audio is decoded, and settling the charge on the decoded
//! duration once the engine has it.

use super::SharedCall;
use smai_auth::limits::asr_tokens;
use smai_core::{AudioLength, Error, Task, TranscribeOptions, Transcriber, TranscriptEvent, TranscriptStream};
use std::sync::Arc;

/// A recognition under way: its language and duration are known, segments follow on `events`.
pub struct Recognition {
    pub events: TranscriptStream,
    pub language: String,
    pub duration: f64,
}

/// Starts recognising `audio` (any supported container) for an authorised call and admits
/// the call for its length. A key without the tokens for the upload is refused in
/// milliseconds, whatever its size: the length is measured from the container before the
/// audio is decoded in full.
pub async fn start(call: &SharedCall, audio: Vec<u8>, mut options: TranscribeOptions) -> Result<Recognition, Error> {
    let transcriber = call.with(|c| c.transcriber())?;
    if options.task == Task::Translate {
        options.model = Some(translation_model(transcriber.as_ref(), options.model.take())?);
    }
    let tokens_left = call.with(|c| Ok(c.tokens_left()))?;
    let (audio, measured) = measure(&transcriber, audio, tokens_left).await?;
    if let Some(length) = measured {
        call.with(|c| c.admit(seconds_tokens(length.seconds)))?;
    }
    let mut events = transcriber.transcribe(audio, options)?;

    // The first event carries the decoded duration. A refusal drops the stream, which stops
    // the engine's work on it.
    let (language, duration) = match events.recv().await {
        Some(Ok(TranscriptEvent::Started { language, duration })) => (language, duration),
        Some(Ok(TranscriptEvent::Segment(_))) => return Err(Error::internal("segment before the start event")),
        Some(Err(e)) => return Err(e),
        None => return Err(Error::internal("recognition ended without a result")),
    };
    let tokens = seconds_tokens(duration);
    call.with(|c| match measured {
        None => c.admit(tokens),
        // The container's figure and the decoded one differ by padding at most.
        Some(_) if tokens > c.charged() => c.charge(tokens - c.charged()),
        Some(_) => {
            c.refund(c.charged() - tokens);
            Ok(())
        }
    })?;
    Ok(Recognition { events, language, duration })
}

/// Tokens of `seconds` of audio. The engine measures audio at 16 kHz, so a decoded duration
/// is a whole number of those samples.
fn seconds_tokens(seconds: f64) -> u64 {
    asr_tokens((seconds * 16_000.0).round() as u64, 16_000)
}

/// The upload's length, measured off the async threads (it may decode packets), looking no
/// further than `tokens_left` can pay for: past that the call is refused anyway.
async fn measure(
    transcriber: &Arc<dyn Transcriber>,
    file: Vec<u8>,
    tokens_left: u64,
) -> Result<(Vec<u8>, Option<AudioLength>), Error> {
    let transcriber = transcriber.clone();
    // One token per 100 ms; a token more so that a file exactly at the budget is measured whole.
    let budget_seconds = (tokens_left + 1) as f64 / 10.0;
    tokio::task::spawn_blocking(move || {
        let measured = transcriber.measure(&file, budget_seconds)?;
        Ok((file, measured))
    })
    .await
    .map_err(|e| Error::internal(format!("measuring the audio: {e}")))?
}

/// Translation needs a multilingual model: the one asked for, or the first loaded.
fn translation_model(transcriber: &dyn Transcriber, asked: Option<String>) -> Result<String, Error> {
    let models = transcriber.models();
    match asked {
        Some(id) => match models.iter().find(|m| m.id == id) {
            Some(m) if m.multilingual => Ok(id),
            Some(_) => Err(Error::invalid(format!(
                "model {id:?} is English-only and cannot translate; use a multilingual model such as base"
            ))),
            None => Err(Error::not_found(format!("model {id:?} is not loaded"))),
        },
        None => models.iter().find(|m| m.multilingual).map(|m| m.id.clone()).ok_or_else(|| {
            let loaded: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
            Error::not_found(format!(
                "translation needs a multilingual Whisper model, and only English-only ones are loaded ({}); \
                 install one with `smai models pull base`",
                loaded.join(", ")
            ))
        }),
    }
}
