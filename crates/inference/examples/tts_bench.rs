//! Speed of Piper voice synthesis: real-time factor on a short and a long text, time to the
//! first streamed chunk of a three-sentence paragraph, peak memory. Run beside
//! `examples/piper_tts_bench.py` (same texts, piper-tts on onnxruntime) to compare:
//!
//!     cargo run --release -p smai-inference --example tts_bench
//!     python crates/inference/examples/piper_tts_bench.py models/cache/en_US-joe-medium/en_US-joe-medium.onnx
//!
//! Texts and scales are shared with the Python script through `bench_texts.json`.

use std::time::Instant;

use candle_core::Device;
use smai_core::SpeechOptions;
use smai_inference::tts::voices::default_models_dir;
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};

#[derive(serde::Deserialize)]
struct Texts {
    short: String,
    long: String,
    paragraph: String,
    repeats: usize,
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let texts: Texts =
        serde_json::from_str(include_str!("bench_texts.json")).expect("bench_texts.json");
    let started = Instant::now();
    let engine = PiperSynthesizer::load(
        &VoicesConfig::default(),
        &default_models_dir(),
        &Device::Cpu,
        4,
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", e.detail));
    println!("load: {:.2} s", started.elapsed().as_secs_f64());
    let options = SpeechOptions {
        voice: "joe".into(),
        speed: 1.0,
    };
    let run = |text: &str| -> (f64, f64, f64) {
        let start = Instant::now();
        let mut stream = engine
            .synthesize_with_noise(text.to_string(), &options, None)
            .expect("synthesis starts");
        let mut first = None;
        let mut samples = 0usize;
        let mut rate = 1;
        while let Some(chunk) = stream.blocking_recv() {
            let chunk = chunk.expect("chunk");
            first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            samples += chunk.samples.len();
            rate = chunk.sample_rate;
        }
        (
            start.elapsed().as_secs_f64(),
            first.unwrap_or(f64::NAN),
            samples as f64 / rate as f64,
        )
    };
    run(&texts.short); // warm-up
    for (name, text) in [("short", &texts.short), ("long", &texts.long)] {
        let mut total = 0.0;
        let mut audio = 0.0;
        for _ in 0..texts.repeats {
            let (secs, _, audio_secs) = run(text);
            total += secs;
            audio += audio_secs;
        }
        let n = texts.repeats as f64;
        println!(
            "{name}: {:.3} s per synthesis for {:.2} s of audio (real-time factor {:.3})",
            total / n,
            audio / n,
            total / audio
        );
    }
    let mut firsts = Vec::new();
    for _ in 0..texts.repeats {
        firsts.push(run(&texts.paragraph).1);
    }
    firsts.sort_by(f64::total_cmp);
    println!(
        "paragraph: first chunk after {:.3} s (median of {})",
        firsts[firsts.len() / 2],
        firsts.len()
    );
    println!("peak memory: {:.0} MiB", peak_rss_mib());
}
