//! Structured logging: `RUST_LOG` filters, `LOG_FORMAT=json` for machines, text for people.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global tracing subscriber once; later calls (tests) are no-ops. Log lines go to stderr, so
/// stdout stays the admin CLI's JSON answer.
pub fn init(log_format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    let _ = if log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
