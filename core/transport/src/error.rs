//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Where in the connection setup something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the PROXY protocol header.
    Proxy,
    /// The TLS handshake.
    Tls,
    /// The WebSocket upgrade (HTTP request and response).
    WebSocket,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Proxy => "PROXY protocol header",
            Stage::Tls => "TLS handshake",
            Stage::WebSocket => "WebSocket upgrade",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file that cannot be used; `key` is the setting
    /// naming it (`certfile`, `keyfile`, `cafile`).
    #[error("{key} {}: {reason}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A setting that is missing or contradicts another.
    #[error("{key}: {reason}")]
    Setting { key: &'static str, reason: String },
    /// The handshake did not finish in time.
    #[error("{stage} not finished within {after:?}")]
    Timeout { stage: Stage, after: Duration },
    /// The peer broke the protocol of a stage, or closed during it.
    #[error("{stage}: {reason}")]
    Handshake { stage: Stage, reason: String },
    /// The socket failed.
    #[error("{stage}: {source}")]
    Io {
        stage: Stage,
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    pub(crate) fn file(
        key: &'static str,
        path: &std::path::Path,
        reason: impl fmt::Display,
    ) -> Self {
        TransportError::File {
            key,
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn handshake(stage: Stage, reason: impl fmt::Display) -> Self {
        TransportError::Handshake {
            stage,
            reason: reason.to_string(),
        }
    }

    /// The setting or file key a configuration error is about.
    pub fn config_key(&self) -> Option<&'static str> {
        match self {
            TransportError::File { key, .. } | TransportError::Setting { key, .. } => Some(key),
            _ => None,
        }
    }
}
