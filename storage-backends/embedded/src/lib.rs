//! fogg-storage-embedded: persistent sessions, offline queues and retained
//! messages on local disk, with no server to run. Fogg's default store.
//!
//! Built on the [fjall](https://docs.rs/fjall) LSM engine (the README has
//! the measurement behind that choice). One directory holds everything:
//!
//! ```text
//! <path>/fogg-embedded.lock   exclusive lock: a second broker fails at once
//! <path>/store/               the engine's journals and tables
//! ```
//!
//! Configure it with:
//!
//! ```toml
//! [backends.disk]
//! kind = "embedded"
//! path = "/var/lib/fogg"     # required; the broker passes [broker] data_dir
//! durability = "os"          # or "fsync"; "os" is the default
//! ```
//!
//! * `durability = "os"`: a write is acknowledged once the journal write to
//!   the operating system returned: it survives the broker being killed
//!   (`kill -9`), not a power cut.
//! * `durability = "fsync"`: acknowledged after `fdatasync`; concurrent
//!   writers share each sync (group commit, see [`store`]).
//!
//! No trait method touches the engine on a reactor thread: writes go to the
//! store's writer thread (`fogg-embedded-writer`), which commits everything
//! pending as one batch and answers through oneshots; reads run on tokio's
//! blocking pool; queue lengths, delivery states and incoming QoS 2 ids are
//! answered from memory.

mod codec;
mod keys;
mod retained;
mod store;

use std::path::PathBuf;
use std::sync::Arc;

use fogg_api::{
    Backend, BackendConfig, BackendError, BackendFactory, Capabilities, Concern, ErrorKind,
};

pub use store::{
    Durability, ENGINE_DIR, EmbeddedStore, JOURNAL_CAP, JournalLoss, LOCK_FILE, Options, WritePath,
};

/// Builds `kind = "embedded"` backends: one open store per `[backends.NAME]`
/// table, shared by its three handles.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbeddedFactory;

impl EmbeddedFactory {
    pub const KIND: &'static str = "embedded";
    pub const CAPABILITIES: Capabilities =
        Capabilities(&[Concern::Sessions, Concern::Messages, Concern::Retained]);
}

/// The settings of one `[backends.NAME]` table of kind `embedded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub path: PathBuf,
    pub durability: Durability,
}

impl Settings {
    /// Reads `path` (required) and `durability` (`"os"` or `"fsync"`);
    /// refuses any other key, naming it.
    pub fn from_config(config: &BackendConfig) -> Result<Settings, BackendError> {
        let invalid = |message: String| {
            BackendError::new(
                ErrorKind::InvalidConfig,
                config.name.clone(),
                "build",
                message,
            )
        };
        let mut path = None;
        let mut durability = Durability::Os;
        for (key, value) in &config.settings {
            match key.as_str() {
                "path" => match value.as_str() {
                    Some(p) if !p.is_empty() => path = Some(PathBuf::from(p)),
                    _ => {
                        return Err(invalid(format!(
                            "`path` must be a non-empty string (a directory), got {value}"
                        )));
                    }
                },
                "durability" => {
                    durability = match value.as_str() {
                        Some("os") => Durability::Os,
                        Some("fsync") => Durability::Fsync,
                        _ => {
                            return Err(invalid(format!(
                                "`durability` must be \"os\" or \"fsync\", got {value}"
                            )));
                        }
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key `{other}`: the embedded backend takes `path` and `durability`"
                    )));
                }
            }
        }
        let path = path.ok_or_else(|| {
            invalid("`path` is required: the directory the store lives in".to_owned())
        })?;
        Ok(Settings { path, durability })
    }
}

impl BackendFactory for EmbeddedFactory {
    fn kind(&self) -> &'static str {
        EmbeddedFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        EmbeddedFactory::CAPABILITIES
    }

    /// Opens the store (blocking: the broker builds backends at start).
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = Settings::from_config(config)?;
        let store = Arc::new(EmbeddedStore::open(
            &settings.path,
            Options {
                name: config.name.clone(),
                durability: settings.durability,
                ..Options::default()
            },
        )?);
        Ok(Backend::with_storage(
            config.name.clone(),
            EmbeddedFactory::KIND,
            store,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &str) -> BackendConfig {
        BackendConfig {
            name: "disk".into(),
            kind: "embedded".into(),
            settings: settings.parse().unwrap(),
        }
    }

    #[test]
    fn factory_declares_kind_and_capabilities() {
        assert_eq!(EmbeddedFactory.kind(), "embedded");
        let caps = EmbeddedFactory.capabilities();
        for concern in [Concern::Sessions, Concern::Messages, Concern::Retained] {
            assert!(caps.serves(concern), "{concern}");
        }
        for concern in [
            Concern::Authentication,
            Concern::Authorization,
            Concern::EnhancedAuthentication,
        ] {
            assert!(!caps.serves(concern), "{concern}");
        }
    }

    #[test]
    fn settings_are_parsed_and_checked() {
        let s = Settings::from_config(&config("path = \"/x\"")).unwrap();
        assert_eq!(
            s,
            Settings {
                path: "/x".into(),
                durability: Durability::Os
            }
        );
        let s = Settings::from_config(&config("path = \"/x\"\ndurability = \"fsync\"")).unwrap();
        assert_eq!(s.durability, Durability::Fsync);

        for (settings, needle) in [
            ("", "`path` is required"),
            ("path = \"\"", "`path` must be"),
            ("path = 3", "`path` must be"),
            (
                "path = \"/x\"\ndurability = \"always\"",
                "`durability` must be",
            ),
            ("path = \"/x\"\ndurability = true", "`durability` must be"),
            ("path = \"/x\"\nfsync = true", "unknown key `fsync`"),
        ] {
            let err = Settings::from_config(&config(settings)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidConfig, "{settings}");
            assert!(!err.retryable);
            assert_eq!(err.backend, "disk");
            assert!(err.message.contains(needle), "{settings}: {}", err.message);
        }
    }

    #[test]
    fn registry_reports_bad_settings_with_the_backend_name() {
        let mut registry = fogg_api::Registry::new();
        registry.register(Box::new(EmbeddedFactory));
        assert_eq!(registry.kinds(), ["embedded"]);
        let err = registry
            .build(&config("path = \"/x\"\nmax_messages = 10"))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("backends.disk:"), "{text}");
        assert!(text.contains("`max_messages`"), "{text}");
    }

    #[test]
    fn build_serves_exactly_the_storage_concerns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let backend = EmbeddedFactory
            .build(&config(&format!("path = {:?}", path.display().to_string())))
            .unwrap();
        assert_eq!(backend.kind, "embedded");
        assert!(backend.serves(Concern::Sessions));
        assert!(backend.serves(Concern::Messages));
        assert!(backend.serves(Concern::Retained));
        assert!(!backend.serves(Concern::Authentication));
        assert!(path.join(LOCK_FILE).is_file());
        assert!(path.join(ENGINE_DIR).is_dir());
    }
}
