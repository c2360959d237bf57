//! What the behavior suite does not cover: settings, VerneMQ documents as
//! the mongo shell writes them and malformed in MongoDB's own ways, an
//! outage (the server stopped and started again while the backend lives),
//! and secrets kept out of errors.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code fails by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Mongo, NAME, Who, authenticate, build, may_publish, rules, subscribe};
use fogg_api::dynamic::DynAuthenticator;
use fogg_api::layers::Resilient;
use fogg_api::{AuthDecision, Authenticator, BackendConfig, ErrorKind, QoS, SubscribeDecision};
use fogg_auth_common::passwords;
use fogg_auth_mongodb::{Mode, MongoSettings};
use fogg_testcontainers::require;
use mongodb::bson::{Bson, Document, doc, oid::ObjectId};

fn settings(text: &str) -> Result<MongoSettings, fogg_api::BackendError> {
    MongoSettings::from_config(&BackendConfig {
        name: NAME.to_owned(),
        kind: "mongodb".to_owned(),
        settings: text.parse().unwrap(),
    })
}

#[test]
fn settings_defaults_and_overrides() {
    let s = settings("url = \"mongodb://127.0.0.1:27017\"\ndatabase = \"vmq\"").unwrap();
    assert_eq!(s.mode, Mode::VerneMq);
    assert_eq!(s.database, "vmq");
    assert_eq!(s.collection, "vmq_acl_auth");
    assert_eq!(
        (s.users_collection.as_str(), s.acls_collection.as_str()),
        ("users", "acls")
    );
    assert!(s.superusers);
    assert_eq!(
        (s.connect_timeout, s.server_selection_timeout, s.pool_size),
        (None, None, None)
    );

    // The database from the URL; go-auth's default database.
    let s = settings("url = \"mongodb://h1:1,h2:2/fromurl?replicaSet=rs\"").unwrap();
    assert_eq!(s.database, "fromurl");
    let s = settings("url = \"mongodb://h\"\nmode = \"goauth\"").unwrap();
    assert_eq!((s.mode, s.database.as_str()), (Mode::GoAuth, "mosquitto"));

    let s = settings(
        "url = \"mongodb+srv://cluster.example.invalid/db\"\ncollection = \"auth\"\n\
         connect_timeout = \"500ms\"\nserver_selection_timeout = 3\npool_size = 4",
    )
    .unwrap();
    assert_eq!(s.collection, "auth");
    assert_eq!(s.connect_timeout, Some(Duration::from_millis(500)));
    assert_eq!(s.server_selection_timeout, Some(Duration::from_secs(3)));
    assert_eq!(s.pool_size, Some(4));
}

#[test]
fn bad_settings_name_the_key() {
    for (text, key, reason) in [
        ("database = \"d\"", "url", "is required"),
        (
            "url = \"http://h\"\ndatabase = \"d\"",
            "url",
            "is not a MongoDB connection string",
        ),
        ("url = 5\ndatabase = \"d\"", "url", "must be a string"),
        ("url = \"mongodb://h\"", "database", "is required"),
        (
            "url = \"mongodb://h\"\ndatabase = \"a.b\"",
            "database",
            "must not contain",
        ),
        (
            "url = \"mongodb://h\"\ndatabase = \"\"",
            "database",
            "must not be empty",
        ),
        (
            "url = \"mongodb://h/d\"\nmode = \"redis\"",
            "mode",
            "must be \"vernemq\" or \"goauth\"",
        ),
        (
            "url = \"mongodb://h/d\"\ncollection = \"\"",
            "collection",
            "must not be empty",
        ),
        (
            "url = \"mongodb://h/d\"\nacls_collection = \"$x\"",
            "acls_collection",
            "must not contain",
        ),
        (
            "url = \"mongodb://h/d\"\nconnect_timeout = \"0s\"",
            "connect_timeout",
            "more than 0",
        ),
        (
            "url = \"mongodb://h/d\"\nserver_selection_timeout = \"soon\"",
            "server_selection_timeout",
            "duration",
        ),
        (
            "url = \"mongodb://h/d\"\npool_size = 0",
            "pool_size",
            "at least 1",
        ),
        (
            "url = \"mongodb://h/d\"\nsuperusers = \"no\"",
            "superusers",
            "true or false",
        ),
    ] {
        let e = settings(text).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{text}");
        assert!(e.message.contains(&format!("`{key}`")), "{text}: {e}");
        assert!(e.message.contains(reason), "{text}: {e}");
    }
    let e = settings("url = \"mongodb://h/d\"\ncolection = \"x\"").unwrap_err();
    assert!(e.message.contains("unknown key `colection`"), "{e}");
    assert!(e.message.contains("`collection`"), "{e}");
}

#[test]
fn secrets_stay_out_of_settings_errors_and_debug() {
    let e = settings("url = \"mongodb://fogg:hunter2@h:notaport/d\"").unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e}");
    let s = settings("url = \"mongodb://fogg:hunter2@h/d\"").unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
}

/// Building does not connect: an unreachable server is no build error (the
/// broker may start before its database), and `fogg --check` stays offline.
#[tokio::test]
async fn building_does_not_connect_and_errors_hide_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut table = toml::Table::new();
    table.insert(
        "url".into(),
        format!("mongodb://fogg:hunter2@127.0.0.1:{port}/?authSource=admin").into(),
    );
    table.insert("database".into(), "d".into());
    table.insert("server_selection_timeout".into(), "300ms".into());
    let backend = build(table).expect("builds without a server");
    let e = authenticate(&backend, &Who::new("u", "p"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.retryable);
    assert!(e.to_string().contains(&format!("`{NAME}`")), "{e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

async fn store(mongo: &Mongo, documents: Vec<Document>) {
    mongo
        .collection("vmq_acl_auth")
        .insert_many(documents)
        .await
        .expect("insert");
}

fn user(username: &str, password: &str) -> Document {
    doc! {
        "mountpoint": "",
        "client_id": "*",
        "username": username,
        "passhash": passwords::hash_bcrypt(password.as_bytes(), 4).unwrap(),
    }
}

/// Numbers as the mongo shell stores them (doubles), `$2a$` as VerneMQ's
/// docs show, extra fields (`_id`, anything else) ignored.
#[tokio::test]
async fn documents_as_the_mongo_shell_writes_them() {
    let mongo = require!(Mongo::start().await);
    let hash = passwords::hash_bcrypt(b"pw", 4)
        .unwrap()
        .replacen("$2b$", "$2a$", 1);
    store(
        &mongo,
        vec![doc! {
            "_id": ObjectId::new(),
            "mountpoint": "",
            "client_id": "*",
            "username": "shell",
            "passhash": hash,
            "active": true,
            "publish_acl": [{"pattern": "a/#", "max_qos": 1.0, "max_payload_size": 10.0}],
            "subscribe_acl": [{"pattern": "b/#", "max_qos": 0.0}],
        }],
    )
    .await;
    let backend = build(mongo.settings(&[])).unwrap();
    let who = Who::new("shell", "pw");
    let r = rules(&backend, &who).await;
    assert!(may_publish(&r, &who, "a/x"));
    assert_eq!(
        common::publish(&r, &who, "a/x", QoS::ExactlyOnce),
        fogg_api::PublishDecision::Deny,
        "max_qos 1.0 is 1"
    );
    assert_eq!(r.publish[0].max_payload_size, 10);
    assert_eq!(
        subscribe(&r, &who, "b/c"),
        SubscribeDecision::Allow {
            max_qos: QoS::AtMostOnce,
            replace: None
        }
    );
}

/// Wrong BSON types where VerneMQ's layout has strings and arrays: logged,
/// denied, never an error or a panic; other users unaffected.
#[tokio::test]
async fn malformed_documents_are_denied() {
    let mongo = require!(Mongo::start().await);
    let cases: Vec<(&str, Document)> = vec![
        ("passhash-number", doc! {"passhash": 12345}),
        ("passhash-array", doc! {"passhash": ["$2a$"]}),
        (
            "passhash-binary",
            doc! {"passhash": Bson::Binary(mongodb::bson::Binary {
            subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: b"pw".to_vec() })},
        ),
        ("publish-document", doc! {"publish_acl": {"pattern": "a"}}),
        (
            "publish-string",
            doc! {"publish_acl": "[{\"pattern\": \"a\"}]"},
        ),
        ("subscribe-number", doc! {"subscribe_acl": 1}),
        ("entry-string", doc! {"publish_acl": ["a/#"]}),
        (
            "pattern-objectid",
            doc! {"subscribe_acl": [{"pattern": ObjectId::new()}]},
        ),
        (
            "qos-fraction",
            doc! {"publish_acl": [{"pattern": "a", "max_qos": 1.5}]},
        ),
        (
            "qos-string",
            doc! {"subscribe_acl": [{"pattern": "a", "max_qos": "1"}]},
        ),
        (
            "retain-number",
            doc! {"publish_acl": [{"pattern": "a", "allowed_retain": 0}]},
        ),
        (
            "modifiers-array",
            doc! {"publish_acl": [{"pattern": "a", "modifiers": ["t"]}]},
        ),
    ];
    let mut documents = Vec::new();
    for (name, body) in &cases {
        let mut d = user(name, "pw");
        d.extend(body.clone());
        documents.push(d);
    }
    documents.push(user("fine", "pw"));
    store(&mongo, documents).await;
    let backend = build(mongo.settings(&[])).unwrap();
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
async fn collection_name_is_configurable() {
    let mongo = require!(Mongo::start().await);
    mongo
        .collection("mqtt_auth")
        .insert_one(user("alice", "pw"))
        .await
        .unwrap();
    let backend = build(mongo.settings(&[("collection", "mqtt_auth".into())])).unwrap();
    assert!(matches!(
        authenticate(&backend, &Who::new("alice", "pw")).await,
        Ok(AuthDecision::Allow(_))
    ));
    let default = build(mongo.settings(&[])).unwrap();
    assert_eq!(
        authenticate(&default, &Who::new("alice", "pw"))
            .await
            .unwrap(),
        AuthDecision::Next
    );
}

/// The server stopped while the backend lives: CONNECTs get a retryable
/// `Unavailable` error — never `Deny` — soon enough that the binary's
/// default layer (5 s per attempt, one retry) reports it as such rather
/// than as its own timeout; once the server is back, the same backend
/// instance answers again by itself.
#[tokio::test]
async fn outage_is_unavailable_and_recovers_by_itself() {
    let mut mongo = require!(Mongo::start().await);
    store(&mongo, vec![user("alice", "pw")]).await;
    let backend = build(mongo.settings(&[])).unwrap();
    let inner: Arc<dyn DynAuthenticator> = backend.authenticator.clone().unwrap();
    let guarded = Resilient::new(inner, NAME, Duration::from_secs(5), 1);
    let alice = Who::new("alice", "pw");
    assert!(matches!(
        authenticate(&backend, &alice).await,
        Ok(AuthDecision::Allow(_))
    ));

    mongo.server.stop().await.expect("stop the server");
    for who in [
        &alice,
        &Who::new("alice", "wrong"),
        &Who::new("nobody", "pw"),
    ] {
        let started = Instant::now();
        let e = authenticate(&backend, who).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert!(e.retryable, "{e}");
        eprintln!("outage reported after {:?}: {e}", started.elapsed());
    }
    let started = Instant::now();
    let e = Authenticator::authenticate(&guarded, &who_info(&alice))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Unavailable,
        "through the binary's layer: {e}"
    );
    eprintln!(
        "through the layer (two attempts) after {:?}",
        started.elapsed()
    );

    mongo.server.start().await.expect("start the server again");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match authenticate(&backend, &alice).await {
            Ok(AuthDecision::Allow(_)) => break,
            Ok(other) => panic!("after the outage: {other:?}"),
            Err(e) => {
                assert!(Instant::now() < deadline, "not back within 30 s: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        authenticate(&backend, &Who::new("alice", "wrong"))
            .await
            .unwrap(),
        AuthDecision::Deny
    );
}

fn who_info(who: &Who) -> fogg_api::ConnectInfo {
    fogg_api::ConnectInfo {
        client_id: who.client_id.clone(),
        username: who.username.clone(),
        password: who.password.clone().map(Into::into),
        mountpoint: who.mountpoint.clone(),
        peer: ([127, 0, 0, 1], 50_000).into(),
        listener: "mqtt".to_owned(),
        protocol: fogg_api::ProtocolVersion::V5,
        clean_start: true,
    }
}
