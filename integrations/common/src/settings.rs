//! Reading a `[backends.NAME]` table: every error is
//! [`ErrorKind::InvalidConfig`] and names the key; [`Settings::finish`]
//! refuses keys nobody took (a typo must not be silently ignored).
//!
//! ```
//! # use fogg_api::BackendConfig;
//! # use fogg_auth_common::settings::Settings;
//! let config = BackendConfig {
//!     name: "f".into(),
//!     kind: "files".into(),
//!     settings: "acl_file = \"/etc/acl\"\nreload_interval = \"5s\"".parse().unwrap(),
//! };
//! let mut s = Settings::new(&config);
//! let acl = s.string("acl_file")?;
//! let every = s.duration("reload_interval")?;
//! s.finish()?;
//! # assert_eq!(every, Some(std::time::Duration::from_secs(5)));
//! # Ok::<(), fogg_api::BackendError>(())
//! ```

use std::path::PathBuf;
use std::time::Duration;

use fogg_api::{BackendConfig, BackendError, ErrorKind};

/// The remaining keys of one backend table.
pub struct Settings {
    backend: String,
    kind: String,
    table: toml::Table,
    taken: Vec<&'static str>,
}

impl Settings {
    pub fn new(config: &BackendConfig) -> Settings {
        Settings {
            backend: config.name.clone(),
            kind: config.kind.clone(),
            table: config.settings.clone(),
            taken: Vec::new(),
        }
    }

    /// An [`ErrorKind::InvalidConfig`] error for this backend, naming `key`.
    pub fn invalid(&self, key: &str, reason: impl std::fmt::Display) -> BackendError {
        BackendError::new(
            ErrorKind::InvalidConfig,
            self.backend.clone(),
            "build",
            format!("`{key}` {reason}"),
        )
    }

    fn take(&mut self, key: &'static str) -> Option<toml::Value> {
        self.taken.push(key);
        self.table.remove(key)
    }

    /// A string; absent is `None`.
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, BackendError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(key, format!("must be a string, got {other}"))),
        }
    }

    /// A non-empty string naming a file or directory.
    pub fn path(&mut self, key: &'static str) -> Result<Option<PathBuf>, BackendError> {
        match self.string(key)? {
            Some(s) if s.is_empty() => Err(self.invalid(key, "must not be empty")),
            other => Ok(other.map(PathBuf::from)),
        }
    }

    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>, BackendError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(self.invalid(key, format!("must be true or false, got {other}"))),
        }
    }

    /// A non-negative integer that fits `u32`.
    pub fn u32(&mut self, key: &'static str) -> Result<Option<u32>, BackendError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => u32::try_from(n).map(Some).map_err(|_| {
                self.invalid(key, format!("must be between 0 and {}, got {n}", u32::MAX))
            }),
            Some(other) => Err(self.invalid(key, format!("must be an integer, got {other}"))),
        }
    }

    /// A duration: a string like `"10s"`, `"500ms"`, `"1m 30s"`, or an
    /// integer number of seconds.
    pub fn duration(&mut self, key: &'static str) -> Result<Option<Duration>, BackendError> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| self.invalid(key, format!("expected a duration like \"10s\": {e}"))),
            Some(toml::Value::Integer(n)) => u64::try_from(n)
                .map(|n| Some(Duration::from_secs(n)))
                .map_err(|_| self.invalid(key, format!("must not be negative, got {n}"))),
            Some(other) => Err(self.invalid(
                key,
                format!("expected a duration like \"10s\", got {other}"),
            )),
        }
    }

    /// Refuse any key not taken, naming it and the keys this kind knows.
    pub fn finish(self) -> Result<(), BackendError> {
        match self.table.keys().next() {
            None => Ok(()),
            Some(key) => {
                let mut known = self.taken.clone();
                known.sort_unstable();
                known.dedup();
                let known = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(BackendError::new(
                    ErrorKind::InvalidConfig,
                    self.backend,
                    "build",
                    format!(
                        "unknown key `{key}`: the {} backend takes {known}",
                        self.kind
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::new(&BackendConfig {
            name: "b".to_owned(),
            kind: "k".to_owned(),
            settings: text.parse().unwrap(),
        })
    }

    #[test]
    fn values_and_errors_name_the_key() {
        let mut s = settings("a = \"x\"\nd = 3\ne = \"250ms\"\nf = true\nn = 7");
        assert_eq!(s.string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(s.duration("d").unwrap(), Some(Duration::from_secs(3)));
        assert_eq!(s.duration("e").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(s.bool("f").unwrap(), Some(true));
        assert_eq!(s.u32("n").unwrap(), Some(7));
        assert_eq!(s.string("missing").unwrap(), None);
        s.finish().unwrap();

        for (text, key, reason) in [
            ("a = 1", "a", "must be a string"),
            ("a = \"\"", "a", "must not be empty"),
            ("d = \"soon\"", "d", "expected a duration"),
            ("d = -1", "d", "must not be negative"),
            ("f = 1", "f", "must be true or false"),
            ("n = -1", "n", "must be between"),
        ] {
            let mut s = settings(text);
            let e = match key {
                "a" => s.path("a").unwrap_err(),
                "d" => s.duration("d").unwrap_err(),
                "f" => s.bool("f").unwrap_err(),
                _ => s.u32("n").unwrap_err(),
            };
            assert_eq!(e.kind, ErrorKind::InvalidConfig);
            assert!(e.message.contains(&format!("`{key}`")), "{e}");
            assert!(e.message.contains(reason), "{e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_known_ones() {
        let mut s = settings("acl_file = \"x\"\npasword_file = \"y\"");
        s.string("acl_file").unwrap();
        s.string("password_file").unwrap();
        let e = s.finish().unwrap_err();
        assert_eq!(
            e.message,
            "unknown key `pasword_file`: the k backend takes `acl_file`, `password_file`"
        );
    }
}
