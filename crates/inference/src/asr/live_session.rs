//! A live session on a thread of its own behind `smai_core::LiveSession`'s channels: audio in,
//! events out, with or without the VAD ending utterances (see `endpoint`).

use super::endpoint::{Action, Endpointer};
use super::live::{LiveTranscription, StreamEvent};
use smai_core::{Error, ErrorCode, LiveEvent, LiveInput, LiveSession};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A pause this long (in seconds) may be the end of the utterance: its final is decoded ahead.
const SPECULATE_AFTER_PAUSE_S: f64 = 0.1;

/// Chunks of audio a caller may send ahead of the session, and events it may leave unread.
const INPUT_BUFFER: usize = 64;
const EVENT_BUFFER: usize = 64;

/// Runs `transcription` (16 kHz) on a thread of its own behind a `LiveSession`: audio is fed
/// as it comes, a commit makes the buffer final and starts the next utterance, the end of
/// the input makes the rest final and closes the events, and a listener that goes away
/// stops the session, decoding included.
/// With `finals_only` (honoured with an endpointer only) no partials are decoded.
pub(crate) fn spawn_session(
    mut transcription: LiveTranscription,
    endpointer: Option<Endpointer>,
    finals_only: bool,
) -> Result<LiveSession, Error> {
    let (input, inputs) = mpsc::channel(INPUT_BUFFER);
    let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
    let listener = events_tx.clone();
    transcription.cancelled = Arc::new(move || listener.is_closed());
    let finals_only = finals_only && endpointer.is_some();
    let session = Session { transcription, endpointer, finals_only, inputs, events: events_tx, utterance: 0 };
    std::thread::Builder::new()
        .name("whisper-live".into())
        .spawn(move || session.start())
        .map_err(|e| Error::internal(format!("cannot start a live session: {e}")))?;
    Ok(LiveSession { input, events })
}

struct Session {
    transcription: LiveTranscription,
    /// With server-side endpointing, the VAD decides where utterances begin and end.
    endpointer: Option<Endpointer>,
    /// No partial decoding (the VAD bounds each utterance, so its final covers it).
    finals_only: bool,
    inputs: mpsc::Receiver<LiveInput>,
    events: mpsc::Sender<Result<LiveEvent, Error>>,
    utterance: u32,
}

impl Session {
    /// Waiting for input or for the listener to go, whichever first, takes a small runtime
    /// of the session's own; decoding and sending block this thread outside it.
    fn start(self) {
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(waiter) => self.run(&waiter),
            Err(e) => {
                let _ = self.events.blocking_send(Err(Error::internal(format!("live session: {e}"))));
            }
        }
    }

    fn run(mut self, waiter: &tokio::runtime::Runtime) {
        if self.endpointer.is_some() {
            return self.run_endpointed(waiter);
        }
        while let Some(input) = self.next_input(waiter) {
            let committed = input == LiveInput::Commit;
            let result = match input {
                // A busy model skips a partial; the audio stays buffered for the next one.
                LiveInput::Audio(samples) => match self.transcription.feed_f32(&samples) {
                    Err(e) if e.code == ErrorCode::Overloaded => Ok(Vec::new()),
                    other => other,
                },
                LiveInput::Commit => self.transcription.commit(),
            };
            if !self.report(result) {
                return;
            }
            if committed {
                if !self.end_utterance() {
                    return;
                }
                self.utterance += 1;
            }
        }
        if !self.events.is_closed() {
            let rest = self.transcription.commit();
            if self.report(rest) {
                self.end_utterance();
            }
        }
    }

    /// The session with VAD endpointing: audio goes through the endpointer, whose actions
    /// skip silence, announce speech, feed the model and end utterances. A commit, or the end
    /// of the input, ends the current utterance at once.
    fn run_endpointed(mut self, waiter: &tokio::runtime::Runtime) {
        while let Some(input) = self.next_input(waiter) {
            // Whatever else has queued up meanwhile is taken too, so a session that fell behind
            // decodes once for all of it.
            let mut inputs = vec![input];
            while let Ok(more) = self.inputs.try_recv() {
                inputs.push(more);
            }
            let endpointer = self.endpointer.as_mut().expect("endpointed session");
            let mut actions = Ok(Vec::new());
            for input in inputs {
                let more = match input {
                    LiveInput::Audio(samples) => endpointer.push(&samples),
                    LiveInput::Commit => Ok(endpointer.end_now()),
                };
                actions = actions.and_then(|mut all: Vec<Action>| {
                    all.extend(more?);
                    Ok(all)
                });
            }
            let carried_on = match actions {
                Ok(actions) => self.apply(actions),
                Err(e) => self.report(Err(e)),
            };
            if !carried_on {
                return;
            }
        }
        if !self.events.is_closed() {
            let actions = self.endpointer.as_mut().map(Endpointer::end_now).unwrap_or_default();
            self.apply(actions);
        }
    }

    /// Carries out the endpointer's actions; false when the session is over.
    fn apply(&mut self, actions: Vec<Action>) -> bool {
        for action in actions {
            let utterance = self.utterance;
            let carried_on = match action {
                Action::Drop(samples) => {
                    self.transcription.skip(samples);
                    true
                }
                Action::Begin { at } => self.send(LiveEvent::SpeechStarted { utterance, at }),
                Action::Feed(samples) => {
                    self.transcription.buffer_only(&samples);
                    true
                }
                Action::Resume => {
                    self.transcription.discard_speculation();
                    true
                }
                Action::End { at, carry } => {
                    let ended = self.send(LiveEvent::SpeechStopped { utterance, at })
                        && {
                            let finals = self.transcription.commit_keeping(carry);
                            self.report(finals)
                        }
                        && self.end_utterance();
                    self.utterance += 1;
                    ended
                }
            };
            if !carried_on {
                return false;
            }
        }
        // During a pause no partial is decoded: the final is, ahead of time. Otherwise one
        // partial for everything fed; a busy model skips it, the audio stays buffered.
        if let Some(pause) = self.endpointer.as_ref().filter(|e| e.in_pause()).map(Endpointer::pause_seconds) {
            // Not on the short gaps between words, nor when others wait for the model.
            if pause >= SPECULATE_AFTER_PAUSE_S && !self.transcription.model_is_busy() {
                self.transcription.speculate();
            }
            return true;
        }
        if self.finals_only {
            return true;
        }
        match self.transcription.decode_if_due() {
            Err(e) if e.code == ErrorCode::Overloaded => true,
            other => self.report(other),
        }
    }

    fn send(&self, event: LiveEvent) -> bool {
        self.events.blocking_send(Ok(event)).is_ok()
    }

    /// Says the current utterance is over; false when nobody listens any more.
    fn end_utterance(&mut self) -> bool {
        self.events.blocking_send(Ok(LiveEvent::UtteranceEnd { utterance: self.utterance })).is_ok()
    }

    /// The next input, or `None` when the input ends or the listener goes away.
    fn next_input(&mut self, waiter: &tokio::runtime::Runtime) -> Option<LiveInput> {
        let (inputs, events) = (&mut self.inputs, &self.events);
        waiter.block_on(async {
            tokio::select! {
                input = inputs.recv() => input,
                () = events.closed() => None,
            }
        })
    }

    /// Sends the events of one step; false when the session is over (an error, or nobody listens).
    fn report(&mut self, result: Result<Vec<StreamEvent>, Error>) -> bool {
        let events = match result {
            Ok(events) => events,
            Err(e) => {
                let _ = self.events.blocking_send(Err(e));
                return false;
            }
        };
        let language = self.transcription.language().to_string();
        for event in events {
            let event = match event {
                // Whisper may rewrite any word of a partial on the next pass: nothing is stable.
                StreamEvent::Partial { start, end, text, stable } => {
                    LiveEvent::Partial { utterance: self.utterance, start, end, text, stable_text: stable }
                }
                StreamEvent::Final(segment) => {
                    LiveEvent::Final { utterance: self.utterance, segment, language: language.clone() }
                }
            };
            if self.events.blocking_send(Ok(event)).is_err() {
                return false;
            }
        }
        true
    }
}
