//! The live sockets on the real models (tiny.en, the Silero VAD, the joe voice): dev clips
//! streamed in 100 ms chunks at real time and faster against REST's transcript, VAD
//! endpointing (two utterances, silence, commit, the maximum length), every sample rate
//! and encoding of the start message, and live speech in pieces or whole sentences. Fails,
//! rather than skips, without the models.

use serde_json::{json, Value};
use smai_e2e::real::{dev_clips, eval_dir, real_server, rest_transcript, run_client, wav_samples};
use smai_e2e::ws::{connect, receive_within, send, send_audio, Received, Ws};
use smai_e2e::TestServer;
use std::time::Duration;

/// Everything a session said, in order, up to `done`.
async fn events_until_done(ws: &mut Ws) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        match receive_within(ws, 120).await {
            Received::Json(v) if v["type"] == "done" => return events,
            Received::Json(v) => events.push(v),
            other => panic!("unexpected {other:?} after {events:?}"),
        }
    }
}

/// Streams s16le `samples` at `rate` in 100 ms chunks, `speed` times real time (0: no waits),
/// then stops; the session's events.
async fn stream(t: &TestServer, key: &str, start: Value, bytes: &[u8], chunk: usize, speed: f64) -> Vec<Value> {
    let mut ws = connect(t, "/v1/realtime/asr", Some(key)).await;
    send(&mut ws, start.clone()).await;
    let started = receive_within(&mut ws, 10).await;
    assert!(matches!(&started, Received::Json(v) if v["type"] == "started"), "{started:?}");
    if let Received::Json(v) = &started {
        let asked = start["vad"]["mode"].as_str().unwrap_or("server");
        assert_eq!(v["vad"]["mode"], asked, "the VAD is installed, so server mode is the default");
    }
    let reader = {
        let (mut tx, mut rx) = futures_util::StreamExt::split(ws);
        let bytes = bytes.to_vec();
        let sender = async move {
            for piece in bytes.chunks(chunk) {
                let message = tokio_tungstenite::tungstenite::Message::Binary(piece.to_vec().into());
                futures_util::SinkExt::send(&mut tx, message).await.unwrap();
                if speed > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(0.1 / speed)).await;
                }
            }
            let stop = tokio_tungstenite::tungstenite::Message::Text(json!({"type": "stop"}).to_string().into());
            futures_util::SinkExt::send(&mut tx, stop).await.unwrap();
            tx
        };
        let (tx, events) = tokio::join!(sender, async {
            let mut events = Vec::new();
            while let Some(Ok(message)) = futures_util::StreamExt::next(&mut rx).await {
                if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "done" {
                        break;
                    }
                    events.push(v);
                }
            }
            events
        });
        drop(tx);
        events
    };
    reader
}

fn s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn finals(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["type"] == "final").collect()
}

fn final_text(events: &[Value]) -> String {
    finals(events).iter().map(|f| f["text"].as_str().unwrap()).collect::<String>().trim().to_owned()
}

/// Per utterance: partials replace each other with `stable_text` a prefix of every later
/// partial and of the final; and one partial came before the final of each utterance longer
/// than a partial step.
fn check_partials(events: &[Value]) {
    for f in finals(events) {
        let utterance = &f["utterance"];
        let partials: Vec<&Value> =
            events.iter().filter(|e| e["type"] == "partial" && e["utterance"] == *utterance).collect();
        let long = f["end"].as_f64().unwrap() - f["start"].as_f64().unwrap() > 1.5;
        assert!(!long || !partials.is_empty(), "no partial before the final {f}");
        let whole: String = events
            .iter()
            .filter(|e| e["type"] == "final" && e["utterance"] == *utterance)
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        for (i, p) in partials.iter().enumerate() {
            let stable = p["stable_text"].as_str().unwrap();
            for later in &partials[i..] {
                assert!(later["text"].as_str().unwrap().starts_with(stable), "{p} then {later}");
            }
            assert!(whole.starts_with(stable), "the finals {whole:?} keep the stable text of {p}");
        }
    }
    let mut order = events.iter().map(|e| e["type"].as_str().unwrap());
    assert_eq!(order.next(), Some("speech_started"), "{events:?}");
}

fn wer(pairs: &[(String, String)]) -> f64 {
    smai_tools::wer::corpus_wer(pairs.iter().map(|(r, h)| (r.as_str(), h.as_str())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_clips_streamed_at_real_time_and_four_times_it_match_rest_within_two_wer_points() {
    let (t, key) = real_server(|_| {}).await;
    for speed in [1.0, 4.0] {
        let (mut rest, mut live) = (Vec::new(), Vec::new());
        for (clip, reference) in dev_clips("ljspeech", 2) {
            let (samples, rate) = wav_samples(&clip);
            let start = json!({"type": "start", "sample_rate": rate, "interim_results": true});
            let events = stream(&t, &key, start, &s16le(&samples), rate as usize / 10 * 2, speed).await;
            check_partials(&events);
            let whole = rest_transcript(&t, &key, &clip).await;
            eprintln!("{speed}x {}\n  REST: {whole}\n  live: {}", clip.display(), final_text(&events));
            rest.push((reference.clone(), whole));
            live.push((reference, final_text(&events)));
        }
        let (rest_wer, live_wer) = (wer(&rest), wer(&live));
        eprintln!("{speed}x real time: WER REST {:.2} %, live {:.2} %", rest_wer * 100.0, live_wer * 100.0);
        assert!(live_wer <= rest_wer + 0.02, "{speed}x: live WER {live_wer:.4} vs REST {rest_wer:.4}");
    }
    t.server.shutdown().await.unwrap();
}

fn cmu(name: &str) -> Vec<i16> {
    wav_samples(&eval_dir().join("cmu_arctic").join(name)).0
}

fn quiet(seconds: f64) -> Vec<i16> {
    (0..(seconds * 16_000.0) as usize).map(|i| ((i * 7919) % 31) as i16 - 15).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vad_ends_utterances_at_pauses_and_silence_says_nothing() {
    let (t, key) = real_server(|_| {}).await;
    let start = json!({"type": "start", "vad": {"mode": "server", "min_silence_ms": 600}});
    // Two utterances 1.5 s apart, then 5 s of silence: two finals, in order, nothing after.
    let mut audio = cmu("cmu_arctic_us_aew_a0001.wav");
    audio.extend(quiet(1.5));
    let second_at = audio.len() as f64 / 16_000.0;
    audio.extend(cmu("cmu_arctic_us_aew_a0003.wav"));
    let speech_end = audio.len() as f64 / 16_000.0;
    audio.extend(quiet(5.0));
    let events = stream(&t, &key, start.clone(), &s16le(&audio), 3200, 4.0).await;
    let utterances: Vec<u64> = finals(&events).iter().map(|f| f["utterance"].as_u64().unwrap()).collect();
    let mut distinct = utterances.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "{events:#?}");
    let starts: Vec<f64> =
        events.iter().filter(|e| e["type"] == "speech_started").map(|e| e["start"].as_f64().unwrap()).collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!((starts[1] - second_at).abs() < 0.5, "second speech at {} s, heard at {}", second_at, starts[1]);
    let last_end = finals(&events).last().unwrap()["end"].as_f64().unwrap();
    assert!(last_end <= speech_end + 1.0, "a final at {last_end} s lies in the closing silence");
    let order: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).filter(|k| *k != "partial").collect();
    assert_eq!(order, ["speech_started", "speech_stopped", "final", "speech_started", "speech_stopped", "final"]);

    // Silence alone: no speech, no final, no invented text.
    let events = stream(&t, &key, start.clone(), &s16le(&quiet(5.0)), 3200, 0.0).await;
    assert!(events.is_empty(), "{events:?}");

    // Speech longer than max_utterance_s is cut into several utterances.
    let (long, rate) = wav_samples(&dev_clips("ljspeech", 1)[0].0);
    let cut = json!({"type": "start", "sample_rate": rate, "vad": {"max_utterance_s": 3}});
    let events = stream(&t, &key, cut, &s16le(&long), rate as usize / 10 * 2, 0.0).await;
    let pieces = finals(&events);
    assert!(pieces.len() >= 3, "a 9.7 s sentence in pieces of at most 3 s: {pieces:?}");
    assert!(pieces.iter().all(|f| f["end"].as_f64().unwrap() - f["start"].as_f64().unwrap() <= 3.6), "{pieces:?}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_sentence_inside_an_utterance_becomes_stable_text_its_final_keeps() {
    let (t, key) = real_server(|_| {}).await;
    // Two sentences with a short breath between: one utterance for the VAD.
    let mut audio = cmu("cmu_arctic_us_aew_a0001.wav");
    audio.extend(quiet(0.2));
    audio.extend(cmu("cmu_arctic_us_aew_a0003.wav"));
    let start = json!({"type": "start", "vad": {"min_silence_ms": 800}});
    let events = stream(&t, &key, start, &s16le(&audio), 3200, 1.0).await;
    check_partials(&events);
    let stable = events.iter().filter_map(|e| e["stable_text"].as_str()).find(|s| !s.is_empty());
    let stable = stable.unwrap_or_else(|| panic!("no stable text in {events:#?}"));
    assert!(stable.to_lowercase().contains("danger"), "the first sentence settles: {stable:?}");
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_mid_speech_ends_the_utterance_there() {
    let (t, key) = real_server(|_| {}).await;
    let audio = s16le(&cmu("cmu_arctic_us_aew_a0003.wav"));
    let half = audio.len() / 2 / 2 * 2;
    let mut ws = connect(&t, "/v1/realtime/asr", Some(&key)).await;
    send(&mut ws, json!({"type": "start"})).await;
    for (piece, then) in [(&audio[..half], "commit"), (&audio[half..], "stop")] {
        for chunk in piece.chunks(3200) {
            send_audio(&mut ws, chunk.to_vec()).await;
        }
        send(&mut ws, json!({ "type": then })).await;
    }
    let events = events_until_done(&mut ws).await;
    let finals = finals(&events);
    let utterances: std::collections::BTreeSet<u64> = finals.iter().map(|f| f["utterance"].as_u64().unwrap()).collect();
    assert_eq!(utterances.len(), 2, "the commit split the sentence: {finals:?}");
    let committed_at = half as f64 / 2.0 / 16_000.0;
    let first_end = finals[0]["end"].as_f64().unwrap();
    assert!(first_end <= committed_at + 0.1, "first utterance ends at {first_end}, commit at {committed_at}");
    t.server.shutdown().await.unwrap();
}

/// G.711 µ-law of a 16-bit sample (ITU-T G.711: bias 0x84, 8 segments, bits inverted).
fn mulaw(sample: i16) -> u8 {
    let sign = if sample < 0 { 0x80 } else { 0 };
    let magnitude = (i32::from(sample).abs().min(32_635) + 0x84) as u32;
    let exponent = (31 - magnitude.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

/// G.711 A-law of a 16-bit sample (even bits inverted with 0x55; set sign bit = positive).
fn alaw(sample: i16) -> u8 {
    let sign = if sample >= 0 { 0x80 } else { 0 };
    let magnitude = (i32::from(sample).abs().min(32_767) >> 3) as u32;
    let byte = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = (31 - magnitude.leading_zeros()) - 4;
        ((exponent as u8) << 4) | ((magnitude >> exponent) & 0x0f) as u8
    };
    (sign | byte) ^ 0x55
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_rate_and_encoding_transcribes() {
    let (t, key) = real_server(|_| {}).await;
    let (clip, _) = &dev_clips("cmu_arctic", 1)[0];
    let (samples, rate) = wav_samples(clip);
    let float: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    let expected = rest_transcript(&t, &key, clip).await.to_lowercase();
    let cases = [
        (8_000, "mulaw"),
        (8_000, "alaw"),
        (16_000, "pcm_s16le"),
        (22_050, "pcm_s16le"),
        (44_100, "pcm_f32le"),
        (48_000, "pcm_s16le"),
    ];
    for (to, encoding) in cases {
        let resampled = smai_inference::audio::resample(&float, rate, to).unwrap();
        let as_i16 = |x: &f32| (x.clamp(-1.0, 1.0) * 32_767.0).round() as i16;
        let bytes: Vec<u8> = match encoding {
            "mulaw" => resampled.iter().map(|x| mulaw(as_i16(x))).collect(),
            "alaw" => resampled.iter().map(|x| alaw(as_i16(x))).collect(),
            "pcm_f32le" => resampled.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => resampled.iter().flat_map(|x| as_i16(x).to_le_bytes()).collect(),
        };
        let start = json!({"type": "start", "sample_rate": to, "encoding": encoding});
        let chunk = bytes.len() / 20 + 1;
        let heard = final_text(&stream(&t, &key, start, &bytes, chunk, 0.0).await).to_lowercase();
        let pair = [(expected.clone(), heard.clone())];
        assert!(wer(&pair) <= 0.25, "{to} Hz {encoding}: {heard:?} vs REST {expected:?}");
    }
    t.server.shutdown().await.unwrap();
}

fn test_python() -> String {
    std::env::var("SMAI_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SMAI_TEST_PYTHON is not set: create the venv with `python3 -m venv .venv && .venv/bin/pip install \
             'openai[realtime]==1.109.1'` and export SMAI_TEST_PYTHON=$PWD/.venv/bin/python"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_realtime_client_transcribes_with_manual_commits_and_server_vad() {
    let (t, key) = real_server(|_| {}).await;
    let (clip, _) = &dev_clips("ljspeech", 1)[0];
    let script = smai_e2e::real::workspace().join("tests/python/openai_realtime.py");
    let out = run_client(
        tokio::process::Command::new(test_python()).arg(script).env("SMAI_TEST_CLIP", clip),
        &t,
        &key,
        &std::env::temp_dir(),
    )
    .await;
    let rest = rest_transcript(&t, &key, clip).await;
    for mode in ["manual", "server_vad"] {
        let heard = out.lines().find_map(|l| l.strip_prefix(&format!("{mode}: "))).expect("a transcript line");
        let pair = [(rest.clone(), heard.to_owned())];
        assert!(wer(&pair) <= 0.1, "{mode}: {heard:?} vs REST {rest:?}");
    }
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_socket_examples_run_against_the_server() {
    let (t, key) = real_server(|_| {}).await;
    let examples = smai_e2e::real::workspace().join("examples");
    let (clip, _) = &dev_clips("ljspeech", 1)[0];
    let mut python = tokio::process::Command::new(test_python());
    python.arg(examples.join("realtime_asr.py")).arg(clip).env("SMAI_SPEED", "4");
    let out = run_client(&mut python, &t, &key, &std::env::temp_dir()).await;
    assert!(out.contains("speech_started 0") && out.lines().any(|l| l.starts_with("final 0 [")), "{out}");
    assert!(out.contains("  ... "), "partials are printed: {out}");
    let rest = rest_transcript(&t, &key, clip).await.to_lowercase();
    let finals: String = out.lines().filter_map(|l| l.split_once("]: ").map(|(_, text)| format!(" {text}"))).collect();
    assert!(wer(&[(rest.clone(), finals.to_lowercase())]) <= 0.1, "{finals:?} vs REST {rest:?}");

    // The browser-style example needs a Node with WebSocket (22, or 20 with a flag).
    let flag = ["--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"];
    let has_websocket = tokio::process::Command::new("node").args(flag).status().await.is_ok_and(|s| s.success());
    if has_websocket {
        let mut node = tokio::process::Command::new("node");
        node.arg("--experimental-websocket").arg(examples.join("realtime_tts.mjs"));
        let out = run_client(&mut node, &t, &key, &std::env::temp_dir()).await;
        assert!(out.contains("sentence 0: Hello!") && out.contains("sentence 2: And so was this one."), "{out}");
        assert!(out.contains("closed 1000"), "{out}");
    } else {
        eprintln!("SKIPPED the Node WebSocket example: this node has no WebSocket (needs Node 22, or 20 with --experimental-websocket)");
    }
    t.server.shutdown().await.unwrap();
}

/// The binary frames of each segment of one sentence spoken with `start`, and the seconds
/// its `segment_end` reports against the bytes that came.
async fn speech_frames(t: &TestServer, key: &str, start: Value) -> (usize, f64, f64) {
    let mut ws = connect(t, "/v1/realtime/tts", Some(key)).await;
    send(&mut ws, start).await;
    send(&mut ws, json!({"type": "speak", "text": "The quick brown fox jumps over the lazy sleeping dog."})).await;
    send(&mut ws, json!({"type": "stop"})).await;
    let (mut frames, mut bytes, mut reported) = (0, 0, 0.0);
    loop {
        match receive_within(&mut ws, 60).await {
            Received::Audio(n) => (frames, bytes) = (frames + 1, bytes + n),
            Received::Json(v) if v["type"] == "segment_end" => reported = v["audio_seconds"].as_f64().unwrap(),
            Received::Json(v) if v["type"] == "done" => break,
            Received::Json(v) => assert_eq!(v["type"], "segment_start", "{v}"),
            Received::Closed(code) => panic!("closed {code} before done"),
        }
    }
    (frames, reported, bytes as f64 / 2.0 / 22_050.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_speech_streams_a_sentence_in_pieces_unless_asked_to_normalise_it() {
    let (t, key) = real_server(|_| {}).await;
    let (pieces, seconds, sent) = speech_frames(&t, &key, json!({"type": "start", "voice": "joe"})).await;
    assert!(pieces >= 3, "a 3 s sentence comes in several frames by default, got {pieces}");
    assert!((seconds - sent).abs() < 1e-3 && seconds > 2.0, "{seconds} s reported, {sent} s sent");
    let whole = json!({"type": "start", "voice": "joe", "normalize": true});
    let (frames, seconds, sent) = speech_frames(&t, &key, whole).await;
    assert_eq!(frames, 1, "a peak-normalised sentence is one frame");
    assert!((seconds - sent).abs() < 1e-3 && seconds > 2.0, "{seconds} s reported, {sent} s sent");
    t.server.shutdown().await.unwrap();
}
