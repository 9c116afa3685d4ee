//! Streamed synthesis on top of whole-text synthesis: text arrives in pieces (from an LLM,
//! say), complete sentences are cut off the pending text and synthesised one at a time, in
//! order, while the session keeps listening for more text, flushes and cancels.

use crate::engine::{AudioStream, SpeechEvent, SpeechSession, TextInput};
use crate::Error;
use tokio::sync::mpsc;

/// Pending text longer than this without a sentence end is cut at its last space, so a
/// client that never sends punctuation still hears something and memory stays bounded.
const MAX_PENDING_CHARS: usize = 1000;
const INPUT_BUFFER: usize = 32;
const EVENT_BUFFER: usize = 8;

/// Starts a session whose sentences are synthesised by `synthesize`.
pub fn spawn<F>(synthesize: F) -> SpeechSession
where
    F: Fn(String) -> Result<AudioStream, Error> + Send + Sync + 'static,
{
    let (input, inputs) = mpsc::channel(INPUT_BUFFER);
    let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(run(synthesize, inputs, events_tx));
    SpeechSession { input, events }
}

type Events = mpsc::Sender<Result<SpeechEvent, Error>>;

#[derive(Default)]
struct Pending {
    text: String,
    flush: bool,
    input_open: bool,
}

impl Pending {
    /// Applies one input; a cancel clears everything and is answered at once.
    async fn apply(&mut self, input: Option<TextInput>, events: &Events) -> Result<(), ()> {
        match input {
            Some(TextInput::Text(text)) => self.text.push_str(&text),
            Some(TextInput::Flush) => self.flush = true,
            Some(TextInput::Cancel) => {
                self.text.clear();
                self.flush = false;
                events.send(Ok(SpeechEvent::Cancelled)).await.map_err(|_| ())?;
            }
            None => self.input_open = false,
        }
        Ok(())
    }

    /// The next piece to speak, if one is complete (or forced by a flush or the end of input).
    fn next_sentence(&mut self) -> Option<String> {
        loop {
            let forced = self.flush || !self.input_open;
            let sentence = take_sentence(&mut self.text, forced);
            if self.text.trim().is_empty() {
                self.flush = false;
            }
            let sentence = sentence?;
            if sentence.chars().any(char::is_alphanumeric) {
                return Some(sentence);
            }
        }
    }
}

async fn run<F>(synthesize: F, mut inputs: mpsc::Receiver<TextInput>, events: Events)
where
    F: Fn(String) -> Result<AudioStream, Error>,
{
    let mut pending = Pending { input_open: true, ..Default::default() };
    let mut segment = 0u32;
    loop {
        if let Some(sentence) = pending.next_sentence() {
            let Ok(finished) = speak(&synthesize, sentence, segment, &mut inputs, &mut pending, &events).await else {
                return;
            };
            segment += u32::from(finished);
            continue;
        }
        if !pending.input_open {
            return;
        }
        let input = tokio::select! {
            input = inputs.recv() => input,
            _ = events.closed() => return,
        };
        if pending.apply(input, &events).await.is_err() {
            return;
        }
    }
}

/// Synthesises one sentence, forwarding its audio while still taking input. Returns whether
/// the segment was completed (false when a cancel cut it), or `Err` when the session is over.
async fn speak<F>(
    synthesize: &F,
    sentence: String,
    segment: u32,
    inputs: &mut mpsc::Receiver<TextInput>,
    pending: &mut Pending,
    events: &Events,
) -> Result<bool, ()>
where
    F: Fn(String) -> Result<AudioStream, Error>,
{
    let mut audio = match synthesize(sentence.clone()) {
        Ok(audio) => audio,
        Err(e) => {
            let _ = events.send(Err(e)).await;
            return Err(());
        }
    };
    events.send(Ok(SpeechEvent::SegmentStart { segment, text: sentence })).await.map_err(|_| ())?;
    let mut seconds = 0.0;
    loop {
        tokio::select! {
            chunk = audio.recv() => match chunk {
                Some(Ok(chunk)) => {
                    seconds += chunk.samples.len() as f64 / f64::from(chunk.sample_rate.max(1));
                    events.send(Ok(SpeechEvent::Audio(chunk))).await.map_err(|_| ())?;
                }
                Some(Err(e)) => {
                    let _ = events.send(Err(e)).await;
                    return Err(());
                }
                None => break,
            },
            input = inputs.recv(), if pending.input_open => {
                let cancel = matches!(input, Some(TextInput::Cancel));
                pending.apply(input, events).await?;
                if cancel {
                    return Ok(false);
                }
            }
            _ = events.closed() => return Err(()),
        }
    }
    events.send(Ok(SpeechEvent::SegmentEnd { segment, audio_seconds: seconds })).await.map_err(|_| ())?;
    Ok(true)
}

/// Cuts the first complete sentence off `text`: through a run of `.`, `!`, `?` or `…`
/// followed by white space, or through a line break. With `forced`, the whole rest counts
/// as one sentence when no boundary is found; without it, overlong text is cut at a space.
pub fn take_sentence(text: &mut String, forced: bool) -> Option<String> {
    let end = sentence_end(text).or_else(|| {
        if forced && !text.trim().is_empty() {
            Some(text.len())
        } else if text.chars().count() > MAX_PENDING_CHARS {
            let limit = text.char_indices().nth(MAX_PENDING_CHARS).map_or(text.len(), |(i, _)| i);
            Some(text[..limit].rfind(char::is_whitespace).filter(|&i| i > 0).unwrap_or(limit))
        } else {
            None
        }
    })?;
    let sentence = text[..end].trim().to_owned();
    text.drain(..end);
    if forced && text.trim().is_empty() {
        text.clear();
    }
    Some(sentence)
}

fn sentence_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            return Some(i + 1);
        }
        if matches!(c, '.' | '!' | '?' | '…') {
            let mut end = i + c.len_utf8();
            while let Some(&(j, next)) = chars.peek() {
                if matches!(next, '.' | '!' | '?' | '…' | '"' | '\'' | ')' | '”' | '’') {
                    end = j + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek().is_some_and(|&(_, next)| next.is_whitespace()) {
                return Some(end);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AudioChunk;

    #[test]
    fn sentences_are_cut_only_where_they_are_complete() {
        let mut text = "Hello there. How are".to_owned();
        assert_eq!(take_sentence(&mut text, false).as_deref(), Some("Hello there."));
        assert_eq!(take_sentence(&mut text, false), None, "an unfinished sentence waits");
        text.push_str(" you?! Fine");
        assert_eq!(take_sentence(&mut text, false).as_deref(), Some("How are you?!"));
        assert_eq!(take_sentence(&mut text, true).as_deref(), Some("Fine"));
        assert!(text.is_empty());
        let mut quoted = "He said \"stop.\" Then".to_owned();
        assert_eq!(take_sentence(&mut quoted, false).as_deref(), Some("He said \"stop.\""));
        let mut decimal = "Pi is 3.14 roughly".to_owned();
        assert_eq!(take_sentence(&mut decimal, false), None, "no space after the point");
        let mut long = "word ".repeat(300);
        let cut = take_sentence(&mut long, false).expect("overlong text is cut");
        assert!(cut.len() <= MAX_PENDING_CHARS && cut.ends_with("word"));
    }

    fn tone(text: String) -> Result<AudioStream, Error> {
        let (tx, rx) = mpsc::channel(1);
        let samples = vec![0.1; text.len() * 10];
        tx.try_send(Ok(AudioChunk { samples, sample_rate: 1000 })).expect("room");
        Ok(rx)
    }

    async fn collect(events: &mut mpsc::Receiver<Result<SpeechEvent, Error>>) -> Vec<SpeechEvent> {
        let mut out = Vec::new();
        while let Some(event) = events.recv().await {
            out.push(event.expect("no error"));
        }
        out
    }

    #[tokio::test]
    async fn pieces_become_segments_in_order_and_the_rest_is_spoken_at_the_end() {
        let SpeechSession { input, mut events } = spawn(tone);
        for piece in ["The first", " sentence. And", " the second. Tail"] {
            input.send(TextInput::Text(piece.into())).await.unwrap();
        }
        drop(input);
        let events = collect(&mut events).await;
        let starts: Vec<&str> = events
            .iter()
            .filter_map(|e| if let SpeechEvent::SegmentStart { text, .. } = e { Some(text.as_str()) } else { None })
            .collect();
        assert_eq!(starts, ["The first sentence.", "And the second.", "Tail"]);
        let ends: Vec<(u32, f64)> = events
            .iter()
            .filter_map(|e| {
                if let SpeechEvent::SegmentEnd { segment, audio_seconds } = e {
                    Some((*segment, *audio_seconds))
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ends, [(0, 0.19), (1, 0.15), (2, 0.04)]);
    }

    #[tokio::test]
    async fn flush_speaks_an_unfinished_sentence_and_cancel_drops_pending_text() {
        let mut session = spawn(tone);
        session.input.send(TextInput::Text("No full stop".into())).await.unwrap();
        session.input.send(TextInput::Flush).await.unwrap();
        let first = session.events.recv().await.unwrap().unwrap();
        assert_eq!(first, SpeechEvent::SegmentStart { segment: 0, text: "No full stop".into() });
        while !matches!(session.events.recv().await.unwrap().unwrap(), SpeechEvent::SegmentEnd { .. }) {}
        session.input.send(TextInput::Text("Never spoken".into())).await.unwrap();
        session.input.send(TextInput::Cancel).await.unwrap();
        assert_eq!(session.events.recv().await.unwrap().unwrap(), SpeechEvent::Cancelled);
        session.input.send(TextInput::Text("After. ".into())).await.unwrap();
        let next = session.events.recv().await.unwrap().unwrap();
        assert_eq!(next, SpeechEvent::SegmentStart { segment: 1, text: "After.".into() });
    }
}
