//! Authentication and authorization traits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fogg_codec::{ProtocolVersion, QoS};

use crate::{AclRules, BackendError, PublishDecision, SubscribeDecision};

/// A three-way answer: backends in a chain say allow, deny, or pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// "Not mine": ask the next backend in the chain.
    Next,
}

/// Who is connecting, as seen at CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// The listener's tenant prefix ("" for none).
    pub mountpoint: String,
    pub peer: SocketAddr,
    /// The listener's configured name.
    pub listener: String,
    pub protocol: ProtocolVersion,
    pub clean_start: bool,
}

/// What a backend grants with "yes" at CONNECT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    /// The client's access rules, evaluated by the broker for the whole
    /// connection (VerneMQ's model); `None` leaves authorization to the static
    /// rules and the chain's authorizers.
    pub acl: Option<Arc<AclRules>>,
}

/// The answer at CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthDecision {
    Allow(Grant),
    /// Wrong credentials (CONNACK 0x86 / 0x04).
    Deny,
    /// "Not mine": ask the next backend.
    Next,
}

impl AuthDecision {
    /// Allowed, with no rules of its own.
    pub fn allow() -> AuthDecision {
        AuthDecision::Allow(Grant::default())
    }

    /// Allowed, with these rules for the connection.
    pub fn allow_with(acl: AclRules) -> AuthDecision {
        AuthDecision::Allow(Grant {
            acl: Some(Arc::new(acl)),
        })
    }
}

impl From<Decision> for AuthDecision {
    fn from(decision: Decision) -> AuthDecision {
        match decision {
            Decision::Allow => AuthDecision::allow(),
            Decision::Deny => AuthDecision::Deny,
            Decision::Next => AuthDecision::Next,
        }
    }
}

/// Checks credentials at CONNECT.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(
        &self,
        info: &ConnectInfo,
    ) -> impl Future<Output = Result<AuthDecision, BackendError>> + Send;

    /// Forget the answers this backend (or a layer around it, such as the
    /// shared `[auth] cache`) keeps for `scope`, so the next
    /// [`authenticate`](Authenticator::authenticate) asks the source again.
    /// Best effort: a failure is logged by the implementation, never
    /// returned. The default keeps nothing, so has nothing to forget.
    fn invalidate(&self, scope: &InvalidateScope) -> impl Future<Output = ()> + Send {
        let _ = scope;
        std::future::ready(())
    }
}

/// Which cached authentication and authorization answers to drop (the
/// broker's `invalidate_acl`, SIGHUP, the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidateScope {
    /// Every answer, of every client.
    All,
    /// The answers of one client id on one mountpoint.
    Client {
        mountpoint: String,
        client_id: String,
    },
    /// The answers of every client connected with this username.
    Username(String),
}

impl std::fmt::Display for InvalidateScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvalidateScope::All => f.write_str("all clients"),
            InvalidateScope::Client {
                mountpoint,
                client_id,
            } if mountpoint.is_empty() => write!(f, "client `{client_id}`"),
            InvalidateScope::Client {
                mountpoint,
                client_id,
            } => write!(f, "client `{client_id}` on mountpoint `{mountpoint}`"),
            InvalidateScope::Username(user) => write!(f, "username `{user}`"),
        }
    }
}

/// The identity of an established session, for ACL checks.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub mountpoint: String,
    pub peer: SocketAddr,
    pub protocol: ProtocolVersion,
}

/// A PUBLISH to check (topic without the mountpoint).
#[derive(Debug, Clone)]
pub struct PublishRequest<'a> {
    pub topic: &'a str,
    pub qos: QoS,
    pub retain: bool,
    pub payload_len: usize,
}

/// One SUBSCRIBE filter to check (without the mountpoint).
#[derive(Debug, Clone)]
pub struct SubscribeRequest<'a> {
    pub filter: &'a str,
    pub qos: QoS,
}

/// Decides, per request, what an authenticated client may publish and
/// subscribe to (backends that cannot hand over [`AclRules`] at CONNECT, such
/// as files re-read on change or webhooks). The broker caches the answers per
/// connection.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> impl Future<Output = Result<PublishDecision, BackendError>> + Send;

    fn authorize_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> impl Future<Output = Result<SubscribeDecision, BackendError>> + Send;
}

/// One round of MQTT 5 enhanced authentication (AUTH packets, spec 4.12).
#[derive(Debug, Clone)]
pub struct EnhancedAuthContext {
    pub client_id: String,
    pub username: Option<String>,
    pub mountpoint: String,
    pub method: String,
    /// 0 for the data carried by CONNECT (or the AUTH 0x19 starting a
    /// re-authentication), then 1, 2, ... for each AUTH 0x18 from the client.
    pub round: u32,
    /// Whether this exchange re-authenticates an established connection.
    pub reauthenticate: bool,
    /// Whatever the backend returned as `state` in the previous round.
    pub state: Option<Bytes>,
}

/// The outcome of one enhanced-authentication round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send AUTH 0x18 with `data`; keep `state` for the next round.
    Continue {
        data: Option<Bytes>,
        state: Option<Bytes>,
    },
    /// Authentication succeeded; `data` goes into CONNACK / AUTH 0x00.
    Success { data: Option<Bytes> },
    /// Authentication failed (CONNACK / DISCONNECT 0x87 Not authorized).
    Failure,
}

/// Serves one or more MQTT 5 authentication methods.
pub trait EnhancedAuthenticator: Send + Sync + 'static {
    /// The methods this backend serves; others get 0x8C Bad authentication method.
    fn methods(&self) -> Vec<String>;

    fn auth_step(
        &self,
        context: &EnhancedAuthContext,
        data: Option<Bytes>,
    ) -> impl Future<Output = Result<AuthStep, BackendError>> + Send;
}
