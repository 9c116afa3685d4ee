//! Speed of Piper voice synthesis beside piper-tts (onnxruntime) on the same voice and texts:
//! time per synthesis of a short and a long text (and real-time factor), time to the first
//! chunk of a three-sentence paragraph, peak memory. The first chunk is timed twice: with each
//! sentence peak-normalised (both sides' default: the first sentence whole), and without
//! (smai's streaming default, as its WebSocket speaks: the first piece of the first sentence;
//! piper-tts with `normalize_audio=False`, still the first sentence whole).
//!
//! piper-tts runs in a child process (`examples/piper_tts_bench.py`) that stays up and answers
//! one synthesis at a time. Each measure is taken in pairs, the side going first alternating:
//! two syntheses on one side, then two on the other. The first of a side's two runs after the
//! other side's work (as a server's request after another process has run), the second right
//! after its own (as under steady load); both are reported. Each side's turn starts after a
//! quiet pause (`--settle-ms`, as `asr-bench`), so that it does not share the cores with the
//! threads piper-tts's onnxruntime leaves spinning for a while after it answers. The machine may
//! be shared, and a busy spell then slows both halves of a pair rather than one side's whole
//! series. The ratio reported is the median of the pairs' ratios, with its quartiles and the
//! ratio of the two sides' means.
//!
//!     pip install piper-tts==1.8.0
//!     cargo run --release -p smai-tools --example tts_bench -- --pairs 11

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use clap::Parser;
use smai_core::{SpeechOptions, Synthesizer};
use smai_inference::tts::voices::{model_path, DEFAULT_MODEL};
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};
use smai_inference::whisper::ComputeTypes;
use smai_tools::bench::{median, peak_rss_mib, settle, PairRatios, Side, SETTLE_MS};
use smai_tools::default_models_dir;

#[derive(Parser)]
struct Args {
    /// Pairs per measure; each times two syntheses on each side.
    #[arg(long, default_value_t = 11)]
    pairs: usize,
    /// Milliseconds of quiet before each side's turn (as `asr-bench`'s `--settle-ms`).
    #[arg(long, default_value_t = SETTLE_MS)]
    settle_ms: u64,
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
}

/// One synthesis: its whole time, the time to its first chunk, and the audio it made.
#[derive(serde::Deserialize, Clone, Copy)]
struct Sample {
    seconds: f64,
    first_s: f64,
    audio_seconds: f64,
}

/// What a measure synthesises and which of its times it reads.
struct Measure<'a> {
    name: &'static str,
    text: &'a str,
    normalize: bool,
    first_chunk: bool,
}

impl Measure<'_> {
    fn read(&self, sample: &Sample) -> f64 {
        if self.first_chunk {
            sample.first_s
        } else {
            sample.seconds
        }
    }
}

fn synthesize_ours(engine: &PiperSynthesizer, text: &str, normalize: bool) -> Sample {
    let options = SpeechOptions { voice: "joe".into(), speed: 1.0, normalize };
    let start = Instant::now();
    let mut stream = engine.synthesize(text.to_string(), options).expect("synthesis starts");
    let mut first = None;
    let (mut samples, mut rate) = (0usize, 1);
    while let Some(chunk) = stream.blocking_recv() {
        let chunk = chunk.expect("chunk");
        first.get_or_insert_with(|| start.elapsed().as_secs_f64());
        samples += chunk.samples.len();
        rate = chunk.sample_rate;
    }
    Sample {
        seconds: start.elapsed().as_secs_f64(),
        first_s: first.unwrap_or(f64::NAN),
        audio_seconds: samples as f64 / rate as f64,
    }
}

/// piper-tts's side: `examples/piper_tts_bench.py` on the same voice file.
fn start_peer(python: &str) -> Side {
    let onnx = model_path(&default_models_dir(), DEFAULT_MODEL);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/piper_tts_bench.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(onnx);
    Side::start("piper-tts", cmd).unwrap_or_else(|e| panic!("piper-tts side: {e}"))
}

fn synthesize_peer(peer: &mut Side, text: &str, normalize: bool) -> Sample {
    let request = serde_json::json!({ "text": text, "normalize": normalize });
    peer.ask(&request).unwrap_or_else(|e| panic!("piper-tts side: {e}"))
}

/// A side's times of one measure: each pair's first synthesis, after the other side's and the
/// pause (the other side's work has taken the caches meanwhile, as another process would
/// between two requests to a server), and its second, right after its own (as under steady
/// load).
#[derive(Default)]
struct Runs {
    after_other: Vec<f64>,
    back_to_back: Vec<f64>,
}

impl Runs {
    fn push(&mut self, mut twice: impl FnMut() -> f64) {
        self.after_other.push(twice());
        self.back_to_back.push(twice());
    }
}

fn print_ratio(label: &str, mine: &[f64], theirs: &[f64]) -> f64 {
    print!("    {label:<21} smai {:.3} s", median(mine));
    if theirs.is_empty() {
        println!();
        return f64::NAN;
    }
    let ratios = PairRatios::of(mine, theirs);
    println!(
        "  piper-tts {:.3} s  ratio {:.2} (quartiles {:.2}-{:.2}, of means {:.2})",
        median(theirs),
        ratios.median,
        ratios.quartiles.0,
        ratios.quartiles.1,
        ratios.of_totals
    );
    ratios.median
}

/// Times one measure in pairs and prints its lines; returns the median ratios after the other
/// side and back to back (NaN without a peer).
fn run_measure(engine: &PiperSynthesizer, peer: &mut Option<Side>, measure: &Measure, args: &Args) -> [f64; 2] {
    let (mut mine, mut theirs, mut audio) = (Runs::default(), Runs::default(), 0.0);
    for pair in 0..args.pairs.max(1) {
        let peer_first = pair % 2 == 1;
        let mut peer_side = |peer: &mut Option<Side>| {
            if let Some(p) = peer.as_mut() {
                settle(args.settle_ms);
                theirs.push(|| measure.read(&synthesize_peer(p, measure.text, measure.normalize)));
            }
        };
        if peer_first {
            peer_side(peer);
        }
        settle(args.settle_ms);
        mine.push(|| {
            let sample = synthesize_ours(engine, measure.text, measure.normalize);
            audio = sample.audio_seconds;
            measure.read(&sample)
        });
        if !peer_first {
            peer_side(peer);
        }
    }
    let audio_note = if measure.first_chunk { String::new() } else { format!(" ({audio:.2} s of audio)") };
    println!("  {}{audio_note}", measure.name);
    [
        // Without a peer the first run follows the last pair's second, not other work.
        print_ratio(
            if peer.is_some() { "after the other side" } else { "first of two" },
            &mine.after_other,
            &theirs.after_other,
        ),
        print_ratio("back to back", &mine.back_to_back, &theirs.back_to_back),
    ]
}

fn main() {
    let args = Args::parse();
    let texts: Texts = serde_json::from_str(include_str!("bench_texts.json")).expect("bench_texts.json");
    let started = Instant::now();
    let engine =
        PiperSynthesizer::load_as(&VoicesConfig::default(), &default_models_dir(), &Device::Cpu, 4, &args.compute_type)
            .unwrap_or_else(|e| panic!("{e}: {:?}", e.detail));
    let load_s = started.elapsed().as_secs_f64();
    let mut peer = (!args.ours_only).then(|| start_peer(&args.python));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "tts bench: voice {DEFAULT_MODEL} ({}), {} pairs per measure, {} ms pause before each turn, {threads} cores; \
         medians",
        args.compute_type.for_model(DEFAULT_MODEL),
        args.pairs,
        args.settle_ms
    );
    let measures = [
        Measure { name: "short sentence", text: &texts.short, normalize: true, first_chunk: false },
        Measure { name: "long text", text: &texts.long, normalize: true, first_chunk: false },
        Measure { name: "first chunk", text: &texts.paragraph, normalize: true, first_chunk: true },
        Measure { name: "first chunk, not normalized", text: &texts.paragraph, normalize: false, first_chunk: true },
    ];
    for measure in &measures {
        // Warm-up, not counted.
        synthesize_ours(&engine, measure.text, measure.normalize);
        if let Some(p) = peer.as_mut() {
            synthesize_peer(p, measure.text, measure.normalize);
        }
    }
    let ratios: Vec<[f64; 2]> = measures.iter().map(|m| run_measure(&engine, &mut peer, m, &args)).collect();
    print!("  load {load_s:.2} s, peak RSS {:.0} MiB", peak_rss_mib());
    match peer.as_mut() {
        Some(p) => {
            let rss = p.peak_rss_mib().unwrap_or(f64::NAN);
            println!("; piper-tts load {:.2} s, peak RSS {rss:.0} MiB ({})", p.load_s, p.versions)
        }
        None => println!(),
    }
    if peer.is_some() {
        for (i, label) in ["after the other side", "back to back"].iter().enumerate() {
            let line: Vec<String> =
                measures.iter().zip(&ratios).map(|(m, r)| format!("{} {:.2}", m.name, r[i])).collect();
            println!("ratio smai/piper-tts, {label} (median of {} pairs): {}", args.pairs, line.join(", "));
        }
    }
}
