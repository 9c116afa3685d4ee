//! Silero VAD frames per second: one live stream fed 20 ms chunks (every frame scored alone,
//! as beside a live session) and a whole file scored at once (the convolutions batched, as for
//! `vad_filter`). Run on one core to read it per core:
//! `RAYON_NUM_THREADS=1 taskset -c 0 cargo bench -p smai-benches --bench vad`.
//! Needs the weights (`smai models pull --only silero-vad`); skipped without them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smai_inference::asr::{SileroVad, VadStream};
use std::path::PathBuf;

/// Ten seconds of a speech-like signal at 16 kHz: a tone whose pitch and loudness move.
fn signal() -> Vec<f32> {
    (0..160_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let envelope = (t * 3.0).sin().abs();
            envelope * 0.3 * (2.0 * std::f32::consts::PI * (150.0 + 50.0 * (t * 0.7).sin()) * t).sin()
        })
        .collect()
}

fn weights() -> PathBuf {
    let root = std::env::var_os("SMAI_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/cache")));
    root.join("silero-vad/silero_vad_16k_op15.onnx")
}

fn vad(c: &mut Criterion) {
    let path = weights();
    let Ok(model) = SileroVad::load(&path) else {
        eprintln!("vad bench skipped: no weights at {} (smai models pull --only silero-vad)", path.display());
        return;
    };
    let audio = signal();
    let frames = audio.len() / 512;
    let mut group = c.benchmark_group("silero_vad");
    group.throughput(Throughput::Elements(frames as u64));
    group.bench_function("stream_20ms_chunks", |b| {
        b.iter(|| {
            let mut stream = VadStream::new();
            audio.chunks(320).map(|chunk| stream.push(&model, chunk).expect("scored").len()).sum::<usize>()
        })
    });
    group.bench_function("whole_file", |b| b.iter(|| model.probabilities(&audio).expect("scored").len()));
    group.finish();
}

criterion_group!(benches, vad);
criterion_main!(benches);
