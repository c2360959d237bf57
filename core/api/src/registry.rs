//! Backend kinds, compiled in by cargo features and registered by name.
//!
//! The binary registers one [`BackendFactory`] per compiled-in kind; each
//! `[backends.NAME]` table of the configuration becomes one [`Backend`]
//! instance, which may serve several concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::BackendError;
use crate::dynamic::{
    DynAuthCache, DynAuthenticator, DynAuthorizer, DynEnhancedAuthenticator, DynMessageStore,
    DynRetainStore, DynSessionStore,
};

/// A job a backend can do for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Concern {
    Authentication,
    Authorization,
    EnhancedAuthentication,
    Sessions,
    Messages,
    Retained,
    /// Caching authentication answers (`[auth] cache`).
    Cache,
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Concern::Authentication => "authentication",
            Concern::Authorization => "authorization (ACL)",
            Concern::EnhancedAuthentication => "enhanced authentication",
            Concern::Sessions => "session storage",
            Concern::Messages => "message queue storage",
            Concern::Retained => "retained message storage",
            Concern::Cache => "authentication cache",
        };
        f.write_str(s)
    }
}

/// The concerns a backend kind can serve.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities(pub &'static [Concern]);

impl Capabilities {
    pub fn serves(&self, concern: Concern) -> bool {
        self.0.contains(&concern)
    }
}

/// One `[backends.NAME]` table.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub kind: String,
    /// Every key of the table except `kind`, for the factory to deserialize.
    pub settings: toml::Table,
}

/// A built backend instance: one handle per concern it serves.
#[derive(Clone, Default)]
pub struct Backend {
    pub name: String,
    pub kind: String,
    pub authenticator: Option<Arc<dyn DynAuthenticator>>,
    pub authorizer: Option<Arc<dyn DynAuthorizer>>,
    pub enhanced_authenticator: Option<Arc<dyn DynEnhancedAuthenticator>>,
    pub sessions: Option<Arc<dyn DynSessionStore>>,
    pub messages: Option<Arc<dyn DynMessageStore>>,
    pub retained: Option<Arc<dyn DynRetainStore>>,
    pub cache: Option<Arc<dyn DynAuthCache>>,
}

impl Backend {
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Backend {
        Backend {
            name: name.into(),
            kind: kind.into(),
            ..Backend::default()
        }
    }

    /// An instance whose one store serves sessions, queues and retained
    /// messages (so deleting a session through one handle is seen by the others).
    pub fn with_storage<S>(
        name: impl Into<String>,
        kind: impl Into<String>,
        store: Arc<S>,
    ) -> Backend
    where
        S: crate::SessionStore + crate::MessageStore + crate::RetainStore,
    {
        Backend {
            sessions: Some(store.clone()),
            messages: Some(store.clone()),
            retained: Some(store),
            ..Backend::new(name, kind)
        }
    }

    /// Whether this instance has a handle for `concern`.
    pub fn serves(&self, concern: Concern) -> bool {
        match concern {
            Concern::Authentication => self.authenticator.is_some(),
            Concern::Authorization => self.authorizer.is_some(),
            Concern::EnhancedAuthentication => self.enhanced_authenticator.is_some(),
            Concern::Sessions => self.sessions.is_some(),
            Concern::Messages => self.messages.is_some(),
            Concern::Retained => self.retained.is_some(),
            Concern::Cache => self.cache.is_some(),
        }
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Builds backend instances of one kind.
pub trait BackendFactory: Send + Sync {
    /// The `kind = "..."` this factory answers to.
    fn kind(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError>;
}

/// Why a backend could not be built from configuration.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("backends.{name}.kind: unknown backend kind `{kind}`; compiled-in kinds: {known}")]
    UnknownKind {
        name: String,
        kind: String,
        known: String,
    },
    #[error("backends.{name}: {source}")]
    Build {
        name: String,
        #[source]
        source: BackendError,
    },
}

/// The compiled-in backend kinds.
#[derive(Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Box<dyn BackendFactory>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&mut self, factory: Box<dyn BackendFactory>) {
        self.factories.insert(factory.kind(), factory);
    }

    /// Names of every registered kind, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    pub fn capabilities(&self, kind: &str) -> Option<Capabilities> {
        self.factories.get(kind).map(|f| f.capabilities())
    }

    pub fn build(&self, config: &BackendConfig) -> Result<Backend, RegistryError> {
        let factory =
            self.factories
                .get(config.kind.as_str())
                .ok_or_else(|| RegistryError::UnknownKind {
                    name: config.name.clone(),
                    kind: config.kind.clone(),
                    known: self.kinds().join(", "),
                })?;
        factory
            .build(config)
            .map_err(|source| RegistryError::Build {
                name: config.name.clone(),
                source,
            })
    }
}
