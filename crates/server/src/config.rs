//! Server configuration: one struct, every field settable by flag or `SMAI_*` variable.

pub use crate::http::metrics::MetricsMode;
pub use crate::http::playground::PlaygroundMode;
pub use crate::tls::ClientAuth;
use crate::tls::TlsFiles;
use clap::{Args, ValueEnum};
use smai_core::Tier;
use smai_inference::whisper::ComputeTypes;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Every /v1 request needs a valid API key.
    Enabled,
    /// Private networks only: every request runs as an anonymous principal.
    Disabled,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address for HTTP (REST and WebSocket); HTTPS when `--tls-cert` and `--tls-key` are set.
    #[arg(long, env = "SMAI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address for gRPC (HTTP/2; TLS 1.3 with the same certificate as HTTP when TLS is on),
    /// or `off` for none.
    #[arg(long, env = "SMAI_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: GrpcListen,

    /// Wyoming listener for Home Assistant, `tcp://HOST:PORT` (10300 by convention), or `off`.
    /// Speech to text and text to speech on one port, as the key `--wyoming-key-id`; plain TCP
    /// without keys or TLS (the protocol has neither), so keep it on a trusted network.
    #[arg(long, env = "SMAI_WYOMING_LISTEN", default_value = "off")]
    pub wyoming_listen: WyomingListen,

    /// The id of the API key (`smai keys list`) whose services, voices and limits every Wyoming
    /// request runs under; required when keys are, ignored with `--auth disabled`.
    #[arg(long, env = "SMAI_WYOMING_KEY_ID")]
    pub wyoming_key_id: Option<String>,

    /// Announce the Wyoming listener over zeroconf (`_wyoming._tcp.local.`) so Home Assistant
    /// discovers it, under this instance name (`smai` when the flag is given without one).
    #[arg(long, env = "SMAI_WYOMING_ZEROCONF", num_args = 0..=1, default_missing_value = "smai")]
    pub wyoming_zeroconf: Option<String>,

    /// SQLite database holding keys, usage and limit state.
    #[arg(long, env = "SMAI_DB", default_value = "./data/smai.db")]
    pub db: PathBuf,

    /// Whether API keys are required.
    #[arg(long, env = "SMAI_AUTH", value_enum, default_value = "enabled")]
    pub auth: AuthMode,

    /// How long a verified key is cached; revocation takes effect within this time.
    #[arg(long, env = "SMAI_KEY_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub key_cache_ttl: Duration,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "SMAI_MAX_BODY_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Longest audio accepted in one upload, in seconds of decoded sound (three hours by
    /// default); longer files are refused with 413 before they are decoded in full.
    #[arg(long, env = "SMAI_MAX_AUDIO_SECONDS", default_value_t = 3 * 60 * 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_audio_seconds: u64,

    /// Folder with installed models (`smai models pull` fills it).
    #[arg(long, env = "SMAI_MODELS_DIR", default_value = "./models/cache")]
    pub models_dir: PathBuf,

    /// Whisper models to serve, the first being the default; those not installed are skipped.
    #[arg(long, env = "SMAI_ASR_MODELS", value_delimiter = ',', default_value = "tiny.en,base")]
    pub asr_models: Vec<String>,

    /// Voices configuration (JSON); the built-in `joe` and `joe-slow` when absent.
    #[arg(long, env = "SMAI_VOICES")]
    pub voices_config: Option<PathBuf>,

    /// Device for the models: cpu, cuda or metal (the last two need the build feature).
    #[arg(long, env = "SMAI_DEVICE", default_value = "cpu")]
    pub device: String,

    /// Number type of the Whisper products: float32, int8 (CPU; weights quantised per channel
    /// at load, as faster-whisper's `compute_type="int8"`), bfloat16 (CPU; bf16 weights and
    /// inputs, f32 sums) or auto (int8 on x86 CPUs with AVX2, float32 elsewhere); one for all
    /// models or per model: `base=int8,tiny.en=float32`. For a voice's vocoder, bfloat16 means
    /// bf16 on CPUs with AVX-512 BF16, auto the same only where that AVX-512 is double-pumped
    /// (AMD Zen 4), float32 elsewhere; int8 means float32.
    #[arg(long, env = "SMAI_COMPUTE_TYPE", default_value = "float32", value_parser = ComputeTypes::parse)]
    pub compute_type: ComputeTypes,

    /// Requests that may wait per model beyond the one running; past it, 503 `overloaded`.
    #[arg(long, env = "SMAI_QUEUE_DEPTH", default_value_t = 16)]
    pub queue_depth: usize,

    /// Serve Prometheus metrics at `GET /metrics` without a key (`on`), or not at all (`off`).
    #[arg(long, env = "SMAI_METRICS", value_enum, default_value = "on")]
    pub metrics: MetricsMode,

    /// Serve the playground page at `/` and `/playground` (`on`): try speech and recognition
    /// in a browser, with a key typed into the page. `off` leaves both answering 404.
    #[arg(long, env = "SMAI_PLAYGROUND", value_enum, default_value = "on")]
    pub playground: PlaygroundMode,

    /// Time a client has to send a complete request head, from the connection's start (or,
    /// on a kept-alive connection, from its first byte); past it, 408 and the connection closes.
    #[arg(long, env = "SMAI_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, env = "SMAI_KEEP_ALIVE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,

    /// Time a client has to send the whole request body, from the end of its head; slower
    /// uploads are refused with 408.
    #[arg(long, env = "SMAI_BODY_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Open connections at most. Past it a new connection closes the longest-idle one, or is
    /// closed at once when every connection has a request in flight.
    #[arg(long, env = "SMAI_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Open connections at most per client address (per /64 for IPv6), handled like the
    /// global cap but among that address's connections.
    #[arg(long, env = "SMAI_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// On SIGTERM, how long requests in flight may take to finish before their connections
    /// are closed; idle connections and half-sent request heads are closed at once.
    #[arg(long, env = "SMAI_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// A live WebSocket session that sends no audio and no text for this long is closed.
    #[arg(long, env = "SMAI_WS_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub ws_idle_timeout: Duration,

    /// How long usage rows are kept; older ones are deleted at start and then hourly.
    #[arg(long, env = "SMAI_USAGE_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub usage_retention: Duration,

    /// Origins whose web pages may call the API (CORS), comma-separated, e.g.
    /// `https://app.example`. None by default: browsers then refuse cross-origin calls.
    #[arg(long = "cors-origin", env = "SMAI_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// PEM certificate chain, the server's certificate first, then any intermediates. With
    /// `--tls-key` every listener speaks TLS 1.3 only (`smai tls init` makes a private CA and one).
    #[arg(long, env = "SMAI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 RSA or SEC1 EC; RSA, ECDSA or Ed25519).
    #[arg(long, env = "SMAI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM file of the CA certificates that sign client certificates (mutual TLS).
    #[arg(long, env = "SMAI_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Client certificates: `none`, `optional` (verified when presented) or `required`.
    #[arg(long, env = "SMAI_TLS_CLIENT_AUTH", value_enum, default_value = "none")]
    pub tls_client_auth: ClientAuth,

    /// How often the TLS files are checked for changes (`0s`: only on SIGHUP). Changed files
    /// are loaded for new connections; an invalid one keeps the certificate in service.
    #[arg(long, env = "SMAI_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// With `--auth disabled`: requests per minute of the anonymous principal.
    #[arg(long, env = "SMAI_ANONYMOUS_RPM", default_value_t = Tier::default().rpm)]
    pub anonymous_rpm: u32,

    /// With `--auth disabled`: tokens per minute of the anonymous principal.
    #[arg(long, env = "SMAI_ANONYMOUS_TPM", default_value_t = Tier::default().tpm)]
    pub anonymous_tpm: u32,

    /// With `--auth disabled`: tokens per rolling day of the anonymous principal.
    #[arg(long, env = "SMAI_ANONYMOUS_TPD", default_value_t = Tier::default().tpd)]
    pub anonymous_tpd: u32,

    /// With `--auth disabled`: open requests and streams of the anonymous principal.
    #[arg(long, env = "SMAI_ANONYMOUS_CONCURRENCY", default_value_t = Tier::default().concurrency)]
    pub anonymous_concurrency: u32,
}

impl ServeConfig {
    /// The TLS files, when TLS is on; refuses client-certificate settings that do not fit.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>, String> {
        let client_ca = self.tls_client_ca.clone();
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                match (&client_ca, self.tls_client_auth) {
                    (None, ClientAuth::Optional | ClientAuth::Required) => {
                        return Err("--tls-client-auth optional or required needs --tls-client-ca".into())
                    }
                    (Some(_), ClientAuth::None) => {
                        return Err("--tls-client-ca is set: choose --tls-client-auth optional or required".into())
                    }
                    _ => {}
                }
                let client_auth = self.tls_client_auth;
                Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca, client_auth }))
            }
            (None, None) if client_ca.is_none() && self.tls_client_auth == ClientAuth::None => Ok(None),
            (None, None) => Err("client certificates need TLS: set --tls-cert and --tls-key".into()),
            _ => Err("--tls-cert and --tls-key go together".into()),
        }
    }

    /// The limits every request of no-auth mode shares.
    pub fn anonymous_tier(&self) -> Tier {
        Tier {
            rpm: self.anonymous_rpm,
            tpm: self.anonymous_tpm,
            tpd: self.anonymous_tpd,
            concurrency: self.anonymous_concurrency,
        }
    }

    /// Defaults for tests and embedding: port 0 on loopback, the given database.
    pub fn for_tests(db: PathBuf) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            grpc_listen: GrpcListen::Off,
            wyoming_listen: WyomingListen(None),
            wyoming_key_id: None,
            wyoming_zeroconf: None,
            db,
            auth: AuthMode::Enabled,
            key_cache_ttl: Duration::from_secs(5),
            max_body_bytes: 25 * 1024 * 1024,
            max_audio_seconds: 3 * 60 * 60,
            models_dir: PathBuf::from("./models/cache"),
            asr_models: vec![],
            voices_config: None,
            device: "cpu".into(),
            compute_type: ComputeTypes::default(),
            queue_depth: 16,
            metrics: MetricsMode::On,
            playground: PlaygroundMode::On,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_ip: 256,
            shutdown_grace: Duration::from_secs(30),
            ws_idle_timeout: Duration::from_secs(30),
            usage_retention: Duration::from_secs(90 * 86_400),
            cors_origins: vec![],
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: ClientAuth::None,
            tls_reload_interval: Duration::from_secs(10),
            anonymous_rpm: Tier::default().rpm,
            anonymous_tpm: Tier::default().tpm,
            anonymous_tpd: Tier::default().tpd,
            anonymous_concurrency: Tier::default().concurrency,
        }
    }
}

/// Where the gRPC listener binds, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcListen {
    Off,
    On(SocketAddr),
}

impl GrpcListen {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Self::Off => None,
            Self::On(addr) => Some(addr),
        }
    }
}

impl std::str::FromStr for GrpcListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "off" | "" => Ok(Self::Off),
            addr => addr.parse().map(Self::On).map_err(|e| format!("{addr:?} is neither HOST:PORT nor off: {e}")),
        }
    }
}

/// Where the Wyoming listener binds, if anywhere: `tcp://HOST:PORT`, `HOST:PORT` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WyomingListen(pub Option<SocketAddr>);

impl std::str::FromStr for WyomingListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "off" | "" => Ok(Self(None)),
            uri => {
                let addr = uri.strip_prefix("tcp://").unwrap_or(uri);
                addr.parse()
                    .map(|a| Self(Some(a)))
                    .map_err(|e| format!("{uri:?} is neither tcp://HOST:PORT nor off: {e}"))
            }
        }
    }
}

/// Durations like `5s`, `24h`, `90d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}
