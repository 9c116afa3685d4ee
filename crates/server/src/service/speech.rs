//! Speech synthesis of a whole text, for every protocol: the input's checks, the voice's
//! permission, queueing before charging, and the pieces a streamed answer is made of (one
//! encoded chunk per sentence, each sentence's cost marked delivered as it goes out).

use super::{Reservation, SharedCall};
use smai_auth::limits::tts_tokens;
use smai_core::text_stream::take_sentence;
use smai_core::{AudioChunk, AudioStream, Error, SpeechOptions, Synthesizer};
use smai_inference::audio::encode::{encode, pcm_s16le, AudioFormat};
use smai_inference::audio::resample;
use std::sync::Arc;

pub const MAX_INPUT_CHARS: usize = 4096;

/// What a client asked to hear, in protocol-neutral terms.
#[derive(Debug, Clone)]
pub struct SpeechInput<'a> {
    pub text: &'a str,
    pub voice: &'a str,
    pub speed: Option<f32>,
    /// The format's name; `None` takes `default_format`.
    pub format: Option<&'a str>,
    pub default_format: AudioFormat,
    /// Whether the answer goes out sentence by sentence (only cuttable formats can).
    pub streamed: bool,
}

/// A checked request whose voice the key may use.
pub struct PreparedSpeech {
    pub text: String,
    pub options: SpeechOptions,
    pub format: AudioFormat,
    /// Tokens it costs: the characters of the input as sent.
    pub chars: u64,
    synthesizer: Arc<dyn Synthesizer>,
}

/// Checks the input and the voice (known, then allowed to the key: 404 before 403).
pub fn prepare(call: &SharedCall, input: SpeechInput<'_>) -> Result<PreparedSpeech, Error> {
    let (format, speed) = check_input(&input)?;
    let synthesizer = call.with(|c| c.synthesizer())?;
    if !synthesizer.voices().iter().any(|v| v.id == input.voice) {
        let principal = call.with(|c| Ok(c.principal().clone()))?;
        let usable: Vec<String> =
            synthesizer.voices().into_iter().map(|v| v.id).filter(|id| principal.voices.allows(id)).collect();
        return Err(Error::not_found(format!("unknown voice {:?}; voices: {}", input.voice, usable.join(", "))));
    }
    call.with(|c| c.authorize_voice(input.voice))?;
    Ok(PreparedSpeech {
        text: input.text.trim().to_owned(),
        options: SpeechOptions { voice: input.voice.to_owned(), speed, normalize: true },
        format,
        chars: tts_tokens(input.text),
        synthesizer,
    })
}

fn check_input(input: &SpeechInput<'_>) -> Result<(AudioFormat, f32), Error> {
    if input.text.trim().is_empty() {
        return Err(Error::invalid("input must not be empty"));
    }
    // Punctuation, symbols and invisible characters alone give the voice nothing to say.
    if !input.text.chars().any(char::is_alphanumeric) {
        return Err(Error::invalid("input has nothing to speak: it needs at least one letter or digit"));
    }
    let chars = tts_tokens(input.text);
    if chars > MAX_INPUT_CHARS as u64 {
        return Err(Error::invalid(format!("input has {chars} characters; at most {MAX_INPUT_CHARS} are accepted")));
    }
    let speed = check_speed(input.speed)?;
    let format = parse_format(input.format, input.default_format)?;
    if input.streamed && ChunkEncoder::new(format).is_none() {
        return Err(Error::invalid(format!(
            "response_format {:?} cannot be streamed; stream wav, pcm or mp3, or ask for the whole file",
            input.format.unwrap_or_default()
        )));
    }
    Ok((format, speed))
}

/// 0.25 to 4; `None` is the voice's natural pace.
pub fn check_speed(speed: Option<f32>) -> Result<f32, Error> {
    let speed = speed.unwrap_or(1.0);
    if !speed.is_finite() || !(0.25..=4.0).contains(&speed) {
        return Err(Error::invalid("speed must be between 0.25 and 4.0"));
    }
    Ok(speed)
}

/// A format by name (`wav`, `pcm`, `flac`, `mp3`, `opus`); `None` or empty takes `default`.
pub fn parse_format(name: Option<&str>, default: AudioFormat) -> Result<AudioFormat, Error> {
    match name.filter(|n| !n.is_empty()) {
        None => Ok(default),
        Some(name) => name.parse().map_err(|_| {
            Error::invalid(format!("response_format {name:?} is not supported; use wav, pcm, flac, mp3 or opus"))
        }),
    }
}

impl PreparedSpeech {
    /// Queues the synthesis, then admits the call for the whole input. Queued first: a full
    /// engine queue answers `overloaded` without costing tokens. A refused admission drops
    /// the stream, and the engine stops work on it.
    pub fn start_whole(self, call: &SharedCall) -> Result<(AudioStream, AudioFormat), Error> {
        let stream = self.synthesizer.synthesize(self.text, self.options)?;
        call.with(|c| c.admit(self.chars))?;
        Ok((stream, self.format))
    }

    /// As [`PreparedSpeech::start_whole`], for an answer sent sentence by sentence: what is
    /// never sent is refunded when the call ends.
    pub fn start_streamed(self, call: &SharedCall) -> Result<(AudioStream, DeliveredSentences), Error> {
        let sentences = Sentences::of(&self.text);
        let stream = self.synthesizer.synthesize(self.text, self.options)?;
        let reservation = call.with(|c| c.admit_reserved(self.chars))?;
        Ok((stream, sentences.charged_on(reservation)))
    }
}

/// A whole synthesis, encoded as one file.
pub struct EncodedSpeech {
    pub bytes: Vec<u8>,
    pub sample_rate: u32,
    pub seconds: f64,
}

/// Waits for every sentence and encodes one file (off the async threads).
pub async fn collect_file(stream: &mut AudioStream, format: AudioFormat) -> Result<EncodedSpeech, Error> {
    let mut samples = Vec::new();
    let mut sample_rate = 0;
    while let Some(chunk) = stream.recv().await {
        let chunk = chunk?;
        sample_rate = chunk.sample_rate;
        samples.extend(chunk.samples);
    }
    if sample_rate == 0 {
        return Err(Error::internal("synthesis produced no audio"));
    }
    let seconds = samples.len() as f64 / f64::from(sample_rate);
    let bytes = tokio::task::spawn_blocking(move || encode(&samples, sample_rate, None, format))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
    Ok(EncodedSpeech { bytes, sample_rate, seconds })
}

/// Encodes one sentence at a time. Formats whose files cannot be cut into independently
/// decodable pieces (flac, Ogg Opus) are not streamable.
pub struct ChunkEncoder {
    format: AudioFormat,
    /// The rate of the first chunk; later chunks are brought to it.
    sample_rate: Option<u32>,
}

impl ChunkEncoder {
    pub fn new(format: AudioFormat) -> Option<Self> {
        matches!(format, AudioFormat::Wav | AudioFormat::Pcm | AudioFormat::Mp3)
            .then_some(Self { format, sample_rate: None })
    }

    pub fn encode(&mut self, chunk: &AudioChunk) -> Result<Vec<u8>, Error> {
        let first = self.sample_rate.is_none();
        let rate = *self.sample_rate.get_or_insert(chunk.sample_rate);
        let samples = resample(&chunk.samples, chunk.sample_rate, rate).map_err(Error::internal)?;
        match self.format {
            AudioFormat::Mp3 => encode(&samples, rate, None, AudioFormat::Mp3).map_err(Error::internal),
            AudioFormat::Wav if first => {
                let mut bytes = streaming_wav_header(rate);
                bytes.extend(pcm_s16le(&samples));
                Ok(bytes)
            }
            _ => Ok(pcm_s16le(&samples)),
        }
    }

    /// The rate every chunk is encoded at (that of the first).
    pub fn sample_rate(&self) -> Option<u32> {
        self.sample_rate
    }
}

/// A 16-bit mono WAV header whose sizes say "unknown" (all ones), as streamed WAV from
/// OpenAI's API does: readers take the data as running to the end of the stream.
pub fn streaming_wav_header(sample_rate: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    h.extend_from_slice(&2u16.to_le_bytes()); // block align
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h
}

/// The sentences of the input and what each costs, in the order a voice speaks them (cut as
/// text stream sessions cut sentences). Voices answer one chunk per sentence, so the k-th
/// chunk sent is charged the k-th sentence; a stream that ends as it should is charged the
/// whole input, however the voice cut it.
pub struct Sentences(Vec<String>);

impl Sentences {
    pub fn of(text: &str) -> Self {
        let mut rest = text.to_owned();
        Self(std::iter::from_fn(|| take_sentence(&mut rest, true)).collect())
    }

    pub fn charged_on(self, reservation: Reservation) -> DeliveredSentences {
        DeliveredSentences { sentences: self.0.into_iter(), reservation }
    }
}

/// Marks sentences delivered as the answer sends them; what was never sent is refunded.
pub struct DeliveredSentences {
    sentences: std::vec::IntoIter<String>,
    reservation: Reservation,
}

impl DeliveredSentences {
    /// One more sentence went out; returns its text (empty past the last one).
    pub fn sent_one(&mut self) -> String {
        let sentence = self.sentences.next().unwrap_or_default();
        self.reservation.deliver(tts_tokens(&sentence));
        sentence
    }

    /// The stream ended as it should: all of it is charged.
    pub fn sent_all(&self) {
        self.reservation.deliver_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_stream_header_is_a_valid_unbounded_header() {
        let h = streaming_wav_header(22_050);
        assert_eq!(h.len(), 44);
        assert_eq!(&h[..4], b"RIFF");
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 22_050);
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), u32::MAX);
    }

    #[test]
    fn only_the_first_wav_chunk_carries_the_header_and_rates_follow_the_first() {
        let mut encoder = ChunkEncoder::new(AudioFormat::Wav).unwrap();
        let a = encoder.encode(&AudioChunk { samples: vec![0.5; 100], sample_rate: 16_000 }).unwrap();
        let b = encoder.encode(&AudioChunk { samples: vec![0.5; 100], sample_rate: 16_000 }).unwrap();
        assert_eq!(a.len(), 44 + 200);
        assert_eq!(b.len(), 200);
        let c = encoder.encode(&AudioChunk { samples: vec![0.5; 200], sample_rate: 32_000 }).unwrap();
        assert_eq!(c.len(), 200, "resampled to the stream's rate");
        assert!(ChunkEncoder::new(AudioFormat::Flac).is_none());
    }

    #[test]
    fn sentences_are_delivered_in_order_and_the_rest_refunded() {
        let reservation = Reservation::new(tts_tokens("One. Two three."));
        let mut delivered = Sentences::of("One. Two three.").charged_on(reservation.clone());
        assert_eq!(delivered.sent_one().trim(), "One.");
        assert!(reservation.undelivered() > 0);
        delivered.sent_all();
        assert_eq!(reservation.undelivered(), 0);
    }

    #[test]
    fn formats_and_speeds_are_checked() {
        assert_eq!(parse_format(None, AudioFormat::Pcm).unwrap(), AudioFormat::Pcm);
        assert_eq!(parse_format(Some(""), AudioFormat::Wav).unwrap(), AudioFormat::Wav);
        assert!(parse_format(Some("aiff"), AudioFormat::Wav).is_err());
        assert!(check_speed(Some(0.1)).is_err());
        assert!(check_speed(Some(f32::NAN)).is_err());
        assert_eq!(check_speed(None).unwrap(), 1.0);
    }
}
