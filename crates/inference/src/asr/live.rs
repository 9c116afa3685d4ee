//! Live transcription. A session takes PCM chunks as they arrive and, every `step_seconds` of
//! new audio, re-transcribes the audio that is not settled yet. Segments that end at least
//! `settle_seconds` before the newest audio are final: they are reported once and their audio
//! leaves the buffer, so the model never sees more than `max_buffer_seconds` (under Whisper's
//! 30 s window). What follows them is reported as a partial result that may still change.
//! A commit, or the end of the audio, transcribes the rest and makes it final.
//!
//! [`LiveTranscription`] is the blocking session; `live_session` drives one on a thread of its
//! own behind `smai_core::LiveSession`'s channels.

use super::engine::decode_pcm;
use crate::audio::mel::LogMel;
use crate::runtime::Worker;
use crate::whisper::{WhisperModel, WhisperOptions};
use smai_core::{Error, Segment, TranscribeOptions};
use std::sync::Arc;

/// Whether the listener has gone (then decoding stops early).
pub(crate) type Cancelled = Arc<dyn Fn() -> bool + Send + Sync>;

/// What one decoding of the buffer gave.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub language: String,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Rate of the PCM the caller feeds (mono).
    pub sample_rate: u32,
    /// New audio between two re-transcriptions.
    pub step_seconds: f64,
    /// A segment is final once this much audio follows its end.
    pub settle_seconds: f64,
    /// Beyond this, all but the newest segment are made final (or silence dropped).
    pub max_buffer_seconds: f64,
    /// Settle only up to the end of a sentence, so a cut never takes a sentence's context away.
    pub settle_at_sentence_ends: bool,
    pub transcribe: TranscribeOptions,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            step_seconds: 1.0,
            settle_seconds: 2.0,
            max_buffer_seconds: 25.0,
            settle_at_sentence_ends: false,
            transcribe: TranscribeOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The current guess for the unsettled audio (times from the session start); `stable` is a
    /// prefix of `text` that the utterance's finals will begin with.
    Partial { start: f64, end: f64, text: String, stable: String },
    /// A settled segment; never revised.
    Final(Segment),
}

/// Buffering and commit decisions of a session, apart from the model.
#[derive(Debug, Clone)]
pub struct StreamBuffer {
    options: StreamOptions,
    /// Unsettled audio at the caller's rate.
    audio: Vec<f32>,
    /// Seconds of audio before `audio[0]` (already final or dropped).
    offset: f64,
    new_samples: usize,
    next_id: usize,
}

impl StreamBuffer {
    pub fn new(options: StreamOptions) -> Result<Self, Error> {
        if !(1000..=384_000).contains(&options.sample_rate) {
            return Err(Error::invalid(format!("unsupported sample rate {} Hz", options.sample_rate)));
        }
        let o = &options;
        if !(o.step_seconds > 0.0 && o.settle_seconds >= 0.0 && o.max_buffer_seconds <= 30.0)
            || o.max_buffer_seconds <= o.settle_seconds + o.step_seconds
        {
            return Err(Error::invalid("stream timing: need step > 0, settle + step < max buffer <= 30 s"));
        }
        Ok(Self { options, audio: Vec::new(), offset: 0.0, new_samples: 0, next_id: 0 })
    }

    fn rate(&self) -> f64 {
        self.options.sample_rate as f64
    }

    pub fn buffered_seconds(&self) -> f64 {
        self.audio.len() as f64 / self.rate()
    }

    /// Appends samples; true when enough new audio arrived for a re-transcription.
    pub fn push(&mut self, samples: &[f32]) -> bool {
        self.audio.extend(samples.iter().map(|s| if s.is_finite() { s.clamp(-1.0, 1.0) } else { 0.0 }));
        self.new_samples += samples.len();
        self.new_samples as f64 >= self.options.step_seconds * self.rate()
    }

    /// Moves the session's clock on by `samples` that are not kept (silence between
    /// utterances); only while nothing is buffered.
    pub fn skip(&mut self, samples: usize) {
        debug_assert!(self.audio.is_empty(), "skipping with audio buffered");
        self.offset += samples as f64 / self.rate();
    }

    /// Takes the last `samples` of the buffer out (they will start the next utterance).
    fn split_tail(&mut self, samples: usize) -> Vec<f32> {
        let keep = self.audio.len().saturating_sub(samples);
        self.audio.split_off(keep)
    }

    /// The unsettled audio at Whisper's 16 kHz.
    pub fn audio_16k(&self) -> Result<Vec<f32>, Error> {
        crate::audio::resample(&self.audio, self.options.sample_rate, crate::audio::SAMPLE_RATE)
    }

    /// Whether [`Self::settle`] would make any of these segments final (short of closing).
    pub fn would_settle(&self, segments: &[Segment]) -> bool {
        self.settled_count(segments, false) > 0
    }

    /// How many leading segments are final: those ending `settle_seconds` before the newest
    /// audio (up to a sentence's end when asked), all when closing, and all but the newest
    /// when the buffer is over its bound.
    fn settled_count(&self, segments: &[Segment], closing: bool) -> usize {
        if closing {
            return segments.len();
        }
        let duration = self.buffered_seconds();
        let horizon = duration - self.options.settle_seconds;
        let mut n = segments.iter().take_while(|s| s.end <= horizon).count();
        if self.options.settle_at_sentence_ends {
            let ends_sentence = |s: &Segment| s.text.trim_end().ends_with(['.', '?', '!']);
            n = segments[..n].iter().rposition(ends_sentence).map_or(0, |i| i + 1);
        }
        if duration > self.options.max_buffer_seconds {
            n = n.max(segments.len().saturating_sub(1)).max(segments.len().min(1));
        }
        n
    }

    /// Takes the transcript of the buffer (times relative to it): reports final segments and
    /// drops their audio, then reports the rest as partial. `closing` makes everything final.
    pub fn settle(&mut self, segments: Vec<Segment>, closing: bool) -> Vec<StreamEvent> {
        self.new_samples = 0;
        let duration = self.buffered_seconds();
        let horizon = duration - self.options.settle_seconds;
        let n_final = self.settled_count(&segments, closing);
        let mut events = Vec::new();
        let mut cut = if closing { duration } else { 0.0 };
        for mut s in segments.iter().take(n_final).cloned() {
            cut = cut.max(s.end.min(duration));
            s.id = self.next_id;
            self.next_id += 1;
            // Whisper's last timestamp may lie past the audio it was given; nothing was heard there.
            s.start = s.start.min(duration) + self.offset;
            s.end = s.end.min(duration) + self.offset;
            for w in &mut s.words {
                w.start = w.start.min(duration) + self.offset;
                w.end = w.end.min(duration) + self.offset;
            }
            events.push(StreamEvent::Final(s));
        }
        if segments.is_empty() && duration > self.options.max_buffer_seconds {
            cut = horizon.max(0.0); // silence only: keep the buffer bounded
        }
        let rest = &segments[n_final..];
        if !rest.is_empty() {
            let text = rest.iter().map(|s| s.text.as_str()).collect::<String>();
            let (start, end) = (rest[0].start.min(duration), rest[rest.len() - 1].end.min(duration));
            let (start, end) = (start + self.offset, end + self.offset);
            events.push(StreamEvent::Partial { start, end, text, stable: String::new() });
        }
        let drop = ((cut * self.rate()).round() as usize).min(self.audio.len());
        self.audio.drain(..drop);
        self.offset += drop as f64 / self.rate();
        events
    }
}

/// A live transcription on one of a `WhisperEngine`'s models (see `WhisperEngine::open_stream`).
/// Each call blocks while the model works; run it off async executors (`spawn_blocking`).
pub struct LiveTranscription {
    buffer: StreamBuffer,
    worker: Worker<WhisperModel>,
    mel: Arc<LogMel>,
    options: WhisperOptions,
    /// Options of partial decodings, when they differ from the finals'.
    partial_options: Option<WhisperOptions>,
    /// When utterances are ended by a VAD: segments that settled inside the current utterance,
    /// held back as the stable start of its partials until it ends.
    held: Option<Vec<Segment>>,
    /// The final decoding of the buffer made when the speaker paused (see [`Self::speculate`]).
    speculation: Option<Decoded>,
    language: String,
    pub(crate) cancelled: Cancelled,
}

impl LiveTranscription {
    pub(crate) fn new(
        worker: Worker<WhisperModel>,
        mel: Arc<LogMel>,
        options: WhisperOptions,
        stream: StreamOptions,
    ) -> Result<Self, Error> {
        let buffer = StreamBuffer::new(stream)?;
        let cancelled: Cancelled = Arc::new(|| false);
        let language = String::new();
        let (partial_options, held, speculation) = (None, None, None);
        Ok(Self { buffer, worker, mel, options, partial_options, held, speculation, language, cancelled })
    }

    /// Feeds mono samples in [-1, 1] at the session's rate.
    pub fn feed_f32(&mut self, samples: &[f32]) -> Result<Vec<StreamEvent>, Error> {
        if !self.buffer.push(samples) {
            return Ok(Vec::new());
        }
        self.decode(false)
    }

    /// Buffers samples without decoding; [`Self::decode_if_due`] decides later.
    pub fn buffer_only(&mut self, samples: &[f32]) {
        self.buffer.push(samples);
    }

    /// A partial decoding when enough new audio has arrived since the last one, unless other
    /// work waits for the model: then finals (and other sessions) go first, and the partial
    /// comes with more audio later.
    pub fn decode_if_due(&mut self) -> Result<Vec<StreamEvent>, Error> {
        if self.worker.has_waiting_jobs() {
            return Ok(Vec::new());
        }
        self.feed_f32(&[])
    }

    /// Partials decode greedily at temperature 0 (the next one replaces them); finals keep
    /// the file decoding's options, so a live transcript is as accurate as REST's.
    pub fn with_greedy_partials(mut self) -> Self {
        let mut partial = self.options.clone();
        partial.beam_size = 1;
        partial.best_of = 1;
        partial.temperatures = vec![0.0];
        self.partial_options = Some(partial);
        self
    }

    /// Feeds mono 16-bit samples at the session's rate.
    pub fn feed_s16(&mut self, samples: &[i16]) -> Result<Vec<StreamEvent>, Error> {
        let f: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        self.feed_f32(&f)
    }

    /// Transcribes what is buffered and makes it final; the session goes on after it.
    pub fn commit(&mut self) -> Result<Vec<StreamEvent>, Error> {
        self.decode(true)
    }

    /// Makes all but the last `carry` samples final; those stay, to begin the next utterance.
    pub fn commit_keeping(&mut self, carry: usize) -> Result<Vec<StreamEvent>, Error> {
        if let Some(decoded) = self.speculation.take().filter(|_| carry == 0) {
            // Decoded at the start of the pause that ended the utterance: only silence came since.
            self.language = decoded.language;
            let events = self.buffer.settle(decoded.segments, true);
            return Ok(self.hold_back(events, true));
        }
        let tail = self.buffer.split_tail(carry);
        let events = self.decode(true)?;
        self.buffer.push(&tail);
        Ok(events)
    }

    /// Decodes the utterance as its final would be, ahead of time: called when the speaker
    /// pauses, so that if the pause ends the utterance its finals are ready at once. A busy
    /// model is not waited for.
    pub fn speculate(&mut self) {
        if self.speculation.is_some() || self.buffer.buffered_seconds() < 0.1 {
            return;
        }
        let Ok(audio) = self.buffer.audio_16k() else { return };
        let decoded = decode_pcm(&self.worker, &self.mel, &audio, &self.options, &self.cancelled);
        self.speculation = decoded.ok();
    }

    /// Whether other work waits for the model.
    pub fn model_is_busy(&self) -> bool {
        self.worker.has_waiting_jobs()
    }

    /// Speech went on: the decoding ahead of time no longer holds.
    pub fn discard_speculation(&mut self) {
        self.speculation = None;
    }

    /// Silence that never reaches the model: the clock of later events moves on.
    pub fn skip(&mut self, samples: usize) {
        self.buffer.skip(samples);
    }

    /// Transcribes what is left and makes it final.
    pub fn close(mut self) -> Result<Vec<StreamEvent>, Error> {
        self.commit()
    }

    /// The language of the latest decoding (empty before the first).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// Holds settled segments back until the utterance ends (a commit), reporting them as the
    /// stable start of each partial: once settled, their audio has left the buffer, so no later
    /// decoding can change them, and the utterance's finals begin with them.
    pub fn with_stable_partials(mut self) -> Self {
        self.held = Some(Vec::new());
        self
    }

    fn decode(&mut self, closing: bool) -> Result<Vec<StreamEvent>, Error> {
        let events = self.decode_buffer(closing)?;
        Ok(self.hold_back(events, closing))
    }

    fn hold_back(&mut self, events: Vec<StreamEvent>, closing: bool) -> Vec<StreamEvent> {
        let Some(held) = self.held.as_mut() else { return events };
        let mut partial = None;
        for event in events {
            match event {
                StreamEvent::Final(segment) => held.push(segment),
                unsettled @ StreamEvent::Partial { .. } => partial = Some(unsettled),
            }
        }
        if closing {
            return held.drain(..).map(StreamEvent::Final).collect();
        }
        let stable: String = held.iter().map(|s| s.text.as_str()).collect();
        let held_span = held.first().zip(held.last()).map(|(a, b)| (a.start, b.end));
        match (partial, held_span) {
            (Some(StreamEvent::Partial { start, end, text, .. }), span) => {
                let start = span.map_or(start, |(first, _)| first);
                vec![StreamEvent::Partial { start, end, text: format!("{stable}{text}"), stable }]
            }
            (_, Some((start, end))) => vec![StreamEvent::Partial { start, end, text: stable.clone(), stable }],
            _ => Vec::new(),
        }
    }

    fn decode_buffer(&mut self, closing: bool) -> Result<Vec<StreamEvent>, Error> {
        // Whisper needs a little audio to say anything; a near-empty tail has nothing to add.
        if self.buffer.buffered_seconds() < 0.1 {
            return Ok(self.buffer.settle(Vec::new(), closing));
        }
        let audio = self.buffer.audio_16k()?;
        let cheap = self.partial_options.as_ref().filter(|_| !closing);
        let mut decoded = decode_pcm(&self.worker, &self.mel, &audio, cheap.unwrap_or(&self.options), &self.cancelled)?;
        if cheap.is_some() && self.buffer.would_settle(&decoded.segments) {
            // What settles is final text: it is decoded as finals are.
            decoded = decode_pcm(&self.worker, &self.mel, &audio, &self.options, &self.cancelled)?;
        }
        self.language = decoded.language;
        Ok(self.buffer.settle(decoded.segments, closing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.into(), compression_ratio: 1.0, ..Default::default() }
    }

    #[test]
    fn settled_segments_become_final_and_leave_the_buffer() {
        let mut b = StreamBuffer::new(StreamOptions { sample_rate: 1000, ..Default::default() }).unwrap();
        assert!(!b.push(&[0.0; 500]));
        assert!(b.push(&[0.0; 5500])); // 6 s buffered
        let events = b.settle(vec![seg(0.0, 2.5, " one"), seg(2.5, 4.5, " two"), seg(4.5, 6.0, " three")], false);
        // Horizon 6 - 2 = 4 s: only the first segment is settled.
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], StreamEvent::Final(s) if s.id == 0 && s.text == " one"));
        let partial = StreamEvent::Partial { start: 2.5, end: 6.0, text: " two three".into(), stable: String::new() };
        assert_eq!(events[1], partial);
        assert!((b.buffered_seconds() - 3.5).abs() < 1e-9);
        // Times of the next round are relative to the trimmed buffer.
        let events = b.settle(vec![seg(0.0, 2.0, " two"), seg(2.0, 3.5, " three")], true);
        let finals: Vec<(f64, f64)> = events
            .iter()
            .filter_map(|e| if let StreamEvent::Final(s) = e { Some((s.start, s.end)) } else { None })
            .collect();
        assert_eq!(finals, vec![(2.5, 4.5), (4.5, 6.0)]);
        assert_eq!(b.buffered_seconds(), 0.0);
    }

    #[test]
    fn sentence_settling_waits_for_a_sentence_end() {
        let options = StreamOptions { sample_rate: 1000, settle_at_sentence_ends: true, ..Default::default() };
        let mut b = StreamBuffer::new(options).unwrap();
        b.push(&[0.0; 7000]); // horizon 5 s
        let segments = vec![seg(0.0, 2.5, " one,"), seg(2.5, 4.5, " two"), seg(4.5, 6.5, " three.")];
        assert!(!b.would_settle(&segments), "no sentence ends before the horizon");
        let events = b.settle(segments, false);
        assert!(matches!(&events[..], [StreamEvent::Partial { .. }]), "{events:?}");
        let segments = vec![seg(0.0, 2.5, " One."), seg(2.5, 4.5, " two,"), seg(4.5, 6.5, " three")];
        let events = b.settle(segments, false);
        assert!(matches!(&events[0], StreamEvent::Final(s) if s.text == " One."), "{events:?}");
        assert!((b.buffered_seconds() - 4.5).abs() < 1e-9);
    }

    #[test]
    fn a_full_buffer_is_forced_down() {
        let mut b = StreamBuffer::new(StreamOptions { sample_rate: 1000, ..Default::default() }).unwrap();
        b.push(&vec![0.0; 26_000]);
        let events = b.settle(vec![seg(0.0, 26.0, " one long run")], false);
        assert!(matches!(&events[0], StreamEvent::Final(_)));
        assert_eq!(b.buffered_seconds(), 0.0);
        b.push(&vec![0.0; 26_000]);
        assert!(b.settle(Vec::new(), false).is_empty());
        assert!((b.buffered_seconds() - 2.0).abs() < 1e-9, "silence is dropped up to the settle horizon");
        assert!(StreamBuffer::new(StreamOptions { max_buffer_seconds: 40.0, ..Default::default() }).is_err());
    }
}
