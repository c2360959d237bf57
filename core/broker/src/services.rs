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
