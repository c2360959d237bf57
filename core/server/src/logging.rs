//! tracing to stderr, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    // An invalid RUST_LOG should not stop the broker, but should not be
    // ignored silently either.
    let (filter, bad) = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some(format!("{spec:?}: {e}"))),
        },
        Err(_) => (EnvFilter::new("info"), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in journald or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(bad) = bad {
        tracing::warn!("ignoring invalid RUST_LOG {bad}; logging at info");
    }
}
