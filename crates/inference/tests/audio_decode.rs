//! Decoding never panics: random bytes and every truncation of real files give a clean
//! client error or audio.

use proptest::prelude::*;
use smai_core::ErrorCode;
use smai_inference::audio::decode_to_mono_16k;

fn wav_bytes(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[test]
fn stereo_wav_is_downmixed_and_resampled() {
    // Left channel a 1 kHz tone, right channel silent: the mix is half the tone.
    let rate = 8000;
    let mut samples = Vec::new();
    for i in 0..rate {
        let v = (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin() * 16000.0;
        samples.extend_from_slice(&[v as i16, 0]);
    }
    let wav = wav_bytes(&samples, rate, 2);
    let at16k = decode_to_mono_16k(&wav).unwrap();
    assert_eq!(at16k.len(), 16000);
    // Away from the resampler's edges.
    let peak = at16k[1000..15000].iter().fold(0.0f32, |a, &b| a.max(b.abs()));
    assert!((peak - 16000.0 / 32768.0 / 2.0).abs() < 0.01, "peak {peak}");
}

#[test]
fn empty_and_unknown_inputs_are_client_errors() {
    assert_eq!(decode_to_mono_16k(&[]).unwrap_err().code, ErrorCode::InvalidRequest);
    let e = decode_to_mono_16k(b"this is plainly not audio at all, just some text").unwrap_err();
    assert!(matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest));
}

#[test]
fn every_truncation_of_real_files_is_handled() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let wav = std::fs::read(format!("{dir}/mel_input.wav")).unwrap();
    for cut in (0..200).chain((200..wav.len()).step_by(997)) {
        if let Err(e) = decode_to_mono_16k(&wav[..cut]) {
            assert!(matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest), "cut {cut}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Err(e) = decode_to_mono_16k(&bytes) {
            prop_assert!(matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest));
        }
    }

    #[test]
    fn corrupted_wav_never_panics(flips in proptest::collection::vec((0usize..2000, any::<u8>()), 1..16)) {
        let samples: Vec<i16> = (0..1000).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
        let mut wav = wav_bytes(&samples, 22050, 1);
        for (pos, byte) in flips {
            let n = wav.len();
            wav[pos % n] = byte;
        }
        if let Err(e) = decode_to_mono_16k(&wav) {
            prop_assert!(matches!(e.code, ErrorCode::UnsupportedMediaType | ErrorCode::InvalidRequest));
        }
    }
}
