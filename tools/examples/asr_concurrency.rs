//! Several transcriptions submitted at once to one engine: total time until all are done and
//! mean time to each request's first segment. Container decoding and mel run on the pool
//! while the model works on the request before, so the model thread is not kept waiting.
//!
//!     cargo run --release -p smai-tools --example asr_concurrency -- tiny.en 4 3
//!     SMAI_DEVICE=cuda cargo run --release --features cuda -p smai-tools --example asr_concurrency

use smai_core::{TranscribeOptions, Transcriber, TranscriptEvent};
use smai_inference::WhisperEngine;
use smai_tools::eval::read_manifest;
use smai_tools::{default_eval_dir, default_models_dir};
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
    let (models, eval) = (default_models_dir(), default_eval_dir());
    let rows = read_manifest(&eval)?;
    let files: Vec<Vec<u8>> =
        rows.iter().take(n).map(|r| std::fs::read(eval.join(&r.path))).collect::<Result<_, _>>()?;
    // SMAI_DEVICE (cpu, cuda, metal) picks where the engine runs.
    let device = smai_inference::device_from_name(&std::env::var("SMAI_DEVICE").unwrap_or_else(|_| "cpu".into()))?;
    let engine = WhisperEngine::load(&models, std::slice::from_ref(&model), &device, n)?;
    run(&engine, &model, &files[..1])?; // warm-up
    println!("{model} on {}: {n} concurrent requests, {rounds} rounds", engine.device_name());
    let mut totals = Vec::new();
    for _ in 0..rounds {
        let (total, first) = run(&engine, &model, &files)?;
        println!("  all done in {total:.2} s, mean first segment {first:.2} s");
        totals.push(total);
    }
    println!("mean total {:.2} s", totals.iter().sum::<f64>() / totals.len() as f64);
    Ok(())
}
