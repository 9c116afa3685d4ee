//! Container/codec decoding with symphonia (wav, flac, mp3, ogg/vorbis, ogg/opus, m4a/aac,
//! mkv/webm with the codecs above; Opus through libopus, see opus.rs). Every failure maps to
//! a client error; malformed input never panics.
//!
//! Decoding is bounded before it allocates: the rate and duration a container states are
//! checked before the first packet, the audio is downmixed and resampled to 16 kHz packet by
//! packet (nothing is ever held at the source rate), and decoding stops at a duration cap
//! ([`DecodeLimits`]). Memory per file is therefore the cap at 16 kHz, whatever it claims.

use super::resample::StreamResampler;
use smai_core::{Error, ErrorCode};
use std::io::Cursor;
use symphonia::core::audio::{AudioBufferRef, SampleBuffer};
use symphonia::core::codecs::{
    CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3, CODEC_TYPE_NULL,
};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Lowest source rate accepted: telephone audio. Below it there is no speech band to keep.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest source rate accepted: studio audio. Higher rates carry nothing Whisper hears, and
/// are what a small file uses to claim gigabytes of samples.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// How much audio one decode may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest decoded duration, in seconds; longer input is refused (`payload_too_large`).
    /// At 16 kHz mono f32 this is 64 kB per second of memory (3 h: 691 MB).
    pub max_seconds: u64,
}

impl DecodeLimits {
    /// Three hours: a long meeting or lecture in one upload.
    pub const DEFAULT_MAX_SECONDS: u64 = 3 * 60 * 60;

    pub(crate) fn too_long(&self) -> Error {
        Error::new(
            ErrorCode::PayloadTooLarge,
            format!("the audio is longer than the {} s this server accepts (max audio seconds)", self.max_seconds),
        )
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_seconds: Self::DEFAULT_MAX_SECONDS }
    }
}

/// How far decoded audio may run past the duration its container states before the rest is
/// dropped (encoder delay and padding are a few milliseconds; 1 s or 1% covers them).
fn stated_slack(stated: f64) -> f64 {
    (stated * 0.01).max(1.0)
}

/// Decodes, downmixes and resamples to Whisper's 16 kHz, within the default limits.
pub fn decode_to_mono_16k(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    decode_with_limits(bytes, &DecodeLimits::default())
}

/// Decodes, downmixes and resamples to Whisper's 16 kHz. A rate outside
/// [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`] is refused before decoding (`invalid_request`),
/// audio longer than `limits.max_seconds` as soon as it is known (`payload_too_large`), and
/// audio running past the duration its container states is cut there, so what the stated
/// duration was charged for is all the work done.
pub fn decode_with_limits(bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<f32>, Error> {
    contained(bytes, |opened| decode_opened(opened, limits))
}

/// Opens `bytes` and runs `f` on it; a panic inside the audio libraries is a client error.
pub(super) fn contained<T>(bytes: &[u8], f: impl FnOnce(Opened) -> Result<T, Error>) -> Result<T, Error> {
    if bytes.is_empty() {
        return Err(Error::invalid("the audio file is empty"));
    }
    let owned = bytes.to_vec();
    let len = owned.len();
    // symphonia may panic on some malformed streams; contain that as a client error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(Opened::new(owned)?)))
        .unwrap_or_else(|_| Err(Error::invalid(format!("the audio file ({len} bytes) is malformed"))))
}

/// A container opened on its first audio track, with what its headers state checked.
pub(super) struct Opened {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    /// Seconds the container states, when it does.
    pub stated_seconds: Option<f64>,
    /// Packets the decoder could not read and skipped: logged once per file when it is done,
    /// not once per packet (a damaged upload can have hundreds of thousands).
    skipped: u64,
}

impl Opened {
    fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if super::matroska::is_ebml(&bytes) {
            super::matroska::check(&bytes)?;
        }
        let byte_len = bytes.len() as u64;
        let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), MediaSourceStreamOptions::default());
        let probed = symphonia::default::get_probe()
            .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(_) => Error::unsupported_media("unsupported or unrecognised audio format"),
                _ => Error::invalid("the audio file could not be read"),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| Error::unsupported_media("the file has no audio track"))?;
        // Refused before any packet is decoded: the rate decides how much a second costs.
        if let Some(rate) = track.codec_params.sample_rate {
            check_rate(rate)?;
        }
        let stated_seconds = stated_seconds(&track.codec_params, byte_len);
        let track_id = track.id;
        let decoder = super::opus::codec_registry()
            .make(&track.codec_params, &DecoderOptions::default())
            .map_err(|_| Error::unsupported_media("unsupported audio codec"))?;
        Ok(Self { format, decoder, track_id, stated_seconds, skipped: 0 })
    }

    /// The next decoded buffer of the track, `None` at the end. A damaged tail after some
    /// audio ends the stream; corrupt packets are skipped, as players do.
    pub(super) fn next(&mut self, decoded_any: bool) -> Result<Option<AudioBufferRef<'_>>, Error> {
        loop {
            let packet: Packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(SymError::ResetRequired) => return Ok(None),
                Err(_) if decoded_any => return Ok(None),
                Err(_) => return Err(Error::invalid("the audio file is malformed")),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                // The buffer borrows the decoder: it is taken again after the loop.
                Ok(_) => break,
                Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => self.skipped += 1,
                Err(_) => return Err(Error::invalid("the audio stream could not be decoded")),
            }
        }
        Ok(Some(self.decoder.last_decoded()))
    }
}

pub(super) fn check_rate(rate: u32) -> Result<(), Error> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "unsupported sample rate {rate} Hz (supported: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
    )))
}

/// The duration a container states, in seconds. Uncompressed PCM cannot hold more frames than
/// its bytes do: a WAV written to a pipe states 4 GiB of data, and is bounded by its size.
/// MPEG audio states nothing symphonia does not guess from the first frames' bitrate when
/// there is no Xing/VBRI tag, and cannot be told apart, so it is not taken as stated.
fn stated_seconds(params: &CodecParameters, byte_len: u64) -> Option<f64> {
    if [CODEC_TYPE_MP1, CODEC_TYPE_MP2, CODEC_TYPE_MP3].contains(&params.codec) {
        return None;
    }
    let n_frames = params.n_frames.filter(|&n| n > 0)?;
    let seconds = match (params.time_base, params.sample_rate) {
        (Some(tb), _) => {
            let t = tb.calc_time(n_frames);
            t.seconds as f64 + t.frac
        }
        (None, Some(rate)) => n_frames as f64 / rate as f64,
        (None, None) => return None,
    };
    let registry = super::opus::codec_registry();
    let pcm = registry.get_codec(params.codec).is_some_and(|c| c.short_name.starts_with("pcm_"));
    match (pcm, params.sample_rate, params.channels) {
        (true, Some(rate), Some(channels)) => {
            let bytes_per_frame =
                params.bits_per_sample.unwrap_or(8).div_ceil(8).max(1) as u64 * channels.count() as u64;
            Some(seconds.min((byte_len / bytes_per_frame.max(1)) as f64 / rate as f64))
        }
        _ => Some(seconds),
    }
}

/// The decode loop of [`decode_with_limits`].
fn decode_opened(mut opened: Opened, limits: &DecodeLimits) -> Result<Vec<f32>, Error> {
    if opened.stated_seconds.is_some_and(|s| s > limits.max_seconds as f64) {
        return Err(limits.too_long());
    }
    let stated = opened.stated_seconds;
    let stop_at = stated.map(|s| s + stated_slack(s));
    let mut sink: Option<Mono16k> = None;
    let mut samples: Option<SampleBuffer<f32>> = None;
    while let Some(audio) = opened.next(sink.is_some())? {
        let spec = *audio.spec();
        // The decoder's output rate is the truth (a container may state the source's rate,
        // as WebM files with Opus made from 16 kHz audio do; Opus always decodes at 48 kHz).
        let sink = match &mut sink {
            Some(s) => s,
            None => sink.insert(Mono16k::new(spec.rate, limits, stop_at)?),
        };
        let frames = audio.frames();
        if frames == 0 {
            continue;
        }
        let channels = spec.channels.count().max(1);
        if samples.as_ref().is_none_or(|b| b.capacity() < audio.capacity() * channels) {
            samples = Some(SampleBuffer::new(audio.capacity() as u64, spec));
        }
        let buf = samples.as_mut().expect("set above");
        buf.copy_interleaved_ref(audio);
        if !sink.push(buf.samples(), channels)? {
            tracing::warn!(stated = ?stated, "the audio runs past its stated duration; the rest is dropped");
            break;
        }
    }
    if opened.skipped > 0 {
        tracing::warn!(skipped = opened.skipped, "undecodable packets of the upload were skipped");
    }
    let sink = sink.ok_or_else(|| Error::invalid("the audio file contains no samples"))?;
    let out = sink.finish()?;
    if out.is_empty() {
        return Err(Error::invalid("the audio file contains no samples"));
    }
    Ok(out)
}

/// Decoded audio downmixed and resampled to 16 kHz as it arrives, within the duration cap.
struct Mono16k {
    resampler: Option<StreamResampler>,
    out: Vec<f32>,
    /// Downmixed frames of the current buffer, at the source rate (one packet's worth).
    mono: Vec<f32>,
    frames: u64,
    max_frames: u64,
    /// Frames after which the rest is dropped (the stated duration and its slack).
    stop_frames: Option<u64>,
    limits: DecodeLimits,
}

impl Mono16k {
    fn new(rate: u32, limits: &DecodeLimits, stop_at: Option<f64>) -> Result<Self, Error> {
        check_rate(rate)?;
        let resampler = match rate {
            super::SAMPLE_RATE => None,
            _ => Some(StreamResampler::new(rate, super::SAMPLE_RATE)?),
        };
        Ok(Self {
            resampler,
            out: Vec::new(),
            mono: Vec::new(),
            frames: 0,
            max_frames: limits.max_seconds.saturating_mul(rate as u64),
            stop_frames: stop_at.map(|s| (s * rate as f64).ceil() as u64),
            limits: *limits,
        })
    }

    /// Takes interleaved samples; false once the stated duration is reached (the rest is cut).
    fn push(&mut self, interleaved: &[f32], channels: usize) -> Result<bool, Error> {
        let frames = (interleaved.len() / channels) as u64;
        let keep = match self.stop_frames {
            Some(stop) => frames.min(stop.saturating_sub(self.frames)),
            None => frames,
        };
        if self.frames + keep > self.max_frames {
            return Err(self.limits.too_long());
        }
        self.mono.clear();
        for frame in interleaved.chunks_exact(channels).take(keep as usize) {
            // Float formats can hold anything: out-of-range values would overflow the
            // resampler's FFT (a NaN there is a panic), and Whisper expects [-1, 1].
            let s = frame.iter().sum::<f32>() / channels as f32;
            self.mono.push(if s.is_finite() { s.clamp(-1.0, 1.0) } else { 0.0 });
        }
        self.frames += keep;
        match &mut self.resampler {
            Some(r) => r.push(&self.mono)?,
            None => self.out.extend_from_slice(&self.mono),
        }
        Ok(keep == frames)
    }

    fn finish(self) -> Result<Vec<f32>, Error> {
        match self.resampler {
            Some(r) => r.finish(),
            None => Ok(self.out),
        }
    }
}
