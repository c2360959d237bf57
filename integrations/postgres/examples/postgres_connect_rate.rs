//! CONNECT checks per second through the postgres backend, by password hash
//! method: bcrypt cost 10 (checked by Fogg) against the SQL-side methods.
//!
//! ```sh
//! cargo run --release -p fogg-auth-postgres --example postgres_connect_rate [seconds] [concurrency]
//! ```
//!
//! Starts its own PostgreSQL (fogg-testcontainers), stores one user per
//! method, then runs `concurrency` loops of `authenticate` for `seconds`
//! each (defaults: 3 s, 8), through the backend as the broker builds it
//! (without the binary's timeout / cache layers). Prints one line per method.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fogg_api::dynamic::DynAuthenticator;
use fogg_api::{AuthDecision, BackendConfig, BackendFactory, ConnectInfo, ProtocolVersion};
use fogg_auth_postgres::PostgresFactory;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(3, |s| s.parse().expect("seconds"));
    let concurrency: usize = args.next().map_or(8, |s| s.parse().expect("concurrency"));
    let server = fogg_testcontainers::postgres()
        .await
        .expect("a PostgreSQL server");
    let (client, connection) = tokio_postgres::connect(server.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let bcrypt10 = fogg_auth_common::passwords::hash_bcrypt(b"pw", 10).unwrap();
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pgcrypto;
             CREATE TABLE vmq_auth_acl (mountpoint varchar(10) NOT NULL, client_id varchar(128) NOT NULL,
               username varchar(128) NOT NULL, password varchar(128), publish_acl json, subscribe_acl json,
               PRIMARY KEY (mountpoint, client_id, username));
             INSERT INTO vmq_auth_acl VALUES
               ('', '*', 'bcrypt10', '{bcrypt10}', '[{{\"pattern\":\"a/#\"}}]', '[]'),
               ('', '*', 'crypt-bf6', crypt('pw', gen_salt('bf')), '[{{\"pattern\":\"a/#\"}}]', '[]'),
               ('', '*', 'crypt-bf10', crypt('pw', gen_salt('bf', 10)), '[{{\"pattern\":\"a/#\"}}]', '[]'),
               ('', '*', 'crypt-md5', crypt('pw', gen_salt('md5')), '[{{\"pattern\":\"a/#\"}}]', '[]'),
               ('', '*', 'sha256', encode(sha256('pw'::bytea), 'hex'), '[{{\"pattern\":\"a/#\"}}]', '[]');"
        ))
        .await
        .unwrap();
    println!(
        "postgres backend, {concurrency} concurrent CONNECT checks for {seconds} s each, 2 cores shared with the server"
    );
    for (user, method, label) in [
        ("bcrypt10", "bcrypt", "bcrypt cost 10, checked by Fogg"),
        (
            "crypt-bf6",
            "crypt",
            "crypt() bf cost 6 (gen_salt('bf')), in SQL",
        ),
        ("crypt-bf10", "crypt", "crypt() bf cost 10, in SQL"),
        ("crypt-md5", "crypt", "crypt() md5, in SQL"),
        ("sha256", "sha256", "sha256, in SQL"),
    ] {
        let auth: Arc<dyn DynAuthenticator> = PostgresFactory
            .build(&BackendConfig {
                name: "pg".to_owned(),
                kind: "postgres".to_owned(),
                settings: format!(
                    "url = {:?}\npassword_hash_method = {method:?}\npool_size = {concurrency}",
                    server.url()
                )
                .parse()
                .unwrap(),
            })
            .unwrap()
            .authenticator
            .unwrap();
        let rate = measure(auth, user, concurrency, Duration::from_secs(seconds)).await;
        println!("  {label:<45} {rate:>8.0} connects/s");
    }
}

async fn measure(
    auth: Arc<dyn DynAuthenticator>,
    user: &str,
    concurrency: usize,
    period: Duration,
) -> f64 {
    let info = ConnectInfo {
        client_id: "bench".to_owned(),
        username: Some(user.to_owned()),
        password: Some(Bytes::from_static(b"pw")),
        mountpoint: String::new(),
        peer: ([127, 0, 0, 1], 1).into(),
        listener: "mqtt".to_owned(),
        protocol: ProtocolVersion::V5,
        clean_start: true,
    };
    // Warm up the pool and the prepared statements.
    for _ in 0..concurrency {
        assert!(matches!(
            auth.authenticate(&info).await.unwrap(),
            AuthDecision::Allow(_)
        ));
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + period;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (auth, info, done) = (auth.clone(), info.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let answer = auth.authenticate(&info).await.unwrap();
                    assert!(matches!(answer, AuthDecision::Allow(_)));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
