//! ACL answers kept per connection, and how they go stale: the chain
//! authorizers' answers and the rules handed over at CONNECT stand for the
//! connection's life (VerneMQ's model) until `BrokerHandle::invalidate_acl`
//! (by client, by username, all) or `[auth] acl_cache_ttl`; then the next
//! PUBLISH / SUBSCRIBE gets the backend's new answer. A client whose
//! credentials are no longer accepted is disconnected (0x87); a backend
//! that fails at that moment leaves the old rules in force.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, V5, connect_packet, memory_services, publish_packet, test_config};
use fogg_api::{
    AclRules, AuthDecision, Authenticator, Authorizer, BackendError, ClientInfo, ConnectInfo,
    ErrorKind, PublishDecision, PublishRequest, PublishRule, SubscribeDecision, SubscribeRequest,
    SubscribeRule,
};
use fogg_broker::{ChainLink, InvalidateScope, OnError};
use fogg_codec::{Packet, QoS, ReasonCode};
use parking_lot::Mutex;

/// Allows subscriptions, and publishing while `allow` is set; counts the
/// PUBLISH questions it gets.
#[derive(Default)]
struct Switch {
    allow: AtomicBool,
    asked: AtomicUsize,
}

impl Authorizer for Switch {
    async fn authorize_publish(
        &self,
        _: &ClientInfo,
        _: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(if self.allow.load(Ordering::SeqCst) {
            PublishDecision::Allow(None)
        } else {
            PublishDecision::Deny
        })
    }

    async fn authorize_subscribe(
        &self,
        _: &ClientInfo,
        _: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        Ok(SubscribeDecision::allow())
    }
}

/// What the database says about `ruled` / `pw`: its rules, a refusal, or
/// an outage.
enum Row {
    Rules(AclRules),
    WrongPassword,
    Down,
}

/// Hands `ruled` its rules at CONNECT (VerneMQ's database model).
struct Database {
    row: Mutex<Row>,
    asked: AtomicUsize,
}

impl Database {
    fn new(publish: &str) -> Arc<Database> {
        Arc::new(Database {
            row: Mutex::new(Row::Rules(rules(publish))),
            asked: AtomicUsize::new(0),
        })
    }

    fn set(&self, row: Row) {
        *self.row.lock() = row;
    }
}

impl Authenticator for Database {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if info.username.as_deref() != Some("ruled") {
            return Ok(AuthDecision::Next);
        }
        if info.password.as_deref() != Some(&b"pw"[..]) {
            return Ok(AuthDecision::Deny);
        }
        match &*self.row.lock() {
            Row::Rules(rules) => Ok(AuthDecision::allow_with(rules.clone())),
            Row::WrongPassword => Ok(AuthDecision::Deny),
            Row::Down => Err(BackendError::new(
                ErrorKind::Unavailable,
                "db",
                "authenticate",
                "connection refused",
            )),
        }
    }
}

/// Publish to `publish` (any QoS), subscribe to everything.
fn rules(publish: &str) -> AclRules {
    AclRules {
        publish: vec![PublishRule::pattern(publish)],
        subscribe: vec![SubscribeRule::pattern("#")],
    }
}

async fn start(
    authenticator: Option<Arc<Database>>,
    authorizer: Option<Arc<Switch>>,
    ttl: Option<Duration>,
) -> common::TestBroker {
    let mut services = memory_services();
    services.chain = vec![ChainLink {
        name: "db".into(),
        authenticator: authenticator.map(|a| a as _),
        authorizer: authorizer.map(|a| a as _),
        on_error: OnError::Fail,
    }];
    let mut config = test_config();
    config.auth.acl_cache_ttl = ttl;
    common::start_with(config, services).await
}

async fn connect(addr: SocketAddr, id: &str, user: Option<&str>) -> RawClient {
    let mut connect = connect_packet(V5, id);
    connect.username = user.map(str::to_owned);
    connect.password = user.map(|_| Bytes::from_static(b"pw"));
    let (client, ack) = RawClient::connect(addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::Success);
    client
}

/// A subscriber to everything (allowed by both backends).
async fn watcher(addr: SocketAddr) -> RawClient {
    let mut watcher = connect(addr, "watcher", Some("ruled")).await;
    let ack = watcher.subscribe("#", QoS::AtMostOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::Success]);
    watcher
}

/// PUBLISH QoS 1 and check the PUBACK and whether the watcher got it.
async fn publish_expect(
    client: &mut RawClient,
    watcher: &mut RawClient,
    topic: &str,
    allowed: bool,
) {
    let reason = client.publish(topic, b"x", QoS::AtLeastOnce, false).await;
    if allowed {
        assert_eq!(reason, ReasonCode::Success, "PUBLISH {topic}");
        assert_eq!(watcher.expect_publish().await.topic, topic);
    } else {
        assert_eq!(reason, ReasonCode::NotAuthorized, "PUBLISH {topic}");
        watcher.expect_nothing().await;
    }
}

/// Publish until the PUBACK says `want` (the TTL runs out meanwhile).
async fn publish_until(client: &mut RawClient, topic: &str, want: ReasonCode) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client.publish(topic, b"x", QoS::AtLeastOnce, false).await == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "PUBLISH {topic} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn authorizer_answers_stand_until_invalidated() {
    let switch = Arc::new(Switch::default());
    switch.allow.store(true, Ordering::SeqCst);
    let broker = start(None, Some(switch.clone()), None).await;
    let handle = broker.handle();
    let mut watcher = watcher(broker.addr).await;
    let mut client = connect(broker.addr, "pub", Some("alice")).await;

    publish_expect(&mut client, &mut watcher, "t/a", true).await;
    let asked = switch.asked.load(Ordering::SeqCst);
    // The backend now says no; the connection keeps the answer it had.
    switch.allow.store(false, Ordering::SeqCst);
    publish_expect(&mut client, &mut watcher, "t/a", true).await;
    assert_eq!(switch.asked.load(Ordering::SeqCst), asked, "answer cached");

    // Another client's invalidation changes nothing here.
    let other = InvalidateScope::Client {
        mountpoint: String::new(),
        client_id: "someone-else".to_owned(),
    };
    assert_eq!(handle.invalidate_acl(other).await, 0);
    publish_expect(&mut client, &mut watcher, "t/a", true).await;
    assert_eq!(
        handle
            .invalidate_acl(InvalidateScope::Username("bob".to_owned()))
            .await,
        0
    );
    publish_expect(&mut client, &mut watcher, "t/a", true).await;

    // This client's: the next PUBLISH asks the backend again.
    let mine = InvalidateScope::Client {
        mountpoint: String::new(),
        client_id: "pub".to_owned(),
    };
    assert_eq!(handle.invalidate_acl(mine).await, 1);
    publish_expect(&mut client, &mut watcher, "t/a", false).await;

    // By username, and for everybody.
    switch.allow.store(true, Ordering::SeqCst);
    publish_expect(&mut client, &mut watcher, "t/a", false).await;
    assert_eq!(
        handle
            .invalidate_acl(InvalidateScope::Username("alice".to_owned()))
            .await,
        1
    );
    publish_expect(&mut client, &mut watcher, "t/a", true).await;
    switch.allow.store(false, Ordering::SeqCst);
    assert_eq!(handle.invalidate_acl(InvalidateScope::All).await, 2);
    publish_expect(&mut client, &mut watcher, "t/a", false).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn rules_from_connect_are_fetched_again_after_invalidation() {
    let db = Database::new("a/#");
    let broker = start(Some(db.clone()), None, None).await;
    let handle = broker.handle();
    let mut watcher = watcher(broker.addr).await;
    let mut client = connect(broker.addr, "dev", Some("ruled")).await;
    publish_expect(&mut client, &mut watcher, "a/1", true).await;
    publish_expect(&mut client, &mut watcher, "b/1", false).await;

    db.set(Row::Rules(rules("b/#")));
    let asked = db.asked.load(Ordering::SeqCst);
    publish_expect(&mut client, &mut watcher, "a/1", true).await;
    assert_eq!(
        db.asked.load(Ordering::SeqCst),
        asked,
        "no database on PUBLISH"
    );

    // Both connections of `ruled` are affected (the watcher too).
    assert_eq!(
        handle
            .invalidate_acl(InvalidateScope::Username("ruled".to_owned()))
            .await,
        2
    );
    publish_expect(&mut client, &mut watcher, "a/1", false).await;
    publish_expect(&mut client, &mut watcher, "b/1", true).await;
    assert_eq!(
        db.asked.load(Ordering::SeqCst),
        asked + 1,
        "fetched once, at the first PUBLISH"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_ttl_refreshes_answers_without_invalidation() {
    let db = Database::new("a/#");
    let switch = Arc::new(Switch::default());
    switch.allow.store(true, Ordering::SeqCst);
    let broker = start(
        Some(db.clone()),
        Some(switch.clone()),
        Some(Duration::from_millis(200)),
    )
    .await;
    // Rules from CONNECT.
    let mut ruled = connect(broker.addr, "dev", Some("ruled")).await;
    assert_eq!(
        ruled.publish("a/1", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    db.set(Row::Rules(rules("b/#")));
    publish_until(&mut ruled, "a/1", ReasonCode::NotAuthorized).await;
    assert_eq!(
        ruled.publish("b/1", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    // Answers of an authorizer (a client without rules from CONNECT).
    let mut other = connect(broker.addr, "other", None).await;
    assert_eq!(
        other.publish("t/1", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NoMatchingSubscribers
    );
    switch.allow.store(false, Ordering::SeqCst);
    publish_until(&mut other, "t/1", ReasonCode::NotAuthorized).await;
    broker.shutdown().await;
}

#[tokio::test]
async fn revoked_credentials_disconnect_and_an_outage_keeps_the_old_rules() {
    let db = Database::new("a/#");
    let broker = start(Some(db.clone()), None, None).await;
    let handle = broker.handle();
    let mut client = connect(broker.addr, "dev", Some("ruled")).await;

    // The database is down when the rules are fetched again: the client
    // keeps publishing under its old rules.
    db.set(Row::Down);
    handle.invalidate_acl(InvalidateScope::All).await;
    for _ in 0..3 {
        assert_eq!(
            client.publish("a/1", b"x", QoS::AtLeastOnce, false).await,
            ReasonCode::NoMatchingSubscribers
        );
    }

    // Back, with the password changed: the client is disconnected.
    db.set(Row::WrongPassword);
    handle.invalidate_acl(InvalidateScope::All).await;
    client
        .send(Packet::Publish(Box::new(publish_packet(
            "a/1",
            b"x",
            QoS::AtLeastOnce,
            false,
            9,
        ))))
        .await;
    client.expect_disconnect(ReasonCode::NotAuthorized).await;
    broker.shutdown().await;
}
