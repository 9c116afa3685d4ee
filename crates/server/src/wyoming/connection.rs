//! One Wyoming connection: events are read on a task of their own (so reading is never cut
//! half-way by the loop below), and the loop answers them, one request at a time, while the
//! engines' output of a request under way goes out as it comes.

use super::asr::{AsrRequest, Transcribe};
use super::tts::TtsRequest;
use super::wire::{self, Event, WireError};
use super::{info, Settings, Step};
use crate::service::SharedCall;
use serde_json::json;
use smai_core::{Error, ErrorCode};
use std::net::SocketAddr;
use tokio::io::{BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Events read ahead of the loop; the reader waits beyond this (back pressure on the client).
const READ_AHEAD: usize = 16;

type Incoming = Result<Event, WireError>;

/// The request a connection is serving.
enum Request {
    Idle,
    Asr(Box<AsrRequest>),
    Tts(Box<TtsRequest>),
    /// Answered or refused: its remaining events are dropped until its closing one.
    Draining {
        until: &'static str,
    },
}

struct Connection {
    settings: Settings,
    peer: SocketAddr,
    writer: BufWriter<OwnedWriteHalf>,
    request: Request,
    /// The last `transcribe`, for the next audio stream.
    transcribe: Option<Transcribe>,
}

pub async fn run(stream: TcpStream, peer: SocketAddr, settings: Settings) {
    let (read, write) = stream.into_split();
    let (tx, mut incoming) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(read_events(BufReader::new(read), tx));
    let mut connection =
        Connection { settings, peer, writer: BufWriter::new(write), request: Request::Idle, transcribe: None };
    if let Err(e) = connection.serve(&mut incoming).await {
        tracing::debug!(%peer, error = %e, "wyoming connection closed");
    }
    reader.abort();
}

async fn read_events(mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>, tx: mpsc::Sender<Incoming>) {
    loop {
        let next = wire::read_event(&mut reader).await;
        let stop = !matches!(next, Ok(Some(_)));
        let item = match next {
            Ok(Some(event)) => Ok(event),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// Why the loop ended.
#[derive(Debug, thiserror::Error)]
enum Closed {
    #[error("the client went away")]
    Gone,
    #[error("idle for too long")]
    Idle,
    #[error("unreadable stream: {0}")]
    Wire(WireError),
    #[error("writing failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Connection {
    async fn serve(&mut self, incoming: &mut mpsc::Receiver<Incoming>) -> Result<(), Closed> {
        loop {
            // A client streaming audio or waiting for nothing must keep talking; one waiting
            // for synthesis may be silent as long as the synthesis takes.
            let idle = !matches!(self.request, Request::Tts(_));
            let timeout = tokio::time::sleep(self.settings.idle_timeout);
            tokio::select! {
                event = incoming.recv() => match event {
                    None => return Err(Closed::Gone),
                    Some(Err(e)) => {
                        let code = match e { WireError::TooLarge { .. } => "payload_too_large", _ => "invalid_request" };
                        self.send(&error_event(code, &e.to_string())).await?;
                        return Err(Closed::Wire(e));
                    }
                    Some(Ok(event)) => self.on_client_event(event).await?,
                },
                step = next_step(&mut self.request) => self.on_step(step).await?,
                () = timeout, if idle => return Err(Closed::Idle),
            }
        }
    }

    async fn on_client_event(&mut self, event: Event) -> Result<(), Closed> {
        let result = match event.kind.as_str() {
            "describe" => return self.describe().await,
            "ping" => {
                let pong = Event::with_data("pong", json!({"text": event.data.get("text")}));
                return self.send(&pong).await;
            }
            "transcribe" => {
                self.transcribe = Some(Transcribe::of(&event));
                Ok(())
            }
            "audio-start" | "audio-chunk" | "audio-stop" => self.on_audio(event).await,
            "synthesize" | "synthesize-start" | "synthesize-chunk" | "synthesize-stop" => self.on_text(event).await,
            // Unknown events are dropped, as the protocol asks of servers.
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.refuse(error).await,
        }
    }

    async fn describe(&mut self) -> Result<(), Closed> {
        let event = match self.settings.service.configured_principal(self.settings.key_id.as_deref()).await {
            Ok(principal) => info::info(&self.settings.service, &principal),
            Err(e) => error_event(e.code.as_str(), &e.message),
        };
        self.send(&event).await
    }

    async fn on_audio(&mut self, event: Event) -> Result<(), Error> {
        match (&mut self.request, event.kind.as_str()) {
            (Request::Idle, "audio-start") => {
                // Until the request is open, a refusal drains its audio.
                self.request = Request::Draining { until: "audio-stop" };
                let call = SharedCall::new(self.settings.call("transcribe", self.peer).await?);
                let transcribe = self.transcribe.take().unwrap_or_default();
                let asr = AsrRequest::open(call.clone(), transcribe, &event).map_err(|e| call.fail(e))?;
                self.request = Request::Asr(Box::new(asr));
                Ok(())
            }
            (Request::Asr(asr), "audio-chunk") => asr.feed(&event).await.map_err(|e| asr.fail(e)),
            (Request::Asr(asr), "audio-stop") => asr.stop().await.map_err(|e| asr.fail(e)),
            (Request::Draining { until }, kind) => {
                if kind == *until {
                    self.request = Request::Idle;
                }
                Ok(())
            }
            (Request::Idle, "audio-chunk") => Err(Error::invalid("audio-chunk before audio-start")),
            (Request::Idle, _) => Ok(()),
            (Request::Asr(_), _) => Err(Error::invalid("audio-start inside an audio stream")),
            (Request::Tts(_), _) => Err(Error::invalid("audio sent while a synthesis is under way")),
        }
    }

    async fn on_text(&mut self, event: Event) -> Result<(), Error> {
        match (&mut self.request, event.kind.as_str()) {
            (Request::Idle, "synthesize") => {
                let call = SharedCall::new(self.settings.call("synthesize", self.peer).await?);
                let tts = TtsRequest::whole(&self.settings.service, call.clone(), &event).map_err(|e| call.fail(e))?;
                self.request = Request::Tts(Box::new(tts));
                Ok(())
            }
            (Request::Idle, "synthesize-start") => {
                self.request = Request::Draining { until: "synthesize-stop" };
                let call = SharedCall::new(self.settings.call("synthesize-stream", self.peer).await?);
                let tts =
                    TtsRequest::streamed(&self.settings.service, call.clone(), &event).map_err(|e| call.fail(e))?;
                self.request = Request::Tts(Box::new(tts));
                Ok(())
            }
            (Request::Tts(tts), "synthesize-chunk") => {
                let text = event.str("text").unwrap_or_default().to_owned();
                tts.speak(text).await.map_err(|e| tts.fail(e))
            }
            (Request::Tts(tts), "synthesize-stop") => {
                tts.stop_text();
                Ok(())
            }
            // Sent inside a stream for clients that do not stream; the stream has the text.
            (Request::Tts(tts), "synthesize") if tts.is_streamed() => Ok(()),
            (Request::Draining { until }, kind) => {
                if kind == *until {
                    self.request = Request::Idle;
                }
                Ok(())
            }
            (Request::Idle, kind) => Err(Error::invalid(format!("{kind} outside a synthesize-start stream"))),
            _ => Err(Error::invalid("one request at a time: the synthesis under way is not finished")),
        }
    }

    async fn on_step(&mut self, step: Result<Step, Error>) -> Result<(), Closed> {
        match step {
            Ok(Step::Send(events)) => self.send_all(&events).await,
            Ok(Step::Answer(events)) => {
                // Answered before its audio-stop (our VAD ended it): the rest of its audio is dropped.
                let audio_left = matches!(&self.request, Request::Asr(asr) if !asr.stopped());
                self.request = if audio_left { Request::Draining { until: "audio-stop" } } else { Request::Idle };
                self.send_all(&events).await
            }
            Err(error) => self.refuse(error).await,
        }
    }

    /// Reports a refused or failed request; its remaining events are dropped.
    async fn refuse(&mut self, error: Error) -> Result<(), Closed> {
        let request = std::mem::replace(&mut self.request, Request::Idle);
        self.request = match request {
            Request::Asr(asr) if !asr.stopped() => {
                asr.fail(error.clone());
                Request::Draining { until: "audio-stop" }
            }
            Request::Tts(tts) if tts.is_streamed() && !tts.text_stopped() => {
                tts.fail(error.clone());
                Request::Draining { until: "synthesize-stop" }
            }
            Request::Asr(asr) => {
                asr.fail(error.clone());
                Request::Idle
            }
            Request::Tts(tts) => {
                tts.fail(error.clone());
                Request::Idle
            }
            other => other,
        };
        if error.code == ErrorCode::Internal {
            tracing::error!(peer = %self.peer, error = %error.message, "wyoming request failed");
        }
        let message = if error.code == ErrorCode::Internal { "internal error".to_owned() } else { error.message };
        self.send(&error_event(error.code.as_str(), &message)).await
    }

    async fn send(&mut self, event: &Event) -> Result<(), Closed> {
        Ok(wire::write_event(&mut self.writer, event).await?)
    }

    async fn send_all(&mut self, events: &[Event]) -> Result<(), Closed> {
        for event in events {
            self.send(event).await?;
        }
        Ok(())
    }
}

fn error_event(code: &str, text: &str) -> Event {
    Event::with_data("error", json!({"text": text, "code": code}))
}

/// The next step of the request under way; never completes when none is.
async fn next_step(request: &mut Request) -> Result<Step, Error> {
    match request {
        Request::Asr(asr) => {
            let event = asr.events.recv().await;
            asr.on_event(event)
        }
        Request::Tts(tts) => tts.next().await,
        Request::Idle | Request::Draining { .. } => std::future::pending().await,
    }
}
