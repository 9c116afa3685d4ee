//! Where a Piper voice's time goes: phonemes, text encoder with durations and prior sample,
//! flow, vocoder, each the median over `repeats` runs of the bench's short and long texts
//! (summed over a text's sentences). The flow's time is a sentence's first vocoding (flow and
//! vocoder) less its second, which finds the flow's output kept.
//!
//!     cargo run --release -p smai-tools --example tts_stages -- 20 [short|long]

use std::time::Instant;

use candle_core::Device;
use smai_inference::phonemize::{phonemes_to_ids, phonemize};
use smai_inference::tts::voices::{model_path, DEFAULT_MODEL};
use smai_inference::vits::Voice;
use smai_tools::default_models_dir;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let repeats: usize = std::env::args().nth(1).map_or(20, |a| a.parse().expect("repeats"));
    let texts: serde_json::Value = serde_json::from_str(include_str!("bench_texts.json")).expect("texts");
    let voice = Voice::load(&model_path(&default_models_dir(), DEFAULT_MODEL), None, &Device::Cpu).expect("voice");
    let scales = voice.config.inference;
    let only = std::env::args().nth(2);
    for name in ["short", "long"].into_iter().filter(|n| only.as_deref().is_none_or(|o| o == *n)) {
        let text = texts[name].as_str().expect("text");
        let (mut phon, mut lat, mut flow, mut dec, mut frames) = (vec![], vec![], vec![], vec![], 0);
        for _ in 0..repeats {
            let start = Instant::now();
            let sentences = phonemize(voice.config.espeak_voice(), text).expect("phonemes");
            phon.push(start.elapsed().as_secs_f64());
            let (mut l, mut f, mut d) = (0.0, 0.0, 0.0);
            for phonemes in sentences {
                let ids = phonemes_to_ids(&phonemes, &voice.config.phoneme_id_map).expect("ids");
                let start = Instant::now();
                let latent = voice.model.latent(&ids, scales, 0).expect("latent").expect("frames");
                l += start.elapsed().as_secs_f64();
                let start = Instant::now();
                voice.model.vocode(&latent, 0..latent.frames).expect("audio");
                let both = start.elapsed().as_secs_f64();
                let start = Instant::now();
                voice.model.vocode(&latent, 0..latent.frames).expect("audio");
                let vocoder = start.elapsed().as_secs_f64();
                (f, d) = (f + both - vocoder, d + vocoder);
                frames = latent.frames;
            }
            lat.push(l);
            flow.push(f);
            dec.push(d);
        }
        println!(
            "{name}: phonemes {:.1} ms, encoder+durations {:.1} ms, flow {:.1} ms, vocoder {:.1} ms (last sentence {frames} frames)",
            median(phon) * 1e3,
            median(lat) * 1e3,
            median(flow) * 1e3,
            median(dec) * 1e3
        );
    }
}
