//! mosquitto-go-auth mode (`mode = "goauth"`) against a real MongoDB-wire
//! server: go-auth's `users` and `acls` documents, its hashes, superusers,
//! each access code, common rules, and malformed documents.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails by panicking"
)]

mod common;

use common::{Mongo, Who, authenticate, build, may_publish, may_subscribe, rules};
use fogg_api::{AclRules, AuthDecision};
use fogg_auth_common::passwords::{self, Pbkdf2Digest};
use fogg_testcontainers::require;
use mongodb::bson::{Bson, Document, doc};

/// "correct horse" in go-auth's formats, made by other tools (the vectors
/// of fogg-auth-common): Python hashlib PBKDF2 (go-auth's default format),
/// OpenBSD bcrypt `$2y$`, Python argon2-cffi with go-auth's parameters.
const KNOWN: &[(&str, &str)] = &[
    (
        "pbkdf2-sha512",
        "PBKDF2$sha512$1000$MDEyMzQ1Njc4OWFiY2RlZg==$OM0FAoIqCVK1sWtxDiffVlBejtLa+ks4TP71JiecwuSZCG8iLbnlIEPOMoVX+i2B2wkSxjQ8CRGR9OkNGuIPMQ==",
    ),
    (
        "pbkdf2-sha256",
        "PBKDF2$sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M=",
    ),
    (
        "argon2id",
        "$argon2id$v=19$m=4096,t=3,p=2$c2FsdHNhbHRzYWx0c2FsdA$BPLyWyvnAcpmA7B4Brd/0YfLNtAXIiKNyEMWc7UqNQw",
    ),
];

fn goauth(mongo: &Mongo) -> fogg_api::Backend {
    build(mongo.settings(&[("mode", "goauth".into())])).expect("build")
}

async fn insert(mongo: &Mongo, collection: &str, documents: Vec<Document>) {
    mongo
        .collection(collection)
        .insert_many(documents)
        .await
        .expect("insert");
}

fn pbkdf2(password: &str) -> String {
    passwords::hash_goauth_pbkdf2(password.as_bytes(), Pbkdf2Digest::Sha512, 1000)
}

#[tokio::test]
async fn right_and_wrong_passwords_for_each_goauth_hash() {
    let mongo = require!(Mongo::start().await);
    let mut users = Vec::new();
    for (name, hash) in KNOWN {
        users.push(doc! {"username": *name, "password": *hash});
    }
    users.push(doc! {
        "username": "bcrypt",
        "password": passwords::hash_bcrypt(b"correct horse", 4).unwrap(),
    });
    users.push(doc! {"username": "fresh-pbkdf2", "password": pbkdf2("correct horse")});
    insert(&mongo, "users", users).await;
    let backend = goauth(&mongo);
    for name in [
        "pbkdf2-sha512",
        "pbkdf2-sha256",
        "argon2id",
        "bcrypt",
        "fresh-pbkdf2",
    ] {
        assert!(
            matches!(
                authenticate(&backend, &Who::new(name, "correct horse")).await,
                Ok(AuthDecision::Allow(_))
            ),
            "{name}: right password"
        );
        for wrong in ["correct horsE", "", "x"] {
            assert_eq!(
                authenticate(&backend, &Who::new(name, wrong))
                    .await
                    .unwrap(),
                AuthDecision::Deny,
                "{name}: wrong password {wrong:?}"
            );
        }
    }
}

#[tokio::test]
async fn each_access_code() {
    let mongo = require!(Mongo::start().await);
    insert(
        &mongo,
        "users",
        vec![doc! {
            "username": "alice",
            "password": pbkdf2("pw"),
            "superuser": false,
            // As the mongo shell stores numbers: doubles.
            "acls": [
                {"topic": "read/#", "acc": 1.0},
                {"topic": "write/#", "acc": 2_i32},
                {"topic": "both/%u/+", "acc": 3_i64},
                {"topic": "sub/+", "acc": 4},
            ],
        }],
    )
    .await;
    let backend = goauth(&mongo);
    let alice = Who::new("alice", "pw");
    let r = rules(&backend, &alice).await;
    // 1 read, 4 subscribe: subscribe only.
    assert!(may_subscribe(&r, &alice, "read/a"));
    assert!(!may_publish(&r, &alice, "read/a"));
    assert!(may_subscribe(&r, &alice, "sub/x"));
    assert!(!may_publish(&r, &alice, "sub/x"));
    // 2 write: publish only.
    assert!(may_publish(&r, &alice, "write/a/b"));
    assert!(!may_subscribe(&r, &alice, "write/a"));
    // 3 readwrite: both, with %u.
    assert!(may_publish(&r, &alice, "both/alice/x"));
    assert!(may_subscribe(&r, &alice, "both/alice/x"));
    assert!(!may_publish(&r, &alice, "both/bob/x"));
    // Nothing else.
    assert!(!may_publish(&r, &alice, "other"));
    assert!(!may_subscribe(&r, &alice, "#"));
}

#[tokio::test]
async fn superusers_may_do_anything_unless_disabled() {
    let mongo = require!(Mongo::start().await);
    insert(
        &mongo,
        "users",
        vec![
            doc! {"username": "root", "password": pbkdf2("pw"), "superuser": true,
            "acls": [{"topic": "own", "acc": 2}]},
            doc! {"username": "plain", "password": pbkdf2("pw"), "superuser": false},
        ],
    )
    .await;
    let backend = goauth(&mongo);
    let root = Who::new("root", "pw");
    assert_eq!(*rules(&backend, &root).await, AclRules::allow_all());
    let plain = Who::new("plain", "pw");
    let r = rules(&backend, &plain).await;
    assert!(!may_publish(&r, &plain, "x"));

    // go-auth's `mongo_disable_superuser`: the flag is ignored.
    let backend =
        build(mongo.settings(&[("mode", "goauth".into()), ("superusers", false.into())])).unwrap();
    let r = rules(&backend, &root).await;
    assert!(may_publish(&r, &root, "own"));
    assert!(!may_publish(&r, &root, "x"));
    assert!(!may_subscribe(&r, &root, "#"));
}

#[tokio::test]
async fn common_acls_apply_to_every_user_and_bad_ones_are_skipped() {
    let mongo = require!(Mongo::start().await);
    insert(
        &mongo,
        "users",
        vec![
            doc! {"username": "alice", "password": pbkdf2("pw"), "acls": [{"topic": "own/a", "acc": 3}]},
            doc! {"username": "bob", "password": pbkdf2("pw")},
        ],
    )
    .await;
    insert(
        &mongo,
        "acls",
        vec![
            doc! {"topic": "public/#", "acc": 1},
            doc! {"topic": "devices/%u/up", "acc": 2},
            doc! {"topic": "chat/+", "acc": 3},
            // Malformed: logged and skipped; the others still apply.
            doc! {"topic": "bad/#", "acc": "3"},
            doc! {"topic": "worse/#", "acc": 7},
            doc! {"acc": 3},
            doc! {"topic": "a/#/b", "acc": 3},
        ],
    )
    .await;
    let backend = goauth(&mongo);
    for name in ["alice", "bob"] {
        let who = Who::new(name, "pw");
        let r = rules(&backend, &who).await;
        assert!(may_subscribe(&r, &who, "public/news"), "{name}");
        assert!(!may_publish(&r, &who, "public/news"), "{name}");
        assert!(
            may_publish(&r, &who, &format!("devices/{name}/up")),
            "{name}"
        );
        assert!(!may_publish(&r, &who, "devices/someone/up"), "{name}");
        assert!(may_publish(&r, &who, "chat/1") && may_subscribe(&r, &who, "chat/1"));
        for topic in ["bad/x", "worse/x", "a/x/b"] {
            assert!(!may_publish(&r, &who, topic), "{name} {topic}");
            assert!(!may_subscribe(&r, &who, topic), "{name} {topic}");
        }
        assert_eq!(may_publish(&r, &who, "own/a"), name == "alice");
    }
}

#[tokio::test]
async fn unknown_users_and_missing_credentials_are_next() {
    let mongo = require!(Mongo::start().await);
    insert(
        &mongo,
        "users",
        vec![doc! {"username": "alice", "password": pbkdf2("pw")}],
    )
    .await;
    let backend = goauth(&mongo);
    assert_eq!(
        authenticate(&backend, &Who::new("nobody", "pw"))
            .await
            .unwrap(),
        AuthDecision::Next
    );
    let mut no_password = Who::new("alice", "pw");
    no_password.password = None;
    assert_eq!(
        authenticate(&backend, &no_password).await.unwrap(),
        AuthDecision::Next
    );
    let mut no_username = Who::new("alice", "pw");
    no_username.username = None;
    assert_eq!(
        authenticate(&backend, &no_username).await.unwrap(),
        AuthDecision::Next
    );
}

#[tokio::test]
async fn malformed_user_documents_are_denied() {
    let mongo = require!(Mongo::start().await);
    let good = pbkdf2("pw");
    let cases: Vec<(&str, Document)> = vec![
        ("no-password", doc! {}),
        ("null-password", doc! {"password": Bson::Null}),
        ("empty-password", doc! {"password": ""}),
        ("number-password", doc! {"password": 42}),
        ("unknown-hash", doc! {"password": "$9$what$ever"}),
        ("plain-text", doc! {"password": "pw"}),
        (
            "string-superuser",
            doc! {"password": &good, "superuser": "true"},
        ),
        (
            "acls-not-array",
            doc! {"password": &good, "acls": {"topic": "a", "acc": 1}},
        ),
        ("acl-not-document", doc! {"password": &good, "acls": ["a"]}),
        (
            "acl-bad-code",
            doc! {"password": &good, "acls": [{"topic": "a", "acc": 5}]},
        ),
        (
            "acl-string-code",
            doc! {"password": &good, "acls": [{"topic": "a", "acc": "1"}]},
        ),
        (
            "acl-bad-filter",
            doc! {"password": &good, "acls": [{"topic": "a/#/b", "acc": 1}]},
        ),
        (
            "acl-no-topic",
            doc! {"password": &good, "acls": [{"acc": 1}]},
        ),
    ];
    let mut documents = Vec::new();
    for (name, body) in &cases {
        let mut d = doc! {"username": *name};
        d.extend(body.clone());
        documents.push(d);
    }
    documents.push(doc! {"username": "fine", "password": &good});
    insert(&mongo, "users", documents).await;
    let backend = goauth(&mongo);
    for (name, _) in &cases {
        assert_eq!(
            authenticate(&backend, &Who::new(name, "pw")).await.unwrap(),
            AuthDecision::Deny,
            "{name}"
        );
    }
    assert!(matches!(
        authenticate(&backend, &Who::new("fine", "pw")).await,
        Ok(AuthDecision::Allow(_))
    ));
}

#[tokio::test]
async fn collection_names_are_configurable() {
    let mongo = require!(Mongo::start().await);
    insert(
        &mongo,
        "mqtt_users",
        vec![doc! {"username": "alice", "password": pbkdf2("pw")}],
    )
    .await;
    insert(&mongo, "mqtt_acls", vec![doc! {"topic": "t/#", "acc": 3}]).await;
    // Decoys in the default collections.
    insert(
        &mongo,
        "users",
        vec![doc! {"username": "alice", "password": pbkdf2("other")}],
    )
    .await;
    let backend = build(mongo.settings(&[
        ("mode", "goauth".into()),
        ("users_collection", "mqtt_users".into()),
        ("acls_collection", "mqtt_acls".into()),
    ]))
    .unwrap();
    let alice = Who::new("alice", "pw");
    let r = rules(&backend, &alice).await;
    assert!(may_publish(&r, &alice, "t/1"));
    assert_eq!(
        authenticate(&backend, &Who::new("alice", "other"))
            .await
            .unwrap(),
        AuthDecision::Deny
    );
}
