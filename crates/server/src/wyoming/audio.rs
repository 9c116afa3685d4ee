//! Wyoming audio: interleaved little-endian signed PCM of any sample width (1 to 4 bytes, as
//! Python's `audioop` reads them) and channel count, brought to mono f32 for the live session.

use super::wire::Event;
use smai_core::Error;

/// The format an `audio-start` or `audio-chunk` event declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub rate: u32,
    pub width: usize,
    pub channels: usize,
}

impl Format {
    pub fn of(event: &Event) -> Result<Self, Error> {
        let field = |name: &str| {
            event
                .data
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| Error::invalid(format!("{} needs a positive integer \"{name}\"", event.kind)))
        };
        let (rate, width, channels) = (field("rate")?, field("width")?, field("channels")?);
        if !(1..=4).contains(&width) {
            return Err(Error::invalid(format!("sample width {width} is not supported: send 1 to 4 bytes")));
        }
        if !(1..=16).contains(&channels) {
            return Err(Error::invalid(format!("{channels} channels are not supported: send 1 to 16")));
        }
        let rate = u32::try_from(rate).map_err(|_| Error::invalid(format!("sample rate {rate} is not supported")))?;
        Ok(Self { rate, width: width as usize, channels: channels as usize })
    }

    fn frame_bytes(self) -> usize {
        self.width * self.channels
    }
}

/// Converts chunks to mono f32 little-endian bytes, keeping a frame split across chunks.
#[derive(Debug, Default)]
pub struct ToMono {
    carry: Vec<u8>,
}

impl ToMono {
    pub fn convert(&mut self, format: Format, bytes: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(bytes);
        let frame = format.frame_bytes();
        let whole = self.carry.len() / frame * frame;
        let scale = 1.0 / (1u64 << (8 * format.width - 1)) as f32 / format.channels as f32;
        let mut out = Vec::with_capacity(whole / frame * 4);
        for frame_bytes in self.carry[..whole].chunks_exact(frame) {
            let sum: f32 = frame_bytes.chunks_exact(format.width).map(|s| sample(s) as f32).sum();
            out.extend_from_slice(&(sum * scale).to_le_bytes());
        }
        self.carry.drain(..whole);
        out
    }
}

/// One little-endian signed sample of 1 to 4 bytes.
fn sample(bytes: &[u8]) -> i32 {
    let mut wide = [0u8; 4];
    wide[4 - bytes.len()..].copy_from_slice(bytes);
    // The sample's bytes fill the top of an i32; the arithmetic shift restores its sign.
    i32::from_le_bytes(wide) >> (8 * (4 - bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    #[test]
    fn widths_and_channels_become_mono_unit_samples() {
        let s16 = Format { rate: 16_000, width: 2, channels: 1 };
        assert_eq!(floats(&ToMono::default().convert(s16, &[0x00, 0x80, 0x00, 0x40])), vec![-1.0, 0.5]);
        let s8 = Format { rate: 8_000, width: 1, channels: 1 };
        assert_eq!(floats(&ToMono::default().convert(s8, &[0x80, 0x40])), vec![-1.0, 0.5]);
        let s24 = Format { rate: 48_000, width: 3, channels: 1 };
        assert_eq!(floats(&ToMono::default().convert(s24, &[0, 0, 0xc0])), vec![-0.5]);
        let s32 = Format { rate: 48_000, width: 4, channels: 1 };
        assert_eq!(floats(&ToMono::default().convert(s32, &0x4000_0000i32.to_le_bytes())), vec![0.5]);
        // Stereo is averaged.
        let stereo = Format { rate: 44_100, width: 2, channels: 2 };
        let frame = [0x00, 0x40, 0x00, 0x00];
        assert_eq!(floats(&ToMono::default().convert(stereo, &frame)), vec![0.25]);
    }

    #[test]
    fn frames_split_across_chunks_are_kept() {
        let stereo = Format { rate: 16_000, width: 2, channels: 2 };
        let mut mono = ToMono::default();
        assert!(mono.convert(stereo, &[0x00, 0x40, 0x00]).is_empty());
        assert_eq!(floats(&mono.convert(stereo, &[0x40])), vec![0.5]);
    }
}
