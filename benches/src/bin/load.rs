//! Load run against a running `smai serve`: throughput and p50/p99 latency of speech and
//! transcription at several client counts, then the rate of 401 and 429 refusals next to a bare
//! axum route answering the same status and body in this process, so our overhead on a refused
//! request reads as a ratio. Every level is bounded by a request count and a time.
//!
//! cargo run --release -p smai-benches --bin load -- --key $KEY --limited-key $KEY_RPM_1 --audio clip.wav

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use reqwest::{Client, RequestBuilder};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, env = "SMAI_BASE_URL", default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// A key with tts and asr and limits well above the run.
    #[arg(long, env = "SMAI_API_KEY")]
    key: String,
    /// A key whose requests-per-minute limit is spent, for the 429 run (e.g. created with --rpm 1).
    #[arg(long)]
    limited_key: String,
    /// The recording to transcribe.
    #[arg(long)]
    audio: std::path::PathBuf,
    #[arg(long, default_value = "joe")]
    voice: String,
    #[arg(long, default_value = "The quick brown fox jumps over the lazy dog.")]
    text: String,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Per level: stop after this many requests...
    #[arg(long, default_value_t = 48)]
    max_requests: usize,
    /// ...or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 20)]
    max_seconds: u64,
    /// Length of each refusal run, and the clients it uses.
    #[arg(long, default_value_t = 4)]
    refusal_seconds: u64,
    #[arg(long, default_value_t = 8)]
    refusal_clients: usize,
}

struct Outcome {
    elapsed: Duration,
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
}

impl Outcome {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank - 1].as_secs_f64() * 1000.0
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn row(&self, name: &str, clients: usize) -> String {
        let statuses: Vec<String> = self.statuses.iter().map(|(s, n)| format!("{s}x{n}")).collect();
        format!(
            "| {name} | {clients} | {} | {:.1} | {:.2} | {:.1} | {:.1} | {} |",
            self.latencies.len(),
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.percentile(50.0),
            self.percentile(99.0),
            statuses.join(" ")
        )
    }
}

/// `clients` tasks send requests until `max_requests` have started or `max_time` has passed,
/// each reading its whole response body.
async fn drive(
    clients: usize,
    max_requests: usize,
    max_time: Duration,
    request: Arc<dyn Fn() -> RequestBuilder + Send + Sync>,
) -> Outcome {
    let started = Instant::now();
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (issued, request) = (issued.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while started.elapsed() < max_time && issued.fetch_add(1, Ordering::Relaxed) < max_requests {
                let sent = Instant::now();
                let status = match request().send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(_) => status,
                            Err(_) => 0,
                        }
                    }
                    Err(_) => 0,
                };
                seen.push((sent.elapsed(), status));
            }
            seen
        }));
    }
    let mut outcome = Outcome { elapsed: Duration::ZERO, latencies: Vec::new(), statuses: BTreeMap::new() };
    for task in tasks {
        for (latency, status) in task.await.expect("load task") {
            outcome.latencies.push(latency);
            *outcome.statuses.entry(status).or_default() += 1;
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// The refusals a bare axum route gives: the same status, headers and body size as ours.
fn bare_router() -> Router {
    let body = r#"{"error":{"code":"unauthorized","message":"missing API key: send X-API-Key or Authorization: Bearer","type":"authentication_error","request_id":"req_00000000000000000000000000000000"}}"#;
    Router::new()
        .route(
            "/v1/models",
            get(move || async move {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer"), (header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }),
        )
        .route(
            "/limited/v1/models",
            get(move || async move {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "60"), (header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }),
        )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::builder().pool_max_idle_per_host(64).build()?;
    let audio = std::fs::read(&args.audio)?;
    let base = args.base_url.trim_end_matches('/').to_owned();
    let limit = |n| (args.max_requests, Duration::from_secs(args.max_seconds), n);

    println!("| run | clients | requests | seconds | req/s | p50 ms | p99 ms | statuses |");
    println!("|---|---|---|---|---|---|---|---|");
    for &clients in &args.clients {
        let (max, time, clients) = limit(clients);
        let (c, url, key, body) = (
            client.clone(),
            format!("{base}/v1/audio/speech"),
            args.key.clone(),
            serde_json::json!({
            "input": args.text, "voice": args.voice, "response_format": "wav"}),
        );
        let speech: Arc<dyn Fn() -> RequestBuilder + Send + Sync> =
            Arc::new(move || c.post(&url).header("x-api-key", &key).json(&body));
        // One untimed request first, so a cold voice does not count.
        speech().send().await?.bytes().await?;
        println!("{}", drive(clients, max, time, speech).await.row("speech (wav)", clients));
    }
    for &clients in &args.clients {
        let (max, time, clients) = limit(clients);
        let (c, url, key, audio) =
            (client.clone(), format!("{base}/v1/audio/transcriptions"), args.key.clone(), audio.clone());
        let name = args.audio.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let transcribe: Arc<dyn Fn() -> RequestBuilder + Send + Sync> = Arc::new(move || {
            let part = reqwest::multipart::Part::bytes(audio.clone()).file_name(name.clone());
            c.post(&url).header("x-api-key", &key).multipart(reqwest::multipart::Form::new().part("file", part))
        });
        transcribe().send().await?.bytes().await?;
        println!("{}", drive(clients, max, time, transcribe).await.row("transcription", clients));
    }

    // Refusals, ours next to the bare route, on a runtime of their own in this process.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_base = format!("http://{}", bare.local_addr()?);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.spawn(async move { axum::serve(bare, bare_router()).await });
    let (n, time) = (args.refusal_clients, Duration::from_secs(args.refusal_seconds));
    let mut rates = Vec::new();
    for (name, url, key) in [
        ("401 smai", format!("{base}/v1/models"), None),
        ("401 bare axum", format!("{bare_base}/v1/models"), None),
        ("429 smai", format!("{base}/v1/models"), Some(args.limited_key.clone())),
        ("429 bare axum", format!("{bare_base}/limited/v1/models"), None),
    ] {
        let c = client.clone();
        let request: Arc<dyn Fn() -> RequestBuilder + Send + Sync> = Arc::new(move || {
            let r = c.get(&url);
            match &key {
                Some(key) => r.header("x-api-key", key),
                None => r,
            }
        });
        let outcome = drive(n, usize::MAX, time, request).await;
        println!("{}", outcome.row(name, n));
        rates.push(outcome.per_second());
    }
    println!();
    println!("401: smai at {:.2} of the bare route's rate; 429: {:.2}", rates[0] / rates[1], rates[2] / rates[3]);
    runtime.shutdown_background();
    Ok(())
}
