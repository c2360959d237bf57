//! The signals: SIGTERM and SIGINT shut down, SIGHUP reloads the TLS
//! certificates and invalidates every cached ACL answer.

use std::io;

/// Signal handlers, installed before the broker starts so that a signal
/// arriving right after the listeners open is never the default "die now".
pub struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Must be called inside the tokio runtime.
    pub fn install() -> io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Shutdown {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Shutdown {})
        }
    }

    /// Wait for a shutdown signal, calling `on_reload` at every SIGHUP on the
    /// way; returns the shutdown signal's name for the log.
    pub async fn wait(mut self, mut on_reload: impl FnMut()) -> &'static str {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => on_reload(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (&mut self, &mut on_reload);
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
