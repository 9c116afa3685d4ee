//! Container/codec decoding with symphonia (wav, flac, mp3, ogg/vorbis, ogg/opus, m4a/aac,
//! mkv/webm with the codecs above; Opus through libopus, see opus.rs). Every failure maps to
//! a client error; malformed input never panics.

use smai_core::Error;
use std::io::Cursor;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Mono samples in [-1, 1] at the file's own rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

/// Longest input accepted, so a tiny header cannot make us allocate without bound.
const MAX_SECONDS: u64 = 4 * 60 * 60;

/// Decodes, downmixes and resamples to Whisper's 16 kHz.
pub fn decode_to_mono_16k(bytes: &[u8]) -> Result<Vec<f32>, Error> {
    let decoded = decode_audio(bytes)?;
    super::resample(&decoded.samples, decoded.sample_rate, super::SAMPLE_RATE)
}

pub fn decode_audio(bytes: &[u8]) -> Result<DecodedAudio, Error> {
    if bytes.is_empty() {
        return Err(Error::invalid("the audio file is empty"));
    }
    // symphonia may panic on some malformed streams; contain that as a client error.
    let owned = bytes.to_vec();
    match std::panic::catch_unwind(move || decode_inner(owned)) {
        Ok(result) => result,
        Err(_) => Err(Error::invalid("the audio file is malformed")),
    }
}

fn decode_inner(bytes: Vec<u8>) -> Result<DecodedAudio, Error> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), MediaSourceStreamOptions::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(_) => Error::unsupported_media("unsupported or unrecognised audio format"),
            _ => Error::invalid("the audio file could not be read"),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| Error::unsupported_media("the file has no audio track"))?;
    let track_id = track.id;
    let mut decoder = super::opus::codec_registry()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| Error::unsupported_media("unsupported audio codec"))?;
    let mut sample_rate = track.codec_params.sample_rate;
    let mut mono: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(_) if !mono.is_empty() => break, // keep what decoded before a damaged tail
            Err(_) => return Err(Error::invalid("the audio file is malformed")),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(a) => a,
            Err(SymError::DecodeError(_)) => continue, // skip a corrupt packet, as players do
            Err(SymError::IoError(_)) => continue,
            Err(_) => return Err(Error::invalid("the audio stream could not be decoded")),
        };
        let spec = *audio.spec();
        let channels = spec.channels.count().max(1);
        // The decoder's output rate is the truth (a container may state the source's rate,
        // as WebM files with Opus made from 16 kHz audio do; Opus always decodes at 48 kHz).
        if mono.is_empty() {
            sample_rate = Some(spec.rate);
        }
        let needed = audio.capacity() as u64;
        if buf.as_ref().is_none_or(|b| (b.capacity() as u64) < needed * channels as u64) {
            buf = Some(SampleBuffer::new(needed, spec));
        }
        let sb = buf.as_mut().expect("set above");
        sb.copy_interleaved_ref(audio);
        for frame in sb.samples().chunks(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
        let rate = sample_rate.unwrap_or(1).max(1) as u64;
        if mono.len() as u64 > MAX_SECONDS * rate {
            return Err(Error::invalid("the audio is longer than 4 hours"));
        }
    }
    let sample_rate = sample_rate.ok_or_else(|| Error::invalid("the audio has no sample rate"))?;
    if !(1000..=384_000).contains(&sample_rate) {
        return Err(Error::invalid(format!("unsupported sample rate {sample_rate} Hz")));
    }
    if mono.is_empty() {
        return Err(Error::invalid("the audio file contains no samples"));
    }
    for s in mono.iter_mut() {
        if !s.is_finite() {
            *s = 0.0;
        }
    }
    Ok(DecodedAudio { samples: mono, sample_rate })
}
