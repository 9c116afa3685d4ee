//! Output encoding of synthesized speech: wav (hound), raw pcm s16le, flac (flacenc),
//! mp3 (LAME via mp3lame-encoder) and Ogg Opus (libopus + ogg), resampled first when asked
//! (with the one resampler of `audio`).

use std::io::Cursor;
use std::str::FromStr;

use super::resample;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown audio format {0:?} (wav, pcm, flac, mp3, opus)")]
    UnknownFormat(String),
    #[error("sample rate {0} Hz is not supported for {1}")]
    SampleRate(u32, &'static str),
    #[error("{0} encoder: {1}")]
    Encoder(&'static str, String),
    #[error("resampling: {}", .0.detail.as_deref().unwrap_or(&.0.message))]
    Resample(#[from] smai_core::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    #[default]
    Wav,
    Pcm,
    Flac,
    Mp3,
    Opus,
}

impl AudioFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
            Self::Flac => "audio/flac",
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Pcm => "pcm",
            Self::Flac => "flac",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
        }
    }
}

impl FromStr for AudioFormat {
    type Err = EncodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "wav" => Self::Wav,
            "pcm" => Self::Pcm,
            "flac" => Self::Flac,
            "mp3" => Self::Mp3,
            "opus" | "ogg" => Self::Opus,
            other => return Err(EncodeError::UnknownFormat(other.to_string())),
        })
    }
}

/// f32 samples in [-1, 1] to 16-bit PCM.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16).collect()
}

/// Little-endian 16-bit PCM bytes: the `pcm` format, also usable chunk by chunk when streaming.
pub fn pcm_s16le(samples: &[f32]) -> Vec<u8> {
    to_i16(samples).iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Encodes mono audio at `sample_rate`, resampled first to `target_rate` when given.
pub fn encode(
    samples: &[f32],
    sample_rate: u32,
    target_rate: Option<u32>,
    format: AudioFormat,
) -> Result<Vec<u8>, EncodeError> {
    let rate = target_rate.unwrap_or(sample_rate);
    let samples = resample(samples, sample_rate, rate)?;
    match format {
        AudioFormat::Pcm => Ok(pcm_s16le(&samples)),
        AudioFormat::Wav => wav(&samples, rate),
        AudioFormat::Flac => flac(&samples, rate),
        AudioFormat::Mp3 => mp3(&samples, rate),
        AudioFormat::Opus => opus(&samples, rate),
    }
}

fn wav(samples: &[f32], rate: u32) -> Result<Vec<u8>, EncodeError> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    let err = |e: hound::Error| EncodeError::Encoder("wav", e.to_string());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(err)?;
    for s in to_i16(samples) {
        writer.write_sample(s).map_err(err)?;
    }
    writer.finalize().map_err(err)?;
    Ok(cursor.into_inner())
}

fn flac(samples: &[f32], rate: u32) -> Result<Vec<u8>, EncodeError> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let ints: Vec<i32> = to_i16(samples).into_iter().map(i32::from).collect();
    let source = flacenc::source::MemSource::from_samples(&ints, 1, 16, rate as usize);
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| EncodeError::Encoder("flac", format!("{e:?}")))?;
    let stream = flacenc::encode_with_fixed_block_size(&config, source, 4096)
        .map_err(|e| EncodeError::Encoder("flac", format!("{e:?}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).map_err(|e| EncodeError::Encoder("flac", format!("{e:?}")))?;
    Ok(sink.as_slice().to_vec())
}

fn mp3(samples: &[f32], rate: u32) -> Result<Vec<u8>, EncodeError> {
    use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm, Quality};
    const MP3_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];
    if !MP3_RATES.contains(&rate) {
        return Err(EncodeError::SampleRate(rate, "mp3"));
    }
    let err = |e: String| EncodeError::Encoder("mp3", e);
    let mut builder = Builder::new().ok_or_else(|| err("LAME could not start".into()))?;
    builder.set_num_channels(1).map_err(|e| err(e.to_string()))?;
    builder.set_sample_rate(rate).map_err(|e| err(e.to_string()))?;
    builder.set_brate(Bitrate::Kbps64).map_err(|e| err(e.to_string()))?;
    builder.set_quality(Quality::Good).map_err(|e| err(e.to_string()))?;
    let mut encoder = builder.build().map_err(|e| err(e.to_string()))?;
    let pcm = to_i16(samples);
    let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(pcm.len()));
    encoder.encode_to_vec(MonoPcm(&pcm), &mut out).map_err(|e| err(e.to_string()))?;
    encoder.flush_to_vec::<FlushNoGap>(&mut out).map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// Ogg Opus (RFC 7845): 48 kHz, 20 ms frames.
fn opus(samples: &[f32], rate: u32) -> Result<Vec<u8>, EncodeError> {
    const OPUS_RATE: u32 = 48_000;
    const FRAME: usize = 960;
    let err = |e: String| EncodeError::Encoder("opus", e);
    let pcm = resample(samples, rate, OPUS_RATE)?;
    let mut encoder = ::opus::Encoder::new(OPUS_RATE, ::opus::Channels::Mono, ::opus::Application::Voip)
        .map_err(|e| err(e.to_string()))?;
    let pre_skip = encoder.get_lookahead().map_err(|e| err(e.to_string()))?.max(0) as u16;

    let mut out = Vec::new();
    let serial = 0x736d_6169; // any stream serial number
    let mut writer = ogg::PacketWriter::new(&mut out);
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&rate.to_le_bytes()); // original input rate, informational
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family
    let end_page = ogg::PacketWriteEndInfo::EndPage;
    writer.write_packet(head, serial, end_page, 0).map_err(|e| err(e.to_string()))?;
    let vendor = b"smai";
    let mut tags = Vec::new();
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    writer.write_packet(tags, serial, end_page, 0).map_err(|e| err(e.to_string()))?;

    let ints = to_i16(&pcm);
    let frames = ints.len().div_ceil(FRAME).max(1);
    let mut packet = vec![0u8; 4000];
    for i in 0..frames {
        let mut frame = ints[(i * FRAME).min(ints.len())..((i + 1) * FRAME).min(ints.len())].to_vec();
        frame.resize(FRAME, 0);
        let len = encoder.encode(&frame, &mut packet).map_err(|e| err(e.to_string()))?;
        let last = i + 1 == frames;
        let granule =
            if last { pre_skip as u64 + ints.len() as u64 } else { pre_skip as u64 + ((i + 1) * FRAME) as u64 };
        let info = if last { ogg::PacketWriteEndInfo::EndStream } else { ogg::PacketWriteEndInfo::NormalPacket };
        writer.write_packet(packet[..len].to_vec(), serial, info, granule).map_err(|e| err(e.to_string()))?;
    }
    drop(writer);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn wav_round_trips_through_hound() {
        let samples = tone(22050, 0.5);
        let bytes = encode(&samples, 22050, None, AudioFormat::Wav).unwrap();
        let reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(reader.spec().sample_rate, 22050);
        let decoded: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(decoded, to_i16(&samples));
    }

    #[test]
    fn pcm_is_little_endian_s16() {
        assert_eq!(pcm_s16le(&[0.0, 1.0, -1.0]), vec![0, 0, 0xff, 0x7f, 0x01, 0x80]);
    }

    #[test]
    fn compressed_formats_have_their_signatures() {
        let samples = tone(22050, 0.5);
        let flac = encode(&samples, 22050, None, AudioFormat::Flac).unwrap();
        assert_eq!(&flac[..4], b"fLaC");
        let mp3 = encode(&samples, 22050, None, AudioFormat::Mp3).unwrap();
        assert!(mp3.len() > 1000 && mp3[0] == 0xff && mp3[1] & 0xe0 == 0xe0, "mp3 frame sync");
        let opus = encode(&samples, 22050, None, AudioFormat::Opus).unwrap();
        assert_eq!(&opus[..4], b"OggS");
        assert!(opus.windows(8).any(|w| w == b"OpusHead"));
        assert!(encode(&samples, 22050, Some(7000), AudioFormat::Mp3).is_err());
        assert!("aiff".parse::<AudioFormat>().is_err());
    }
}
