//! Helpers the cases share: building the backend as production does,
//! connecting, and checking publishes and subscriptions the way the broker
//! does.

use std::sync::Arc;

use bytes::Bytes;
use fogg_api::dynamic::{DynAuthenticator, DynAuthorizer};
use fogg_api::{
    AclRules, AuthDecision, Backend, BackendConfig, ClientInfo, Concern, ConnectInfo,
    ProtocolVersion, PublishDecision, PublishRequest, QoS, Registry, SubscribeDecision,
    SubscribeRequest,
};

use crate::fixture::{AuthFixture, HashMethod, PublishAcl, SubscribeAcl, TestUser};

/// The `[backends.NAME]` name the suite builds under.
pub const BACKEND_NAME: &str = "auth-behavior";

/// A username no other case or run uses (at most 128 characters, VerneMQ's
/// column width).
pub fn unique_username(case: &str) -> String {
    let mut name = format!("{case}-{:016x}", rand::random::<u64>());
    name.truncate(128);
    name
}

/// A client id no other case or run uses.
pub fn unique_client_id(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

/// A mountpoint of at most 10 characters (VerneMQ's `varchar(10)`).
pub fn unique_mountpoint() -> String {
    format!("m{:09x}", rand::random::<u64>() & 0xf_ffff_ffff)
}

/// A user with the fixture's default hash method, client id `*`, default
/// mountpoint, and no ACL entries.
pub fn user(fixture: &impl AuthFixture, username: &str, password: &str) -> TestUser {
    TestUser {
        mountpoint: String::new(),
        client_id: "*".to_owned(),
        username: username.to_owned(),
        password: Some(password.to_owned()),
        hash: fixture.features().default_method().clone(),
        publish_acl: Vec::new(),
        subscribe_acl: Vec::new(),
    }
}

/// Publish and subscribe entries with only a pattern each.
pub fn plain_acl(publish: &[&str], subscribe: &[&str]) -> (Vec<PublishAcl>, Vec<SubscribeAcl>) {
    (
        publish.iter().map(|p| PublishAcl::pattern(*p)).collect(),
        subscribe
            .iter()
            .map(|p| SubscribeAcl::pattern(*p))
            .collect(),
    )
}

/// Build the backend through a `Registry`, as the binary does from
/// `[backends.auth-behavior] kind = "..."`, for users stored with `hash`.
pub fn build(fixture: &impl AuthFixture, hash: &HashMethod) -> Backend {
    let factory = fixture.factory();
    let kind = factory.kind();
    assert!(
        factory.capabilities().serves(Concern::Authentication),
        "kind `{kind}` does not declare authentication"
    );
    let mut registry = Registry::new();
    registry.register(factory);
    let backend = registry
        .build(&BackendConfig {
            name: BACKEND_NAME.to_owned(),
            kind: kind.to_owned(),
            settings: fixture.settings(hash),
        })
        .unwrap_or_else(|e| panic!("building the `{kind}` backend: {e}"));
    assert!(
        backend.authenticator.is_some(),
        "kind `{kind}` built no authenticator"
    );
    backend
}

/// Build with the fixture's default hash method.
pub fn build_default(fixture: &impl AuthFixture) -> Backend {
    build(fixture, fixture.features().default_method())
}

/// Who connects.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub mountpoint: &'a str,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

impl<'a> Login<'a> {
    /// Default mountpoint, client id `behavior-client`.
    pub fn new(username: &'a str, password: &'a str) -> Login<'a> {
        Login {
            mountpoint: "",
            client_id: "behavior-client",
            username: Some(username),
            password: Some(password.as_bytes()),
        }
    }

    pub fn client_id(self, client_id: &'a str) -> Login<'a> {
        Login { client_id, ..self }
    }

    pub fn mountpoint(self, mountpoint: &'a str) -> Login<'a> {
        Login { mountpoint, ..self }
    }

    fn connect_info(&self) -> ConnectInfo {
        ConnectInfo {
            client_id: self.client_id.to_owned(),
            username: self.username.map(str::to_owned),
            password: self.password.map(Bytes::copy_from_slice),
            mountpoint: self.mountpoint.to_owned(),
            peer: ([127, 0, 0, 1], 40_000).into(),
            listener: "mqtt".to_owned(),
            protocol: ProtocolVersion::V5,
            clean_start: true,
        }
    }

    fn client_info(&self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id.to_owned(),
            username: self.username.map(str::to_owned),
            mountpoint: self.mountpoint.to_owned(),
            peer: ([127, 0, 0, 1], 40_000).into(),
            protocol: ProtocolVersion::V5,
        }
    }
}

/// The raw answer to a CONNECT; panics on a backend error (the suite's data
/// never justifies one).
pub async fn authenticate(backend: &Backend, login: &Login<'_>) -> AuthDecision {
    let authenticator: &dyn DynAuthenticator = backend
        .authenticator
        .as_deref()
        .unwrap_or_else(|| panic!("backend `{}` has no authenticator", backend.name));
    authenticator
        .authenticate(&login.connect_info())
        .await
        .unwrap_or_else(|e| panic!("authenticate {login:?}: backend error {e}"))
}

/// An accepted connection: checks go through the rules the backend handed
/// over, else its authorizer, like the broker's (minus static rules).
pub struct Session {
    client: ClientInfo,
    rules: Option<Arc<AclRules>>,
    authorizer: Option<Arc<dyn DynAuthorizer>>,
}

/// Connect, expecting `Allow`.
#[track_caller]
pub fn expect_allow(decision: AuthDecision, backend: &Backend, login: &Login<'_>) -> Session {
    match decision {
        AuthDecision::Allow(grant) => Session {
            client: login.client_info(),
            rules: grant.acl,
            authorizer: backend.authorizer.clone(),
        },
        other => panic!("expected Allow for {login:?}, got {other:?}"),
    }
}

/// Connect and expect `Allow`.
pub async fn connect(backend: &Backend, login: &Login<'_>) -> Session {
    let decision = authenticate(backend, login).await;
    expect_allow(decision, backend, login)
}

/// Connect and expect exactly `expected` (`Deny` or `Next`).
pub async fn connect_refused(
    backend: &Backend,
    login: &Login<'_>,
    expected: AuthDecision,
    why: &str,
) {
    let decision = authenticate(backend, login).await;
    assert_eq!(decision, expected, "{why}: {login:?}");
}

impl Session {
    /// The rules handed over at CONNECT, if any.
    pub fn rules(&self) -> Option<&AclRules> {
        self.rules.as_deref()
    }

    /// The decision about a PUBLISH; `Next` from an authorizer (nobody
    /// allowed it) is a denial, as at the end of the broker's chain.
    pub async fn publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        len: usize,
    ) -> PublishDecision {
        let request = PublishRequest {
            topic,
            qos,
            retain,
            payload_len: len,
        };
        if let Some(rules) = &self.rules {
            return rules.check_publish(&self.client, &request);
        }
        let authorizer = self
            .authorizer
            .as_deref()
            .unwrap_or_else(|| panic!("the backend handed over no rules and has no authorizer"));
        match authorizer
            .authorize_publish(&self.client, &request)
            .await
            .unwrap_or_else(|e| panic!("authorize_publish {topic}: {e}"))
        {
            PublishDecision::Next => PublishDecision::Deny,
            decision => decision,
        }
    }

    /// Whether a plain QoS 0 PUBLISH of 1 byte is allowed.
    pub async fn may_publish(&self, topic: &str) -> bool {
        matches!(
            self.publish(topic, QoS::AtMostOnce, false, 1).await,
            PublishDecision::Allow(_)
        )
    }

    /// The decision about one SUBSCRIBE filter.
    pub async fn subscribe(&self, filter: &str, qos: QoS) -> SubscribeDecision {
        let request = SubscribeRequest { filter, qos };
        if let Some(rules) = &self.rules {
            return rules.check_subscribe(&self.client, &request);
        }
        let authorizer = self
            .authorizer
            .as_deref()
            .unwrap_or_else(|| panic!("the backend handed over no rules and has no authorizer"));
        match authorizer
            .authorize_subscribe(&self.client, &request)
            .await
            .unwrap_or_else(|e| panic!("authorize_subscribe {filter}: {e}"))
        {
            SubscribeDecision::Next => SubscribeDecision::Deny,
            decision => decision,
        }
    }

    /// Whether a QoS 0 subscription to `filter` is allowed.
    pub async fn may_subscribe(&self, filter: &str) -> bool {
        matches!(
            self.subscribe(filter, QoS::AtMostOnce).await,
            SubscribeDecision::Allow { .. }
        )
    }
}

/// Print that a case does not apply to this backend.
pub fn skip(case: &str, why: &str) {
    eprintln!("auth behavior case `{case}` skipped: the backend does not support {why}");
}
