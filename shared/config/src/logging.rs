//! JSON logs on stdout, one object per line, as CloudWatch and Lambda read
//! them: `level` (Lambda's application log-level filtering reads it),
//! `fields.message` and the event's fields under `fields` (the template's
//! metric filters match `$.fields.<name>`), the current span under `span`.
//!
//! The level follows the function's `LoggingConfig.ApplicationLogLevel`,
//! which Lambda hands over as `AWS_LAMBDA_LOG_LEVEL`; without it (locally)
//! `RUST_LOG`, else `info`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// `directives` as a filter, `info` when they do not parse.
fn targets(directives: &str) -> Targets {
    directives
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

/// Libraries whose debug and trace output is request plumbing (and could
/// carry headers or bodies): kept at `info` when the function logs at
/// `DEBUG` or `TRACE`, so a debug level never writes tokens or secrets.
const QUIET_AT_DEBUG: [&str; 11] = [
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_http",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
    "lambda_runtime",
];

/// The filter directives for `lambda_level` (`AWS_LAMBDA_LOG_LEVEL`:
/// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or `FATAL`, any case) or else
/// `rust_log` (`RUST_LOG`'s `target=level` directives; span and field
/// filters are not supported), else `info`. An unknown Lambda
/// level is ignored (the next source decides).
pub fn log_directives(lambda_level: Option<&str>, rust_log: Option<&str>) -> String {
    let level = lambda_level.and_then(|raw| match raw.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    });
    match level {
        Some(level @ ("trace" | "debug")) => {
            let quiet: Vec<String> = QUIET_AT_DEBUG.iter().map(|c| format!("{c}=info")).collect();
            format!("{level},{}", quiet.join(","))
        }
        Some(level) => level.to_owned(),
        None => rust_log
            .map(str::trim)
            .filter(|d| !d.is_empty() && d.parse::<Targets>().is_ok())
            .unwrap_or("info")
            .to_owned(),
    }
}

/// Whether Lambda's log-level filtering at `setting` (`ApplicationLogLevel`)
/// keeps a line of `level` (a missing or unknown level counts as INFO).
pub fn lambda_keeps(setting: &str, level: &str) -> bool {
    const ORDER: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let rank = |l: &str| ORDER.iter().position(|o| o.eq_ignore_ascii_case(l));
    rank(level).unwrap_or(2) >= rank(setting).unwrap_or(2)
}

fn builder() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<
        tracing_subscriber::fmt::format::Json,
        tracing_subscriber::fmt::time::SystemTime,
    >,
> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
}

/// The same JSON lines into `writer` (tests read what the functions log,
/// e.g. to check the template's metric filters against it).
pub fn json_subscriber<W>(directives: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    builder()
        .with_writer(writer)
        .finish()
        .with(targets(directives))
}

/// Structured JSON logs to stdout (CloudWatch), at the level of
/// [`log_directives`] from the environment. Call once at the top of `main`.
pub fn init_tracing() {
    let directives = log_directives(
        crate::env_opt("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        crate::env_opt("RUST_LOG").as_deref(),
    );
    let _ = builder().finish().with(targets(&directives)).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn lambdas_level_wins_then_rust_log_then_info() {
        assert_eq!(log_directives(Some("WARN"), Some("debug")), "warn");
        assert_eq!(log_directives(Some("error"), None), "error");
        assert_eq!(log_directives(Some("FATAL"), None), "error");
        assert_eq!(log_directives(Some(" Info "), None), "info");
        assert_eq!(
            log_directives(None, Some("billing=debug,info")),
            "billing=debug,info"
        );
        assert_eq!(log_directives(Some("LOUD"), Some("warn")), "warn");
        assert_eq!(log_directives(Some("LOUD"), None), "info");
        assert_eq!(log_directives(None, Some("=[bad")), "info");
        assert_eq!(log_directives(None, None), "info");
    }

    #[test]
    fn debug_keeps_the_http_and_sdk_plumbing_at_info() {
        let debug = log_directives(Some("DEBUG"), None);
        assert!(debug.starts_with("debug,"), "{debug}");
        assert!(debug.contains("aws_smithy_runtime=info"), "{debug}");
        assert!(debug.contains("hyper=info"), "{debug}");
        assert!(log_directives(Some("TRACE"), None).starts_with("trace,"));
        for directives in [debug, log_directives(Some("TRACE"), None)] {
            assert!(directives.parse::<Targets>().is_ok(), "{directives}");
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The shape the metric filters and Lambda's level filtering rely on.
    #[test]
    fn a_line_is_one_json_object_with_level_and_fields() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = builder()
            .with_writer(move || writer.clone())
            .finish()
            .with(targets(&log_directives(Some("INFO"), None)));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("filtered out");
            tracing::warn!(rejected = "signature", count = 3, "webhook refused");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        // An RFC 3339 time, which Lambda's JSON log format reads too.
        let at = line["timestamp"].as_str().unwrap_or_default();
        assert!(
            aws_smithy_types::DateTime::from_str(
                at,
                aws_smithy_types::date_time::Format::DateTimeWithOffset
            )
            .is_ok(),
            "{line}"
        );
        assert_eq!(line["fields"]["message"], "webhook refused");
        assert_eq!(line["fields"]["rejected"], "signature");
        assert_eq!(line["fields"]["count"], 3);
    }
}
