//! `smai-tools asr-bench`: our engine and faster-whisper on the same dev files, same weights (the
//! CTranslate2 directory both load) and the same decoding settings (float32 or int8, bfloat16
//! against faster-whisper float32; greedy, temperature 0, no conditioning on previous text,
//! English). Each side runs in its own child process so that load time, processing time and
//! peak memory are measured the same way; the rounds alternate which side goes first, since
//! the machine may be shared and noisy.

use crate::eval::{read_manifest, reference_options, transcribe_file};
use clap::Args;
use serde::{Deserialize, Serialize};
use smai_core::Error;
use smai_inference::whisper::{ComputeType, WhisperModel, WhisperOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Set in the child process that runs our side of one round (value: the model id).
const CHILD_ENV: &str = "SMAI_ASR_BENCH_CHILD";

#[derive(Debug, Clone, Args)]
pub struct AsrBenchArgs {
    /// Model ids to compare (CTranslate2 directories under the models dir).
    #[arg(long, value_delimiter = ',', default_value = "tiny.en,base")]
    pub models: Vec<String>,
    /// The first N files of the dev manifest.
    #[arg(long, default_value_t = 10)]
    pub files: usize,
    /// Rounds per model; each round runs both sides once, alternating which goes first.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Beams of the search on both sides (1: greedy; 5 is faster-whisper's and our default).
    #[arg(long, default_value_t = 1)]
    pub beam_size: usize,
    /// Our number type: float32, bfloat16 or int8 (faster-whisper's `compute_type`).
    #[arg(long, default_value = "float32", value_parser = ComputeType::parse_arg)]
    pub compute_type: ComputeType,
    /// faster-whisper's number type (default: ours; float32 when ours is bfloat16, which
    /// CTranslate2's CPU builds do not offer).
    #[arg(long, value_parser = ComputeType::parse_arg)]
    pub peer_compute_type: Option<ComputeType>,
    /// Only run our side (for profiling).
    #[arg(long)]
    pub ours_only: bool,
    /// Folder with manifest.tsv ($SMAI_EVAL_DIR, else ../shared/eval/dev beside the repository).
    #[arg(long, default_value_os_t = crate::default_eval_dir())]
    pub eval_dir: PathBuf,
    /// Folder of installed models ($SMAI_MODELS_DIR, else models/cache in the repository).
    #[arg(long, default_value_os_t = crate::default_models_dir())]
    pub models_dir: PathBuf,
    /// Python with faster-whisper installed.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The faster-whisper side.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/faster_whisper_bench.py"))]
    pub script: PathBuf,
}

/// What one side reports for one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideRun {
    pub load_s: f64,
    pub process_s: f64,
    pub audio_s: f64,
    pub peak_rss_mib: f64,
    pub texts: Vec<String>,
}

/// Peak resident memory of this process (VmHWM), MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Our side of a round, in the child process: load, transcribe, report on stdout.
fn run_ours(args: &AsrBenchArgs, model_id: &str) -> Result<SideRun, Error> {
    let started = Instant::now();
    let dir = args.models_dir.join(model_id);
    let mut model =
        WhisperModel::load_as(model_id, &dir, &candle_core::Device::Cpu, args.compute_type).map_err(Error::internal)?;
    let load_s = started.elapsed().as_secs_f64();
    let mut rows = read_manifest(&args.eval_dir)?;
    rows.truncate(args.files);
    let opts = WhisperOptions { beam_size: args.beam_size, ..reference_options() };
    let started = Instant::now();
    let mut texts = Vec::new();
    for row in &rows {
        texts.push(transcribe_file(&mut model, &args.eval_dir.join(&row.path), &opts)?.text);
    }
    Ok(SideRun {
        load_s,
        process_s: started.elapsed().as_secs_f64(),
        audio_s: rows.iter().map(|r| r.duration).sum(),
        peak_rss_mib: peak_rss_mib(),
        texts,
    })
}

/// Runs a child and reads the JSON line it prints last.
fn run_child(mut cmd: Command, what: &str) -> Result<SideRun, Error> {
    let out = cmd.output().map_err(|e| Error::internal(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).map_err(|e| Error::internal(format!("{what} output: {e}: {stdout}")))
}

fn ours_child(model_id: &str) -> Result<SideRun, Error> {
    let exe = std::env::current_exe().map_err(Error::internal)?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(CHILD_ENV, model_id);
    run_child(cmd, "our side")
}

fn faster_whisper_child(args: &AsrBenchArgs, model_id: &str) -> Result<SideRun, Error> {
    let mut cmd = Command::new(&args.python);
    // CTranslate2's OpenMP threads spin while waiting by default, which collapses on a busy
    // machine (several times slower); passive waiting gives it its best time here.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        cmd.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    cmd.arg(&args.script).arg(args.models_dir.join(model_id)).arg(&args.eval_dir).arg(args.files.to_string());
    cmd.arg(args.beam_size.to_string()).arg(peer_compute_type(args).name());
    run_child(cmd, "faster-whisper side")
}

fn peer_compute_type(args: &AsrBenchArgs) -> ComputeType {
    match args.peer_compute_type.unwrap_or(args.compute_type).resolve(&candle_core::Device::Cpu) {
        ComputeType::Bfloat16 => ComputeType::Float32,
        other => other,
    }
}

fn summarize(name: &str, runs: &[SideRun]) -> (f64, f64) {
    let best = runs.iter().map(|r| r.process_s).fold(f64::INFINITY, f64::min);
    let mean = runs.iter().map(|r| r.process_s).sum::<f64>() / runs.len() as f64;
    let audio = runs[0].audio_s;
    let rss = runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    let load = runs.iter().map(|r| r.load_s).fold(f64::INFINITY, f64::min);
    println!(
        "  {name:<15} process best {best:7.2} s  mean {mean:7.2} s  RTF {:.4}  load {load:.2} s  peak RSS {rss:.0} MiB",
        best / audio
    );
    (best, mean)
}

/// Entry point: in the child it runs our side, otherwise it orchestrates and prints the table.
pub fn run_asr_bench(args: AsrBenchArgs) -> Result<(), Error> {
    if let Ok(model_id) = std::env::var(CHILD_ENV) {
        let run = run_ours(&args, &model_id)?;
        println!("{}", serde_json::to_string(&run).map_err(Error::internal)?);
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let omp = std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "PASSIVE".into());
    println!(
        "asr bench: first {} dev files, {} rounds, {threads} cores, ours {} CPU, faster-whisper {} CPU, beam {}; \
         faster-whisper OMP_WAIT_POLICY={omp}",
        args.files,
        args.rounds,
        args.compute_type.resolve(&candle_core::Device::Cpu),
        peer_compute_type(&args),
        args.beam_size
    );
    for model_id in &args.models {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..args.rounds.max(1) {
            let ours_first = round % 2 == 0;
            if ours_first || args.ours_only {
                ours.push(ours_child(model_id)?);
            }
            if !args.ours_only {
                theirs.push(faster_whisper_child(&args, model_id)?);
                if !ours_first {
                    ours.push(ours_child(model_id)?);
                }
            }
        }
        println!("{model_id}: {:.1} s of audio in {} files", ours[0].audio_s, ours[0].texts.len());
        let (ours_best, ours_mean) = summarize("smai", &ours);
        if theirs.is_empty() {
            continue;
        }
        let (theirs_best, theirs_mean) = summarize("faster-whisper", &theirs);
        let same = ours[0].texts.iter().zip(&theirs[0].texts).filter(|(a, b)| a == b).count();
        println!(
            "  ratio smai/faster-whisper: best {:.2}  mean {:.2}  (identical texts: {same} of {})",
            ours_best / theirs_best,
            ours_mean / theirs_mean,
            ours[0].texts.len()
        );
    }
    Ok(())
}
