//! One error type at the backend boundary.

use std::fmt;

/// What went wrong, independent of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The backend could not be reached or refused service.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// The backend's configuration is wrong.
    InvalidConfig,
    /// The backend was asked for something it does not do.
    Unsupported,
    /// The backend answered with data it could not make sense of.
    InvalidData,
    /// Anything else.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidConfig => "invalid config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidData => "invalid data",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// A backend failure, with enough context to log it usefully.
#[derive(Debug, thiserror::Error)]
#[error("backend `{backend}` {operation}: {kind}: {message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    /// The configured backend name (`[backends.NAME]`), or its kind.
    pub backend: String,
    /// What was being done, e.g. "authenticate".
    pub operation: &'static str,
    /// Whether trying again may succeed.
    pub retryable: bool,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    pub fn new(
        kind: ErrorKind,
        backend: impl Into<String>,
        operation: &'static str,
        message: impl Into<String>,
    ) -> BackendError {
        BackendError {
            kind,
            backend: backend.into(),
            operation,
            retryable: matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The same error for another waiter on the same failed write: every
    /// field but the source, which cannot be cloned.
    pub fn copy_without_source(&self) -> BackendError {
        BackendError {
            kind: self.kind,
            backend: self.backend.clone(),
            operation: self.operation,
            retryable: self.retryable,
            message: self.message.clone(),
            source: None,
        }
    }
}
