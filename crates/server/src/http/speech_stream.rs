//! Streamed speech: each synthesised sentence is encoded on its own and sent at once, either
//! as raw body bytes (chunked transfer) or as OpenAI's `speech.audio.delta` server-sent events.

use crate::service::Reservation;
use axum::body::{Body, Bytes};
use base64::Engine as _;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use smai_auth::limits::tts_tokens;
use smai_core::text_stream::take_sentence;
use smai_core::{AudioChunk, AudioStream, Error};
use smai_inference::audio::encode::{encode, pcm_s16le, AudioFormat};
use smai_inference::audio::resample;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// What each sentence of the input costs, in the order a voice speaks them (cut as text
/// stream sessions cut sentences). Voices answer one chunk per sentence, so the k-th chunk
/// sent is charged the k-th sentence; a stream that ends as it should is charged the whole
/// input, however the voice cut it.
pub struct SentenceCosts(Vec<u64>);

impl SentenceCosts {
    pub fn of(text: &str) -> Self {
        let mut rest = text.to_owned();
        Self(std::iter::from_fn(|| take_sentence(&mut rest, true)).map(|s| tts_tokens(&s)).collect())
    }

    pub fn charged_on(self, reservation: Reservation) -> DeliveredSentences {
        DeliveredSentences { costs: self.0.into_iter(), reservation }
    }
}

/// Marks sentences delivered as the body sends them; what was never sent is refunded.
pub struct DeliveredSentences {
    costs: std::vec::IntoIter<u64>,
    reservation: Reservation,
}

impl DeliveredSentences {
    fn sent_one(&mut self) {
        if let Some(cost) = self.costs.next() {
            self.reservation.deliver(cost);
        }
    }
}

/// Encoded sentences, the first already received; ends at the first error (logged), since
/// the status line has gone out and the client sees a short stream.
fn encoded(
    first: AudioChunk,
    rest: AudioStream,
    encoder: ChunkEncoder,
    delivered: DeliveredSentences,
) -> impl Stream<Item = Result<Bytes, Error>> {
    let state = (Some(Ok(first)), rest, encoder, delivered, false);
    stream::unfold(state, |(pending, mut rest, mut encoder, mut delivered, failed)| async move {
        if failed {
            return None;
        }
        let next = match pending {
            Some(chunk) => chunk,
            None => match rest.recv().await {
                Some(next) => next,
                None => {
                    delivered.reservation.deliver_all();
                    return None;
                }
            },
        };
        let bytes = next.and_then(|chunk| encoder.encode(&chunk)).map(Bytes::from);
        let failed = bytes.is_err();
        if !failed {
            delivered.sent_one();
        }
        Some((bytes, (None, rest, encoder, delivered, failed)))
    })
}

pub fn audio_body(first: AudioChunk, rest: AudioStream, encoder: ChunkEncoder, delivered: DeliveredSentences) -> Body {
    Body::from_stream(encoded(first, rest, encoder, delivered).map(|item| {
        item.map_err(|e| {
            tracing::warn!(detail = e.detail.as_deref().unwrap_or(&e.message), "speech stream ended early");
            std::io::Error::other(e.message)
        })
    }))
}

/// `speech.audio.delta` events with base64 audio, then `speech.audio.done`; an error mid-way
/// becomes a last `error` event instead.
pub fn sse_body(first: AudioChunk, rest: AudioStream, encoder: ChunkEncoder, delivered: DeliveredSentences) -> Body {
    let failed = Arc::new(AtomicBool::new(false));
    let seen_failure = failed.clone();
    let deltas = encoded(first, rest, encoder, delivered).map(move |item| match item {
        Ok(bytes) => {
            json!({"type": "speech.audio.delta", "audio": base64::engine::general_purpose::STANDARD.encode(&bytes)})
        }
        Err(e) => {
            tracing::warn!(detail = e.detail.as_deref().unwrap_or(&e.message), "speech stream ended early");
            seen_failure.store(true, Ordering::Relaxed);
            json!({"type": "error", "error": {"code": e.code.as_str(), "message": e.message}})
        }
    });
    let done =
        stream::once(async move { (!failed.load(Ordering::Relaxed)).then(|| json!({"type": "speech.audio.done"})) })
            .filter_map(futures_util::future::ready);
    Body::from_stream(deltas.chain(done).map(|event| Ok::<_, std::convert::Infallible>(sse_event(&event))))
}

/// One server-sent event carrying JSON on a single `data:` line.
pub fn sse_event(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
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
}
