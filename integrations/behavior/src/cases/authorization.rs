//! Authorization cases: patterns, limits, modifiers, substitution.

use bytes::Bytes;
use fogg_api::{PublishDecision, PublishModifiers, QoS, SubscribeDecision, SubscriptionRewrite};
use serde_json::json;

use crate::fixture::{AuthFixture, PublishAcl, SubscribeAcl};
use crate::support::{
    Login, build_default, connect, plain_acl, skip, unique_client_id, unique_mountpoint,
    unique_username, user,
};

/// Patterns with and without wildcards: a publish needs a pattern covering
/// its topic; a subscription needs a pattern covering its filter (a rule's
/// `+` covers a subscription's `+`, but `a/b` does not cover `a/#`).
pub async fn publish_and_subscribe_patterns(f: &impl AuthFixture) {
    let name = unique_username("patterns");
    let mut u = user(f, &name, "pw");
    (u.publish_acl, u.subscribe_acl) = plain_acl(
        &["exact/topic", "one/+/level", "tree/#"],
        &["watch/+/temp", "all/#", "only/this"],
    );
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;

    for (topic, allowed) in [
        ("exact/topic", true),
        ("exact/topic/more", false),
        ("exact", false),
        ("one/x/level", true),
        ("one/x/y/level", false),
        ("tree", true),
        ("tree/a/b/c", true),
        ("treehouse", false),
        ("watch/x/temp", false),
        ("other", false),
    ] {
        assert_eq!(s.may_publish(topic).await, allowed, "publish {topic}");
    }
    for (filter, allowed) in [
        ("watch/kitchen/temp", true),
        ("watch/+/temp", true),
        ("watch/#", false),
        ("all/#", true),
        ("all/x/+", true),
        ("only/this", true),
        ("only/+", false),
        ("#", false),
        ("tree/#", false),
    ] {
        assert_eq!(s.may_subscribe(filter).await, allowed, "subscribe {filter}");
    }
}

/// A user whose ACL lists are empty may connect but do nothing.
pub async fn user_without_acl_entries_may_connect_but_not_act(f: &impl AuthFixture) {
    let name = unique_username("noacl");
    f.seed_user(&user(f, &name, "pw")).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    assert!(!s.may_publish("any/topic").await);
    assert!(!s.may_publish(&name).await);
    assert!(!s.may_subscribe("#").await);
    assert!(!s.may_subscribe("any/topic").await);
}

/// With only a pattern, VerneMQ's defaults apply: QoS up to 2, retain
/// allowed, payloads up to 256 MiB, subscriptions granted QoS 2.
pub async fn acl_defaults(f: &impl AuthFixture) {
    let name = unique_username("defaults");
    let mut u = user(f, &name, "pw");
    (u.publish_acl, u.subscribe_acl) = plain_acl(&["d/#"], &["d/#"]);
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    assert_eq!(
        s.publish("d/x", QoS::ExactlyOnce, true, 268_435_455).await,
        PublishDecision::Allow(None)
    );
    assert_eq!(
        s.subscribe("d/#", QoS::ExactlyOnce).await,
        SubscribeDecision::Allow {
            max_qos: QoS::ExactlyOnce,
            replace: None
        }
    );
}

fn limits(f: &impl AuthFixture, case: &str) -> bool {
    if f.features().acl_limits {
        return true;
    }
    skip(
        case,
        "ACL limits (max_qos, max_payload_size, allowed_retain)",
    );
    false
}

/// `max_qos` on a publish entry: higher QoS is denied.
pub async fn publish_max_qos(f: &impl AuthFixture) {
    if !limits(f, "publish_max_qos") {
        return;
    }
    let name = unique_username("pubqos");
    let mut u = user(f, &name, "pw");
    u.publish_acl = vec![
        PublishAcl {
            max_qos: Some(0),
            ..PublishAcl::pattern("q0/#")
        },
        PublishAcl {
            max_qos: Some(1),
            ..PublishAcl::pattern("q1/#")
        },
    ];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    let allowed = |d: PublishDecision| matches!(d, PublishDecision::Allow(_));
    assert!(allowed(s.publish("q0/x", QoS::AtMostOnce, false, 1).await));
    assert!(!allowed(
        s.publish("q0/x", QoS::AtLeastOnce, false, 1).await
    ));
    assert!(allowed(s.publish("q1/x", QoS::AtLeastOnce, false, 1).await));
    assert!(!allowed(
        s.publish("q1/x", QoS::ExactlyOnce, false, 1).await
    ));
}

/// `max_qos` on a subscribe entry: the subscription is granted, at most at
/// that QoS.
pub async fn subscribe_max_qos_is_granted(f: &impl AuthFixture) {
    if !limits(f, "subscribe_max_qos_is_granted") {
        return;
    }
    let name = unique_username("subqos");
    let mut u = user(f, &name, "pw");
    u.subscribe_acl = vec![
        SubscribeAcl {
            max_qos: Some(1),
            ..SubscribeAcl::pattern("s1/#")
        },
        SubscribeAcl {
            max_qos: Some(0),
            ..SubscribeAcl::pattern("s0/+")
        },
    ];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    for (filter, asked, granted) in [
        ("s1/a", QoS::ExactlyOnce, QoS::AtLeastOnce),
        ("s1/#", QoS::AtMostOnce, QoS::AtLeastOnce),
        ("s0/x", QoS::ExactlyOnce, QoS::AtMostOnce),
    ] {
        assert_eq!(
            s.subscribe(filter, asked).await,
            SubscribeDecision::Allow {
                max_qos: granted,
                replace: None
            },
            "{filter}"
        );
    }
}

/// `max_payload_size`: a larger payload is denied, an equal one allowed.
pub async fn publish_max_payload_size(f: &impl AuthFixture) {
    if !limits(f, "publish_max_payload_size") {
        return;
    }
    let name = unique_username("payload");
    let mut u = user(f, &name, "pw");
    u.publish_acl = vec![PublishAcl {
        max_payload_size: Some(10),
        ..PublishAcl::pattern("small/#")
    }];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    for (len, allowed) in [(0, true), (10, true), (11, false), (1 << 20, false)] {
        assert_eq!(
            matches!(
                s.publish("small/x", QoS::AtMostOnce, false, len).await,
                PublishDecision::Allow(_)
            ),
            allowed,
            "payload of {len} bytes"
        );
    }
}

/// `allowed_retain: false`: retained publishes are denied, plain ones not.
pub async fn publish_allowed_retain(f: &impl AuthFixture) {
    if !limits(f, "publish_allowed_retain") {
        return;
    }
    let name = unique_username("retain");
    let mut u = user(f, &name, "pw");
    u.publish_acl = vec![
        PublishAcl {
            allowed_retain: Some(false),
            ..PublishAcl::pattern("noretain/#")
        },
        PublishAcl {
            allowed_retain: Some(true),
            ..PublishAcl::pattern("retain/#")
        },
    ];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    let allowed = |d: PublishDecision| matches!(d, PublishDecision::Allow(_));
    assert!(allowed(
        s.publish("noretain/x", QoS::AtMostOnce, false, 1).await
    ));
    assert!(!allowed(
        s.publish("noretain/x", QoS::AtMostOnce, true, 1).await
    ));
    assert!(allowed(
        s.publish("retain/x", QoS::AtMostOnce, true, 1).await
    ));
}

/// Publish `modifiers` come back with the allowed publish: topic, payload
/// (VerneMQ's string, as bytes), qos, retain, mountpoint.
pub async fn publish_modifiers(f: &impl AuthFixture) {
    if !f.features().acl_modifiers {
        return skip("publish_modifiers", "ACL modifiers");
    }
    let name = unique_username("pubmod");
    let mut u = user(f, &name, "pw");
    u.publish_acl = vec![
        PublishAcl {
            modifiers: Some(json!({
                "topic": "rewritten/topic",
                "payload": "replaced payload",
                "qos": 1,
                "retain": true,
                "mountpoint": "elsewhere"
            })),
            ..PublishAcl::pattern("in/all")
        },
        PublishAcl {
            modifiers: Some(json!({"qos": 0})),
            ..PublishAcl::pattern("in/qos")
        },
        PublishAcl::pattern("in/plain"),
    ];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    assert_eq!(
        s.publish("in/all", QoS::ExactlyOnce, false, 3).await,
        PublishDecision::Allow(Some(PublishModifiers {
            topic: Some("rewritten/topic".to_owned()),
            payload: Some(Bytes::from_static(b"replaced payload")),
            qos: Some(QoS::AtLeastOnce),
            retain: Some(true),
            mountpoint: Some("elsewhere".to_owned()),
        }))
    );
    assert_eq!(
        s.publish("in/qos", QoS::ExactlyOnce, false, 3).await,
        PublishDecision::Allow(Some(PublishModifiers {
            qos: Some(QoS::AtMostOnce),
            ..PublishModifiers::default()
        }))
    );
    assert_eq!(
        s.publish("in/plain", QoS::ExactlyOnce, false, 3).await,
        PublishDecision::Allow(None)
    );
}

/// Subscribe `modifiers` (`[topic, qos]` pairs) replace the subscription.
pub async fn subscribe_modifiers(f: &impl AuthFixture) {
    if !f.features().acl_modifiers {
        return skip("subscribe_modifiers", "ACL modifiers");
    }
    let name = unique_username("submod");
    let mut u = user(f, &name, "pw");
    u.subscribe_acl = vec![
        SubscribeAcl {
            max_qos: Some(1),
            modifiers: Some(json!([["out/one", 1], ["out/+/two", 0]])),
            ..SubscribeAcl::pattern("in/+")
        },
        SubscribeAcl::pattern("plain/#"),
    ];
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(&backend, &Login::new(&name, "pw")).await;
    assert_eq!(
        s.subscribe("in/x", QoS::ExactlyOnce).await,
        SubscribeDecision::Allow {
            max_qos: QoS::AtLeastOnce,
            replace: Some(vec![
                SubscriptionRewrite {
                    filter: "out/one".to_owned(),
                    qos: QoS::AtLeastOnce
                },
                SubscriptionRewrite {
                    filter: "out/+/two".to_owned(),
                    qos: QoS::AtMostOnce
                },
            ])
        }
    );
    assert_eq!(
        s.subscribe("plain/a", QoS::AtLeastOnce).await,
        SubscribeDecision::allow()
    );
}

/// `%u`, `%c`, `%m` become the client's username, client id and mountpoint
/// where they fill a whole level, in publish and subscribe patterns.
pub async fn substitution_of_username_client_id_mountpoint(f: &impl AuthFixture) {
    let name = unique_username("subst");
    let client = unique_client_id("c");
    let mountpoint = unique_mountpoint();
    let mut u = user(f, &name, "pw");
    if f.features().mountpoints {
        u.mountpoint = mountpoint.clone();
    }
    let patterns = ["u/%u/#", "c/%c/+", "m/%m", "mixed/%u/%c", "partial/x%u"];
    (u.publish_acl, u.subscribe_acl) = plain_acl(&patterns, &patterns);
    f.seed_user(&u).await;
    let backend = build_default(f);
    let s = connect(
        &backend,
        &Login::new(&name, "pw")
            .client_id(&client)
            .mountpoint(&mountpoint),
    )
    .await;
    let own = [
        format!("u/{name}/x"),
        format!("c/{client}/y"),
        format!("m/{mountpoint}"),
        format!("mixed/{name}/{client}"),
        "partial/x%u".to_owned(),
    ];
    let others = [
        "u/someone-else/x".to_owned(),
        format!("u/{client}/x"),
        "c/other-client/y".to_owned(),
        "m/other".to_owned(),
        format!("mixed/{client}/{name}"),
        format!("partial/x{name}"),
        "u/%u/x".to_owned(),
    ];
    for topic in &own {
        assert!(s.may_publish(topic).await, "publish {topic}");
        assert!(s.may_subscribe(topic).await, "subscribe {topic}");
    }
    for topic in &others {
        assert!(!s.may_publish(topic).await, "publish {topic}");
        assert!(!s.may_subscribe(topic).await, "subscribe {topic}");
    }
}
