//! A file parsed into `T`, re-read when it changes.
//!
//! A change is a different (modification time, size, inode). A re-read that
//! fails (the file is gone, unreadable, or does not parse) keeps the last
//! good content and logs the file, the line and the cause once per change.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::ParseError;

/// What identifies one version of a file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

pub(crate) type Parser<T> = fn(&Path, &str) -> Result<T, ParseError>;

pub(crate) struct Watched<T> {
    path: PathBuf,
    /// "password file" / "ACL file", for log lines.
    what: &'static str,
    backend: String,
    parse: Parser<T>,
    current: ArcSwap<T>,
    /// The version last read (successfully or not); `None` when missing.
    seen: Mutex<Option<Stamp>>,
}

impl<T: Default> Watched<T> {
    /// Read the file now. A missing file is empty content (logged), picked
    /// up when it appears; a file that exists but cannot be read or parsed
    /// is an error.
    pub fn open(
        backend: &str,
        what: &'static str,
        path: PathBuf,
        parse: Parser<T>,
    ) -> Result<Watched<T>, ParseError> {
        let (content, seen) = match stamp(&path) {
            Ok(s) => (read(&path, parse)?, Some(s)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(backend, file = %path.display(), "{what} does not exist (yet): nobody matches until it appears");
                (T::default(), None)
            }
            Err(e) => return Err(ParseError::io(&path, &e)),
        };
        Ok(Watched {
            path,
            what,
            backend: backend.to_owned(),
            parse,
            current: ArcSwap::from_pointee(content),
            seen: Mutex::new(seen),
        })
    }
}

impl<T> Watched<T> {
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-read the file if it changed since last time (blocking I/O: call
    /// off the reactor). Returns whether new content was installed.
    pub fn refresh(&self) -> bool {
        let mut seen = self.seen.lock();
        let now = match stamp(&self.path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(backend = %self.backend, file = %self.path.display(), error = %e, "cannot check the {}; keeping its previous content", self.what);
                return false;
            }
        };
        if now == *seen {
            return false;
        }
        *seen = now;
        if now.is_none() {
            tracing::warn!(backend = %self.backend, file = %self.path.display(), "the {} disappeared; keeping its previous content", self.what);
            return false;
        }
        match read(&self.path, self.parse) {
            Ok(content) => {
                self.current.store(Arc::new(content));
                tracing::info!(backend = %self.backend, file = %self.path.display(), "{} re-read", self.what);
                true
            }
            Err(e) => {
                tracing::warn!(backend = %self.backend, file = %self.path.display(), error = %e, "cannot use the changed {}; keeping its previous content", self.what);
                false
            }
        }
    }
}

fn read<T>(path: &Path, parse: Parser<T>) -> Result<T, ParseError> {
    let bytes = std::fs::read(path).map_err(|e| ParseError::io(path, &e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // The line of the first bad byte.
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        ParseError::new(path, line, "not valid UTF-8".to_owned())
    })?;
    parse(path, &text)
}
