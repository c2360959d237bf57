//! fogg-auth-mongodb: authentication and ACLs from MongoDB, in VerneMQ's
//! layout (`vmq_acl_auth` documents, the default) or mosquitto-go-auth's
//! (`users` and `acls` collections), with the official `mongodb` driver.
//!
//! ```toml
//! [backends.mongo]
//! kind = "mongodb"
//! url = "mongodb://fogg:secret@127.0.0.1:27017/?authSource=admin"
//! database = "vernemq"
//! # mode = "vernemq"                 # or "goauth"
//! # collection = "vmq_acl_auth"      # VerneMQ mode
//! # users_collection = "users"       # go-auth mode
//! # acls_collection = "acls"         # go-auth mode
//! # connect_timeout = "2s"
//! # server_selection_timeout = "2s"
//! # pool_size = 10
//!
//! [auth]
//! allow_anonymous = false
//! chain = ["mongo"]
//! ```
//!
//! * The database is asked once per CONNECT; the client's rules are handed
//!   over in its `Grant` (VerneMQ's model), so publishes and subscriptions
//!   never wait on MongoDB.
//! * A CONNECT without a username or a password, or whose user has no
//!   document, is "next" (the next backend, or `allow_anonymous`, decides).
//! * Wrong password: `Deny`. Malformed documents (a field of the wrong
//!   type, an unknown hash, a broken ACL): logged and `Deny`.
//! * MongoDB unreachable: a [`BackendError`] of kind `Unavailable` (or
//!   `Timeout`), retryable — never a `Deny`. The client is made on the first
//!   request (so building never waits on the network) and the driver
//!   reconnects by itself when the server is back. Error messages never
//!   carry the URL's password.
//!
//! See the crate README for every setting.

mod client;
mod convert;
mod goauth;
mod settings;
mod vernemq;

use std::sync::Arc;

use fogg_api::{
    AuthDecision, Authenticator, Backend, BackendConfig, BackendError, BackendFactory,
    Capabilities, Concern, ConnectInfo,
};
use fogg_auth_common::vernemq::credentials;

pub use settings::{Mode, MongoSettings};

use client::Connection;

/// The `mongodb` backend kind.
pub struct MongoFactory;

impl MongoFactory {
    pub const KIND: &'static str = "mongodb";
    pub const CAPABILITIES: Capabilities = Capabilities(&[Concern::Authentication]);
}

impl BackendFactory for MongoFactory {
    fn kind(&self) -> &'static str {
        MongoFactory::KIND
    }

    fn capabilities(&self) -> Capabilities {
        MongoFactory::CAPABILITIES
    }

    /// Checks the settings; does not connect (see [`MongoAuth`]).
    fn build(&self, config: &BackendConfig) -> Result<Backend, BackendError> {
        let settings = MongoSettings::from_config(config)?;
        let auth = MongoAuth::new(&config.name, settings);
        let mut backend = Backend::new(config.name.clone(), MongoFactory::KIND);
        backend.authenticator = Some(Arc::new(auth));
        Ok(backend)
    }
}

/// One `mongodb` backend instance.
pub struct MongoAuth {
    name: String,
    connection: Connection,
}

impl MongoAuth {
    /// An instance named `name` (the `[backends.NAME]`); the client is made
    /// on the first request.
    pub fn new(name: &str, settings: MongoSettings) -> MongoAuth {
        MongoAuth {
            name: name.to_owned(),
            connection: Connection::new(name, settings),
        }
    }

    pub fn settings(&self) -> &MongoSettings {
        self.connection.settings()
    }
}

impl Authenticator for MongoAuth {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        // Only CONNECTs with both can succeed through this backend (VerneMQ's
        // rule; go-auth could never match an empty password either).
        let Some((username, password)) = credentials(info) else {
            return Ok(AuthDecision::Next);
        };
        match self.settings().mode {
            Mode::VerneMq => vernemq::authenticate(self, info, username).await,
            Mode::GoAuth => goauth::authenticate(self, username, password).await,
        }
    }
}
