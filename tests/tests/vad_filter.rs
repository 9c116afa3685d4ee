//! `vad_filter=true` on the real models (tiny.en and the Silero VAD): a long file of two
//! utterances in long stretches of near-silence is transcribed with no text in the silences,
//! its segments and words on the file's own time line, its duration the whole file's. Fails,
//! rather than skips, when the models are missing (`smai models pull`).

use reqwest::multipart::{Form, Part};
use serde_json::Value;
use smai_e2e::real::{eval_dir, real_server, wav_samples};

const RATE: u32 = 16_000;

fn dev_clip(name: &str) -> Vec<i16> {
    let (samples, rate) = wav_samples(&eval_dir().join("cmu_arctic").join(name));
    assert_eq!(rate, RATE);
    samples
}

/// Faint noise, as a quiet room gives: never digital zero.
fn quiet(seconds: f64, seed: &mut u32) -> Vec<i16> {
    (0..(seconds * f64::from(RATE)) as usize)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((*seed >> 16) % 41) as i16 - 20
        })
        .collect()
}

/// 2 s quiet, utterance A, 25 s quiet, utterance B, 8 s quiet; the utterances' spans in seconds.
fn long_file() -> (Vec<u8>, [(f64, f64); 2], f64) {
    let mut seed = 7;
    let (a, b) = (dev_clip("cmu_arctic_us_aew_a0001.wav"), dev_clip("cmu_arctic_us_aew_a0003.wav"));
    let mut samples = quiet(2.0, &mut seed);
    let a_span = (2.0, 2.0 + a.len() as f64 / f64::from(RATE));
    samples.extend(a);
    samples.extend(quiet(25.0, &mut seed));
    let b_start = samples.len() as f64 / f64::from(RATE);
    let b_span = (b_start, b_start + b.len() as f64 / f64::from(RATE));
    samples.extend(b);
    samples.extend(quiet(8.0, &mut seed));
    let total = samples.len() as f64 / f64::from(RATE);
    let spec =
        hound::WavSpec { channels: 1, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut wav = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).unwrap();
    samples.iter().for_each(|&s| writer.write_sample(s).unwrap());
    writer.finalize().unwrap();
    (wav.into_inner(), [a_span, b_span], total)
}

/// Within a second of an utterance: the VAD pads speech by 0.4 s, Whisper's times are coarse.
fn near_speech(spans: &[(f64, f64); 2], start: f64, end: f64) -> bool {
    spans.iter().any(|&(from, to)| start >= from - 1.0 && end <= to + 1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vad_filtered_long_file_has_no_text_in_its_silences() {
    let (t, key) = real_server(|_| {}).await;
    let (wav, spans, total) = long_file();
    let form = Form::new()
        .part("file", Part::bytes(wav).file_name("long.wav"))
        .text("vad_filter", "true")
        .text("response_format", "verbose_json")
        .text("timestamp_granularities[]", "word");
    let response =
        reqwest::Client::new().post(t.url("/v1/audio/transcriptions")).bearer_auth(&key).multipart(form).send().await;
    let body: Value = response.unwrap().json().await.unwrap();
    assert!((body["duration"].as_f64().unwrap() - total).abs() < 0.01, "the whole file's duration: {body}");
    let segments = body["segments"].as_array().expect("segments");
    assert!(!segments.is_empty(), "{body}");
    for segment in segments {
        let (start, end) = (segment["start"].as_f64().unwrap(), segment["end"].as_f64().unwrap());
        assert!(near_speech(&spans, start, end), "segment {segment} lies in a silence; speech at {spans:?}");
    }
    for word in body["words"].as_array().expect("words") {
        let (start, end) = (word["start"].as_f64().unwrap(), word["end"].as_f64().unwrap());
        assert!(near_speech(&spans, start, end), "word {word} lies in a silence; speech at {spans:?}");
    }
    let text = body["text"].as_str().unwrap().to_lowercase();
    for expected in ["danger", "trail", "evening", "shook hands"] {
        assert!(text.contains(expected), "{expected:?} missing from {text:?}");
    }
    // The second utterance is placed after the long silence, where it is in the file.
    let last = segments.last().unwrap()["end"].as_f64().unwrap();
    assert!(last > spans[1].0, "last segment ends at {last}, B starts at {}", spans[1].0);
    t.server.shutdown().await.unwrap();
}
