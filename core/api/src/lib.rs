//! fogg-api: the contract between the broker core and its backends.
//!
//! Each concern has one trait written with plain `async fn`s
//! ([`Authenticator`], [`Authorizer`], [`EnhancedAuthenticator`],
//! [`SessionStore`], [`MessageStore`], [`RetainStore`]). The core holds them as
//! `Arc<dyn Dyn...>` through the object-safe shims in [`dynamic`], which every
//! implementation gets for free.
//!
//! Decisions are three-way ([`Decision`]): allow, deny, or "not mine" so the
//! next backend in the chain is asked. Failures are a [`BackendError`], never a
//! denial: a database outage must not look like a wrong password.

pub mod acl;
pub mod auth;
pub mod cache;
pub mod dynamic;
pub mod error;
pub mod layers;
pub mod registry;
pub mod storage;

pub use acl::{
    AclRules, PublishDecision, PublishModifiers, PublishRule, SubscribeDecision, SubscribeRule,
    SubscriptionRewrite,
};
pub use auth::{
    AuthDecision, AuthStep, Authenticator, Authorizer, ClientInfo, ConnectInfo, Decision,
    EnhancedAuthContext, EnhancedAuthenticator, Grant, InvalidateScope, PublishRequest,
    SubscribeRequest,
};
pub use cache::AuthCache;
pub use error::{BackendError, ErrorKind};
/// MQTT topic name and filter rules, for backends that read patterns.
pub use fogg_codec::topic;
pub use fogg_codec::{ProtocolVersion, QoS};
pub use registry::{
    Backend, BackendConfig, BackendFactory, Capabilities, Concern, Registry, RegistryError,
};
pub use storage::{
    DeliveryStage, DeliveryState, MessageStore, RetainStore, SessionKey, SessionStore,
    StoredMessage, StoredSession, StoredSubscription, StoredWill,
};
