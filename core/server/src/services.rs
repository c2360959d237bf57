//! Backend registration and the broker's [`Services`], built from a checked
//! configuration. This is the only place that knows which backend crates are
//! compiled in (one cargo feature each).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fogg_api::dynamic::{DynAuthCache, DynAuthenticator, DynAuthorizer};
use fogg_api::layers::{CachedAuthenticator, Resilient};
use fogg_api::{Backend, BackendConfig, Registry, RegistryError};
use fogg_broker::{ChainLink, Config, OnError, Services};
use serde::Deserialize;

use crate::config_loader::Provenance;
use crate::error::{ConfigError, Key};
use crate::validate::{STORAGE_EMBEDDED, STORAGE_MEMORY};

/// Every backend kind this build can create.
pub fn registry() -> Registry {
    #[allow(unused_mut)] // Mutated only when a backend feature is on.
    let mut registry = Registry::new();
    #[cfg(feature = "storage-memory")]
    registry.register(Box::new(fogg_storage_memory::MemoryFactory));
    #[cfg(feature = "storage-embedded")]
    registry.register(Box::new(fogg_storage_embedded::EmbeddedFactory));
    #[cfg(feature = "auth-files")]
    registry.register(Box::new(fogg_auth_files::FilesFactory));
    #[cfg(feature = "auth-mongodb")]
    registry.register(Box::new(fogg_auth_mongodb::MongoFactory));
    #[cfg(feature = "auth-redis")]
    registry.register(Box::new(fogg_auth_redis::RedisFactory));
    #[cfg(feature = "auth-memcached")]
    registry.register(Box::new(fogg_auth_memcached::MemcachedFactory));
    #[cfg(feature = "auth-postgres")]
    registry.register(Box::new(fogg_auth_postgres::PostgresFactory));
    #[cfg(feature = "auth-mysql")]
    registry.register(Box::new(fogg_auth_mysql::MysqlFactory));
    registry
}

/// Build every `[backends.NAME]` instance and wire the broker's services.
/// Expects a configuration that passed [`crate::validate::check`]; what a
/// factory refuses (a bad setting) is reported against `backends.NAME`.
/// Whether the built-in on-disk store is opened (at start) or only checked
/// (`--check` must not lock the data directory of a broker already running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Open,
    CheckOnly,
}

pub fn build(
    config: &Config,
    provenance: &Provenance,
    registry: &Registry,
    storage: Storage,
) -> Result<Services, ConfigError> {
    let err = |key: Key, reason: String| ConfigError::key(provenance.origin(&key), key, reason);

    // Every defined instance is built, used or not, so that `--check`
    // catches a bad setting before the day the instance is put to use.
    let mut backends = BTreeMap::new();
    let mut policies = BTreeMap::new();
    for (name, table) in &config.backends {
        let mut settings = table.clone();
        let policy = Policy::take(&mut settings)
            .map_err(|(key, reason)| err(Key::of(&["backends", name, key]), reason))?;
        policies.insert(name.clone(), policy);
        let kind = match settings.remove("kind") {
            Some(toml::Value::String(kind)) => kind,
            _ => {
                return Err(err(
                    Key::of(&["backends", name, "kind"]),
                    "must be a string".to_owned(),
                ));
            }
        };
        let backend_config = BackendConfig {
            name: name.clone(),
            kind,
            settings,
        };
        let backend = registry
            .build(&backend_config)
            .map_err(|e| registry_error(e, &err))?;
        tracing::debug!(backend = %name, kind = %backend.kind, "backend built");
        backends.insert(name.clone(), backend);
    }
    for name in backends.keys() {
        let used = config.storage.backend == *name
            || config.auth.chain.contains(name)
            || config.auth.cache == *name;
        if !used {
            tracing::warn!(backend = %name, "backend is defined but not used by [storage] or [auth] chain");
        }
    }

    let storage_key = Key::of(&["storage", "backend"]);
    let builtin = |kind: &str, settings: toml::Table| {
        registry
            .build(&BackendConfig {
                name: kind.to_owned(),
                kind: kind.to_owned(),
                settings,
            })
            .map_err(|e| registry_error(e, &err))
    };
    let store = match config.storage.backend.as_str() {
        STORAGE_EMBEDDED if storage == Storage::Open => {
            let mut settings = toml::Table::new();
            settings.insert(
                "path".to_owned(),
                toml::Value::String(config.broker.data_dir.display().to_string()),
            );
            settings.insert(
                "durability".to_owned(),
                toml::Value::String(config.storage.durability.as_str().to_owned()),
            );
            builtin(STORAGE_EMBEDDED, settings).map_err(|e| {
                err(
                    Key::of(&["broker", "data_dir"]),
                    format!("cannot open the embedded store: {e}"),
                )
            })?
        }
        // Checking only: the services are never started, and the real store
        // may be held by a running broker.
        STORAGE_EMBEDDED => builtin(STORAGE_MEMORY, toml::Table::new())?,
        // A fresh instance, not shared with any named backend.
        STORAGE_MEMORY => registry
            .build(&BackendConfig {
                name: STORAGE_MEMORY.to_owned(),
                kind: STORAGE_MEMORY.to_owned(),
                settings: toml::Table::new(),
            })
            .map_err(|e| registry_error(e, &err))?,
        name => backends.get(name).cloned().ok_or_else(|| {
            err(
                storage_key.clone(),
                format!("`{name}` is not a defined backend"),
            )
        })?,
    };
    // The factory's capabilities were checked; a factory whose instance then
    // lacks a handle is a bug in that backend, reported rather than panicking.
    let missing = |what: &str| {
        err(
            storage_key.clone(),
            format!(
                "backend `{}` (kind `{}`) built no {what} handle",
                store.name, store.kind
            ),
        )
    };
    let sessions = store
        .sessions
        .clone()
        .ok_or_else(|| missing("session store"))?;
    let messages = store
        .messages
        .clone()
        .ok_or_else(|| missing("message store"))?;
    let retained = store
        .retained
        .clone()
        .ok_or_else(|| missing("retained store"))?;

    let cache: Option<(String, Arc<dyn DynAuthCache>)> = if config.auth.cache.is_empty() {
        None
    } else {
        let key = Key::of(&["auth", "cache"]);
        let name = &config.auth.cache;
        let backend = backends
            .get(name)
            .ok_or_else(|| err(key.clone(), format!("`{name}` is not a defined backend")))?;
        let handle = backend.cache.clone().ok_or_else(|| {
            err(
                key,
                format!(
                    "backend `{name}` (kind `{}`) cannot serve as an authentication cache",
                    backend.kind
                ),
            )
        })?;
        Some((name.clone(), handle))
    };
    let chain = config
        .auth
        .chain
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let backend: &Backend = backends.get(name).ok_or_else(|| {
                err(
                    Key::of(&["auth", "chain"]).index(i),
                    format!("`{name}` is not a defined backend"),
                )
            })?;
            let policy = policies.get(name).copied().unwrap_or_default();
            let authenticator = backend.authenticator.clone().map(|inner| {
                let guarded: Arc<dyn DynAuthenticator> = Arc::new(Resilient::new(
                    inner,
                    name.clone(),
                    policy.timeout,
                    policy.retries,
                ));
                match &cache {
                    // The cache sits outside the timeout: a hit never waits
                    // on the database.
                    Some((cache_name, cache)) => Arc::new(CachedAuthenticator::new(
                        guarded,
                        name.clone(),
                        cache.clone(),
                        cache_name.clone(),
                        config.auth.cache_ttl,
                        config.auth.cache_denials,
                    ))
                        as Arc<dyn DynAuthenticator>,
                    None => guarded,
                }
            });
            let authorizer = backend.authorizer.clone().map(|inner| {
                Arc::new(Resilient::new(
                    inner,
                    name.clone(),
                    policy.timeout,
                    policy.retries,
                )) as Arc<dyn DynAuthorizer>
            });
            Ok(ChainLink {
                name: name.clone(),
                authenticator,
                authorizer,
                on_error: policy.on_error,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;

    Ok(Services {
        sessions,
        messages,
        retained,
        chain,
        // MQTT 5 enhanced authentication is not wired to configuration yet.
        enhanced: Vec::new(),
    })
}

/// Keys any `[backends.NAME]` table may carry besides the backend's own:
/// the layers the binary wraps around it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Policy {
    /// What a failure or timeout means: `fail` (refuse, the default) or
    /// `next` (ask the next backend of the chain).
    on_error: OnError,
    /// Longest wait for one answer.
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    /// Further attempts after a transient error (connection lost, timeout).
    retries: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            on_error: OnError::Fail,
            timeout: Duration::from_secs(5),
            retries: 1,
        }
    }
}

impl Policy {
    const KEYS: [&'static str; 3] = ["on_error", "timeout", "retries"];

    /// Take the policy keys out of a backend's table, leaving the rest for
    /// the backend's factory. An error names the key and the reason.
    fn take(settings: &mut toml::Table) -> Result<Policy, (&'static str, String)> {
        let mut own = toml::Table::new();
        for key in Policy::KEYS {
            if let Some(value) = settings.remove(key) {
                own.insert(key.to_owned(), value);
            }
        }
        Policy::deserialize(toml::Value::Table(own.clone())).map_err(|e| {
            // Name the offending key: try each one alone.
            let key = Policy::KEYS
                .into_iter()
                .find(|key| {
                    own.get(*key).is_some_and(|value| {
                        let mut one = toml::Table::new();
                        one.insert((*key).to_owned(), value.clone());
                        Policy::deserialize(toml::Value::Table(one)).is_err()
                    })
                })
                .unwrap_or("on_error");
            (key, e.message().to_owned())
        })
    }
}

fn registry_error(e: RegistryError, err: &impl Fn(Key, String) -> ConfigError) -> ConfigError {
    match e {
        RegistryError::UnknownKind { name, kind, known } => err(
            Key::of(&["backends", &name, "kind"]),
            format!("unknown backend kind `{kind}`; compiled-in kinds: {known}"),
        ),
        // The backend's message says which setting and why; it is masked
        // by `ConfigError::key` because it may quote a URL.
        RegistryError::Build { name, source } => {
            err(Key::of(&["backends", &name]), source.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::config_loader::load_dir;

    fn build_files(files: &[(&str, &str)]) -> Result<Services, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let loaded = load_dir(dir.path()).unwrap();
        build(
            &loaded.config,
            &loaded.provenance,
            &registry(),
            Storage::CheckOnly,
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_stores_are_compiled_in_by_default() {
        let kinds = registry().kinds();
        assert!(
            kinds.contains(&"embedded") && kinds.contains(&"memory"),
            "{kinds:?}"
        );
        #[cfg(feature = "auth-files")]
        assert!(kinds.contains(&"files"), "{kinds:?}");
    }

    #[test]
    fn the_defaults_build_a_memory_store_and_no_chain() {
        let services = build_files(&[]).unwrap();
        assert!(services.chain.is_empty());
        assert!(services.enhanced.is_empty());
    }

    #[test]
    fn policy_keys_are_checked_and_taken_from_the_backend_table() {
        // `memory` knows none of these keys: the binary takes them first.
        let ok = build_files(&[(
            "b.toml",
            "[backends.mem]\nkind = \"memory\"\non_error = \"next\"\ntimeout = \"250ms\"\nretries = 0\n",
        )]);
        assert!(ok.is_ok(), "{:?}", ok.err());
        for (line, key, reason) in [
            ("timeout = \"soon\"", "timeout", "expected a duration"),
            (
                "on_error = \"allow\"",
                "on_error",
                "unknown variant `allow`",
            ),
            ("retries = -1", "retries", "invalid value"),
        ] {
            let text = build_files(&[(
                "b.toml",
                &format!("[backends.mem]\nkind = \"memory\"\n{line}\n"),
            )])
            .err()
            .unwrap();
            assert!(
                text.contains(&format!("b.toml: backends.mem.{key}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{text}");
        }
    }

    #[test]
    fn a_named_backend_serves_storage() {
        let services = build_files(&[(
            "s.toml",
            "[storage]\nbackend = \"mem\"\n[backends.mem]\nkind = \"memory\"\n",
        )]);
        assert!(services.is_ok());
    }

    #[test]
    fn factory_refusals_name_the_backend_and_mask_urls() {
        let Err(text) = build_files(&[(
            "s.toml",
            "[backends.mem]\nkind = \"memory\"\nurl = \"redis://u:hunter2@h\"\n",
        )]) else {
            panic!("the memory factory takes no settings");
        };
        assert!(text.contains("s.toml: backends.mem: "), "{text}");
        assert!(text.contains("unknown key `url`"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
