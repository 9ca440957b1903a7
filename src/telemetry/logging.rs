//! Log output: readable on a terminal, JSON for log pipelines. Logs go to
//! stderr so command output (check-config summary, demo timeline, status)
//! stays clean on stdout. Text logs are coloured only when stderr is a
//! terminal: escape codes in journald or a log file are noise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// A duration as logs show it (`1s 500ms`), rounded to milliseconds: the
/// `Debug` form (`1.500372914s`) is noise to an operator.
pub fn duration(d: std::time::Duration) -> String {
    let ms = std::time::Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
    if ms.is_zero() {
        "0s".to_string()
    } else {
        humantime::format_duration(ms).to_string()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive
/// (`info`, `continuity_agent=debug,warn`); `RUST_LOG` wins when set.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let writer = std::io::stderr.with_max_level(tracing::Level::TRACE);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // `try_init`: a second call (tests, demo inside tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
