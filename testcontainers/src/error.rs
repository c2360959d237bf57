//! The one error type of this crate.

use std::path::PathBuf;

use crate::Service;

/// Why a server could not be had, started, stopped or restarted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing on this machine can provide the service: no URL was given, Docker did not
    /// answer (or is not compiled in), and the local binary is missing. Outside CI, tests
    /// skip on this error (see [`crate::require()`]).
    #[error("{service}: no server available; tried: {}; {hint}", tried.join("; "))]
    Unavailable {
        /// The service asked for.
        service: Service,
        /// One line per way that was tried, saying why it did not work.
        tried: Vec<String>,
        /// How to install the server.
        hint: &'static str,
    },

    /// `FOGG_TEST_<SERVICE>_URL` is set but does not name a usable server.
    #[error("{service}: {var}={url} is not usable: {reason}")]
    External {
        /// The service asked for.
        service: Service,
        /// The environment variable that was read.
        var: &'static str,
        /// Its value.
        url: String,
        /// What went wrong (unparsable URL, nothing answering, ...).
        reason: String,
    },

    /// The server binary is there but the server did not start (or restart), or did not
    /// accept connections in time.
    #[error("{service}: {what}: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    Start {
        /// The service asked for.
        service: Service,
        /// The step that failed (`"initdb"`, `"start on 127.0.0.1:5432"`, ...).
        what: String,
        /// What went wrong.
        reason: String,
        /// The server's log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// The operation does not apply to a server of this origin (e.g. stopping a server
    /// named by `FOGG_TEST_<SERVICE>_URL`, which this crate does not own).
    #[error("{service}: {operation} is not supported for a server from {origin}")]
    Unsupported {
        /// The service asked for.
        service: Service,
        /// The operation asked for.
        operation: &'static str,
        /// Where the server came from.
        origin: String,
    },

    /// A file-system or process operation failed.
    #[error("{service}: {context}: {source}")]
    Io {
        /// The service asked for.
        service: Service,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Docker answered but could not run or control the container.
    #[cfg(feature = "docker")]
    #[error("{service}: docker: {context}: {source}")]
    Docker {
        /// The service asked for.
        service: Service,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: testcontainers::TestcontainersError,
    },
}

impl Error {
    /// True when the server could not be had at all on this machine (nothing installed,
    /// nothing configured): the case a test may skip on outside CI.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// The service this error is about.
    pub fn service(&self) -> Service {
        match self {
            Error::Unavailable { service, .. }
            | Error::External { service, .. }
            | Error::Start { service, .. }
            | Error::Unsupported { service, .. }
            | Error::Io { service, .. } => *service,
            #[cfg(feature = "docker")]
            Error::Docker { service, .. } => *service,
        }
    }

    pub(crate) fn io(service: Service, context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            service,
            context: context.into(),
            source,
        }
    }
}
