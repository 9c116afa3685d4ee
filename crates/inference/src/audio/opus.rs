//! An Opus decoder for symphonia's demuxers (Ogg and Matroska/WebM), on libopus through the
//! `opus` crate. Decodes at 48 kHz as RFC 7845 specifies, drops the header's pre-skip and
//! applies its output gain; the stream is resampled to 16 kHz afterwards like any other.

use std::sync::{Mutex, OnceLock};
use symphonia::core::audio::{AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, CodecRegistry, Decoder, DecoderOptions, FinalizeResult, CODEC_TYPE_OPUS,
};
use symphonia::core::errors::{decode_error, unsupported_error, Result};
use symphonia::core::formats::Packet;

const RATE: u32 = 48_000;
/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_FRAMES: usize = 5760;

/// symphonia's codecs plus Opus.
pub fn codec_registry() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<OpusDecoder>();
        registry
    })
}

/// The fields of an `OpusHead` identification header (RFC 7845 section 5.1) we use.
#[derive(Debug, Clone, PartialEq)]
pub struct OpusHead {
    pub channels: usize,
    pub pre_skip: usize,
    /// Output gain in dB.
    pub gain_db: f32,
    /// For mapping family 1+: stream count, coupled count and the channel mapping table.
    pub streams: Option<(u8, u8, Vec<u8>)>,
}

impl OpusHead {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < 19 || &b[..8] != b"OpusHead" || b[8] >> 4 != 0 {
            return None;
        }
        let channels = b[9] as usize;
        let pre_skip = u16::from_le_bytes([b[10], b[11]]) as usize;
        let gain_db = i16::from_le_bytes([b[16], b[17]]) as f32 / 256.0;
        let streams = match b[18] {
            0 if (1..=2).contains(&channels) => None,
            0 => return None,
            _ => {
                let table = b.get(21..21 + channels)?;
                Some((b[19], b[20], table.to_vec()))
            }
        };
        // Mapping families define up to 8 channels; more is refused rather than guessed.
        (1..=8).contains(&channels).then_some(Self { channels, pre_skip, gain_db, streams })
    }
}

enum Inner {
    Plain(opus::Decoder),
    Multi(opus::MSDecoder),
}

impl Inner {
    fn new(head: &OpusHead) -> std::result::Result<Self, opus::Error> {
        Ok(match &head.streams {
            None => {
                let ch = if head.channels == 1 { opus::Channels::Mono } else { opus::Channels::Stereo };
                Inner::Plain(opus::Decoder::new(RATE, ch)?)
            }
            Some((streams, coupled, table)) => Inner::Multi(opus::MSDecoder::new(RATE, *streams, *coupled, table)?),
        })
    }

    fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> std::result::Result<usize, opus::Error> {
        match self {
            Inner::Plain(d) => d.decode_float(packet, out, false),
            Inner::Multi(d) => d.decode_float(packet, out, false),
        }
    }
}

pub struct OpusDecoder {
    params: CodecParameters,
    head: OpusHead,
    // libopus state is Send but not Sync; symphonia asks for both.
    inner: Mutex<Inner>,
    interleaved: Vec<f32>,
    buffer: AudioBuffer<f32>,
    skip_left: usize,
    gain: f32,
}

fn make_opus_decoder(params: &CodecParameters, options: &DecoderOptions) -> Result<Box<dyn Decoder>> {
    Ok(Box::new(OpusDecoder::try_new(params, options)?))
}

/// The first `n` (at most 8) channel positions; only their count matters downstream.
fn channel_mask(n: usize) -> Channels {
    Channels::from_bits_truncate((1u32 << n) - 1)
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let head = match params.extra_data.as_deref().and_then(OpusHead::parse) {
            Some(h) => h,
            None if params.extra_data.is_none() => OpusHead {
                channels: params.channels.map_or(1, |c| c.count()).clamp(1, 2),
                pre_skip: params.delay.unwrap_or(0) as usize,
                gain_db: 0.0,
                streams: None,
            },
            None => return unsupported_error("opus: unsupported identification header"),
        };
        let inner = Inner::new(&head).or_else(|_| unsupported_error("opus: decoder setup failed"))?;
        let spec = SignalSpec::new(RATE, channel_mask(head.channels));
        Ok(Self {
            params: params.clone(),
            inner: Mutex::new(inner),
            interleaved: vec![0.0; MAX_FRAMES * head.channels],
            buffer: AudioBuffer::new(MAX_FRAMES as u64, spec),
            skip_left: head.pre_skip,
            gain: 10f32.powf(head.gain_db / 20.0),
            head,
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        static CODECS: [CodecDescriptor; 1] = [CodecDescriptor {
            codec: CODEC_TYPE_OPUS,
            short_name: "opus",
            long_name: "Opus (libopus)",
            inst_func: make_opus_decoder,
        }];
        &CODECS
    }

    fn reset(&mut self) {
        if let Ok(inner) = Inner::new(&self.head) {
            self.inner = Mutex::new(inner);
        }
        self.skip_left = self.head.pre_skip;
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        self.buffer.clear();
        let channels = self.head.channels;
        let frames = {
            let mut inner = match self.inner.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            match inner.decode(&packet.data, &mut self.interleaved) {
                Ok(n) => n.min(MAX_FRAMES),
                Err(_) => return decode_error("opus: corrupt packet"),
            }
        };
        let skip = self.skip_left.min(frames);
        self.skip_left -= skip;
        self.buffer.render_reserved(Some(frames - skip));
        for c in 0..channels {
            let plane = self.buffer.chan_mut(c);
            for (i, v) in plane.iter_mut().enumerate() {
                *v = self.interleaved[(skip + i) * channels + c] * self.gain;
            }
        }
        Ok(self.buffer.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buffer.as_audio_buffer_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, pre_skip: u16, family: u8) -> Vec<u8> {
        let mut b = b"OpusHead".to_vec();
        b.extend([1, channels]);
        b.extend(pre_skip.to_le_bytes());
        b.extend(48_000u32.to_le_bytes());
        b.extend(0i16.to_le_bytes());
        b.push(family);
        b
    }

    #[test]
    fn reads_identification_headers() {
        let h = OpusHead::parse(&head(1, 312, 0)).unwrap();
        assert_eq!((h.channels, h.pre_skip, h.streams.is_none()), (1, 312, true));
        let mut multi = head(3, 0, 1);
        multi.extend([2, 1, 0, 2, 1]);
        assert_eq!(OpusHead::parse(&multi).unwrap().streams, Some((2, 1, vec![0, 2, 1])));
        assert!(OpusHead::parse(&head(3, 0, 0)).is_none());
        assert!(OpusHead::parse(&head(0, 0, 0)).is_none());
        assert!(OpusHead::parse(&head(3, 0, 1)).is_none(), "mapping table missing");
        assert!(OpusHead::parse(b"OpusHea").is_none());
    }
}
