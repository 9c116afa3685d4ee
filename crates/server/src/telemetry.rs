//! Logging set-up. `RUST_LOG` picks the filter; `SMAI_LOG_FORMAT=json` switches to JSON lines.

use tracing_subscriber::EnvFilter;

/// Without `RUST_LOG`: info, except the audio decoders' own per-packet warnings (a damaged
/// upload can raise one per frame); our decoder logs one summary per request instead.
const DEFAULT_FILTER: &str = "info,symphonia=error";

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if std::env::var("SMAI_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(log_panic));
    }
}

/// One log line per panic: a panic that is caught and answered (a malformed upload that trips
/// a decoder, say) must not print a backtrace per request. `RUST_BACKTRACE` restores them.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
    tracing::error!(%location, message, "panic");
}
