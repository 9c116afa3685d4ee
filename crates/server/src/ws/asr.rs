//! `GET /v1/realtime/asr`: smai's live recognition over a WebSocket, on the service core's
//! live session (the same one gRPC's StreamingRecognize runs): a `start` message, binary audio
//! charged as it arrives, `commit` and `stop`; speech events, partials and finals out.

use super::close::is_recoverable;
use super::socket::{Incoming, Reader, Socket, Upgrade, Writer};
use super::{end_session, Ending};
use crate::service::live::{
    describe_vad, LiveAudio, LiveEvents, LiveRecognition, LiveUpdate, PcmEncoding, SpeechTracker, VadRequest,
};
use crate::service::{Operation, SharedCall};
use axum::extract::ws::WebSocket;
use serde::Deserialize;
use serde_json::json;
use smai_core::{Error, TranscribeOptions};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Start(Box<Start>),
    Commit,
    Stop,
    /// Accepted and ignored once the socket is authenticated (a client may always send it).
    Auth {
        #[allow(dead_code)]
        api_key: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    model: Option<String>,
    language: Option<String>,
    #[serde(default = "default_rate")]
    sample_rate: u32,
    #[serde(default)]
    encoding: PcmEncoding,
    #[serde(default = "yes")]
    interim_results: bool,
    #[serde(default)]
    word_timestamps: bool,
    prompt: Option<String>,
    #[serde(default)]
    vad: VadRequest,
}

fn default_rate() -> u32 {
    16_000
}

fn yes() -> bool {
    true
}

/// What the session was started with.
struct Settings {
    interim: bool,
    words: bool,
}

fn parse(text: &str) -> Result<ClientMessage, Error> {
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("malformed message: {e}")))
}

pub async fn run(ws: WebSocket, upgrade: Upgrade) {
    let Some((mut reader, mut writer, call)) = Socket::open(ws, upgrade, Operation::LiveTranscription).await else {
        return;
    };
    let result = session(&mut reader, &mut writer, &call).await;
    end_session(reader, writer, call, result).await;
}

async fn session(reader: &mut Reader, writer: &mut Writer, call: &SharedCall) -> Result<Ending, Error> {
    let (live, events, settings) = loop {
        let message = match reader.next().await? {
            Incoming::Gone => return Ok(Ending::ClientGone),
            Incoming::Binary(_) => Err(Error::invalid("send the start message before audio")),
            Incoming::Text(text) => parse(&text),
        };
        let outcome = match message {
            Ok(ClientMessage::Start(start)) => open(call, *start, writer).await,
            Ok(ClientMessage::Stop) => {
                writer.send_json(json!({"type": "done", "audio_seconds": 0.0, "utterances": 0})).await?;
                return Ok(Ending::Done);
            }
            Ok(ClientMessage::Auth { .. }) => continue,
            Ok(ClientMessage::Commit) => Err(Error::invalid("send the start message first")),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(opened) => break opened,
            Err(e) if is_recoverable(e.code) => writer.report(&e).await?,
            Err(e) => return Err(e),
        }
    };
    stream(reader, writer, live, events, settings).await
}

/// Opens the live session of a `start` message and answers `started`.
async fn open(
    call: &SharedCall,
    start: Start,
    writer: &mut Writer,
) -> Result<(LiveRecognition, LiveEvents, Settings), Error> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let options = TranscribeOptions {
        model: non_empty(start.model),
        language: non_empty(start.language),
        prompt: non_empty(start.prompt),
        word_timestamps: start.word_timestamps,
        live_vad: call.with(|c| start.vad.resolve(c.transcriber()?.as_ref()))?,
        // A client that wants no partials costs no partial decoding either.
        finals_only: !start.interim_results,
        ..Default::default()
    };
    let vad = describe_vad(options.live_vad);
    let model = match &options.model {
        Some(model) => model.clone(),
        None => call.with(|c| Ok(c.transcriber()?.models().first().map(|m| m.id.clone()).unwrap_or_default()))?,
    };
    let audio = LiveAudio { encoding: start.encoding, sample_rate: start.sample_rate };
    let (live, events) = LiveRecognition::open(call, options, audio)?;
    let session_id = call.with(|c| Ok(c.request_id().to_owned()))?;
    let started = json!({"type": "started", "session_id": session_id, "model": model,
        "sample_rate": start.sample_rate, "vad": vad});
    writer.send_json(started).await?;
    Ok((live, events, Settings { interim: start.interim_results, words: start.word_timestamps }))
}

/// Audio in until `stop`, events out until the session has said everything.
async fn stream(
    reader: &mut Reader,
    writer: &mut Writer,
    live: LiveRecognition,
    mut events: LiveEvents,
    settings: Settings,
) -> Result<Ending, Error> {
    let mut live = Some(live);
    let mut tracker = SpeechTracker::default();
    let (mut utterances, mut audio_seconds) = (0u32, 0.0);
    loop {
        tokio::select! {
            incoming = reader.next(), if live.is_some() => {
                let session = live.as_mut().expect("open while reading");
                let message = match incoming? {
                    Incoming::Gone => return Ok(Ending::ClientGone),
                    Incoming::Binary(bytes) => {
                        session.feed(&bytes).await?;
                        continue;
                    }
                    Incoming::Text(text) => parse(&text),
                };
                match message {
                    Ok(ClientMessage::Commit) => session.commit().await?,
                    Ok(ClientMessage::Stop) => {
                        audio_seconds = session.audio_seconds();
                        live.take().expect("open").finish().await?;
                    }
                    Ok(ClientMessage::Auth { .. }) => {}
                    Ok(ClientMessage::Start(_)) => writer.report(&Error::invalid("the session has started already")).await?,
                    Err(e) => writer.report(&e).await?,
                }
            }
            event = events.recv() => {
                let Some(event) = event else {
                    if let Some(update) = tracker.close() {
                        writer.send_json(update_json(update, &settings).expect("a stop is always sent")).await?;
                    }
                    let done = json!({"type": "done", "audio_seconds": audio_seconds, "utterances": utterances});
                    writer.send_json(done).await?;
                    return Ok(Ending::Done);
                };
                for update in tracker.updates(event?) {
                    if matches!(update, LiveUpdate::SpeechStarted { .. }) {
                        utterances += 1;
                    }
                    if let Some(message) = update_json(update, &settings) {
                        writer.send_json(message).await?;
                    }
                }
            }
        }
    }
}

fn update_json(update: LiveUpdate, settings: &Settings) -> Option<serde_json::Value> {
    Some(match update {
        LiveUpdate::SpeechStarted { utterance, at } => {
            json!({"type": "speech_started", "utterance": utterance, "start": at})
        }
        LiveUpdate::SpeechStopped { utterance, at } => {
            json!({"type": "speech_stopped", "utterance": utterance, "end": at})
        }
        LiveUpdate::Partial { .. } if !settings.interim => return None,
        LiveUpdate::Partial { utterance, start, text, stable_text, .. } => {
            json!({"type": "partial", "utterance": utterance, "text": text, "stable_text": stable_text, "start": start})
        }
        LiveUpdate::Final { utterance, segment, language } => {
            let mut message = json!({"type": "final", "utterance": utterance, "text": segment.text,
                "start": segment.start, "end": segment.end, "language": language});
            if settings.words {
                message["words"] = json!(segment.words);
            }
            message
        }
    })
}
