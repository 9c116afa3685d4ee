//! `smai-tools asr-bench`: our engine and faster-whisper on the same dev files, same weights (the
//! CTranslate2 directory both load) and the same decoding settings (float32 or int8, bfloat16
//! against faster-whisper float32; greedy, temperature 0, no conditioning on previous text,
//! English). Each side runs in its own child process, started once per model, so that load time
//! and peak memory are measured the same way; the children then transcribe one file at a time
//! on request: a block of files (`--block`, one by default) on one side, then on the other, the
//! side going first alternating, and each file's two times make a pair. The machine may be
//! shared and noisy, and a busy spell then slows both halves of a pair rather than one side's
//! whole series. Each turn starts after a quiet pause (`--settle-ms`), so that it never shares
//! the cores with threads the other process leaves spinning once it has answered.

use crate::eval::{read_manifest, reference_options, transcribe_file};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smai_core::Error;
use smai_inference::whisper::{ComputeType, WhisperModel, WhisperOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child process that runs our side (value: the model id).
const CHILD_ENV: &str = "SMAI_ASR_BENCH_CHILD";

#[derive(Debug, Clone, Args)]
pub struct AsrBenchArgs {
    /// Model ids to compare (CTranslate2 directories under the models dir).
    #[arg(long, value_delimiter = ',', default_value = "tiny.en,base")]
    pub models: Vec<String>,
    /// The first N files of the dev manifest.
    #[arg(long, default_value_t = 10)]
    pub files: usize,
    /// Rounds per model; each transcribes every file once on each side.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Files each side transcribes in a row before the other takes its turn: 1 runs each file
    /// right after the other side's work (as a server's request after another process has
    /// run), the number of files runs each side's round under steady load.
    #[arg(long, default_value_t = 1)]
    pub block: usize,
    /// Milliseconds of quiet before each side's turn (see [`SETTLE_MS`]).
    #[arg(long, default_value_t = SETTLE_MS)]
    pub settle_ms: u64,
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

/// A request to a side's child: transcribe a file, or report peak memory.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    File(PathBuf),
    PeakRss,
}

#[derive(Debug, Serialize, Deserialize)]
struct Loaded {
    load_s: f64,
    /// A Python side's packages and their installed versions.
    #[serde(default)]
    versions: BTreeMap<String, String>,
}

/// One file transcribed by one side.
#[derive(Debug, Serialize, Deserialize)]
struct Transcribed {
    seconds: f64,
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PeakRss {
    peak_rss_mib: f64,
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

fn say(value: &impl Serialize) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(value).map_err(Error::internal)?).map_err(Error::internal)?;
    out.flush().map_err(Error::internal)
}

/// Our side, in the child process: load, then answer requests from stdin until it closes.
fn serve_ours(args: &AsrBenchArgs, model_id: &str) -> Result<(), Error> {
    let started = Instant::now();
    let dir = args.models_dir.join(model_id);
    let mut model =
        WhisperModel::load_as(model_id, &dir, &candle_core::Device::Cpu, args.compute_type).map_err(Error::internal)?;
    say(&Loaded { load_s: started.elapsed().as_secs_f64(), versions: BTreeMap::new() })?;
    let opts = WhisperOptions { beam_size: args.beam_size, ..reference_options() };
    for line in std::io::stdin().lines() {
        match serde_json::from_str(&line.map_err(Error::internal)?).map_err(Error::internal)? {
            Request::File(path) => {
                let started = Instant::now();
                let text = transcribe_file(&mut model, &path, &opts)?.text;
                say(&Transcribed { seconds: started.elapsed().as_secs_f64(), text })?;
            }
            Request::PeakRss => say(&PeakRss { peak_rss_mib: peak_rss_mib() })?,
        }
    }
    Ok(())
}

/// Quiet time before each side's turn, by default. A peer's thread pool may keep its threads
/// spinning after it has answered, waiting for more work: onnxruntime's (piper-tts) burn about
/// 40 ms of a core that way on a 2-core machine. A turn started at once would share the cores
/// with them, and its time would measure the peer's idle threads. The pause leaves the caches as
/// the other side's work left them.
pub const SETTLE_MS: u64 = 200;

/// Waits `ms` milliseconds before a side's turn (see [`SETTLE_MS`]).
pub fn settle(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A bench side's child process, one JSON request per line in and one JSON answer per line out,
/// the first line out `{"load_s": ...}` once its model is loaded; `"peak_rss"` asks for its
/// peak memory. Killed when dropped.
pub struct Side {
    pub name: &'static str,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    /// Its model's load time, as it reported.
    pub load_s: f64,
    /// The versions it reported of the packages it runs on, "name version, ..." (empty for ours).
    pub versions: String,
}

impl Side {
    pub fn start(name: &'static str, mut cmd: Command) -> Result<Side, Error> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::internal(format!("{name}: {e}")))?;
        let input = child.stdin.take().ok_or_else(|| Error::internal("no stdin"))?;
        let output = BufReader::new(child.stdout.take().ok_or_else(|| Error::internal("no stdout"))?);
        let mut side = Side { name, child, input, output, load_s: 0.0, versions: String::new() };
        let loaded = side.answer::<Loaded>()?;
        side.load_s = loaded.load_s;
        side.versions = loaded.versions.iter().map(|(p, v)| format!("{p} {v}")).collect::<Vec<_>>().join(", ");
        Ok(side)
    }

    fn answer<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let mut line = String::new();
        self.output.read_line(&mut line).map_err(Error::internal)?;
        serde_json::from_str(&line).map_err(|e| Error::internal(format!("{} stopped ({e}): {line:?}", self.name)))
    }

    pub fn ask<T: DeserializeOwned>(&mut self, request: &impl Serialize) -> Result<T, Error> {
        let line = serde_json::to_string(request).map_err(Error::internal)?;
        writeln!(self.input, "{line}").and_then(|_| self.input.flush()).map_err(Error::internal)?;
        self.answer()
    }

    fn transcribe(&mut self, path: &Path) -> Result<Transcribed, Error> {
        self.ask(&Request::File(path.to_path_buf()))
    }

    pub fn peak_rss_mib(&mut self) -> Result<f64, Error> {
        Ok(self.ask::<PeakRss>(&Request::PeakRss)?.peak_rss_mib)
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ours(model_id: &str) -> Result<Side, Error> {
    let mut cmd = Command::new(std::env::current_exe().map_err(Error::internal)?);
    cmd.args(std::env::args_os().skip(1)).env(CHILD_ENV, model_id);
    Side::start("smai", cmd)
}

fn start_faster_whisper(args: &AsrBenchArgs, model_id: &str) -> Result<Side, Error> {
    let mut cmd = Command::new(&args.python);
    // CTranslate2's OpenMP threads spin while waiting by default, which collapses on a busy
    // machine (several times slower); passive waiting gives it its best time here.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        cmd.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    cmd.arg(&args.script).arg(args.models_dir.join(model_id));
    cmd.arg(args.beam_size.to_string()).arg(peer_compute_type(args).name());
    Side::start("faster-whisper", cmd)
}

fn peer_compute_type(args: &AsrBenchArgs) -> ComputeType {
    match args.peer_compute_type.unwrap_or(args.compute_type).resolve(&candle_core::Device::Cpu) {
        ComputeType::Bfloat16 => ComputeType::Float32,
        other => other,
    }
}

/// One side's seconds per file, in the order the pairs ran, and its texts of the first round.
#[derive(Default)]
struct Series {
    seconds: Vec<f64>,
    texts: Vec<String>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median of `values` (not empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}

/// Paired times compared, ours over theirs: the median of the pairs' ratios with its
/// quartiles, and the ratio of the two sides' totals.
pub struct PairRatios {
    pub median: f64,
    pub quartiles: (f64, f64),
    pub of_totals: f64,
}

impl PairRatios {
    /// From the two sides' times, pair by pair (same length, not empty).
    pub fn of(ours: &[f64], theirs: &[f64]) -> PairRatios {
        let mut ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a / b).collect();
        ratios.sort_by(f64::total_cmp);
        PairRatios {
            median: quantile(&ratios, 0.5),
            quartiles: (quantile(&ratios, 0.25), quantile(&ratios, 0.75)),
            of_totals: ours.iter().sum::<f64>() / theirs.iter().sum::<f64>(),
        }
    }
}

/// Runs the rounds: `block` files on one side, then the same files on the other, the side going
/// first alternating; each file's times on the two sides make a pair.
fn run_pairs(sides: &mut [Side], files: &[PathBuf], rounds: usize, args: &AsrBenchArgs) -> Result<Vec<Series>, Error> {
    let block = args.block;
    for side in sides.iter_mut() {
        side.transcribe(&files[0])?; // warm-up, not counted
    }
    let mut series: Vec<Series> = sides.iter().map(|_| Series::default()).collect();
    let mut turn = 0;
    for round in 0..rounds {
        for chunk in files.chunks(block.max(1)) {
            let mut done: Vec<Vec<Transcribed>> = sides.iter().map(|_| Vec::new()).collect();
            let mut order: Vec<usize> = (0..sides.len()).collect();
            if turn % 2 == 1 {
                order.reverse();
            }
            turn += 1;
            for k in order {
                settle(args.settle_ms);
                for file in chunk {
                    done[k].push(sides[k].transcribe(file)?);
                }
            }
            for (s, done) in series.iter_mut().zip(done) {
                for t in done {
                    s.seconds.push(t.seconds);
                    if round == 0 {
                        s.texts.push(t.text);
                    }
                }
            }
        }
    }
    Ok(series)
}

fn summarize(side: &mut Side, series: &Series, rounds: usize, audio_s: f64) -> Result<(), Error> {
    let per_round: f64 = series.seconds.iter().sum::<f64>() / rounds as f64;
    let rss = side.peak_rss_mib()?;
    let versions = if side.versions.is_empty() { String::new() } else { format!("  ({})", side.versions) };
    println!(
        "  {:<15} process {per_round:7.2} s per round (mean)  RTF {:.4}  load {:.2} s  peak RSS {rss:.0} MiB{versions}",
        side.name,
        per_round / audio_s,
        side.load_s
    );
    Ok(())
}

fn print_ratio(ours: &Series, theirs: &Series, rounds: usize) {
    let ratios = PairRatios::of(&ours.seconds, &theirs.seconds);
    let files = ours.texts.len();
    let round_ratios: Vec<f64> = (0..rounds)
        .map(|r| {
            let sum = |s: &Series| s.seconds[r * files..(r + 1) * files].iter().sum::<f64>();
            sum(ours) / sum(theirs)
        })
        .collect();
    let (low, high) = round_ratios.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
    let same = ours.texts.iter().zip(&theirs.texts).filter(|(a, b)| a == b).count();
    println!(
        "  ratio smai/faster-whisper: {:.2} (median of {} pairs, quartiles {:.2}-{:.2}; of sums {:.2}, rounds \
         {low:.2}-{high:.2})  (identical texts: {same} of {files})",
        ratios.median,
        ours.seconds.len(),
        ratios.quartiles.0,
        ratios.quartiles.1,
        ratios.of_totals,
    );
}

fn compare_model(args: &AsrBenchArgs, model_id: &str) -> Result<(), Error> {
    let mut rows = read_manifest(&args.eval_dir)?;
    rows.truncate(args.files.max(1));
    let files: Vec<PathBuf> = rows.iter().map(|r| args.eval_dir.join(&r.path)).collect();
    let audio_s: f64 = rows.iter().map(|r| r.duration).sum();
    let mut sides = vec![start_ours(model_id)?];
    if !args.ours_only {
        sides.push(start_faster_whisper(args, model_id)?);
    }
    let rounds = args.rounds.max(1);
    let series = run_pairs(&mut sides, &files, rounds, args)?;
    println!("{model_id}: {audio_s:.1} s of audio in {} files", files.len());
    for (side, s) in sides.iter_mut().zip(&series) {
        summarize(side, s, rounds, audio_s)?;
    }
    if let [ours, theirs] = &series[..] {
        print_ratio(ours, theirs, rounds);
    }
    Ok(())
}

/// Entry point: in the child it serves our side, otherwise it orchestrates and prints the table.
pub fn run_asr_bench(args: AsrBenchArgs) -> Result<(), Error> {
    if let Ok(model_id) = std::env::var(CHILD_ENV) {
        return serve_ours(&args, &model_id);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let omp = std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "PASSIVE".into());
    println!(
        "asr bench: first {} dev files, {} rounds, blocks of {} files, {} ms pause before each turn, {threads} cores, \
         ours {} CPU, faster-whisper {} CPU, beam {}; faster-whisper OMP_WAIT_POLICY={omp}",
        args.files,
        args.rounds,
        args.block,
        args.settle_ms,
        args.compute_type.resolve(&candle_core::Device::Cpu),
        peer_compute_type(&args),
        args.beam_size
    );
    for model_id in &args.models {
        compare_model(&args, model_id)?;
    }
    Ok(())
}
