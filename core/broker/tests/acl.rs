//! Authorization and authentication: static `[[acl.rules]]` (first match
//! wins, `%u` `%c` `%m`, user and client scoping), authorizers and
//! authenticators in the backend chain (allow / deny / next / error), and the
//! reason codes MQTT 5 and 3.1.1 clients see for each outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::{RawClient, V3, V4, V5, connect_packet, memory_services, publish_packet, test_config};
use fogg_api::{
    AclRules, AuthDecision, Authenticator, Authorizer, BackendError, ClientInfo, ConnectInfo,
    Decision, ErrorKind, PublishDecision, PublishModifiers, PublishRequest, PublishRule,
    SubscribeDecision, SubscribeRequest, SubscribeRule, SubscriptionRewrite,
};
use fogg_broker::config::{AclAction, AclRule, ListenerConfig, Permission};
use fogg_broker::{ChainLink, OnError};
use fogg_codec::{
    Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use parking_lot::Mutex;

fn rule(permission: Permission, action: AclAction, topic: &str) -> AclRule {
    AclRule {
        permission,
        action,
        topic: topic.to_owned(),
        username: None,
        client_id: None,
    }
}

use AclAction::{All, Publish as Pub, Subscribe as Sub};
use Permission::{Allow, Deny};

async fn start_with_rules(rules: Vec<AclRule>) -> common::TestBroker {
    let mut config = test_config();
    config.acl.rules = rules;
    common::start(config).await
}

fn connect_as(version: ProtocolVersion, id: &str, user: Option<&str>) -> Connect {
    let mut connect = connect_packet(version, id);
    connect.username = user.map(str::to_owned);
    connect
}

async fn connected_as(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
) -> RawClient {
    common::connect_expect(addr, connect_as(version, id, user), false).await
}

/// SUBSCRIBE several filters at QoS 1 in one packet; the reason codes.
async fn subscribe_all(client: &mut RawClient, filters: &[&str]) -> Vec<ReasonCode> {
    client
        .send(Packet::Subscribe(Box::new(Subscribe {
            packet_id: 11,
            filters: filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: (*f).to_owned(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                })
                .collect(),
            properties: Properties::default(),
        })))
        .await;
    match client.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.packet_id, 11);
            ack.reasons
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Whether a QoS 1 PUBLISH is allowed, as an MQTT 5 client learns it.
async fn may_publish(client: &mut RawClient, topic: &str) -> bool {
    match client.publish(topic, b"x", QoS::AtLeastOnce, false).await {
        ReasonCode::Success | ReasonCode::NoMatchingSubscribers => true,
        ReasonCode::NotAuthorized => false,
        other => panic!("unexpected PUBACK reason {other} for {topic}"),
    }
}

async fn may_subscribe(client: &mut RawClient, filter: &str) -> bool {
    match subscribe_all(client, &[filter]).await[..] {
        [ReasonCode::GrantedQoS1] => true,
        [ReasonCode::NotAuthorized] => false,
        ref other => panic!("unexpected SUBACK {other:?} for {filter}"),
    }
}

// ---------------------------------------------------------------------------
// Static rules.

#[tokio::test]
async fn denied_subscribe_is_0x87_in_v5_and_0x80_in_v4() {
    let broker = start_with_rules(vec![rule(Deny, Sub, "secret/#"), rule(Allow, All, "#")]).await;
    let mut v5 = RawClient::connected(broker.addr, V5, "acl-sub-5").await;
    assert_eq!(
        subscribe_all(&mut v5, &["secret/x", "open/x", "secret/#", "secret"]).await,
        vec![
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
        ]
    );
    for version in [V3, V4] {
        let mut old = RawClient::connected(
            broker.addr,
            version,
            &format!("acl-sub-{}", version.level()),
        )
        .await;
        let reasons = subscribe_all(&mut old, &["secret/x", "open/x"]).await;
        assert!(reasons[0].is_error(), "{reasons:?}");
        assert_eq!(
            reasons,
            vec![ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS1]
        );
        // On the wire: the single 3.1.1 failure code 0x80 [MQTT-3.9.3-2].
        old.send(Packet::Subscribe(Box::new(Subscribe {
            packet_id: 0x0102,
            filters: vec![
                SubscribeFilter {
                    filter: "secret/y".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                },
                SubscribeFilter {
                    filter: "open/y".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                },
            ],
            properties: Properties::default(),
        })))
        .await;
        assert_eq!(
            old.recv_raw(6).await,
            vec![0x90, 0x04, 0x01, 0x02, 0x80, 0x02]
        );
    }
    // A refused subscription receives nothing.
    let mut publisher = RawClient::connected(broker.addr, V5, "acl-sub-pub").await;
    publisher
        .publish("secret/x", b"x", QoS::AtLeastOnce, false)
        .await;
    v5.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn denied_publish_is_refused_in_v5_and_dropped_in_v4() {
    let broker = start_with_rules(vec![rule(Deny, Pub, "ro/#"), rule(Allow, All, "#")]).await;
    let mut sub = RawClient::connected(broker.addr, V5, "acl-pub-sub").await;
    assert_eq!(
        sub.subscribe("ro/#", QoS::ExactlyOnce).await.reasons,
        vec![ReasonCode::GrantedQoS2]
    );

    let mut v5 = RawClient::connected(broker.addr, V5, "acl-pub-5").await;
    assert_eq!(
        v5.publish("ro/x", b"1", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        v5.publish("ro/x", b"2", QoS::ExactlyOnce, false).await,
        ReasonCode::NotAuthorized
    );
    v5.publish("ro/x", b"3", QoS::AtMostOnce, false).await;
    // A refused retained message is not stored either.
    assert_eq!(
        v5.publish("ro/kept", b"4", QoS::AtLeastOnce, true).await,
        ReasonCode::NotAuthorized
    );
    // Refusal is not a protocol error: the connection stays.
    v5.ping_pong().await;

    for version in [V3, V4] {
        let mut old = RawClient::connected(
            broker.addr,
            version,
            &format!("acl-pub-{}", version.level()),
        )
        .await;
        // 3.1.1 cannot say no: acknowledged [MQTT-3.3.5-2], not delivered.
        old.send(Packet::Publish(Box::new(publish_packet(
            "ro/x",
            b"5",
            QoS::AtLeastOnce,
            false,
            0x0A0B,
        ))))
        .await;
        assert_eq!(old.recv_raw(4).await, vec![0x40, 0x02, 0x0A, 0x0B]);
        assert_eq!(
            old.publish("ro/x", b"6", QoS::ExactlyOnce, false).await,
            ReasonCode::Success
        );
        old.publish("ro/x", b"7", QoS::AtMostOnce, false).await;
        old.ping_pong().await;
    }
    sub.expect_nothing().await;
    let mut late = RawClient::connected(broker.addr, V5, "acl-pub-late").await;
    late.subscribe("ro/#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;

    // Allowed topics still flow.
    v5.publish("rw/x", b"ok", QoS::AtLeastOnce, false).await;
    sub.subscribe("rw/#", QoS::AtLeastOnce).await;
    v5.publish("rw/x", b"ok", QoS::AtLeastOnce, false).await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"ok");
    broker.shutdown().await;
}

#[tokio::test]
async fn username_and_client_id_are_substituted() {
    let broker = start_with_rules(vec![
        rule(Allow, All, "users/%u/#"),
        rule(Allow, All, "clients/%c/#"),
        rule(Deny, All, "#"),
    ])
    .await;
    let mut bob = connected_as(broker.addr, V5, "c1", Some("bob")).await;
    assert!(may_publish(&mut bob, "users/bob/x").await);
    assert!(may_publish(&mut bob, "users/bob").await);
    assert!(!may_publish(&mut bob, "users/eve/x").await);
    assert!(may_publish(&mut bob, "clients/c1/a/b").await);
    assert!(!may_publish(&mut bob, "clients/c2/a").await);
    assert!(!may_publish(&mut bob, "elsewhere").await);
    assert!(may_subscribe(&mut bob, "users/bob/#").await);
    assert!(may_subscribe(&mut bob, "clients/c1/+").await);
    // A wildcard over other users' levels is not covered by the rule.
    assert!(!may_subscribe(&mut bob, "users/+/x").await);
    assert!(!may_subscribe(&mut bob, "users/#").await);

    // No username: `%u` cannot apply; the client id rule still does.
    let mut anon = connected_as(broker.addr, V5, "c2", None).await;
    assert!(!may_publish(&mut anon, "users/c2/x").await);
    assert!(may_publish(&mut anon, "clients/c2/x").await);

    // A message published under one's own prefix reaches the owner.
    assert!(may_publish(&mut anon, "clients/c2/to-self").await);
    assert!(may_subscribe(&mut anon, "clients/c2/#").await);
    anon.publish("clients/c2/to-self", b"hi", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&anon.expect_publish().await.payload[..], b"hi");
    broker.shutdown().await;
}

#[tokio::test]
async fn mountpoint_is_substituted() {
    let mut config = test_config();
    config.listeners.push(ListenerConfig {
        name: "tenant".into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        mountpoint: "acme".into(),
        ..ListenerConfig::default()
    });
    config.acl.rules = vec![rule(Allow, Pub, "%m/#"), rule(Deny, Pub, "#")];
    let (broker, addrs) = common::start_listeners(config, memory_services()).await;
    let mut tenant = RawClient::connected(addrs[1], V5, "mp-tenant").await;
    assert!(may_publish(&mut tenant, "acme/x").await);
    assert!(!may_publish(&mut tenant, "other/x").await);
    // Without a mountpoint `%m` is empty and the rule does not apply.
    let mut plain = RawClient::connected(addrs[0], V5, "mp-plain").await;
    assert!(!may_publish(&mut plain, "acme/x").await);
    broker.shutdown().await;
}

#[tokio::test]
async fn first_matching_rule_wins() {
    let broker = start_with_rules(vec![
        rule(Allow, Pub, "fm/a"),
        rule(Deny, Pub, "fm/#"),
        rule(Deny, Sub, "fm/a"),
        rule(Allow, All, "#"),
    ])
    .await;
    let mut c = RawClient::connected(broker.addr, V5, "fm").await;
    assert!(may_publish(&mut c, "fm/a").await);
    assert!(!may_publish(&mut c, "fm/b").await);
    assert!(
        !may_publish(&mut c, "fm").await,
        "fm/# covers its parent level"
    );
    assert!(may_publish(&mut c, "other").await);
    // Rules for one action do not decide the other.
    assert!(!may_subscribe(&mut c, "fm/a").await);
    assert!(may_subscribe(&mut c, "fm/b").await);
    broker.shutdown().await;

    // The same rules in the other order decide differently.
    let broker = start_with_rules(vec![
        rule(Deny, Pub, "fm/#"),
        rule(Allow, Pub, "fm/a"),
        rule(Allow, All, "#"),
    ])
    .await;
    let mut c = RawClient::connected(broker.addr, V5, "fm").await;
    assert!(!may_publish(&mut c, "fm/a").await);
    broker.shutdown().await;
}

#[tokio::test]
async fn rules_scoped_to_a_username_or_client_id() {
    let broker = start_with_rules(vec![
        AclRule {
            username: Some("alice".into()),
            ..rule(Allow, All, "scoped/#")
        },
        AclRule {
            client_id: Some("trusted".into()),
            ..rule(Allow, Pub, "scoped/#")
        },
        rule(Deny, All, "scoped/#"),
    ])
    .await;
    let mut alice = connected_as(broker.addr, V5, "x1", Some("alice")).await;
    assert!(may_publish(&mut alice, "scoped/a").await);
    assert!(may_subscribe(&mut alice, "scoped/#").await);
    let mut bob = connected_as(broker.addr, V5, "x2", Some("bob")).await;
    assert!(!may_publish(&mut bob, "scoped/a").await);
    assert!(!may_subscribe(&mut bob, "scoped/#").await);
    assert!(
        may_publish(&mut bob, "unscoped/a").await,
        "no rule matches: allowed"
    );
    let mut trusted = connected_as(broker.addr, V5, "trusted", Some("bob2")).await;
    assert!(may_publish(&mut trusted, "scoped/a").await);
    assert!(!may_subscribe(&mut trusted, "scoped/#").await);
    let mut anon_trusted = connected_as(broker.addr, V4, "trusted-not", None).await;
    let reasons = subscribe_all(&mut anon_trusted, &["scoped/x"]).await;
    assert_eq!(reasons, vec![ReasonCode::UnspecifiedError]);
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Authorizers in the chain.

/// Answers by the first topic level: `allow`, `deny`, `next`, `err`; anything
/// else is `fallback` (and everything when `by_topic` is off). Records every
/// question.
struct TopicAuthorizer {
    name: &'static str,
    by_topic: bool,
    fallback: Decision,
    calls: Arc<Mutex<Vec<String>>>,
}

impl TopicAuthorizer {
    fn decide(&self, target: &str) -> Result<Decision, BackendError> {
        if !self.by_topic {
            return Ok(self.fallback.clone());
        }
        match target.split('/').next() {
            Some("allow") => Ok(Decision::Allow),
            Some("deny") => Ok(Decision::Deny),
            Some("next") => Ok(Decision::Next),
            Some("err") => Err(BackendError::new(
                ErrorKind::Unavailable,
                self.name,
                "authorize",
                "test backend is down",
            )),
            _ => Ok(self.fallback.clone()),
        }
    }
}

impl Authorizer for TopicAuthorizer {
    async fn authorize_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        self.calls.lock().push(format!(
            "{} pub {} {:?} {} q{}",
            self.name, client.client_id, client.username, request.topic, request.qos as u8
        ));
        self.decide(request.topic).map(Into::into)
    }

    async fn authorize_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        self.calls.lock().push(format!(
            "{} sub {} {:?} {} q{}",
            self.name, client.client_id, client.username, request.filter, request.qos as u8
        ));
        self.decide(request.filter).map(Into::into)
    }
}

fn authorizer_link(
    name: &'static str,
    by_topic: bool,
    fallback: Decision,
    calls: &Arc<Mutex<Vec<String>>>,
) -> ChainLink {
    ChainLink {
        name: name.to_owned(),
        authenticator: None,
        authorizer: Some(Arc::new(TopicAuthorizer {
            name,
            by_topic,
            fallback,
            calls: calls.clone(),
        })),
        on_error: OnError::Fail,
    }
}

#[tokio::test]
async fn authorizer_allow_deny_next_and_error() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut services = memory_services();
    services.chain = vec![authorizer_link("first", true, Decision::Next, &calls)];
    let broker = common::start_with(test_config(), services).await;
    let mut c = connected_as(broker.addr, V5, "chain-1", Some("u1")).await;

    assert!(may_publish(&mut c, "allow/x").await);
    assert!(!may_publish(&mut c, "deny/x").await);
    // Asked, nobody claimed it: denied (allowed only when nobody is asked).
    assert!(!may_publish(&mut c, "next/x").await);
    // A backend error is a denial, never an accidental allow.
    assert!(!may_publish(&mut c, "err/x").await);
    assert_eq!(
        c.publish("err/x", b"x", QoS::ExactlyOnce, false).await,
        ReasonCode::NotAuthorized
    );

    assert!(may_subscribe(&mut c, "allow/#").await);
    assert!(!may_subscribe(&mut c, "deny/#").await);
    assert!(!may_subscribe(&mut c, "next/#").await);
    let reasons = subscribe_all(&mut c, &["err/#", "allow/y"]).await;
    assert_eq!(
        reasons,
        vec![
            ReasonCode::ImplementationSpecificError,
            ReasonCode::GrantedQoS1
        ]
    );
    c.ping_pong().await;

    // The authorizer saw who asked, and what.
    let seen = calls.lock().clone();
    assert!(
        seen.contains(&"first pub chain-1 Some(\"u1\") allow/x q1".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"first sub chain-1 Some(\"u1\") err/# q1".to_owned()),
        "{seen:?}"
    );

    // v3.1.1: refused subscriptions are 0x80, refused publishes are dropped.
    let mut old = connected_as(broker.addr, V4, "chain-4", None).await;
    let reasons = subscribe_all(&mut old, &["deny/x", "err/x", "allow/x"]).await;
    assert_eq!(
        reasons,
        vec![
            ReasonCode::UnspecifiedError,
            ReasonCode::UnspecifiedError,
            ReasonCode::GrantedQoS1
        ]
    );
    let mut watcher = RawClient::connected(broker.addr, V5, "chain-watch").await;
    assert!(may_subscribe(&mut watcher, "allow/#").await);
    assert_eq!(
        old.publish("deny/x", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    old.publish("allow/x", b"yes", QoS::AtLeastOnce, false)
        .await;
    let p = watcher.expect_publish().await;
    assert_eq!(&p.payload[..], b"yes");
    watcher.expect_nothing().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn chain_order_static_rules_first_and_answer_caching() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut services = memory_services();
    services.chain = vec![
        // A link without an authorizer is skipped.
        ChainLink {
            on_error: OnError::Fail,
            name: "auth-only".into(),
            authenticator: None,
            authorizer: None,
        },
        authorizer_link("first", true, Decision::Next, &calls),
        authorizer_link("second", false, Decision::Allow, &calls),
    ];
    let mut config = test_config();
    config.acl.rules = vec![rule(Allow, Pub, "deny/static"), rule(Deny, Pub, "static/#")];
    let broker = common::start_with(config, services).await;
    let mut c = connected_as(broker.addr, V5, "chain-2", None).await;

    // `next` from the first link: the second decides.
    assert!(may_publish(&mut c, "next/x").await);
    assert!(may_publish(&mut c, "other/x").await);
    // A deny or an error from the first link ends the walk.
    assert!(!may_publish(&mut c, "deny/x").await);
    assert!(!may_publish(&mut c, "err/x").await);
    // Static rules come before the chain, which is then not asked.
    assert!(may_publish(&mut c, "deny/static").await);
    assert!(!may_publish(&mut c, "static/x").await);
    let seen = calls.lock().clone();
    let asked = |who: &str, topic: &str| {
        seen.iter()
            .filter(|s| s.starts_with(&format!("{who} pub")) && s.contains(&format!(" {topic} ")))
            .count()
    };
    assert_eq!(asked("first", "next/x"), 1);
    assert_eq!(asked("second", "next/x"), 1);
    assert_eq!(asked("second", "deny/x"), 0, "{seen:?}");
    assert_eq!(asked("second", "err/x"), 0, "{seen:?}");
    assert_eq!(
        asked("first", "deny/static") + asked("first", "static/x"),
        0,
        "{seen:?}"
    );

    // A session asks once per topic; errors are not remembered.
    for _ in 0..3 {
        assert!(may_publish(&mut c, "next/x").await);
        assert!(!may_publish(&mut c, "err/x").await);
    }
    let seen = calls.lock().clone();
    let asked = |who: &str, topic: &str| {
        seen.iter()
            .filter(|s| s.starts_with(&format!("{who} pub")) && s.contains(&format!(" {topic} ")))
            .count()
    };
    assert_eq!(asked("first", "next/x"), 1, "{seen:?}");
    assert_eq!(asked("first", "err/x"), 4, "{seen:?}");
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Authenticators in the chain.

/// `alice` / `secret` allowed, `alice` with another password denied, `err`
/// fails, anyone else is not this backend's business.
struct UserAuthenticator;

impl Authenticator for UserAuthenticator {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        match info.username.as_deref() {
            Some("alice") if info.password.as_deref() == Some(&b"secret"[..]) => {
                Ok(AuthDecision::allow())
            }
            Some("alice") => Ok(AuthDecision::Deny),
            Some("err") => Err(BackendError::new(
                ErrorKind::Timeout,
                "users",
                "authenticate",
                "no answer",
            )),
            _ => Ok(AuthDecision::Next),
        }
    }
}

async fn start_with_authenticator(allow_anonymous: bool) -> common::TestBroker {
    let mut services = memory_services();
    services.chain = vec![ChainLink {
        name: "users".into(),
        authenticator: Some(Arc::new(UserAuthenticator)),
        authorizer: None,
        on_error: OnError::Fail,
    }];
    let mut config = test_config();
    config.auth.allow_anonymous = allow_anonymous;
    common::start_with(config, services).await
}

fn credentials(
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&[u8]>,
) -> Connect {
    let mut connect = connect_as(version, id, user);
    connect.password = password.map(Bytes::copy_from_slice);
    connect
}

/// The CONNACK an MQTT 5 client gets.
async fn v5_connack(addr: SocketAddr, user: Option<&str>, password: Option<&[u8]>) -> ReasonCode {
    let (mut client, ack) =
        RawClient::connect(addr, credentials(V5, "auth-5", user, password)).await;
    if ack.reason.is_error() {
        assert!(ack.properties.reason_string.is_some(), "{ack:?}");
        assert!(client.expect_closed().await.is_none());
    }
    ack.reason
}

/// The CONNACK return code byte an MQTT 3.1.1 client gets.
async fn v4_connack(addr: SocketAddr, user: Option<&str>, password: Option<&[u8]>) -> u8 {
    let mut client = RawClient::open(addr, V4).await;
    client
        .send(Packet::Connect(Box::new(credentials(
            V4, "auth-4", user, password,
        ))))
        .await;
    let bytes = client.recv_raw(4).await;
    assert_eq!(bytes[..3], [0x20, 0x02, 0x00], "{bytes:02X?}");
    if bytes[3] != 0 {
        client.expect_silent_close().await;
    }
    bytes[3]
}

#[tokio::test]
async fn authenticator_allow_deny_and_error() {
    let broker = start_with_authenticator(true).await;
    assert_eq!(
        v5_connack(broker.addr, Some("alice"), Some(b"secret")).await,
        ReasonCode::Success
    );
    assert_eq!(
        v4_connack(broker.addr, Some("alice"), Some(b"secret")).await,
        0x00
    );

    assert_eq!(
        v5_connack(broker.addr, Some("alice"), Some(b"wrong")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        v4_connack(broker.addr, Some("alice"), Some(b"wrong")).await,
        0x04
    );

    // An outage is "server unavailable", never "bad user name or password".
    assert_eq!(
        v5_connack(broker.addr, Some("err"), Some(b"x")).await,
        ReasonCode::ServerUnavailable
    );
    assert_eq!(v4_connack(broker.addr, Some("err"), Some(b"x")).await, 0x03);
    common::assert_healthy(broker.addr).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn authenticator_next_falls_to_the_anonymous_policy() {
    let broker = start_with_authenticator(true).await;
    // Anonymous and anonymous allowed: in.
    assert_eq!(
        v5_connack(broker.addr, None, None).await,
        ReasonCode::Success
    );
    assert_eq!(v4_connack(broker.addr, None, None).await, 0x00);
    // Credentials nobody accepted are refused even though anonymous is allowed.
    assert_eq!(
        v5_connack(broker.addr, Some("carol"), Some(b"pw")).await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        v4_connack(broker.addr, Some("carol"), Some(b"pw")).await,
        0x04
    );
    broker.shutdown().await;

    let broker = start_with_authenticator(false).await;
    assert_eq!(
        v5_connack(broker.addr, None, None).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(v4_connack(broker.addr, None, None).await, 0x05);
    assert_eq!(
        v5_connack(broker.addr, Some("alice"), Some(b"secret")).await,
        ReasonCode::Success
    );
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Ways around a rule that must not work.

#[tokio::test]
async fn shared_subscriptions_do_not_bypass_subscribe_rules() {
    let broker = start_with_rules(vec![rule(Deny, Sub, "secret/#"), rule(Allow, All, "#")]).await;
    let mut c = RawClient::connected(broker.addr, V5, "bypass").await;
    let reasons = subscribe_all(
        &mut c,
        &[
            "$share/g/secret/x",
            "$share/g/secret/#",
            "$queue/secret/x",
            "$share/g/open/x",
        ],
    )
    .await;
    assert_eq!(
        reasons,
        vec![
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
        ]
    );
    let mut publisher = RawClient::connected(broker.addr, V5, "bypass-pub").await;
    publisher
        .publish("secret/x", b"s", QoS::AtLeastOnce, false)
        .await;
    c.expect_nothing().await;
    broker.shutdown().await;

    // Backends are asked about the filter itself, without the group prefix.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut services = memory_services();
    services.chain = vec![authorizer_link("first", true, Decision::Allow, &calls)];
    let broker = common::start_with(test_config(), services).await;
    let mut c = RawClient::connected(broker.addr, V5, "bypass-chain").await;
    let reasons = subscribe_all(
        &mut c,
        &["$share/g/deny/x", "$queue/deny/x", "$share/g/allow/x"],
    )
    .await;
    assert_eq!(
        reasons,
        vec![
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1
        ]
    );
    broker.shutdown().await;
}

/// Allows a PUBLISH unless it is retained or QoS 2.
struct NoRetainNoQos2;

impl Authorizer for NoRetainNoQos2 {
    async fn authorize_publish(
        &self,
        _client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        Ok(if request.retain || request.qos == QoS::ExactlyOnce {
            PublishDecision::Deny
        } else {
            PublishDecision::Allow(None)
        })
    }

    async fn authorize_subscribe(
        &self,
        _client: &ClientInfo,
        _request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        Ok(SubscribeDecision::allow())
    }
}

#[tokio::test]
async fn remembered_publish_answers_respect_retain_and_qos() {
    let mut services = memory_services();
    services.chain = vec![ChainLink {
        name: "no-retain".into(),
        authenticator: None,
        authorizer: Some(Arc::new(NoRetainNoQos2)),
        on_error: OnError::Fail,
    }];
    let broker = common::start_with(test_config(), services).await;
    let mut c = RawClient::connected(broker.addr, V5, "remember").await;
    // An allowed publish first, so an answer for the topic is remembered...
    assert_eq!(
        c.publish("r/t", b"a", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    // ...which must not stand in for a retained or QoS 2 one.
    assert_eq!(
        c.publish("r/t", b"b", QoS::AtLeastOnce, true).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        c.publish("r/t", b"c", QoS::ExactlyOnce, false).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        c.publish("r/t", b"d", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    // Nothing was retained.
    let mut late = RawClient::connected(broker.addr, V5, "remember-late").await;
    late.subscribe("r/t", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
    broker.shutdown().await;
}

// ---------------------------------------------------------------------------
// Rules handed over at CONNECT (VerneMQ's database model).

/// Grants `ruled` a fixed set of rules; `down` is a failing backend.
struct RulesAuthenticator(AclRules);

impl Authenticator for RulesAuthenticator {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        match info.username.as_deref() {
            Some("ruled") => Ok(AuthDecision::allow_with(self.0.clone())),
            _ => Ok(AuthDecision::Next),
        }
    }
}

struct DownAuthenticator;

impl Authenticator for DownAuthenticator {
    async fn authenticate(&self, _: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        Err(BackendError::new(
            ErrorKind::Unavailable,
            "down",
            "authenticate",
            "connection refused",
        ))
    }
}

async fn ruled_client(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
) -> (RawClient, ReasonCode) {
    let (client, ack) =
        RawClient::connect(addr, credentials(version, id, Some("ruled"), Some(b"x"))).await;
    (client, ack.reason)
}

fn rules_for_tests() -> AclRules {
    AclRules {
        publish: vec![
            PublishRule {
                max_qos: QoS::AtLeastOnce,
                max_payload_size: 4,
                allowed_retain: false,
                ..PublishRule::pattern("dev/%c/#")
            },
            PublishRule {
                modifiers: Some(PublishModifiers {
                    topic: Some("rewritten/topic".to_owned()),
                    payload: Some(Bytes::from_static(b"changed")),
                    ..PublishModifiers::default()
                }),
                ..PublishRule::pattern("rewrite/me")
            },
        ],
        subscribe: vec![
            SubscribeRule {
                max_qos: QoS::AtMostOnce,
                ..SubscribeRule::pattern("dev/+/#")
            },
            SubscribeRule::pattern("rewritten/#"),
            SubscribeRule {
                modifiers: Some(vec![SubscriptionRewrite {
                    filter: "rewritten/#".to_owned(),
                    qos: QoS::AtLeastOnce,
                }]),
                ..SubscribeRule::pattern("alias")
            },
        ],
    }
}

async fn start_with_granted_rules(down_first: Option<OnError>) -> common::TestBroker {
    let mut services = memory_services();
    if let Some(on_error) = down_first {
        services.chain.push(ChainLink {
            name: "down".into(),
            authenticator: Some(Arc::new(DownAuthenticator)),
            authorizer: None,
            on_error,
        });
    }
    services.chain.push(ChainLink {
        name: "db".into(),
        authenticator: Some(Arc::new(RulesAuthenticator(rules_for_tests()))),
        authorizer: None,
        on_error: OnError::Fail,
    });
    let mut config = test_config();
    config.auth.allow_anonymous = false;
    common::start_with(config, services).await
}

#[tokio::test]
async fn rules_from_connect_limit_qos_size_and_retain() {
    let broker = start_with_granted_rules(None).await;
    let (mut c, reason) = ruled_client(broker.addr, V5, "d1").await;
    assert_eq!(reason, ReasonCode::Success);
    let p = |topic, payload: &'static [u8], qos, retain| (topic, payload, qos, retain);
    for ((topic, payload, qos, retain), want) in [
        (
            p("dev/d1/t", b"1234", QoS::AtLeastOnce, false),
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            p("dev/d1/t", b"12345", QoS::AtLeastOnce, false),
            ReasonCode::NotAuthorized,
        ),
        (
            p("dev/d1/t", b"1", QoS::ExactlyOnce, false),
            ReasonCode::NotAuthorized,
        ),
        (
            p("dev/d1/t", b"1", QoS::AtLeastOnce, true),
            ReasonCode::NotAuthorized,
        ),
        (
            p("dev/other/t", b"1", QoS::AtLeastOnce, false),
            ReasonCode::NotAuthorized,
        ),
    ] {
        assert_eq!(
            c.publish(topic, payload, qos, retain).await,
            want,
            "{topic} {payload:?} {qos:?} {retain}"
        );
    }
    // A subscription is granted at most the rule's QoS.
    assert_eq!(
        c.subscribe("dev/d1/#", QoS::ExactlyOnce).await.reasons,
        vec![ReasonCode::granted(QoS::AtMostOnce)]
    );
    assert_eq!(
        c.subscribe("secret/#", QoS::AtMostOnce).await.reasons,
        vec![ReasonCode::NotAuthorized]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn publish_and_subscribe_modifiers_are_applied() {
    let broker = start_with_granted_rules(None).await;
    let (mut sub, reason) = ruled_client(broker.addr, V5, "sub").await;
    assert_eq!(reason, ReasonCode::Success);
    // Subscribing to `alias` puts `rewritten/#` at QoS 1 in its place.
    assert_eq!(
        sub.subscribe("alias", QoS::ExactlyOnce).await.reasons,
        vec![ReasonCode::granted(QoS::AtLeastOnce)]
    );
    let (mut publisher, reason) = ruled_client(broker.addr, V5, "pub").await;
    assert_eq!(reason, ReasonCode::Success);
    assert_eq!(
        publisher
            .publish("rewrite/me", b"original", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success
    );
    let got = sub.expect_publish().await;
    assert_eq!(got.topic, "rewritten/topic");
    assert_eq!(&got.payload[..], b"changed");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_failing_backend_is_server_unavailable_unless_passed_over() {
    for (version, unavailable) in [
        (V5, ReasonCode::ServerUnavailable),
        (V4, ReasonCode::ServerUnavailable),
    ] {
        let broker = start_with_granted_rules(Some(OnError::Fail)).await;
        let (_c, reason) = ruled_client(broker.addr, version, "d1").await;
        assert_eq!(reason, unavailable, "{version:?}");
        broker.shutdown().await;
    }
    let broker = start_with_granted_rules(Some(OnError::Next)).await;
    let (_c, reason) = ruled_client(broker.addr, V5, "d1").await;
    assert_eq!(reason, ReasonCode::Success);
    broker.shutdown().await;
}

#[tokio::test]
async fn clients_cannot_publish_to_sys_topics() {
    let broker = start_with_rules(vec![rule(Allow, All, "#")]).await;
    let mut monitor = RawClient::connected(broker.addr, V5, "sys-monitor").await;
    assert_eq!(
        monitor.subscribe("$SYS/#", QoS::AtLeastOnce).await.reasons,
        vec![ReasonCode::GrantedQoS1]
    );
    let mut faker = RawClient::connected(broker.addr, V5, "sys-faker").await;
    for topic in ["$SYS/broker/clients/connected", "$SYS"] {
        assert_eq!(
            faker.publish(topic, b"0", QoS::AtLeastOnce, false).await,
            ReasonCode::NotAuthorized
        );
    }
    // Other `$` topics are the clients' to use.
    assert_eq!(
        faker.publish("$app/x", b"1", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    monitor.expect_nothing().await;
    broker.shutdown().await;
}
