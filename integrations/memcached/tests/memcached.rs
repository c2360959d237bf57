//! The memcached cache on real memcached servers: get / set / expiry under
//! the key prefix, keys spread over two servers, an outage (an error, then
//! recovery by itself), keys memcached cannot take, and building through the
//! registry as the binary does.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fogg_api::dynamic::DynAuthCache;
use fogg_api::{BackendConfig, Concern, ErrorKind, Registry};
use fogg_auth_memcached::MemcachedFactory;
use fogg_testcontainers::require;

fn build(settings: &str) -> Arc<dyn DynAuthCache> {
    let mut registry = Registry::new();
    registry.register(Box::new(MemcachedFactory));
    let backend = registry
        .build(&BackendConfig {
            name: "mc".to_owned(),
            kind: "memcached".to_owned(),
            settings: settings.parse().unwrap(),
        })
        .unwrap();
    assert!(backend.serves(Concern::Cache));
    assert!(!backend.serves(Concern::Authentication));
    backend.cache.unwrap()
}

fn prefix() -> String {
    format!("fogg-test-{:016x}:", rand::random::<u64>())
}

/// A key like the cache layer's.
fn key(n: u32) -> String {
    format!("fogg:auth:v1:{n:064x}")
}

#[tokio::test]
async fn get_set_and_expiry() {
    let server = require!(fogg_testcontainers::memcached().await);
    let cache = build(&format!(
        "url = {:?}\nkey_prefix = {:?}",
        server.url(),
        prefix()
    ));
    assert_eq!(cache.get(&key(1)).await.unwrap(), None);
    let value = Bytes::from_static(b"{\"allow\":true,\"acl\":null}");
    cache
        .set(&key(1), value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), Some(value));
    // Binary values come back byte for byte; a later set replaces.
    let binary = Bytes::from((0..=255u8).collect::<Vec<_>>());
    cache
        .set(&key(1), binary.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(1)).await.unwrap(), Some(binary));

    // memcached expires in whole seconds: a 1 s entry is gone within ~2 s,
    // and a sub-second TTL still expires (never "forever").
    for ttl in [Duration::from_secs(1), Duration::from_millis(10)] {
        cache
            .set(&key(2), Bytes::from_static(b"x"), ttl)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.get(&key(2)).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{ttl:?} did not expire");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_prefix_separates_caches() {
    let server = require!(fogg_testcontainers::memcached().await);
    let one = build(&format!(
        "url = {:?}\nkey_prefix = {:?}",
        server.url(),
        prefix()
    ));
    let two = build(&format!(
        "url = {:?}\nkey_prefix = {:?}",
        server.url(),
        prefix()
    ));
    one.set(&key(7), Bytes::from_static(b"one"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(two.get(&key(7)).await.unwrap(), None);
    assert_eq!(
        one.get(&key(7)).await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
}

#[tokio::test]
async fn keys_are_spread_over_several_servers() {
    let a = require!(fogg_testcontainers::memcached().await);
    let b = require!(fogg_testcontainers::memcached().await);
    let p = prefix();
    let both = build(&format!(
        "url = [{:?}, {:?}]\nkey_prefix = {p:?}",
        a.url(),
        b.url()
    ));
    for n in 0..40 {
        both.set(&key(n), Bytes::from(n.to_string()), Duration::from_secs(60))
            .await
            .unwrap();
    }
    for n in 0..40 {
        assert_eq!(
            both.get(&key(n)).await.unwrap(),
            Some(Bytes::from(n.to_string()))
        );
    }
    // Each server holds some of them.
    let only_a = build(&format!("url = {:?}\nkey_prefix = {p:?}", a.url()));
    let only_b = build(&format!("url = {:?}\nkey_prefix = {p:?}", b.url()));
    let (mut on_a, mut on_b) = (0, 0);
    for n in 0..40 {
        on_a += usize::from(only_a.get(&key(n)).await.unwrap().is_some());
        on_b += usize::from(only_b.get(&key(n)).await.unwrap().is_some());
    }
    assert_eq!(on_a + on_b, 40);
    assert!(
        on_a > 0 && on_b > 0,
        "{on_a} on one server, {on_b} on the other"
    );
}

/// Stop memcached: gets and sets are Unavailable errors (the cache layer
/// then asks the backend); start it again and the same client works.
#[tokio::test]
async fn an_outage_is_an_error_and_recovery_needs_nothing() {
    let mut server = require!(fogg_testcontainers::memcached().await);
    let cache = build(&format!(
        "url = {:?}\nkey_prefix = {:?}\nconnect_timeout = \"300ms\"",
        server.url(),
        prefix()
    ));
    cache
        .set(&key(1), Bytes::from_static(b"v"), Duration::from_secs(60))
        .await
        .unwrap();

    server.stop().await.unwrap();
    for _ in 0..2 {
        let e = cache.get(&key(1)).await.unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            "{e}"
        );
        assert!(e.retryable, "{e}");
        let e = cache
            .set(&key(1), Bytes::from_static(b"v"), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
            "{e}"
        );
    }

    server.start().await.unwrap();
    // memcached keeps nothing across a restart; the client reconnects.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache
            .set(
                &key(1),
                Bytes::from_static(b"back"),
                Duration::from_secs(60),
            )
            .await
        {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "not back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cache.get(&key(1)).await.unwrap().as_deref(),
        Some(&b"back"[..])
    );
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = build(&format!(
        "url = \"memcache://fogg:hunter2@127.0.0.1:{port}\"\nconnect_timeout = \"200ms\""
    ));
    let e = cache.get(&key(1)).await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

#[tokio::test]
async fn keys_memcached_cannot_take_are_refused_before_sending() {
    let server = require!(fogg_testcontainers::memcached().await);
    let cache = build(&format!("url = {:?}", server.url()));
    for bad in ["has space".to_owned(), "x".repeat(251), "tab\t".to_owned()] {
        let e = cache.get(&bad).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidData, "{bad:?}");
        let e = cache
            .set(&bad, Bytes::from_static(b"v"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidData, "{bad:?}");
    }
    // The longest key memcached takes is fine.
    let longest = "k".repeat(250);
    cache
        .set(&longest, Bytes::from_static(b"v"), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cache.get(&longest).await.unwrap().is_some());
}
