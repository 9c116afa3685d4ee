//! Where our Whisper time goes, stage by stage, over the first N dev files (one 30 s window
//! each for short files): audio decoding, log-mel, encoder, cross-attention keys/values, and
//! the rest of greedy decoding (full transcription minus the stages measured alone), with the
//! number of decoder calls it made.
//!
//!     cargo run --release -p smai-tools --example asr_stages -- tiny.en 10 [float32|int8]

use smai_inference::audio::{decode_to_mono_16k, mel::N_FRAMES};
use smai_inference::whisper::{transcribe, ComputeType, WhisperModel};
use smai_tools::eval::{read_manifest, reference_options};
use smai_tools::{default_eval_dir, default_models_dir};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_id = args.get(1).map_or("tiny.en", String::as_str);
    let limit: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10);
    let (models, eval) = (default_models_dir(), default_eval_dir());
    let compute =
        args.get(3).map_or(Ok(ComputeType::Float32), |c| ComputeType::parse_arg(c)).map_err(anyhow::Error::msg)?;
    let mut model = WhisperModel::load_as(model_id, &models.join(model_id), &candle_core::Device::Cpu, compute)?;
    let mut rows = read_manifest(&eval)?;
    rows.truncate(limit);
    let opts = reference_options();
    let (mut t_decode, mut t_mel, mut t_enc, mut t_cross, mut t_total) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for row in &rows {
        let bytes = std::fs::read(eval.join(&row.path))?;
        let t = Instant::now();
        let audio = decode_to_mono_16k(&bytes)?;
        t_decode += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (n_frames, feats) = model.mel.compute(&audio);
        t_mel += t.elapsed().as_secs_f64();
        let n_mels = model.mel.n_mels();
        let mut window = vec![0.0f32; n_mels * N_FRAMES];
        let size = N_FRAMES.min(n_frames);
        for m in 0..n_mels {
            window[m * N_FRAMES..m * N_FRAMES + size].copy_from_slice(&feats[m * n_frames..m * n_frames + size]);
        }
        let t = Instant::now();
        let enc = model.encode(&window)?;
        t_enc += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _state = model.start(&enc)?;
        t_cross += t.elapsed().as_secs_f64();
        let t = Instant::now();
        transcribe(&mut model, &audio, &opts, |_| true)?;
        t_total += t.elapsed().as_secs_f64();
    }
    let rest = t_total - t_mel - t_enc - t_cross;
    let steps = model.decoder_steps();
    println!(
        "{model_id}, {} files: audio decode {t_decode:.3} s, mel {t_mel:.3} s, encoder {t_enc:.3} s, \
              cross k/v {t_cross:.3} s, other decoding {rest:.3} s ({steps} decoder steps, {:.2} ms each), \
              transcribe total {t_total:.3} s",
        rows.len(),
        rest * 1e3 / steps.max(1) as f64
    );
    Ok(())
}
