//! Live transcription. A session takes PCM chunks as they arrive and, every `step_seconds` of
//! new audio, re-transcribes the audio that is not settled yet. Segments that end at least
//! `settle_seconds` before the newest audio are final: they are reported once and their audio
//! leaves the buffer, so the model never sees more than `max_buffer_seconds` (under Whisper's
//! 30 s window). What follows them is reported as a partial result that may still change.
//! Closing transcribes the rest and makes it final.

use crate::engine::{decode_pcm, Job};
use smai_core::{Error, Segment, TranscribeOptions};
use std::sync::mpsc::SyncSender;

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
    pub transcribe: TranscribeOptions,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            step_seconds: 1.0,
            settle_seconds: 2.0,
            max_buffer_seconds: 25.0,
            transcribe: TranscribeOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The current guess for the unsettled audio (times from the session start).
    Partial { start: f64, end: f64, text: String },
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

    /// The unsettled audio at Whisper's 16 kHz.
    pub fn audio_16k(&self) -> Result<Vec<f32>, Error> {
        crate::audio::resample(&self.audio, self.options.sample_rate, crate::audio::SAMPLE_RATE)
    }

    /// Takes the transcript of the buffer (times relative to it): reports final segments and
    /// drops their audio, then reports the rest as partial. `closing` makes everything final.
    pub fn settle(&mut self, segments: Vec<Segment>, closing: bool) -> Vec<StreamEvent> {
        self.new_samples = 0;
        let duration = self.buffered_seconds();
        let horizon = duration - self.options.settle_seconds;
        let mut n_final =
            if closing { segments.len() } else { segments.iter().take_while(|s| s.end <= horizon).count() };
        if duration > self.options.max_buffer_seconds && !closing {
            n_final = n_final.max(segments.len().saturating_sub(1)).max(segments.len().min(1));
        }
        let mut events = Vec::new();
        let mut cut = if closing { duration } else { 0.0 };
        for mut s in segments.iter().take(n_final).cloned() {
            cut = cut.max(s.end.min(duration));
            self.next_id += 1;
            s.id = self.next_id;
            s.start += self.offset;
            s.end += self.offset;
            for w in &mut s.words {
                w.start += self.offset;
                w.end += self.offset;
            }
            events.push(StreamEvent::Final(s));
        }
        if segments.is_empty() && duration > self.options.max_buffer_seconds {
            cut = horizon.max(0.0); // silence only: keep the buffer bounded
        }
        let rest = &segments[n_final..];
        if !rest.is_empty() {
            let text = rest.iter().map(|s| s.text.as_str()).collect::<String>();
            let (start, end) = (rest[0].start + self.offset, rest[rest.len() - 1].end + self.offset);
            events.push(StreamEvent::Partial { start, end, text });
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
    queue: SyncSender<Job>,
    options: TranscribeOptions,
}

impl LiveTranscription {
    pub(crate) fn new(queue: SyncSender<Job>, options: StreamOptions) -> Result<Self, Error> {
        let transcribe = options.transcribe.clone();
        Ok(Self { buffer: StreamBuffer::new(options)?, queue, options: transcribe })
    }

    /// Feeds mono samples in [-1, 1] at the session's rate.
    pub fn feed_f32(&mut self, samples: &[f32]) -> Result<Vec<StreamEvent>, Error> {
        if !self.buffer.push(samples) {
            return Ok(Vec::new());
        }
        self.decode(false)
    }

    /// Feeds mono 16-bit samples at the session's rate.
    pub fn feed_s16(&mut self, samples: &[i16]) -> Result<Vec<StreamEvent>, Error> {
        let f: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
        self.feed_f32(&f)
    }

    /// Transcribes what is left and makes it final.
    pub fn close(mut self) -> Result<Vec<StreamEvent>, Error> {
        self.decode(true)
    }

    fn decode(&mut self, closing: bool) -> Result<Vec<StreamEvent>, Error> {
        // Whisper needs a little audio to say anything; a near-empty tail has nothing to add.
        if self.buffer.buffered_seconds() < 0.1 {
            return Ok(self.buffer.settle(Vec::new(), closing));
        }
        let audio = self.buffer.audio_16k()?;
        let segments = decode_pcm(&self.queue, audio, self.options.clone())?;
        Ok(self.buffer.settle(segments, closing))
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
        assert!(matches!(&events[0], StreamEvent::Final(s) if s.id == 1 && s.text == " one"));
        assert_eq!(events[1], StreamEvent::Partial { start: 2.5, end: 6.0, text: " two three".into() });
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
