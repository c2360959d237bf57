//! The connection's ACL answers over time: when they go stale (an
//! invalidation, `[auth] acl_cache_ttl`) and how they are loaded again.
//!
//! Two kinds of answers are kept per connection: the chain authorizers'
//! answers per PUBLISH topic (`Client::publish_acl`), and the rules the
//! authenticating backend handed over at CONNECT (`Client::acl`, VerneMQ's
//! model). When they go stale, the first PUBLISH or SUBSCRIBE after that
//! drops the former and fetches the latter again by running the
//! authentication chain once more with the CONNECT credentials (kept, in a
//! copy, only by connections that received rules that way). So a refresh
//! waits on the database once, in the connection's own task, never on every
//! PUBLISH.
//!
//! - The backend still allows: its (new) rules replace the old ones.
//! - It refuses (the password changed, the user was removed): the client is
//!   disconnected (MQTT 5: DISCONNECT 0x87 Not authorized).
//! - It fails: the old rules stay (an outage must not cut off connected
//!   clients), and the fetch is tried again [`RETRY_AFTER`] later.
//!
//! Rules that came from MQTT 5 enhanced authentication cannot be fetched
//! again without the client: they stay until it re-authenticates.
//! Subscriptions already granted stay; new ones are checked afresh.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fogg_api::{AclRules, AuthDecision, ConnectInfo};
use fogg_codec::ReasonCode;
use tokio::time::Instant;

use super::{Client, Close};
use crate::services::OnError;
use crate::state::BrokerState;

/// After a failed fetch, the old rules are used this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// When the connection's answers were loaded, and how to load them again.
pub(crate) struct AclStamp {
    loaded: Instant,
    /// The broker's and the session's invalidation counters at that time.
    broker_epoch: u64,
    session_epoch: u64,
    /// The CONNECT credentials, when an authenticator handed over rules.
    credentials: Option<Box<ConnectInfo>>,
    /// No fetch before this, after a failed one.
    retry_at: Option<Instant>,
}

impl AclStamp {
    /// Answers loaded now; `credentials` when the rules came from the chain.
    pub fn new(
        broker: &BrokerState,
        session_epoch: u64,
        credentials: Option<ConnectInfo>,
    ) -> AclStamp {
        AclStamp {
            loaded: Instant::now(),
            broker_epoch: broker.acl_epoch.load(Ordering::Acquire),
            session_epoch,
            credentials: credentials.map(|mut info| {
                // A copy: the original may share the whole read buffer.
                info.password = info.password.map(|p| bytes::Bytes::copy_from_slice(&p));
                Box::new(info)
            }),
            retry_at: None,
        }
    }
}

/// What the authentication chain says about a CONNECT.
pub(crate) enum ChainAnswer {
    /// A backend allowed, maybe with rules for the connection.
    Allowed(Option<Arc<AclRules>>),
    /// A backend refused these credentials.
    Denied { backend: String },
    /// A backend failed and its policy is to fail closed.
    Unavailable,
    /// Nobody decided; `asked` tells whether any authenticator was asked.
    Undecided { asked: bool },
}

/// Ask the chain's authenticators in order (allow / deny / next / error
/// with the backend's `on_error` policy).
pub(crate) async fn run_chain(broker: &BrokerState, info: &ConnectInfo) -> ChainAnswer {
    let mut asked = false;
    for link in &broker.services.chain {
        let Some(authenticator) = &link.authenticator else {
            continue;
        };
        asked = true;
        match authenticator.authenticate(info).await {
            Ok(AuthDecision::Allow(grant)) => return ChainAnswer::Allowed(grant.acl),
            Ok(AuthDecision::Deny) => {
                return ChainAnswer::Denied {
                    backend: link.name.clone(),
                };
            }
            Ok(AuthDecision::Next) => {}
            Err(e) if link.on_error == OnError::Next => {
                tracing::warn!(backend = %link.name, error = %e, "authentication backend failed; asking the next");
            }
            Err(e) => {
                // An outage must never look like a wrong password.
                tracing::warn!(backend = %link.name, error = %e, "authentication backend failed");
                return ChainAnswer::Unavailable;
            }
        }
    }
    ChainAnswer::Undecided { asked }
}

/// Whether the client's ACL answers went stale and [`refresh`] must run.
/// The common case costs two atomic loads, no clock read and no await.
pub(crate) fn stale(broker: &BrokerState, client: &Client) -> bool {
    let stamp = &client.acl_stamp;
    if stamp.broker_epoch != broker.acl_epoch.load(Ordering::Acquire)
        || stamp.session_epoch != client.session.acl_epoch.load(Ordering::Acquire)
    {
        return true;
    }
    if broker.acl_cache_ttl.is_none() && stamp.retry_at.is_none() {
        return false;
    }
    let now = Instant::now();
    match stamp.retry_at {
        // After a failed fetch: wait, whatever the TTL says.
        Some(at) => now >= at,
        None => broker
            .acl_cache_ttl
            .is_some_and(|ttl| now.duration_since(stamp.loaded) >= ttl),
    }
}

/// Bring stale ACL answers up to date (call when [`stale`] says so); a
/// `Close` when the client's credentials are no longer accepted.
pub(crate) async fn refresh(broker: &BrokerState, client: &mut Client) -> Option<Close> {
    let broker_epoch = broker.acl_epoch.load(Ordering::Acquire);
    let session_epoch = client.session.acl_epoch.load(Ordering::Acquire);
    let stamp = &mut client.acl_stamp;
    let invalidated = stamp.broker_epoch != broker_epoch || stamp.session_epoch != session_epoch;
    let now = Instant::now();
    let why = if invalidated {
        "invalidated"
    } else {
        "expired"
    };
    client.publish_acl = None;
    let fresh = |stamp: &mut AclStamp| {
        stamp.loaded = now;
        stamp.broker_epoch = broker_epoch;
        stamp.session_epoch = session_epoch;
        stamp.retry_at = None;
    };
    let Some(credentials) = &stamp.credentials else {
        tracing::debug!(why, "ACL answers dropped");
        fresh(stamp);
        return None;
    };
    match run_chain(broker, credentials).await {
        ChainAnswer::Allowed(acl) => {
            tracing::debug!(why, rules = acl.is_some(), "ACL rules fetched again");
            client.acl = acl;
            fresh(&mut client.acl_stamp);
            None
        }
        ChainAnswer::Unavailable => {
            tracing::warn!("cannot fetch the ACL rules again; keeping the previous ones");
            let stamp = &mut client.acl_stamp;
            // Tried for these invalidations; again after a pause.
            stamp.broker_epoch = broker_epoch;
            stamp.session_epoch = session_epoch;
            stamp.retry_at = Some(now + RETRY_AFTER);
            None
        }
        ChainAnswer::Denied { backend } => {
            tracing::info!(backend = %backend, "credentials no longer accepted; disconnecting");
            Some(Close::Server(
                ReasonCode::NotAuthorized,
                format!("credentials no longer accepted by backend `{backend}`"),
            ))
        }
        ChainAnswer::Undecided { .. } => {
            tracing::info!("no backend accepts the credentials any more; disconnecting");
            Some(Close::Server(
                ReasonCode::NotAuthorized,
                "credentials no longer accepted".to_owned(),
            ))
        }
    }
}
