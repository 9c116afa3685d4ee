//! `GET /v1/realtime/tts`: live synthesis over a WebSocket, on the service core's text-stream
//! session (the one gRPC's SynthesizeOnline runs): text arrives piece by piece, the server cuts
//! sentences, and each sentence's audio goes out as s16le PCM as soon as it is synthesised.

use super::close::is_recoverable;
use super::socket::{Incoming, Reader, Socket, Upgrade, Writer};
use super::{end_session, Ending};
use crate::service::live::{LiveSpeech, SpeechEvents};
use crate::service::{speech, Operation, SharedCall};
use axum::extract::ws::WebSocket;
use serde::Deserialize;
use serde_json::json;
use smai_core::{Error, SpeechEvent, SpeechOptions};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Start {
        voice: String,
        speed: Option<f32>,
        response_format: Option<String>,
        /// Each sentence peak-normalised as REST does (its audio then waits for the whole
        /// sentence); by default the voice's own level, streamed within the sentence.
        normalize: Option<bool>,
    },
    Speak {
        text: String,
        voice: Option<String>,
    },
    Flush,
    Cancel,
    Stop,
    /// Accepted and ignored once the socket is authenticated.
    Auth {
        #[allow(dead_code)]
        api_key: Option<String>,
    },
}

fn parse(text: &str) -> Result<ClientMessage, Error> {
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("malformed message: {e}")))
}

/// An open synthesis and what its messages need to say.
struct Opened {
    live: LiveSpeech,
    events: SpeechEvents,
    sample_rate: u32,
}

pub async fn run(ws: WebSocket, upgrade: Upgrade) {
    let Some((mut reader, mut writer, call)) = Socket::open(ws, upgrade, Operation::SpeechStream).await else {
        return;
    };
    let result = session(&mut reader, &mut writer, &call).await;
    end_session(reader, writer, call, result).await;
}

async fn session(reader: &mut Reader, writer: &mut Writer, call: &SharedCall) -> Result<Ending, Error> {
    let mut characters = 0usize;
    let opened = loop {
        let message = match reader.next().await? {
            Incoming::Gone => return Ok(Ending::ClientGone),
            Incoming::Binary(_) => Err(Error::invalid("this socket takes text messages only")),
            Incoming::Text(text) => parse(&text),
        };
        let outcome = match message {
            Ok(ClientMessage::Start { voice, speed, response_format, normalize }) => {
                open(call, voice, speed, response_format.as_deref(), normalize.unwrap_or(false))
            }
            Ok(ClientMessage::Speak { text, voice: Some(voice) }) => match open(call, voice, None, None, false) {
                Ok(opened) => {
                    characters += text.chars().count();
                    opened.live.speak(text).await.map(|()| opened)
                }
                Err(e) => Err(e),
            },
            Ok(ClientMessage::Stop) => {
                writer.send_json(json!({"type": "done", "audio_seconds": 0.0, "characters": 0})).await?;
                return Ok(Ending::Done);
            }
            Ok(ClientMessage::Auth { .. }) => continue,
            Ok(_) => {
                Err(Error::invalid("name a voice first: {\"type\":\"start\",\"voice\":...} or a speak with a voice"))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(opened) => break opened,
            Err(e) if is_recoverable(e.code) => writer.report(&e).await?,
            Err(e) => return Err(e),
        }
    };
    stream(reader, writer, opened, characters).await
}

/// Opens a synthesis for a voice the key may use (403 closes the socket; an unknown voice is
/// reported and the client may try another).
fn open(
    call: &SharedCall,
    voice: String,
    speed: Option<f32>,
    format: Option<&str>,
    normalize: bool,
) -> Result<Opened, Error> {
    if format.is_some_and(|f| f != "pcm") {
        return Err(Error::invalid("response_format must be pcm: audio goes out as s16le mono PCM frames"));
    }
    let speed = speech::check_speed(speed)?;
    let synthesizer = call.with(|c| c.synthesizer())?;
    let sample_rate = synthesizer.voices().iter().find(|v| v.id == voice).map_or(0, |v| v.sample_rate);
    let (live, events) = LiveSpeech::open(call, SpeechOptions { voice, speed, normalize })?;
    Ok(Opened { live, events, sample_rate })
}

/// Text in until `stop`, sentences out as they are ready, until the last one has gone.
async fn stream(
    reader: &mut Reader,
    writer: &mut Writer,
    opened: Opened,
    mut characters: usize,
) -> Result<Ending, Error> {
    let Opened { live, mut events, sample_rate } = opened;
    let mut live = Some(live);
    let mut audio_seconds = 0.0;
    loop {
        tokio::select! {
            incoming = reader.next(), if live.is_some() => {
                let session = live.as_ref().expect("open while reading");
                let message = match incoming? {
                    Incoming::Gone => return Ok(Ending::ClientGone),
                    Incoming::Binary(_) => Err(Error::invalid("this socket takes text messages only")),
                    Incoming::Text(text) => parse(&text),
                };
                match message {
                    Ok(ClientMessage::Speak { text, .. }) => {
                        characters += text.chars().count();
                        session.speak(text).await?;
                    }
                    Ok(ClientMessage::Flush) => session.flush().await?,
                    Ok(ClientMessage::Cancel) => session.cancel().await?,
                    // No more text: what is pending is synthesised, then the events end.
                    Ok(ClientMessage::Stop) => live = None,
                    Ok(ClientMessage::Auth { .. }) => {}
                    Ok(ClientMessage::Start { .. }) => writer.report(&Error::invalid("the session has started already")).await?,
                    Err(e) => writer.report(&e).await?,
                }
            }
            event = events.recv() => {
                let Some(event) = event else {
                    let done = json!({"type": "done", "audio_seconds": audio_seconds, "characters": characters});
                    writer.send_json(done).await?;
                    return Ok(Ending::Done);
                };
                match event? {
                    SpeechEvent::SegmentStart { segment, text } => {
                        let start = json!({"type": "segment_start", "segment": segment, "text": text, "sample_rate": sample_rate});
                        writer.send_json(start).await?;
                    }
                    SpeechEvent::Audio(chunk) => writer.send_binary(s16le(&chunk.samples)).await?,
                    SpeechEvent::SegmentEnd { segment, audio_seconds: seconds } => {
                        audio_seconds += seconds;
                        let end = json!({"type": "segment_end", "segment": segment, "audio_seconds": seconds});
                        writer.send_json(end).await?;
                    }
                    SpeechEvent::Cancelled => writer.send_json(json!({"type": "cancelled"})).await?,
                }
            }
        }
    }
}

fn s16le(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| ((s.clamp(-1.0, 1.0) * 32_767.0).round() as i16).to_le_bytes()).collect()
}
