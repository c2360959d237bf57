//! The real `fogg` binary with `kind = "mongodb"` against a real
//! MongoDB-wire server (fogg-testcontainers: `mongod`, else `secantusd-rs`),
//! driven by MQTT 3.1.1 and 5.0 clients on fogg-codec: CONNACK codes for
//! right and wrong passwords, ACL-denied PUBLISH and SUBSCRIBE, `max_qos`
//! granted, who receives what, go-auth mode, and an outage — the server
//! stopped while fogg runs: new CONNECTs get 0x88 / 3 (never "bad
//! password"), connected clients keep working, and logins recover by
//! themselves when the server is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use fogg_codec::{ProtocolVersion, QoS, ReasonCode};
use fogg_testcontainers::TestServer;
use mongodb::bson::{Document, doc};
use support::auth::{
    Passwords, connect_as, denied, login, publish, receive, refused, subscribe, vernemq_scenario,
};
use support::{Fogg, dir_with};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A MongoDB-wire server, a database with a random name on it, and a
/// runtime for the driver (the tests themselves are blocking).
struct Mongo {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
    client: mongodb::Client,
    database: String,
}

impl Mongo {
    /// The server, or `None` after a loud `SKIPPED` line (a failure under
    /// `CI=true`).
    fn start() -> Option<Mongo> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server =
            fogg_testcontainers::require(runtime.block_on(fogg_testcontainers::mongodb()))?;
        let client = runtime.block_on(async {
            let mut options = mongodb::options::ClientOptions::parse(server.url())
                .await
                .unwrap();
            options.server_selection_timeout = Some(Duration::from_secs(10));
            mongodb::Client::with_options(options).unwrap()
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let database = format!("fogg_e2e_{}_{nanos:08x}", std::process::id());
        Some(Mongo {
            runtime,
            server,
            client,
            database,
        })
    }

    fn insert(&self, collection: &str, documents: Vec<Document>) {
        let collection = self
            .client
            .database(&self.database)
            .collection::<Document>(collection);
        self.runtime
            .block_on(collection.insert_many(documents).into_future())
            .expect("seed documents");
    }

    /// fogg with one loopback listener and this backend, anonymous clients refused.
    fn fogg(&self, extra: &str) -> Fogg {
        let config = format!(
            "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\n\
             [backends.mongo]\nkind = \"mongodb\"\nurl = \"{}\"\ndatabase = \"{}\"\n{extra}\n\n\
             [auth]\nallow_anonymous = false\nchain = [\"mongo\"]\n",
            self.server.url(),
            self.database
        );
        Fogg::start(dir_with(&[("fogg.toml", &config)]), 1)
    }

    fn stop(&mut self) {
        self.runtime
            .block_on(self.server.stop())
            .expect("stop MongoDB");
    }

    fn resume(&mut self) {
        self.runtime
            .block_on(self.server.start())
            .expect("start MongoDB again");
    }
}

/// bcrypt (cost 4, `$2a$` as VerneMQ's docs show) of each test password.
fn bcrypt(password: &str) -> &'static str {
    match password {
        "alice-pw" => "$2a$04$NqzSz5AQxuZvoHqL0MZxX.c1.oyixk2NxfitOkzPlo2SDSWMierhy",
        "bob-pw" => "$2a$04$9t3qb.zWUoJ.C9d50bFgCOCd7rbIrCN2gC4Q9RBLwJbEvpc7W4YQu",
        "watch-pw" => "$2a$04$9g9JbBQTSbLUXucQO8Ccq.fvLTEDfUPIro12vTbPDbi9QL7znMTrq",
        "any" => "$2a$04$gC0EjfCLJxzajhZAe2AkHO.E3qgvEkXUkqlmJaiSGACUzp55n0ILu",
        "own" => "$2a$04$o2C6AJMiyqCwoIxzC33ja.3v0e8TnBp34HfP4v./ugzTqAtp/FAvu",
        other => panic!("no hash for {other:?}"),
    }
}

/// mosquitto-go-auth's default format, PBKDF2-SHA512 (1000 iterations here).
fn pbkdf2(password: &str) -> &'static str {
    match password {
        "admin-pw" => {
            "PBKDF2$sha512$1000$Zm9nZy1lMmUtc2FsdC0xNg==$WTDqT3oH1JtCeqduqQZZ8hdoKjk1opzJ/mCC6lfNTxHinvYvtfKIl7Bg4m3h6kOs0mraxgeJxPQzO6t2f2yvNQ=="
        }
        "dev-pw" => {
            "PBKDF2$sha512$1000$Zm9nZy1lMmUtc2FsdC0xNg==$gZkkdPkP782cv/Fim0MASsvC+8F2dnf2vjjtDg1LpwQ7HMtvbz/O0wB9sTB4O7bKezpSWJzV6ydpm6EyYjB+8g=="
        }
        other => panic!("no hash for {other:?}"),
    }
}

/// VerneMQ documents: alice (own tree, `shared/#` granted at most QoS 1),
/// bob (`shared/#` only), watch (may subscribe to everything, publish nothing).
fn seed_vernemq(mongo: &Mongo) {
    mongo.insert(
        "vmq_acl_auth",
        vec![
            doc! {
                "mountpoint": "", "client_id": "*", "username": "alice",
                "passhash": bcrypt("alice-pw"),
                "publish_acl": [{"pattern": "home/%u/#", "max_qos": 1}, {"pattern": "shared/#"}],
                "subscribe_acl": [{"pattern": "home/%u/#"}, {"pattern": "shared/#", "max_qos": 1}],
            },
            doc! {
                "mountpoint": "", "client_id": "*", "username": "bob",
                "passhash": bcrypt("bob-pw"),
                "publish_acl": [{"pattern": "shared/#"}],
                "subscribe_acl": [{"pattern": "shared/#"}],
            },
            doc! {
                "mountpoint": "", "client_id": "*", "username": "watch",
                "passhash": bcrypt("watch-pw"),
                "publish_acl": [],
                "subscribe_acl": [{"pattern": "#"}],
            },
        ],
    );
}

#[test]
fn passwords_acls_and_delivery_over_3_1_1_and_5() {
    let Some(mongo) = Mongo::start() else { return };
    seed_vernemq(&mongo);
    let fogg = mongo.fogg("");
    let addr = fogg.addr();

    vernemq_scenario(
        addr,
        &Passwords {
            alice: "alice-pw",
            bob: "bob-pw",
            watch: "watch-pw",
        },
    );
    assert!(
        !fogg.log().contains("alice-pw"),
        "a password reached the log"
    );
}

/// Exact client-id documents win over the `*` one, end to end.
#[test]
fn client_id_documents_over_the_wire() {
    let Some(mongo) = Mongo::start() else { return };
    mongo.insert(
        "vmq_acl_auth",
        vec![
            doc! {"mountpoint": "", "client_id": "*", "username": "dev", "passhash": bcrypt("any"),
            "publish_acl": [{"pattern": "any/#"}]},
            doc! {"mountpoint": "", "client_id": "sensor-1", "username": "dev",
            "passhash": bcrypt("own"), "publish_acl": [{"pattern": "own/%c"}]},
        ],
    );
    let fogg = mongo.fogg("");
    let addr = fogg.addr();
    let mut own = login(addr, V5, "sensor-1", "dev", "own");
    assert_eq!(
        publish(&mut own, 1, "own/sensor-1", "x"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        publish(&mut own, 2, "any/x", "x"),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        refused(addr, V5, "sensor-1", Some(("dev", "any"))),
        ReasonCode::BadUserNameOrPassword,
        "the exact document decides alone"
    );
    let mut other = login(addr, V5, "sensor-2", "dev", "any");
    assert_eq!(
        publish(&mut other, 1, "any/x", "x"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        publish(&mut other, 2, "own/sensor-2", "x"),
        ReasonCode::NotAuthorized
    );
}

#[test]
fn goauth_mode_over_the_wire() {
    let Some(mongo) = Mongo::start() else { return };
    mongo.insert(
        "users",
        vec![
            doc! {"username": "admin", "password": pbkdf2("admin-pw"), "superuser": true},
            doc! {"username": "dev", "password": pbkdf2("dev-pw"), "superuser": false,
            "acls": [{"topic": "dev/%u/#", "acc": 3}, {"topic": "cmd/#", "acc": 4}]},
        ],
    );
    mongo.insert("acls", vec![doc! {"topic": "status/+", "acc": 2}]);
    let fogg = mongo.fogg("mode = \"goauth\"");
    let addr = fogg.addr();
    for version in [V4, V5] {
        let mut admin = login(addr, version, "admin", "admin", "admin-pw");
        assert_eq!(
            subscribe(&mut admin, 1, "#", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
        let mut dev = login(addr, version, "dev", "dev", "dev-pw");
        assert_eq!(
            subscribe(&mut dev, 1, "cmd/dev", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
        assert_eq!(
            subscribe(&mut dev, 2, "status/+", QoS::AtLeastOnce),
            denied(version)
        );
        assert_eq!(
            publish(&mut dev, 3, "status/dev", "up"),
            ReasonCode::Success
        );
        assert_eq!(receive(&mut admin).0, "status/dev");
        assert_eq!(
            publish(&mut admin, 2, "cmd/dev", "reboot"),
            ReasonCode::Success
        );
        assert_eq!(receive(&mut dev).1, "reboot");
        let expected = if version == V5 {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        assert_eq!(publish(&mut dev, 4, "cmd/dev", "self"), expected);
        assert_eq!(
            refused(addr, version, "x", Some(("dev", "admin-pw"))),
            ReasonCode::BadUserNameOrPassword
        );
        admin.disconnect();
        dev.disconnect();
    }
}

/// MongoDB stopped while fogg runs, with the default layer settings
/// (5 s per attempt, one retry): new CONNECTs are refused as "server
/// unavailable" — 0x88 (5.0), 3 (3.1.1) — never as a bad password;
/// connected clients keep publishing and receiving under the rules of their
/// CONNECT; when MongoDB is back, CONNECTs succeed again without a restart.
#[test]
fn outage_refuses_new_connects_keeps_sessions_and_recovers() {
    let Some(mut mongo) = Mongo::start() else {
        return;
    };
    seed_vernemq(&mongo);
    let fogg = mongo.fogg("");
    let addr = fogg.addr();

    let mut alice = login(addr, V5, "alice-5", "alice", "alice-pw");
    let mut bob = login(addr, V4, "bob-4", "bob", "bob-pw");
    assert_eq!(
        subscribe(&mut bob, 1, "shared/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );

    mongo.stop();
    // Right and wrong passwords alike: nothing can be checked.
    for (version, user, pw) in [
        (V5, "alice", "alice-pw"),
        (V5, "alice", "wrong"),
        (V4, "bob", "bob-pw"),
    ] {
        let started = Instant::now();
        assert_eq!(
            refused(addr, version, "late", Some((user, pw))),
            ReasonCode::ServerUnavailable,
            "{user}/{pw} over {version:?} during the outage"
        );
        eprintln!(
            "{version:?} {user}/{pw}: refused after {:?}",
            started.elapsed()
        );
    }
    // Connected clients are unaffected: their rules came with their CONNECT.
    assert_eq!(
        publish(&mut alice, 1, "shared/during", "outage"),
        ReasonCode::Success
    );
    assert_eq!(
        receive(&mut bob),
        ("shared/during".into(), "outage".into(), QoS::AtLeastOnce)
    );
    assert_eq!(
        publish(&mut alice, 2, "home/bob/x", "no"),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        publish(&mut bob, 2, "shared/reply", "still here"),
        ReasonCode::Success
    );
    assert_eq!(
        receive(&mut bob).0,
        "shared/reply",
        "bob reads his own topic"
    );
    assert_eq!(
        subscribe(&mut alice, 3, "home/alice/#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    alice.ping();
    bob.ping();
    assert!(
        fogg.log().contains("authentication backend failed"),
        "the outage is logged"
    );
    assert!(fogg.log().contains("`mongo`"), "the log names the backend");

    mongo.resume();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut again = loop {
        let (client, ack) = connect_as(addr, V5, "after-5", Some(("alice", "alice-pw")));
        match ack.reason {
            ReasonCode::Success => break client,
            ReasonCode::ServerUnavailable if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("after the outage: {other:?}"),
        }
    };
    eprintln!("logins back {:?} after MongoDB", started.elapsed());
    let mut bob4 = login(addr, V4, "after-4", "bob", "bob-pw");
    assert_eq!(
        refused(addr, V4, "after-bad", Some(("bob", "wrong"))),
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        publish(&mut bob4, 1, "shared/back", "yes"),
        ReasonCode::Success
    );
    assert_eq!(receive(&mut bob).0, "shared/back");
    again.ping();
    // The connected clients lived through all of it.
    alice.ping();
    bob.ping();
}
