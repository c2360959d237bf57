//! The real `fogg` binary with `kind = "redis"` against a real Redis
//! (fogg-testcontainers), driven by MQTT 3.1.1 and 5.0 clients on
//! fogg-codec: CONNACK codes for right and wrong passwords, ACL-denied
//! PUBLISH (v5 PUBACK 0x87) and SUBSCRIBE (0x87 / 0x80), `max_qos` granted
//! in the SUBACK, who receives what, the `*` client-id key, go-auth mode,
//! and an outage — Redis stopped while fogg runs: new CONNECTs get 0x88 / 3
//! (never "bad password"), connected clients keep publishing and receiving
//! under the rules of their CONNECT, fogg keeps running, and logins recover
//! by themselves when Redis is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fogg_codec::{ProtocolVersion, QoS, ReasonCode};
use fogg_testcontainers::TestServer;
use support::auth::{
    Outage, Passwords, denied, login, outage_scenario, publish, publish_denied, receive, refused,
    subscribe, vernemq_scenario,
};
use support::{Fogg, Recv, WAIT, dir_with, eventually};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

// ---------------------------------------------------------------------------
// Redis: the server, a runtime to start and stop it, and RESP by hand.

/// A Redis server and a runtime for fogg-testcontainers (the tests are
/// blocking).
struct Redis {
    runtime: tokio::runtime::Runtime,
    server: TestServer,
}

impl Redis {
    /// The server, or `None` after a loud `SKIPPED` line (a failure under
    /// `CI=true`).
    fn start() -> Option<Redis> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = fogg_testcontainers::require(runtime.block_on(fogg_testcontainers::redis()))?;
        Some(Redis { runtime, server })
    }

    fn url(&self) -> &str {
        self.server.url()
    }

    /// Run one command; the reply's first line (and a bulk string's body).
    fn cmd(&self, args: &[&str]) -> String {
        let mut stream = TcpStream::connect((self.server.host(), self.server.port())).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "Redis closed the connection");
            reply.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&reply);
            let complete = match text.strip_prefix('$') {
                Some(rest) => rest.split_once("\r\n").is_some_and(|(len, body)| {
                    len == "-1" || body.len() >= len.parse::<usize>().unwrap() + 2
                }),
                None => text.ends_with("\r\n"),
            };
            if complete {
                assert!(!text.starts_with('-'), "Redis refused {args:?}: {text}");
                return text.into_owned();
            }
        }
    }

    /// fogg with one loopback listener and this backend, anonymous clients
    /// refused.
    fn fogg(&self, extra: &str) -> Fogg {
        let config = format!(
            "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\n\
             [storage]\nbackend = \"memory\"\n\n\
             [backends.redis]\nkind = \"redis\"\nurl = \"{}\"\n{extra}\n\n\
             [auth]\nallow_anonymous = false\nchain = [\"redis\"]\n",
            self.url(),
        );
        Fogg::start(dir_with(&[("fogg.toml", &config)]), 1)
    }
}

impl Outage for Redis {
    fn stop(&mut self) {
        self.runtime
            .block_on(self.server.stop())
            .expect("stop Redis");
    }

    fn resume(&mut self) {
        self.runtime
            .block_on(self.server.start())
            .expect("start Redis again");
    }
}

/// bcrypt (cost 4) of each test password, as VerneMQ stores them.
fn bcrypt(password: &str) -> &'static str {
    match password {
        "secret-a" => "$2b$04$KL7dng0gvHBpmlc91wWyC.DJCR1Bz538YNArVlTkRvlhF3aumxzFm",
        "secret-b" => "$2b$04$sCXmkNN2KK923Cf54/7yA.V2jB5LvYBGavUJJ965hdXD1qjFXG9VC",
        "secret-c" => "$2b$04$A4xra.xpa9eIGATz05BbbeOqUgDrV3Ynak7Q9t/o3v6vr9bzyrkSy",
        other => panic!("no hash for {other:?}"),
    }
}

/// VerneMQ values: alice (own tree, `shared/#` subscribed at most QoS 1),
/// bob (`shared/#` only), watch (may subscribe to everything, publish
/// nothing).
fn seed_vernemq(redis: &Redis) {
    let users = [
        (
            "alice",
            "secret-a",
            r#"[{"pattern":"home/%u/#","max_qos":1},{"pattern":"shared/#"}]"#,
            r#"[{"pattern":"home/%u/#"},{"pattern":"shared/#","max_qos":1}]"#,
        ),
        (
            "bob",
            "secret-b",
            r#"[{"pattern":"shared/#"}]"#,
            r#"[{"pattern":"shared/#"}]"#,
        ),
        ("watch", "secret-c", "[]", r##"[{"pattern":"#"}]"##),
    ];
    for (user, password, publish, subscribe) in users {
        let key = format!(r#"["","*","{user}"]"#);
        let value = format!(
            r#"{{"passhash":"{}","publish_acl":{publish},"subscribe_acl":{subscribe}}}"#,
            bcrypt(password)
        );
        redis.cmd(&["SET", &key, &value]);
    }
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn passwords_acls_and_delivery_over_3_1_1_and_5() {
    let Some(redis) = Redis::start() else { return };
    seed_vernemq(&redis);
    let fogg = redis.fogg("");
    let addr = fogg.addr();

    vernemq_scenario(
        addr,
        &Passwords {
            alice: "secret-a",
            bob: "secret-b",
            watch: "secret-c",
        },
    );
    assert!(
        !fogg.log().contains("secret-a"),
        "a password reached the log"
    );
}

/// The exact client-id key wins over the `*` one, end to end.
/// VerneMQ keeps the ACL read at CONNECT for the connection's life; a
/// changed ACL in Redis reaches connected clients after SIGHUP (which
/// invalidates every connection's answers: each fetches its rules again at
/// its next PUBLISH or SUBSCRIBE).
#[test]
fn sighup_applies_a_changed_acl_to_connected_clients() {
    let Some(redis) = Redis::start() else { return };
    seed_vernemq(&redis);
    let fogg = redis.fogg("");
    let addr = fogg.addr();
    let mut watch = login(addr, V5, "hup-watch", "watch", "secret-c");
    assert_eq!(
        subscribe(&mut watch, 1, "#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    let mut alice = login(addr, V5, "hup-alice", "alice", "secret-a");
    let mut bob = login(addr, V5, "hup-bob", "bob", "secret-b");
    let published = |client: &mut support::RawClient, watch: &mut support::RawClient, topic| {
        assert_eq!(
            publish(client, 1, topic, "m"),
            ReasonCode::Success,
            "{topic}"
        );
        assert_eq!(receive(watch).0, topic);
    };
    published(&mut alice, &mut watch, "shared/a");
    assert_eq!(
        publish(&mut bob, 1, "bob/own", "m"),
        ReasonCode::NotAuthorized
    );

    // alice loses `shared/#`, bob gains `bob/#`, in Redis.
    let row = |publish: &str, subscribe: &str, password: &str| {
        format!(
            r#"{{"passhash":"{}","publish_acl":{publish},"subscribe_acl":{subscribe}}}"#,
            bcrypt(password)
        )
    };
    redis.cmd(&[
        "SET",
        r#"["","*","alice"]"#,
        &row(
            r#"[{"pattern":"home/%u/#"}]"#,
            r#"[{"pattern":"home/%u/#"}]"#,
            "secret-a",
        ),
    ]);
    redis.cmd(&[
        "SET",
        r#"["","*","bob"]"#,
        &row(
            r#"[{"pattern":"shared/#"},{"pattern":"bob/#"}]"#,
            r#"[{"pattern":"shared/#"}]"#,
            "secret-b",
        ),
    ]);
    // Connected clients keep the rules of their CONNECT...
    published(&mut alice, &mut watch, "shared/b");
    assert_eq!(
        publish(&mut bob, 2, "bob/own", "m"),
        ReasonCode::NotAuthorized
    );

    // ... until SIGHUP (handled asynchronously: poll).
    fogg.signal("HUP");
    eventually("bob may publish to bob/#", WAIT, || {
        match publish(&mut bob, 3, "bob/own", "m") {
            ReasonCode::Success => Some(()),
            ReasonCode::NotAuthorized => None,
            other => panic!("unexpected PUBACK {other}"),
        }
    });
    assert_eq!(receive(&mut watch).0, "bob/own");
    assert_eq!(
        publish(&mut alice, 4, "shared/c", "m"),
        ReasonCode::NotAuthorized
    );
    published(&mut alice, &mut watch, "home/alice/lamp");
    // Nothing denied reached the watcher.
    assert!(matches!(
        watch.recv_within(Duration::from_millis(300)),
        Recv::Nothing
    ));
    let log = fogg.log();
    assert!(log.contains("SIGHUP received"), "{log}");
    assert!(log.contains("ACL answers invalidated"), "{log}");
    for client in [watch, alice, bob] {
        client.disconnect();
    }
}

#[test]
fn client_id_keys_over_the_wire() {
    let Some(redis) = Redis::start() else { return };
    redis.cmd(&[
        "SET",
        r#"["","*","dev"]"#,
        &format!(
            r#"{{"passhash":"{}","publish_acl":[{{"pattern":"any/#"}}]}}"#,
            bcrypt("secret-a")
        ),
    ]);
    redis.cmd(&[
        "SET",
        r#"["","sensor-1","dev"]"#,
        &format!(
            r#"{{"passhash":"{}","publish_acl":[{{"pattern":"own/%c"}}]}}"#,
            bcrypt("secret-b")
        ),
    ]);
    let fogg = redis.fogg("");
    let addr = fogg.addr();
    let mut own = login(addr, V5, "sensor-1", "dev", "secret-b");
    assert_eq!(
        publish(&mut own, 1, "own/sensor-1", "x"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(
        publish(&mut own, 2, "any/x", "x"),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        refused(addr, V5, "sensor-1", Some(("dev", "secret-a"))),
        ReasonCode::BadUserNameOrPassword,
        "the exact key decides alone"
    );
    let mut other = login(addr, V4, "sensor-2", "dev", "secret-a");
    assert_eq!(publish(&mut other, 1, "any/x", "x"), ReasonCode::Success);
    own.disconnect();
    other.disconnect();
}

/// mosquitto-go-auth's layout, end to end: a superuser, a user's own sets,
/// a `common:` set with `%c`.
#[test]
fn goauth_mode_over_the_wire() {
    let Some(redis) = Redis::start() else { return };
    // go-auth's default PBKDF2-SHA512 for "secret-g".
    let hash = "PBKDF2$sha512$1000$HaKReJ0ZInBH6BcUynQ9Mg==$vspY/ALmvkXbowmp4pMEzwMW5uOzBE8kvYMk3FONAvQ87GcviNhl+OT5MCZgiDah95YU2Ey75v7sTMPzyk5bsA==";
    redis.cmd(&["SET", "admin", hash]);
    redis.cmd(&["SET", "admin:su", "true"]);
    redis.cmd(&["SET", "dev", hash]);
    redis.cmd(&["SADD", "dev:rwacls", "dev/%u/#"]);
    redis.cmd(&["SADD", "dev:sacls", "cmd/#"]);
    redis.cmd(&["SADD", "common:wacls", "status/%c"]);
    let fogg = redis.fogg("mode = \"goauth\"");
    let addr = fogg.addr();
    for version in [V4, V5] {
        let mut admin = login(addr, version, "admin-c", "admin", "secret-g");
        assert_eq!(
            subscribe(&mut admin, 1, "#", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
        let mut dev = login(addr, version, "dev-1", "dev", "secret-g");
        assert_eq!(
            subscribe(&mut dev, 1, "cmd/dev", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
        assert_eq!(
            subscribe(&mut dev, 2, "status/+", QoS::AtLeastOnce),
            denied(version)
        );
        assert_eq!(
            publish(&mut dev, 3, "status/dev-1", "up"),
            ReasonCode::Success
        );
        assert_eq!(receive(&mut admin).0, "status/dev-1");
        assert_eq!(
            publish(&mut dev, 4, "status/dev-2", "spoof"),
            publish_denied(version)
        );
        assert_eq!(
            publish(&mut admin, 2, "cmd/dev", "reboot"),
            ReasonCode::Success
        );
        assert_eq!(receive(&mut dev).1, "reboot");
        assert_eq!(
            publish(&mut dev, 5, "cmd/dev", "self"),
            publish_denied(version)
        );
        assert_eq!(receive(&mut admin).0, "cmd/dev");
        assert_eq!(
            refused(addr, version, "x", Some(("dev", "wrong"))),
            ReasonCode::BadUserNameOrPassword
        );
        admin.disconnect();
        dev.disconnect();
    }
}

/// Redis stopped while fogg runs, with the default layer settings (5 s per
/// attempt, one retry): new CONNECTs are refused as "server unavailable" —
/// 0x88 (5.0), 3 (3.1.1) — never as a bad password; connected clients keep
/// publishing and receiving under the rules of their CONNECT; fogg keeps
/// running; when Redis is back, CONNECTs succeed again without a restart.
#[test]
fn outage_refuses_new_connects_keeps_sessions_and_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    seed_vernemq(&redis);
    let fogg = redis.fogg("");
    let addr = fogg.addr();

    outage_scenario(
        addr,
        &Passwords {
            alice: "secret-a",
            bob: "secret-b",
            watch: "secret-c",
        },
        "Redis",
        &mut redis,
        || {
            let log = fogg.log();
            assert!(log.contains("redis"), "the log names the backend:\n{log}");
            assert!(!log.contains("secret-a"), "a password reached the log");
        },
    );
}
