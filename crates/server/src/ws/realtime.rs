//! `GET /v1/realtime?intent=transcription`: the part of OpenAI's Realtime API that
//! transcription clients use, on the same live session, VAD and limits as `/v1/realtime/asr`.
//! Audio arrives base64 in `input_audio_buffer.append`; each turn (ended by the VAD with
//! `server_vad`, or by the client's commit) becomes a conversation item whose transcript
//! comes as append-only deltas of settled text and one `completed` event.

use super::close::{close_code, is_recoverable};
use super::realtime_config::{parse_event, ClientEvent, SessionConfig};
use super::socket::{Incoming, Reader, Socket, Upgrade, Writer};
use crate::http::error_type;
use crate::service::live::{LiveAudio, LiveEvents, LiveRecognition};
use crate::service::{Operation, SharedCall};
use axum::extract::ws::WebSocket;
use base64::Engine;
use serde_json::{json, Value};
use smai_core::{Error, LiveEvent, TranscribeOptions};
use std::collections::HashMap;

/// OpenAI refuses to commit less than 100 ms of audio.
const MIN_COMMIT_SECONDS: f64 = 0.1;

pub async fn run(ws: WebSocket, upgrade: Upgrade, refusal: Option<Error>) {
    let Some((mut reader, mut writer, call)) = Socket::open(ws, upgrade, Operation::LiveTranscription).await else {
        return;
    };
    let mut session = Session::new(call.clone());
    let result = match refusal {
        Some(error) => Err(error),
        None => session.run(&mut reader, &mut writer).await,
    };
    match result {
        // A client ends a Realtime session by closing the socket.
        Ok(()) => call.finish(200),
        // It vanished while we were answering: the call ends as closed by the client.
        Err(_) if writer.gone() => {}
        Err(error) => {
            let error = call.fail(error);
            let event = session.error_event(&error, None);
            let _ = writer.send_json(event).await;
            writer.close(close_code(error.code), error.code.as_str()).await;
        }
    }
    // The call's slot and usage row end here, not after the wait for the client's close.
    drop((session, call));
    reader.await_close().await;
}

enum Step {
    Client(Incoming),
    Engine(Option<Result<LiveEvent, Error>>),
}

/// The audio since the last commit, the live recognition under it, and the turns it made.
struct Session {
    call: SharedCall,
    config: SessionConfig,
    /// Answer with the beta event names (`transcription_session.*`).
    beta: bool,
    live: Option<LiveRecognition>,
    /// The events of a live recognition just opened, for the session loop to take.
    opened_events: Option<LiveEvents>,
    events_sent: u64,
    items_made: u64,
    previous_item: Option<String>,
    /// Each turn (utterance) of the live session: its item and its transcript so far.
    turns: HashMap<u32, (String, String)>,
    commits: u32,
    uncommitted_seconds: f64,
}

impl Session {
    fn new(call: SharedCall) -> Self {
        Self {
            call,
            config: SessionConfig::default(),
            beta: false,
            live: None,
            opened_events: None,
            events_sent: 0,
            items_made: 0,
            previous_item: None,
            turns: HashMap::new(),
            commits: 0,
            uncommitted_seconds: 0.0,
        }
    }

    async fn run(&mut self, reader: &mut Reader, writer: &mut Writer) -> Result<(), Error> {
        let created = self.event("session.created", json!({"session": self.describe()}));
        writer.send_json(created).await?;
        let mut events: Option<LiveEvents> = None;
        loop {
            if let Some(opened) = self.opened_events.take() {
                events = Some(opened);
            }
            if self.live.is_none() {
                events = None;
            }
            let engine = async {
                match events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let step = tokio::select! {
                incoming = reader.next() => Step::Client(incoming?),
                event = engine => Step::Engine(event),
            };
            match step {
                Step::Client(Incoming::Gone) => return Ok(()),
                Step::Client(Incoming::Binary(_)) => {
                    let e = Error::invalid("send audio as input_audio_buffer.append events");
                    writer.send_json(self.error_event(&e, None)).await?;
                }
                Step::Client(Incoming::Text(text)) => {
                    let event = parse_event(&text);
                    let event_id = event.as_ref().ok().and_then(|e| e.event_id.clone());
                    match self.client_event(event, writer).await {
                        Err(e) if is_recoverable(e.code) => writer.send_json(self.error_event(&e, event_id)).await?,
                        other => other?,
                    }
                }
                Step::Engine(Some(event)) => self.engine_event(event?, writer).await?,
                // The live session ended (its input closed); a new one opens with the next audio.
                Step::Engine(None) => self.live = None,
            }
        }
    }

    async fn client_event(&mut self, event: Result<ClientEvent, Error>, writer: &mut Writer) -> Result<(), Error> {
        let event = event?;
        match event.kind.as_str() {
            "session.update" | "transcription_session.update" => {
                if self.live.is_some() {
                    return Err(Error::invalid("the session's settings are fixed once audio has arrived"));
                }
                self.beta = event.kind == "transcription_session.update";
                let session = &event.body["session"];
                if self.beta {
                    self.config.apply_beta(session)?;
                } else {
                    self.config.apply_ga(session)?;
                }
                let updated = if self.beta { "transcription_session.updated" } else { "session.updated" };
                writer.send_json(self.event(updated, json!({"session": self.describe()}))).await
            }
            "input_audio_buffer.append" => {
                let audio = event.body["audio"].as_str().ok_or_else(|| Error::invalid("append needs \"audio\""))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(audio)
                    .map_err(|e| Error::invalid(format!("audio is not base64: {e}")))?;
                let live = self.open_live()?;
                let before = live.audio_seconds();
                live.feed(&bytes).await?;
                self.uncommitted_seconds += live.audio_seconds() - before;
                Ok(())
            }
            "input_audio_buffer.commit" => self.commit(writer).await,
            "input_audio_buffer.clear" => {
                // A fresh session drops what the old one buffered.
                self.live = None;
                self.uncommitted_seconds = 0.0;
                writer.send_json(self.event("input_audio_buffer.cleared", json!({}))).await
            }
            "response.create" | "conversation.item.create" => Err(Error::invalid(
                "this endpoint serves transcription sessions only; conversation (response) sessions are refused",
            )),
            other => Err(Error::invalid(format!("unknown or unsupported event type {other:?}"))),
        }
    }

    fn open_live(&mut self) -> Result<&mut LiveRecognition, Error> {
        if self.live.is_none() {
            let options = TranscribeOptions {
                model: self.config.model.clone(),
                language: self.config.language.clone(),
                prompt: self.config.prompt.clone(),
                live_vad: self.config.turn_detection,
                ..Default::default()
            };
            let audio = LiveAudio { encoding: self.config.encoding, sample_rate: self.config.sample_rate };
            let (live, events) = LiveRecognition::open(&self.call, options, audio)?;
            (self.live, self.opened_events) = (Some(live), Some(events));
            self.turns.clear();
            self.commits = 0;
        }
        Ok(self.live.as_mut().expect("opened"))
    }

    /// The client's commit: the audio since the last one becomes an item now.
    async fn commit(&mut self, writer: &mut Writer) -> Result<(), Error> {
        if self.uncommitted_seconds < MIN_COMMIT_SECONDS {
            let e = Error::invalid(format!(
                "input_audio_buffer_commit_empty: the buffer holds {:.0} ms of audio; commit at least 100 ms",
                self.uncommitted_seconds * 1000.0
            ));
            return Err(e);
        }
        let Some(live) = self.live.as_mut() else { return Err(Error::invalid("no audio to commit")) };
        live.commit().await?;
        self.uncommitted_seconds = 0.0;
        if self.config.turn_detection.is_none() {
            // Manual turns: the n-th commit ends the n-th utterance of the live session.
            let item = self.new_item();
            self.turns.insert(self.commits, (item.clone(), String::new()));
            self.commits += 1;
            self.announce_item(&item, writer).await?;
        }
        Ok(())
    }

    async fn engine_event(&mut self, event: LiveEvent, writer: &mut Writer) -> Result<(), Error> {
        match event {
            LiveEvent::SpeechStarted { utterance, at } => {
                let item = self.new_item();
                self.turns.insert(utterance, (item.clone(), String::new()));
                let ms = (at * 1000.0).round() as u64;
                let started = json!({"audio_start_ms": ms, "item_id": item});
                writer.send_json(self.event("input_audio_buffer.speech_started", started)).await
            }
            LiveEvent::SpeechStopped { utterance, at } => {
                let Some((item, _)) = self.turns.get(&utterance).cloned() else { return Ok(()) };
                let ms = (at * 1000.0).round() as u64;
                let stopped = json!({"audio_end_ms": ms, "item_id": item});
                writer.send_json(self.event("input_audio_buffer.speech_stopped", stopped)).await?;
                self.uncommitted_seconds = 0.0;
                self.announce_item(&item, writer).await
            }
            LiveEvent::Final { utterance, segment, .. } if !segment.text.trim().is_empty() => {
                let Some((item, text)) = self.turns.get_mut(&utterance) else { return Ok(()) };
                text.push_str(&segment.text);
                let delta = json!({"item_id": item.clone(), "content_index": 0, "delta": segment.text});
                writer.send_json(self.event("conversation.item.input_audio_transcription.delta", delta)).await
            }
            LiveEvent::UtteranceEnd { utterance } => {
                let Some((item, text)) = self.turns.remove(&utterance) else { return Ok(()) };
                let done = json!({"item_id": item, "content_index": 0, "transcript": text.trim(),
                    "usage": {"type": "duration", "seconds": self.call.with(|c| Ok(c.charged() as f64 / 10.0))?}});
                writer.send_json(self.event("conversation.item.input_audio_transcription.completed", done)).await
            }
            _ => Ok(()),
        }
    }

    /// `input_audio_buffer.committed` and `conversation.item.created` for a new turn.
    async fn announce_item(&mut self, item: &str, writer: &mut Writer) -> Result<(), Error> {
        let previous = self.previous_item.replace(item.to_owned());
        let committed = json!({"item_id": item, "previous_item_id": previous});
        writer.send_json(self.event("input_audio_buffer.committed", committed)).await?;
        let created = json!({"previous_item_id": previous, "item": {"id": item, "object": "realtime.item",
            "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": null}]}});
        writer.send_json(self.event("conversation.item.created", created)).await
    }

    fn new_item(&mut self) -> String {
        self.items_made += 1;
        format!("item_{:06}", self.items_made)
    }

    fn describe(&self) -> Value {
        let id = self.call.with(|c| Ok(c.request_id().to_owned())).unwrap_or_default();
        self.config.describe(&id)
    }

    /// A server event with its `event_id`.
    fn event(&mut self, kind: &str, mut body: Value) -> Value {
        self.events_sent += 1;
        body["type"] = json!(kind);
        body["event_id"] = json!(format!("event_{:06}", self.events_sent));
        body
    }

    /// OpenAI's error event; `event_id` names the client event that caused it.
    fn error_event(&mut self, error: &Error, event_id: Option<String>) -> Value {
        if error.code == smai_core::ErrorCode::Internal {
            tracing::error!(detail = error.detail.as_deref().unwrap_or(""), "internal error on a socket");
        }
        let code = error.message.split(':').next().filter(|c| c.starts_with("input_audio_buffer_"));
        let detail = json!({"type": error_type(error.code), "code": code.unwrap_or(error.code.as_str()),
            "message": error.message, "param": null, "event_id": event_id});
        self.event("error", json!({"error": detail}))
    }
}
