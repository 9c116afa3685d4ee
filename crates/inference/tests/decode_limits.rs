//! Decoding is bounded before it allocates: rates are refused from the header, durations are
//! capped while streaming at 16 kHz (memory measured from /proc), and the duration probe for
//! admission reads headers or decodes only up to its budget.

mod common;

use common::flac;
use common::memory::peak_growth_mb;
use smai_core::ErrorCode;
use smai_inference::audio::{decode_with_limits, probe_duration, DecodeLimits, DurationSource};
use std::sync::Mutex;

/// Peak memory is per process: the tests that measure it take turns.
static MEASURING: Mutex<()> = Mutex::new(());

/// Old behaviour needed 8.6 GB for this file; anything near that would abort the test run.
const MEMORY_CEILING_MB: f64 = 200.0;

fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    samples.iter().for_each(|&s| writer.write_sample(s).unwrap());
    writer.finalize().unwrap();
    cursor.into_inner()
}

#[test]
fn an_hour_at_384_khz_is_refused_from_its_header() {
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    for state_total in [true, false] {
        let file = flac::silence(384_000, 3600 * 384_000, state_total);
        assert!(file.len() < 400_000, "{} bytes", file.len());
        let (result, growth) = peak_growth_mb(|| decode_with_limits(&file, &DecodeLimits::default()));
        let e = result.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{e:?}");
        assert!(e.message.contains("384000 Hz") && e.message.contains("192000"), "{}", e.message);
        eprintln!("peak RSS growth {growth:.1} MB");
        assert!(growth < MEMORY_CEILING_MB, "peak RSS grew {growth:.0} MB");
        assert_eq!(probe_duration(&file, 1e9).unwrap_err().code, ErrorCode::InvalidRequest);
    }
}

#[test]
fn a_stated_duration_over_the_cap_is_refused_naming_the_cap() {
    let file = flac::silence(48_000, 3600 * 48_000, true);
    let e = decode_with_limits(&file, &DecodeLimits { max_seconds: 600 }).unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert!(e.message.contains("600 s"), "{}", e.message);
}

#[test]
fn an_unstated_duration_stops_at_the_cap_in_bounded_memory() {
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    // 1200 s at 48 kHz would be 230 MB held at the source rate; at 16 kHz it is 77 MB.
    let file = flac::silence(48_000, 3600 * 48_000, false);
    let (result, growth) = peak_growth_mb(|| decode_with_limits(&file, &DecodeLimits { max_seconds: 1200 }));
    let e = result.unwrap_err();
    assert_eq!(e.code, ErrorCode::PayloadTooLarge);
    assert!(e.message.contains("1200 s"), "{}", e.message);
    eprintln!("peak RSS growth {growth:.1} MB");
    assert!(growth < MEMORY_CEILING_MB, "peak RSS grew {growth:.0} MB");
}

#[test]
fn normal_files_decode_to_their_length_at_16_khz() {
    for (rate, state_total) in [(16_000, true), (16_000, false), (48_000, true), (44_100, false), (8_000, true)] {
        let n = rate as u64 * 7 / 2; // 3.5 s
        let pcm = decode_with_limits(&flac::silence(rate, n, state_total), &DecodeLimits::default()).unwrap();
        assert_eq!(pcm.len(), 56_000, "{rate} Hz, stated {state_total}");
        assert!(pcm.iter().all(|&s| s == 0.0));
    }
    let tone: Vec<i16> = (0..22_050).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect();
    assert_eq!(decode_with_limits(&wav(&tone, 22_050), &DecodeLimits { max_seconds: 1 }).unwrap().len(), 16_000);
}

#[test]
fn rates_outside_the_supported_range_are_refused() {
    let e = decode_with_limits(&wav(&[0; 4000], 4000), &DecodeLimits::default()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.message.contains("4000 Hz"), "{}", e.message);
}

#[test]
fn audio_past_its_stated_duration_is_cut_there() {
    // Says 10 s, holds 60 s: decoding stops after the stated time and its 1 s slack.
    let mut file = flac::silence(48_000, 60 * 48_000, false);
    let stated = flac::silence(48_000, 10 * 48_000, true);
    file[..42].copy_from_slice(&stated[..42]);
    let pcm = decode_with_limits(&file, &DecodeLimits::default()).unwrap();
    assert_eq!(pcm.len(), 11 * 16_000);
    let probe = probe_duration(&file, 30.0).unwrap();
    assert_eq!((probe.seconds, probe.source, probe.within_budget), (10.0, DurationSource::Stated, true));
}

#[test]
fn a_wav_written_to_a_pipe_is_bounded_by_its_size() {
    // ffmpeg writing to a pipe cannot know the length: RIFF and data sizes are 2^32 - 1.
    let mut file = wav(&[100; 16_000], 16_000);
    file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    file[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode_with_limits(&file, &DecodeLimits { max_seconds: 60 }).unwrap().len(), 16_000);
    let probe = probe_duration(&file, 60.0).unwrap();
    assert!((probe.seconds - 1.0).abs() < 0.01, "{probe:?}");
}

#[test]
fn the_probe_reads_a_stated_duration_without_decoding() {
    let _turn = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let file = flac::silence(48_000, 3 * 3600 * 48_000, true);
    let (probe, growth) = peak_growth_mb(|| probe_duration(&file, 60.0).unwrap());
    assert_eq!(probe.source, DurationSource::Stated);
    assert_eq!(probe.seconds, 3.0 * 3600.0);
    assert!(!probe.within_budget);
    assert!(growth < 20.0, "peak RSS grew {growth:.0} MB");
}

#[test]
fn the_probe_decodes_an_unstated_duration_up_to_its_budget() {
    let file = flac::silence(48_000, 3600 * 48_000, false);
    let over = probe_duration(&file, 60.0).unwrap();
    assert_eq!((over.source, over.within_budget), (DurationSource::Decoded, false));
    // Stops within one frame (65535 samples, 1.37 s) of the budget.
    assert!(over.seconds > 60.0 && over.seconds < 61.5, "{over:?}");
    let short = flac::silence(48_000, 90 * 48_000, false);
    let whole = probe_duration(&short, 120.0).unwrap();
    assert_eq!((whole.source, whole.within_budget), (DurationSource::Decoded, true));
    assert!((whole.seconds - 90.0).abs() < 1e-9, "{whole:?}");
}

#[test]
fn rates_sharing_few_factors_with_16_khz_keep_their_length() {
    // 8001 Hz has no factor in common with 16 kHz: the resampler's block is a second long,
    // longer than this clip, and its flush used to stop before the first output.
    for (rate, n) in [(8_001u32, 2_000usize), (9_295, 18_590), (44_100, 441)] {
        let pcm = decode_with_limits(&wav(&vec![1000; n], rate), &DecodeLimits::default()).unwrap();
        assert_eq!(pcm.len() as u64, (n as u64 * 16_000).div_ceil(rate as u64), "{rate} Hz");
    }
}

#[test]
fn float_samples_out_of_range_are_clamped() {
    // Found by decode_fuzz: values near f32::MAX overflowed the resampler's FFT into a panic.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    (0..22_050).for_each(|i| writer.write_sample(if i % 2 == 0 { 3e38f32 } else { -3e38 }).unwrap());
    writer.finalize().unwrap();
    let pcm = decode_with_limits(&cursor.into_inner(), &DecodeLimits::default()).unwrap();
    assert_eq!(pcm.len(), 16_000);
    assert!(pcm.iter().all(|s| s.is_finite()));
}
