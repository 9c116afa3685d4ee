//! Speed of Piper voice synthesis beside piper-tts (onnxruntime) on the same voice and texts:
//! time per synthesis of a short and a long text (and real-time factor), time to the first
//! chunk of a three-sentence paragraph, peak memory. The first chunk is timed twice: with each
//! sentence peak-normalised (both sides' default: the first sentence whole), and without
//! (smai's streaming default, as its WebSocket speaks: the first piece of the first sentence;
//! piper-tts with `normalize_audio=False`, still the first sentence whole). piper-tts runs as a child process
//! (`examples/piper_tts_bench.py`); rounds alternate the two sides since the machine may be busy.
//!
//!     pip install piper-tts==1.8.0
//!     cargo run --release -p smai-tools --example tts_bench -- --rounds 2
//!
//! Texts and repeats are shared with the Python script through `bench_texts.json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use smai_core::{SpeechOptions, Synthesizer};
use smai_inference::tts::voices::{model_path, DEFAULT_MODEL};
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};
use smai_inference::whisper::ComputeTypes;
use smai_tools::bench::peak_rss_mib;
use smai_tools::default_models_dir;

#[derive(Parser)]
struct Args {
    /// Rounds; each measures both sides once.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Only our side (for profiling).
    #[arg(long)]
    ours_only: bool,
    /// Number type of our vocoder: float32 or bfloat16 (CPUs with AVX-512 BF16).
    #[arg(long, default_value = "float32", value_parser = ComputeTypes::parse)]
    compute_type: ComputeTypes,
    /// Python with piper-tts installed.
    #[arg(long, default_value = "python3")]
    python: String,
}

#[derive(serde::Deserialize)]
struct Texts {
    short: String,
    long: String,
    paragraph: String,
    repeats: usize,
}

#[derive(serde::Deserialize, Clone, Copy)]
struct Timing {
    seconds: f64,
    audio_seconds: f64,
}

#[derive(serde::Deserialize, Clone, Copy)]
struct Figures {
    load_s: f64,
    short: Timing,
    long: Timing,
    first_chunk_s: f64,
    /// Without peak normalisation.
    first_streamed_s: f64,
    peak_rss_mib: f64,
}

fn ours(engine: &PiperSynthesizer, texts: &Texts, load_s: f64) -> Figures {
    let options = |normalize: bool| SpeechOptions { voice: "joe".into(), speed: 1.0, normalize };
    let run = |text: &str, normalize: bool| -> (f64, f64, f64) {
        let start = Instant::now();
        let mut stream = engine.synthesize(text.to_string(), options(normalize)).expect("synthesis starts");
        let mut first = None;
        let (mut samples, mut rate) = (0usize, 1);
        while let Some(chunk) = stream.blocking_recv() {
            let chunk = chunk.expect("chunk");
            first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            samples += chunk.samples.len();
            rate = chunk.sample_rate;
        }
        (start.elapsed().as_secs_f64(), first.unwrap_or(f64::NAN), samples as f64 / rate as f64)
    };
    run(&texts.short, true); // warm-up
    let timing = |text: &str| {
        let (mut seconds, mut audio_seconds) = (0.0, 0.0);
        for _ in 0..texts.repeats {
            let (s, _, a) = run(text, true);
            seconds += s;
            audio_seconds += a;
        }
        let n = texts.repeats as f64;
        Timing { seconds: seconds / n, audio_seconds: audio_seconds / n }
    };
    let (short, long) = (timing(&texts.short), timing(&texts.long));
    let first = |normalize: bool| {
        let mut firsts: Vec<f64> = (0..texts.repeats).map(|_| run(&texts.paragraph, normalize).1).collect();
        firsts.sort_by(f64::total_cmp);
        firsts[firsts.len() / 2]
    };
    let (first_chunk_s, first_streamed_s) = (first(true), first(false));
    Figures { load_s, short, long, first_chunk_s, first_streamed_s, peak_rss_mib: peak_rss_mib() }
}

fn piper(args: &Args) -> Figures {
    let onnx = model_path(&default_models_dir(), DEFAULT_MODEL);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/piper_tts_bench.py");
    let out = Command::new(&args.python).arg(script).arg(onnx).output().expect("python runs");
    assert!(out.status.success(), "piper-tts side failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).expect("figures line");
    serde_json::from_str(line).expect("figures")
}

fn print(name: &str, f: &Figures) {
    println!(
        "  {name:<10} short {:.3} s ({:.2} s audio, RTF {:.3})  long {:.3} s ({:.2} s audio, RTF {:.3})  \
         first chunk {:.3} s (not normalized {:.3} s)  load {:.2} s  peak RSS {:.0} MiB",
        f.short.seconds,
        f.short.audio_seconds,
        f.short.seconds / f.short.audio_seconds,
        f.long.seconds,
        f.long.audio_seconds,
        f.long.seconds / f.long.audio_seconds,
        f.first_chunk_s,
        f.first_streamed_s,
        f.load_s,
        f.peak_rss_mib
    );
}

fn main() {
    let args = Args::parse();
    let texts: Texts = serde_json::from_str(include_str!("bench_texts.json")).expect("bench_texts.json");
    let started = Instant::now();
    let engine =
        PiperSynthesizer::load_as(&VoicesConfig::default(), &default_models_dir(), &Device::Cpu, 4, &args.compute_type)
            .unwrap_or_else(|e| panic!("{e}: {:?}", e.detail));
    let load_s = started.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "tts bench: voice {DEFAULT_MODEL} ({}), {} repeats per text, {threads} cores",
        args.compute_type.for_model(DEFAULT_MODEL),
        texts.repeats
    );
    let best = |a: f64, b: f64| a.min(b);
    let (mut short, mut long, mut first, mut streamed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        println!("round {}", round + 1);
        let theirs = (!args.ours_only && round % 2 == 1).then(|| piper(&args));
        let mine = ours(&engine, &texts, load_s);
        let theirs = theirs.or_else(|| (!args.ours_only).then(|| piper(&args)));
        print("smai", &mine);
        if let Some(t) = theirs {
            print("piper-tts", &t);
            short.push(mine.short.seconds / t.short.seconds);
            long.push(mine.long.seconds / t.long.seconds);
            first.push(mine.first_chunk_s / t.first_chunk_s);
            streamed.push(mine.first_streamed_s / t.first_streamed_s);
            println!(
                "  ratio smai/piper-tts: short {:.2}  long {:.2}  first chunk {:.2}  not normalized {:.2}",
                short[round], long[round], first[round], streamed[round]
            );
        }
    }
    if !short.is_empty() {
        let lowest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, best);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "ratio smai/piper-tts over {} rounds: short mean {:.2} (best {:.2})  long mean {:.2} (best {:.2})  \
             first chunk mean {:.2} (best {:.2})  not normalized mean {:.2} (best {:.2})",
            short.len(),
            mean(&short),
            lowest(&short),
            mean(&long),
            lowest(&long),
            mean(&first),
            lowest(&first),
            mean(&streamed),
            lowest(&streamed)
        );
    }
}
