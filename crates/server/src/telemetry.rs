//! Logging set-up. `RUST_LOG` picks the filter; `--log-format json` (or `SMAI_LOG_FORMAT=json`)
//! switches to JSON lines.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`, and the request's span.
    Json,
}

/// Without `RUST_LOG`: info, except the audio decoders' own per-packet warnings (a damaged
/// upload can raise one per frame); our decoder logs one summary per request instead.
const DEFAULT_FILTER: &str = "info,symphonia=error";

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = subscriber(format, filter, std::io::stderr).try_init();
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(log_panic));
    }
}

fn subscriber<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().with_current_span(true).finish()),
        LogFormat::Text => Box::new(builder.finish()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_caught_panic_is_one_log_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        // The hook runs on the panicking thread, where this subscriber is the default.
        let _default = tracing::subscriber::set_default(subscriber);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let caught = std::panic::catch_unwind(|| panic!("the decoder tripped on frame {}", 7));
        std::panic::set_hook(previous);
        assert!(caught.is_err());
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(log.contains("ERROR") && log.contains("the decoder tripped on frame 7"), "{log}");
        assert!(log.contains("telemetry.rs:"), "names where it panicked: {log}");
    }

    #[test]
    fn json_lines_carry_the_event_and_its_request_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(LogFormat::Json, EnvFilter::new("info"), move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "req_1", path = "/v1/models");
            let _entered = span.enter();
            tracing::info!(status = 200, "request done");
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(log.trim()).expect("one JSON object per line");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "request done");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["span"]["request_id"], "req_1", "{line}");
        assert!(line["timestamp"].is_string());
    }
}
