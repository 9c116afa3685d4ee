//! A fuzz target over the decode entry point and the duration probe: small real files of every
//! container we read (WAV of several sample formats, FLAC, MP3, Ogg Opus, WebM) are truncated,
//! spliced into each other and bit-flipped. Decoding must never panic out, never grow the
//! process by more than `MEMORY_CEILING_MB`, never return more than the cap, and fail only
//! with a client error. `SMAI_FUZZ_CASES` sets the number of cases (default 64), or
//! `SMAI_FUZZ_SECONDS` runs for that long; see README "Fuzzing the decoder".

mod common;

use common::flac;
use common::memory::peak_growth_mb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use smai_core::{Error, ErrorCode};
use smai_inference::audio::{decode_with_limits, encode, probe_duration, AudioFormat, DecodeLimits};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A short cap keeps each case fast while still exercising the cap.
const LIMITS: DecodeLimits = DecodeLimits { max_seconds: 60 };
/// The cap at 16 kHz is 3.8 MB; the rest is headroom for the codecs' own buffers.
const MEMORY_CEILING_MB: f64 = 256.0;
const DEFAULT_CASES: u32 = 64;

fn wav(rate: u32, channels: u16, bits: u16, float: bool, seconds: f32) -> Vec<u8> {
    let sample_format = if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int };
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: bits, sample_format };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    let frames = (rate as f32 * seconds) as usize;
    for i in 0..frames * channels as usize {
        let v = (i as f32 * 0.031).sin() * 0.5;
        match (float, bits) {
            (true, _) => writer.write_sample(v).unwrap(),
            (false, 8) => writer.write_sample((v * 127.0) as i8).unwrap(),
            (false, 16) => writer.write_sample((v * 32767.0) as i16).unwrap(),
            (false, _) => writer.write_sample((v * 8_388_607.0) as i32).unwrap(),
        }
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

fn encoded(format: AudioFormat, rate: u32) -> Vec<u8> {
    let tone: Vec<f32> = (0..rate / 2).map(|i| (i as f32 * 0.07).sin() * 0.4).collect();
    encode(&tone, rate, None, format).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Real files of every container and codec family we decode, each a few kB.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        wav(16_000, 1, 16, false, 0.3),
        wav(44_100, 2, 16, false, 0.1),
        wav(8_000, 1, 8, false, 0.3),
        wav(22_050, 1, 24, false, 0.1),
        wav(48_000, 2, 32, true, 0.05),
        flac::silence(48_000, 48_000, true),
        // Two minutes with no stated length: decoding runs into the cap.
        flac::silence(8_000, 120 * 8_000, false),
        encoded(AudioFormat::Flac, 16_000),
        encoded(AudioFormat::Mp3, 22_050),
        encoded(AudioFormat::Opus, 24_000),
        fixture("opus/forte_0.opus"),
        fixture("opus/forte_0.webm"),
    ];
    let mut mel_input = fixture("mel_input.wav");
    mel_input.truncate(8_000); // the header and a quarter second
    seeds.push(mel_input);
    seeds
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Sets the byte at a position (modulo the length) to a value.
    Set(usize, u8),
    /// Flips one bit.
    Flip(usize, u8),
    Truncate(usize),
    /// Inserts `len` bytes of another seed, from `from`, at `at`.
    Splice {
        other: usize,
        from: usize,
        len: usize,
        at: usize,
    },
    /// Repeats a range in place (lengths and counts that disagree with the data).
    Repeat {
        from: usize,
        len: usize,
        times: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        4 => (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), any::<usize>(), 1usize..512, any::<usize>())
            .prop_map(|(other, from, len, at)| Mutation::Splice { other, from, len, at }),
        1 => (any::<usize>(), 1usize..256, 1u8..8).prop_map(|(from, len, times)| Mutation::Repeat { from, len, times }),
        1 => (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

fn apply(file: &mut Vec<u8>, m: &Mutation, seeds: &[Vec<u8>]) {
    let n = file.len().max(1);
    match *m {
        Mutation::Set(p, b) if !file.is_empty() => file[p % n] = b,
        Mutation::Flip(p, bit) if !file.is_empty() => file[p % n] ^= 1 << bit,
        Mutation::Truncate(len) => file.truncate(len % n),
        Mutation::Splice { other, from, len, at } => {
            let other = &seeds[other % seeds.len()];
            let from = from % other.len();
            let piece = other[from..(from + len).min(other.len())].to_vec();
            let at = at % (file.len() + 1);
            file.splice(at..at, piece);
        }
        Mutation::Repeat { from, len, times } if !file.is_empty() => {
            let from = from % n;
            let piece = file[from..(from + len).min(file.len())].to_vec();
            for _ in 0..times {
                file.splice(from..from, piece.iter().copied());
            }
        }
        Mutation::Delete { at, len } if !file.is_empty() => {
            let at = at % n;
            file.drain(at..(at + len).min(file.len()));
        }
        _ => {}
    }
}

fn client_error(e: &Error) -> bool {
    matches!(e.code, ErrorCode::InvalidRequest | ErrorCode::UnsupportedMediaType | ErrorCode::PayloadTooLarge)
}

/// The properties of one mutated file.
fn check(file: &[u8]) -> Result<(), TestCaseError> {
    let (decoded, growth) = peak_growth_mb(|| decode_with_limits(file, &LIMITS));
    prop_assert!(growth < MEMORY_CEILING_MB, "decoding grew the process by {growth:.0} MB");
    match decoded {
        Ok(pcm) => prop_assert!(pcm.len() as u64 <= (LIMITS.max_seconds + 2) * 16_000, "{} samples", pcm.len()),
        Err(e) => prop_assert!(client_error(&e), "not a client error: {e:?}"),
    }
    let (probed, growth) = peak_growth_mb(|| probe_duration(file, LIMITS.max_seconds as f64));
    prop_assert!(growth < MEMORY_CEILING_MB, "probing grew the process by {growth:.0} MB");
    if let Err(e) = probed {
        prop_assert!(client_error(&e), "probe: not a client error: {e:?}");
    }
    Ok(())
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

/// Panics caught inside the audio libraries (they become client errors; reported as findings).
static CAUGHT_PANICS: AtomicUsize = AtomicUsize::new(0);
/// Where they happened, each place once.
static PANIC_SITES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panic(info: &std::panic::PanicHookInfo) {
    CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
    let site = info.location().map_or_else(|| "unknown".to_string(), |l| format!("{}:{}", l.file(), l.line()));
    let mut sites = PANIC_SITES.lock().unwrap_or_else(|e| e.into_inner());
    if !sites.contains(&site) {
        sites.push(site);
    }
}

#[test]
fn mutated_files_decode_or_fail_cleanly_within_bounds() {
    let seeds = seeds();
    let deadline = env_number("SMAI_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let cases = env_number("SMAI_FUZZ_CASES").map_or(DEFAULT_CASES, |c| c as u32);
    // Counted, not printed: a caught panic is handled, but it is a library bug worth knowing.
    std::panic::set_hook(Box::new(count_panic));
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..8));
    let batch = if deadline.is_some() { 2_000 } else { cases };
    let (started, run) = (Instant::now(), AtomicU64::new(0));
    let outcome = loop {
        // A runner counts its successes and stops at `cases`: each batch needs a fresh one
        // (freshly seeded, so batches explore different files).
        let mut runner = TestRunner::new(Config { cases: batch, failure_persistence: None, ..Config::default() });
        let outcome = runner.run(&strategy, |(seed, mutations)| {
            run.fetch_add(1, Ordering::Relaxed);
            let mut file = seeds[seed].clone();
            mutations.iter().for_each(|m| apply(&mut file, m, &seeds));
            check(&file)
        });
        if outcome.is_err() || deadline.is_none_or(|d| Instant::now() >= d) {
            break outcome;
        }
    };
    let run = run.load(Ordering::Relaxed);
    let _ = std::panic::take_hook();
    let panics = CAUGHT_PANICS.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("decode fuzz: {run} cases in {seconds:.0} s, {panics} panics caught inside decoders");
    for site in PANIC_SITES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("  caught panic at {site}");
    }
    outcome.unwrap_or_else(|e| panic!("{e}"));
}
