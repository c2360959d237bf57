//! `[auth] cache` end to end: the real `fogg` binary with a Redis auth
//! backend behind a cache — memcached, or another Redis — and real MQTT
//! 3.1.1 / 5.0 clients.
//!
//! A CONNECT that succeeded is cached for `cache_ttl`; with the database
//! stopped, the same credentials (same client id, username, password) still
//! get in from the cache until the TTL has passed, then get 0x88 / 3. A
//! wrong password is never answered from the cache (`cache_denials` off):
//! with the database down it gets 0x88, not 0x86. A cache that is down
//! itself only costs the lookup: CONNECTs are answered by the database.
//!
//! memcached counts expiry in whole seconds on its own clock, so an entry
//! set with a TTL of N s lives between N-1 and N s: the memcached test uses
//! `cache_ttl = "3s"`, the Redis one (millisecond expiry) `"2s"`. The hit
//! is checked only while the entry is surely alive (the test measures);
//! the miss only once it is surely gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fogg_codec::{ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use fogg_testcontainers::TestServer;
use support::{Fogg, RawClient, Recv, WAIT, dir_with};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// bcrypt (cost 4) of "secret-a".
const ALICE_HASH: &str = "$2b$04$KL7dng0gvHBpmlc91wWyC.DJCR1Bz538YNArVlTkRvlhF3aumxzFm";

/// Test servers and a runtime to start and stop them (the tests are
/// blocking).
struct Servers {
    runtime: tokio::runtime::Runtime,
}

impl Servers {
    fn new() -> Servers {
        Servers {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// `None` after a loud `SKIPPED` line (a failure under `CI=true`).
    fn redis(&self) -> Option<TestServer> {
        fogg_testcontainers::require(self.runtime.block_on(fogg_testcontainers::redis()))
    }

    fn memcached(&self) -> Option<TestServer> {
        fogg_testcontainers::require(self.runtime.block_on(fogg_testcontainers::memcached()))
    }

    fn stop(&self, server: &mut TestServer) {
        self.runtime.block_on(server.stop()).expect("stop server");
    }

    fn start(&self, server: &mut TestServer) {
        self.runtime.block_on(server.start()).expect("start server");
    }
}

/// One Redis command over RESP; panics on an error reply.
fn redis_cmd(server: &TestServer, args: &[&str]) -> String {
    let mut stream = TcpStream::connect((server.host(), server.port())).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.ends_with(b"\r\n") {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "Redis closed the connection");
        reply.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(!text.starts_with('-'), "Redis refused {args:?}: {text}");
    text
}

/// alice / secret-a in VerneMQ's layout, allowed to publish `a/#`.
fn seed_alice(db: &TestServer) {
    redis_cmd(
        db,
        &[
            "SET",
            r#"["","*","alice"]"#,
            &format!(r#"{{"passhash":"{ALICE_HASH}","publish_acl":[{{"pattern":"a/#"}}]}}"#),
        ],
    );
}

/// fogg with `db` (kind redis) in the chain and `cache` (its table given)
/// as `[auth] cache`.
fn fogg(db: &TestServer, cache_table: &str, ttl: &str) -> Fogg {
    let config = format!(
        "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n\
         [backends.db]\nkind = \"redis\"\nurl = \"{}\"\n\n\
         [backends.cache]\n{cache_table}\n\n\
         [auth]\nallow_anonymous = false\nchain = [\"db\"]\ncache = \"cache\"\n\
         cache_ttl = \"{ttl}\"\ncache_denials = false\n",
        db.url(),
    );
    Fogg::start(dir_with(&[("fogg.toml", &config)]), 1)
}

fn connect(addr: SocketAddr, version: ProtocolVersion, id: &str, pw: &str) -> ReasonCode {
    let mut client = RawClient::open(addr, version);
    client.send(&Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        client_id: id.to_owned(),
        will: None,
        username: Some("alice".to_owned()),
        password: Some(Bytes::copy_from_slice(pw.as_bytes())),
        properties: Properties::default(),
    })));
    let ack: ConnAck = match client.recv_within(WAIT) {
        Recv::Packet(Packet::ConnAck(ack)) => *ack,
        other => panic!("expected CONNACK for {id}, got {other:?}"),
    };
    if ack.reason == ReasonCode::Success {
        client.disconnect();
    }
    ack.reason
}

/// The scenario every cache goes through; `lifetime` is how long an entry
/// surely lives, `gone` after which it is surely gone.
fn cache_outlives_the_database_for_the_ttl_only(
    servers: &Servers,
    db: &mut TestServer,
    fogg: &Fogg,
    lifetime: Duration,
    gone: Duration,
) {
    let addr = fogg.addr();
    // Wrong passwords are answered by the database, never cached.
    for version in [V4, V5] {
        assert_eq!(
            connect(addr, version, "wrong-first", "wrong"),
            ReasonCode::BadUserNameOrPassword
        );
    }
    // Cache one answer per protocol / client id (the key covers the client id).
    let cached_at = Instant::now();
    assert_eq!(connect(addr, V5, "dev-5", "secret-a"), ReasonCode::Success);
    assert_eq!(connect(addr, V4, "dev-4", "secret-a"), ReasonCode::Success);
    let cached_by = Instant::now();

    servers.stop(db);
    let checked_hit = cached_at.elapsed() < lifetime;
    if checked_hit {
        assert_eq!(connect(addr, V5, "dev-5", "secret-a"), ReasonCode::Success);
        assert_eq!(connect(addr, V4, "dev-4", "secret-a"), ReasonCode::Success);
    } else {
        eprintln!(
            "!!!!!!!! stopping the database took {:?}: the cache hit was not checked !!!!!!!!",
            cached_at.elapsed()
        );
    }
    // Not cached: another client id, a wrong password (cache_denials off).
    assert_eq!(
        connect(addr, V5, "dev-other", "secret-a"),
        ReasonCode::ServerUnavailable
    );
    for version in [V4, V5] {
        assert_eq!(
            connect(addr, version, "wrong-first", "wrong"),
            ReasonCode::ServerUnavailable,
            "a wrong password is never answered from the cache"
        );
    }

    // Past the TTL: the database is asked, and it is down.
    if let Some(wait) = gone.checked_sub(cached_by.elapsed()) {
        std::thread::sleep(wait);
    }
    assert_eq!(
        connect(addr, V5, "dev-5", "secret-a"),
        ReasonCode::ServerUnavailable
    );
    assert_eq!(
        connect(addr, V4, "dev-4", "secret-a"),
        ReasonCode::ServerUnavailable
    );

    servers.start(db);
    let deadline = Instant::now() + Duration::from_secs(20);
    while connect(addr, V5, "dev-5", "secret-a") != ReasonCode::Success {
        assert!(Instant::now() < deadline, "no recovery within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checked_hit || !support_is_ci(),
        "the cache hit was never checked"
    );
    assert!(
        !fogg.log().contains("secret-a"),
        "a password reached the log"
    );
}

fn support_is_ci() -> bool {
    fogg_testcontainers::in_ci()
}

/// SIGHUP empties the shared cache (memcached cannot delete by prefix: a
/// fresh generation in the cache hides the old entries), for every broker
/// that shares it: with the database down, a CONNECT that came from the
/// cache now gets 0x88 on the other broker too.
#[test]
fn sighup_empties_the_shared_memcached_cache_for_every_broker() {
    let servers = Servers::new();
    let Some(mut db) = servers.redis() else {
        return;
    };
    let Some(mc) = servers.memcached() else {
        return;
    };
    seed_alice(&db);
    let cache = format!("kind = \"memcached\"\nurl = \"{}\"", mc.url());
    // A TTL far longer than the test: only the invalidation can end a hit.
    let one = fogg(&db, &cache, "1h");
    let two = fogg(&db, &cache, "1h");
    assert_eq!(
        connect(one.addr(), V5, "dev", "secret-a"),
        ReasonCode::Success
    );
    servers.stop(&mut db);
    for fogg in [&one, &two] {
        assert_eq!(
            connect(fogg.addr(), V5, "dev", "secret-a"),
            ReasonCode::Success,
            "answered from the shared cache"
        );
    }
    one.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while connect(two.addr(), V5, "dev", "secret-a") != ReasonCode::ServerUnavailable {
        assert!(Instant::now() < deadline, "the cache entry outlived SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        connect(one.addr(), V5, "dev", "secret-a"),
        ReasonCode::ServerUnavailable
    );
    let log = one.log();
    assert!(log.contains("auth cache entries invalidated"), "{log}");
    servers.start(&mut db);
    let deadline = Instant::now() + Duration::from_secs(20);
    while connect(two.addr(), V5, "dev", "secret-a") != ReasonCode::Success {
        assert!(Instant::now() < deadline, "no recovery within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn memcached_in_front_of_redis() {
    let servers = Servers::new();
    let Some(mut db) = servers.redis() else {
        return;
    };
    let Some(mut mc) = servers.memcached() else {
        return;
    };
    seed_alice(&db);
    let fogg = fogg(
        &db,
        &format!("kind = \"memcached\"\nurl = \"{}\"", mc.url()),
        "3s",
    );
    cache_outlives_the_database_for_the_ttl_only(
        &servers,
        &mut db,
        &fogg,
        Duration::from_millis(1800),
        Duration::from_millis(4200),
    );

    // memcached down: every CONNECT is answered by the database (the
    // failed cache read is logged), right and wrong passwords alike.
    servers.stop(&mut mc);
    assert_eq!(
        connect(fogg.addr(), V5, "nocache", "secret-a"),
        ReasonCode::Success
    );
    assert_eq!(
        connect(fogg.addr(), V4, "nocache", "wrong"),
        ReasonCode::BadUserNameOrPassword
    );
    assert!(
        fogg.log().contains("auth cache"),
        "the cache failure is logged:\n{}",
        fogg.log()
    );
}

#[test]
fn redis_in_front_of_redis() {
    let servers = Servers::new();
    let Some(mut db) = servers.redis() else {
        return;
    };
    let Some(cache) = servers.redis() else { return };
    seed_alice(&db);
    let fogg = fogg(
        &db,
        &format!(
            "kind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"fogg-cache:\"",
            cache.url()
        ),
        "2s",
    );
    cache_outlives_the_database_for_the_ttl_only(
        &servers,
        &mut db,
        &fogg,
        Duration::from_millis(1800),
        Duration::from_millis(2500),
    );
    // The entries are digests under the prefix: no identity, no password.
    let keys = redis_cmd(&cache, &["KEYS", "*"]);
    assert!(keys.contains("fogg-cache:fogg:auth:v2:"), "{keys}");
    assert!(
        !keys.contains("alice") && !keys.contains("secret"),
        "{keys}"
    );
}
