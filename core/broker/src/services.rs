//! The backends the broker delegates to, resolved from configuration by the binary.

use std::sync::Arc;

use fogg_api::dynamic::{
    DynAuthenticator, DynAuthorizer, DynEnhancedAuthenticator, DynMessageStore, DynRetainStore,
    DynSessionStore,
};

/// One entry of `[auth] chain`.
#[derive(Clone)]
pub struct ChainLink {
    pub name: String,
    pub authenticator: Option<Arc<dyn DynAuthenticator>>,
    pub authorizer: Option<Arc<dyn DynAuthorizer>>,
    /// What a failure of this backend means.
    pub on_error: OnError,
}

/// `[backends.NAME] on_error`: what a backend that fails or times out means
/// for the client. Never "allow": an outage must not open the door.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse: CONNACK 0x88 Server unavailable (3.1.1: 0x03), a denied
    /// PUBLISH or SUBSCRIBE. Fail closed, the default.
    #[default]
    Fail,
    /// Pass over this backend, as if it had answered "not mine".
    Next,
}

/// Everything the broker calls out to.
#[derive(Clone)]
pub struct Services {
    pub sessions: Arc<dyn DynSessionStore>,
    pub messages: Arc<dyn DynMessageStore>,
    pub retained: Arc<dyn DynRetainStore>,
    /// Tried in order for CONNECT authentication and for ACL checks.
    pub chain: Vec<ChainLink>,
    /// Serve MQTT 5 enhanced authentication (AUTH packets), by method name.
    pub enhanced: Vec<Arc<dyn DynEnhancedAuthenticator>>,
}
