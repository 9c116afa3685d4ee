//! Live sockets on the real models, at real time: how long after the last audio frame of an
//! utterance its `final` arrives (p50, p95), how often partials come, with 1 and 4 sessions at
//! once on tiny.en; and for live speech, from a `speak` of a complete 10-word sentence to its
//! first audio frame (p50; the socket's default, a sentence streamed in pieces). Run:
//! `cargo bench -p smai-benches --bench live` (needs `smai models pull`;
//! `SMAI_COMPUTE_TYPE=int8` or `bfloat16` runs Whisper so, and `bfloat16` the voice's vocoder). Prints one line per figure.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use smai_e2e::real::{dev_clips, real_server, wav_samples};
use smai_e2e::ws::{connect, send};
use smai_e2e::TestServer;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Six utterances of the dev set, each followed by 1.5 s of quiet, as one 16 kHz stream; and
/// where in it each utterance's speech ends (seconds).
fn utterances() -> (Vec<i16>, Vec<f64>) {
    let (mut audio, mut ends) = (Vec::new(), Vec::new());
    for (path, _) in dev_clips("cmu_arctic", 6) {
        let (samples, rate) = wav_samples(&path);
        assert_eq!(rate, 16_000, "{}", path.display());
        audio.extend(samples);
        ends.push(audio.len() as f64 / 16_000.0);
        audio.extend((0..24_000).map(|i| ((i * 7919) % 31) as i16 - 15));
    }
    (audio, ends)
}

/// What one session saw: the latency of each utterance's final (the first final after its
/// end; `None` if none came), the intervals between partials, and its real-time factor (wall
/// time from the first frame to `done`, over the audio's length).
struct Seen {
    latencies: Vec<Option<f64>>,
    cadence: Vec<f64>,
    real_time_factor: f64,
}

/// One session streaming at real time in 20 ms chunks.
async fn session(t: &TestServer, key: &str, audio: &[i16], ends: &[f64]) -> Seen {
    let mut ws = connect(t, "/v1/realtime/asr", Some(key)).await;
    send(&mut ws, json!({"type": "start", "vad": {"min_silence_ms": 600}})).await;
    let (mut tx, mut rx) = ws.split();
    let started = Instant::now();
    let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
    let sender = async move {
        for (i, chunk) in bytes.chunks(640).enumerate() {
            let due = started + Duration::from_millis(20 * i as u64);
            tokio::time::sleep_until(due.into()).await;
            tx.send(Message::Binary(chunk.to_vec().into())).await.unwrap();
        }
        tx.send(Message::Text(json!({"type": "stop"}).to_string().into())).await.unwrap();
        tx
    };
    let receiver = async {
        let (mut finals, mut partials) = (Vec::new(), Vec::new());
        while let Some(Ok(Message::Text(text))) = rx.next().await {
            let event: Value = serde_json::from_str(&text).unwrap();
            let at = started.elapsed().as_secs_f64();
            match event["type"].as_str() {
                Some("final") => finals.push((event["end"].as_f64().unwrap(), at)),
                Some("partial") => partials.push(at),
                Some("done") => break,
                _ => {}
            }
        }
        (finals, partials)
    };
    let (_, (finals, partials)) = tokio::join!(sender, receiver);
    let real_time_factor = started.elapsed().as_secs_f64() / (audio.len() as f64 / 16_000.0);
    // The stream time of an utterance's end is when its last frame was sent.
    let latencies = ends
        .iter()
        .map(|&end| finals.iter().find(|(final_end, _)| *final_end >= end - 1.0).map(|(_, at)| at - end))
        .collect();
    let cadence = partials.windows(2).map(|w| w[1] - w[0]).collect();
    Seen { latencies, cadence, real_time_factor }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

async fn speech_latency(t: &TestServer, key: &str) -> Vec<f64> {
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let mut ws = connect(t, "/v1/realtime/tts", Some(key)).await;
        send(&mut ws, json!({"type": "start", "voice": "joe"})).await;
        let asked = Instant::now();
        send(&mut ws, json!({"type": "speak", "text": "The quick brown fox jumps over the lazy sleeping dog. "})).await;
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Binary(_) = message {
                latencies.push(asked.elapsed().as_secs_f64());
                break;
            }
        }
    }
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (t, key) = real_server(|_| {}).await;
    let (audio, ends) = utterances();
    println!("stream: {} utterances, {:.1} s of audio, real time, 20 ms chunks", ends.len(), audio.len() as f64 / 16e3);
    for sessions in [1, 4] {
        let runs = (0..sessions).map(|_| session(&t, &key, &audio, &ends));
        let results = futures_util::future::join_all(runs).await;
        let mut latencies: Vec<f64> = results.iter().flat_map(|r| r.latencies.iter().flatten().copied()).collect();
        let mut cadence: Vec<f64> = results.iter().flat_map(|r| r.cadence.clone()).collect();
        let factors: Vec<String> = results.iter().map(|r| format!("{:.3}", r.real_time_factor)).collect();
        let heard = latencies.len();
        println!(
            "{sessions} session(s): final after speech end p50 {:.0} ms, p95 {:.0} ms ({heard}/{} utterances); \
             partials every {:.0} ms (p50); real-time factor per session {}",
            percentile(&mut latencies, 0.5) * 1000.0,
            percentile(&mut latencies, 0.95) * 1000.0,
            ends.len() * sessions,
            percentile(&mut cadence, 0.5) * 1000.0,
            factors.join(", "),
        );
        // Whether the sessions keep pace: latency that grows utterance by utterance would mean
        // work piling up; flat latency means each final waits only for its turn.
        let by_utterance: Vec<String> = (0..ends.len())
            .map(|i| {
                let seen: Vec<f64> = results.iter().filter_map(|r| r.latencies[i]).collect();
                format!("{:.0}", seen.iter().sum::<f64>() / seen.len().max(1) as f64 * 1000.0)
            })
            .collect();
        println!("  final latency by utterance, mean over sessions (ms): {}", by_utterance.join(", "));
    }
    let mut speech = speech_latency(&t, &key).await;
    println!("live speech: first audio of a 10-word sentence p50 {:.0} ms", percentile(&mut speech, 0.5) * 1000.0);
    t.server.shutdown().await.unwrap();
}
