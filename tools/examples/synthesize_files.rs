//! Synthesizes each line of a text file into `<out>/<n>.wav` with a voice (default `joe`), at
//! the voice's default sampling scales, its vocoder in a compute type (default float32). Used by
//! `examples/intelligibility.py`.
//!
//!     cargo run -p smai-tools --example synthesize_files -- sentences.txt out/ [voice] [bfloat16]

use candle_core::Device;
use smai_core::{SpeechOptions, Synthesizer};
use smai_inference::audio::{encode, AudioFormat};
use smai_inference::tts::{PiperSynthesizer, VoicesConfig};
use smai_inference::whisper::ComputeTypes;
use smai_tools::default_models_dir;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (input, out) = match (args.get(1), args.get(2)) {
        (Some(i), Some(o)) => (i, std::path::PathBuf::from(o)),
        _ => {
            eprintln!("usage: synthesize_files SENTENCES.txt OUT_DIR [VOICE] [COMPUTE_TYPE]");
            std::process::exit(2);
        }
    };
    let voice = args.get(3).cloned().unwrap_or_else(|| "joe".into());
    let compute = ComputeTypes::parse(args.get(4).map_or("float32", String::as_str)).expect("compute type");
    let engine = PiperSynthesizer::load_as(&VoicesConfig::default(), &default_models_dir(), &Device::Cpu, 4, &compute)
        .unwrap_or_else(|e| panic!("{e}: {:?}", e.detail));
    std::fs::create_dir_all(&out).expect("output folder");
    let text = std::fs::read_to_string(input).expect("sentences file");
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut stream = engine
            .synthesize(line.to_string(), SpeechOptions { voice: voice.clone(), speed: 1.0, normalize: true })
            .expect("synthesis starts");
        let (mut samples, mut rate) = (Vec::new(), 22050);
        while let Some(chunk) = stream.blocking_recv() {
            let chunk = chunk.expect("chunk");
            rate = chunk.sample_rate;
            samples.extend(chunk.samples);
        }
        let wav = encode(&samples, rate, None, AudioFormat::Wav).expect("wav");
        std::fs::write(out.join(format!("{n}.wav")), wav).expect("write wav");
    }
}
