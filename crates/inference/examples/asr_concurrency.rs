//! Several transcriptions submitted at once to one engine, with the waiting requests' first
//! windows encoded as one batch (`max_batch` 4) or one at a time (`max_batch` 1): total time
//! until all are done and mean time to each request's first segment. Rounds alternate the two.
//!
//!     cargo run --release -p smai-inference --example asr_concurrency -- tiny.en 4 3
//!     SMAI_DEVICE=cuda cargo run --release --features cuda -p smai-inference --example asr_concurrency

use smai_core::{TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::cli::eval::read_manifest;
use smai_inference::WhisperEngine;
use std::path::PathBuf;
use std::time::Instant;

fn run(engine: &WhisperEngine, model: &str, files: &[Vec<u8>]) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut streams = Vec::new();
    for audio in files {
        let options = TranscribeOptions {
            model: Some(model.to_string()),
            language: Some("en".into()),
            temperature: Some(0.0),
            beam_size: Some(1),
            ..Default::default()
        };
        streams.push(engine.transcribe(audio.clone(), options)?);
    }
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                let mut first = None;
                while let Some(event) = s.blocking_recv() {
                    if let Ok(TranscriptEvent::Segment(_)) = event {
                        first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                    }
                }
                first.unwrap_or(f64::NAN)
            })
        })
        .collect();
    let firsts: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap_or(f64::NAN)).collect();
    Ok((started.elapsed().as_secs_f64(), firsts.iter().sum::<f64>() / firsts.len() as f64))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).cloned().unwrap_or_else(|| "tiny.en".into());
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(4);
    let rounds: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3);
    let models = PathBuf::from(std::env::var("SMAI_MODELS_DIR").unwrap_or_else(|_| "models/cache".into()));
    let eval = PathBuf::from(std::env::var("SMAI_EVAL_DIR").unwrap_or_else(|_| "/work/shared/eval/dev".into()));
    let rows = read_manifest(&eval)?;
    let files: Vec<Vec<u8>> =
        rows.iter().take(n).map(|r| std::fs::read(eval.join(&r.path))).collect::<Result<_, _>>()?;
    let ids = [model.clone()];
    // SMAI_DEVICE (cpu, cuda, metal) picks where both engines run.
    let device =
        smai_inference::engine::device_from_name(&std::env::var("SMAI_DEVICE").unwrap_or_else(|_| "cpu".into()))?;
    let engines = [
        (1, WhisperEngine::load_batched(&models, &ids, &device, n, 1)?),
        (n, WhisperEngine::load_batched(&models, &ids, &device, n, n)?),
    ];
    run(&engines[0].1, &model, &files[..1])?; // warm-up
    println!("{model}: {n} concurrent requests, {rounds} rounds");
    let mut totals = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let i = if round % 2 == 0 { k } else { 1 - k };
            let (batch, engine) = &engines[i];
            let (total, first) = run(engine, &model, &files)?;
            println!("  max_batch {batch}: all done in {total:.2} s, mean first segment {first:.2} s");
            totals[i].push(total);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean total: unbatched {:.2} s, batched {:.2} s (ratio {:.2})",
        mean(&totals[0]),
        mean(&totals[1]),
        mean(&totals[1]) / mean(&totals[0])
    );
    Ok(())
}
