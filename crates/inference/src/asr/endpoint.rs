//! Server-side endpointing of a live session with the Silero VAD: the 16 kHz audio is scored
//! frame by frame, and the hysteresis of the reference timestamp rules decides where
//! utterances begin and end. Silence between utterances never reaches Whisper (so it cannot
//! invent text there), except `speech_pad_ms` of pre-roll kept before each start so first words
//! are not clipped; an utterance longer than `max_utterance_s` is cut at its longest pause.

use super::vad::{SileroVad, VadStream, FRAME, SAMPLE_RATE};
use smai_core::{Error, LiveVad};
use std::collections::VecDeque;
use std::sync::Arc;

/// What the session must do with the audio, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Samples of silence that never reach the model (the session's clock moves on).
    Drop(usize),
    /// Speech began at this session time.
    Begin { at: f64 },
    /// Audio of the current utterance.
    Feed(Vec<f32>),
    /// Speech went on after a pause (or audio no detector has scored joined the utterance):
    /// anything decoded during the pause is out of date.
    Resume,
    /// Speech ended at this session time: the utterance is complete, except its last `carry`
    /// samples, which begin the next utterance (a long utterance cut at a pause).
    End { at: f64, carry: usize },
}

/// Pauses inside speech longer than this (98 ms, as the reference) are candidates for a cut.
const PAUSE_SAMPLES: usize = 98 * 16;

#[derive(Debug)]
struct Speaking {
    /// Samples of the utterance so far.
    spoken: usize,
    /// Where, in the utterance, the current run of silence began.
    silence_from: Option<usize>,
    /// Pauses of the utterance: (start in the utterance, length).
    pauses: Vec<(usize, usize)>,
}

pub struct Endpointer {
    model: Arc<SileroVad>,
    stream: VadStream,
    settings: LiveVad,
    /// Samples received and not yet scored (the VAD scores whole frames).
    unscored: Vec<f32>,
    /// Samples of the session before `unscored`.
    clock: usize,
    /// Pre-roll while no one speaks: the newest `speech_pad_ms` of audio.
    preroll: VecDeque<f32>,
    speaking: Option<Speaking>,
}

fn samples_of_ms(ms: u32) -> usize {
    (ms as usize) * (SAMPLE_RATE as usize) / 1000
}

fn seconds(samples: usize) -> f64 {
    samples as f64 / f64::from(SAMPLE_RATE)
}

impl Endpointer {
    pub fn new(model: Arc<SileroVad>, settings: LiveVad) -> Self {
        Self {
            model,
            stream: VadStream::new(),
            settings,
            unscored: Vec::new(),
            clock: 0,
            preroll: VecDeque::new(),
            speaking: None,
        }
    }

    fn max_utterance(&self) -> usize {
        // Whisper hears at most 30 s at once; the pre-roll comes on top of the utterance.
        let max_s = self.settings.max_utterance_s.min(29.0) - f64::from(self.settings.speech_pad_ms) / 1000.0;
        (max_s.max(1.0) * f64::from(SAMPLE_RATE)) as usize
    }

    /// Takes 16 kHz samples; the actions of every frame they complete.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Action>, Error> {
        let probs = self
            .stream
            .push(&self.model, samples)
            .map_err(|e| Error::internal(format!("voice activity detection: {e}")))?;
        self.unscored.extend_from_slice(samples);
        let mut actions = Vec::new();
        for p in probs {
            let frame: Vec<f32> = self.unscored.drain(..FRAME.min(self.unscored.len())).collect();
            self.frame(p, frame, &mut actions);
        }
        Ok(actions)
    }

    /// Whether the speaker has paused (a run of silence is under way): a partial decoded now
    /// would say nothing new, and the utterance may be about to end.
    pub fn in_pause(&self) -> bool {
        self.speaking.as_ref().is_some_and(|s| s.silence_from.is_some())
    }

    /// How long the current pause has lasted, in seconds (0 while speech goes on).
    pub fn pause_seconds(&self) -> f64 {
        let run = self.speaking.as_ref().and_then(|s| s.silence_from.map(|from| s.spoken - from));
        seconds(run.unwrap_or(0))
    }

    /// Ends the current utterance now (a client's commit, or the end of the audio): the audio
    /// not yet scored goes to it first.
    pub fn end_now(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let rest = std::mem::take(&mut self.unscored);
        self.clock += rest.len();
        if self.speaking.take().is_some() {
            if !rest.is_empty() {
                actions.push(Action::Resume);
                actions.push(Action::Feed(rest));
            }
            actions.push(Action::End { at: seconds(self.clock), carry: 0 });
        } else if self.preroll.len() + rest.len() > 0 {
            actions.push(Action::Drop(self.preroll.len() + rest.len()));
        }
        // The detector starts afresh after the samples taken here.
        self.stream = VadStream::new();
        self.preroll.clear();
        actions
    }

    fn frame(&mut self, p: f32, frame: Vec<f32>, actions: &mut Vec<Action>) {
        let start = self.clock;
        self.clock += frame.len();
        let threshold = self.settings.threshold;
        let quiet = (threshold - 0.15).max(0.01);
        let Some(speaking) = self.speaking.as_mut() else {
            if p >= threshold {
                let mut audio: Vec<f32> = self.preroll.drain(..).collect();
                audio.extend_from_slice(&frame);
                self.speaking = Some(Speaking { spoken: audio.len(), silence_from: None, pauses: Vec::new() });
                actions.push(Action::Begin { at: seconds(start) });
                actions.push(Action::Feed(audio));
            } else {
                self.keep_preroll(frame, actions);
            }
            return;
        };
        let frame_at = speaking.spoken;
        speaking.spoken += frame.len();
        actions.push(Action::Feed(frame));
        if p >= threshold {
            if let Some(from) = speaking.silence_from.take() {
                if frame_at - from > PAUSE_SAMPLES {
                    speaking.pauses.push((from, frame_at - from));
                }
                actions.push(Action::Resume);
            }
        } else if p >= quiet {
            // Neither speech nor silence: the pause goes on, but something was said in it.
            if speaking.silence_from.is_some() {
                actions.push(Action::Resume);
            }
        } else {
            let from = *speaking.silence_from.get_or_insert(frame_at);
            if speaking.spoken - from >= samples_of_ms(self.settings.min_silence_ms) {
                // Speech ended where the silence began.
                let at = seconds(self.clock - (speaking.spoken - from));
                self.speaking = None;
                actions.push(Action::End { at, carry: 0 });
                return;
            }
        }
        if speaking.spoken > self.max_utterance() {
            self.cut(actions);
        }
    }

    /// Cuts a too-long utterance after its longest pause; the speech after the pause stays
    /// and opens the next utterance. Without a pause it is cut here.
    fn cut(&mut self, actions: &mut Vec<Action>) {
        let speaking = self.speaking.as_mut().expect("cut while speaking");
        let utterance_start = self.clock - speaking.spoken;
        match speaking.pauses.iter().copied().max_by_key(|&(_, len)| len) {
            Some((from, len)) => {
                let carry = speaking.spoken - (from + len);
                actions.push(Action::End { at: seconds(utterance_start + from), carry });
                actions.push(Action::Begin { at: seconds(utterance_start + from + len) });
                *speaking = Speaking { spoken: carry, silence_from: None, pauses: Vec::new() };
            }
            None => {
                actions.push(Action::End { at: seconds(self.clock), carry: 0 });
                actions.push(Action::Begin { at: seconds(self.clock) });
                *speaking = Speaking { spoken: 0, silence_from: None, pauses: Vec::new() };
            }
        }
    }

    fn keep_preroll(&mut self, frame: Vec<f32>, actions: &mut Vec<Action>) {
        self.preroll.extend(frame);
        let excess = self.preroll.len().saturating_sub(samples_of_ms(self.settings.speech_pad_ms));
        if excess > 0 {
            self.preroll.drain(..excess);
            actions.push(Action::Drop(excess));
        }
    }
}
