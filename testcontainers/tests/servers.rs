//! Every service: start it, talk to it over its own protocol, stop and restart it on the
//! same port (with its data where the server keeps data), run two at once, and check that
//! dropping the guard kills the process and removes its temp dir.
//!
//! A service missing on this machine is skipped with a `SKIPPED:` line (a failure under
//! `CI=true`), exactly as any test using `fogg_testcontainers::require!` does.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fogg_testcontainers::{Origin, Service, TestServer, require};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn connect(server: &TestServer) -> Result<TcpStream> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect((server.host(), server.port())),
    )
    .await??;
    Ok(stream)
}

/// Send `request`, read until `done(answer)` or 10 s.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>> {
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&answer) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut chunk)).await??;
        if n == 0 {
            return Err(format!("closed; got {:?}", String::from_utf8_lossy(&answer)).into());
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    Ok(answer)
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

async fn redis_cmd(server: &TestServer, args: &[&str]) -> Result<String> {
    let mut s = connect(server).await?;
    let answer = exchange(&mut s, &resp(args), |a| {
        // a simple line, or a bulk string header plus its body
        let text = String::from_utf8_lossy(a);
        match text.strip_prefix('$') {
            Some(rest) => match rest.split_once("\r\n") {
                Some((len, body)) => len == "-1" || body.ends_with("\r\n"),
                None => false,
            },
            None => text.ends_with("\r\n"),
        }
    })
    .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

async fn memcached_cmd(server: &TestServer, request: &str, end: &'static str) -> Result<String> {
    let mut s = connect(server).await?;
    let answer = exchange(&mut s, request.as_bytes(), |a| {
        String::from_utf8_lossy(a).ends_with(end)
    })
    .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn mqtt_connect(client_id: &str, clean: bool) -> Vec<u8> {
    let mut body = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        if clean { 0x02 } else { 0 },
        0,
        30,
    ];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

/// CONNECT; returns the stream after a successful CONNACK.
async fn mqtt_session(server: &TestServer, client_id: &str) -> Result<TcpStream> {
    let mut s = connect(server).await?;
    let connack = exchange(&mut s, &mqtt_connect(client_id, true), |a| a.len() >= 4).await?;
    if connack[..4] != [0x20, 2, 0, 0] {
        return Err(format!("CONNACK {connack:02x?}").into());
    }
    Ok(s)
}

/// Publish a retained QoS 0 message.
async fn mqtt_retain(server: &TestServer, topic: &str, payload: &str) -> Result {
    let mut s = mqtt_session(server, "fogg-tc-pub").await?;
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload.as_bytes());
    let mut publish = vec![0x31, body.len() as u8];
    publish.extend_from_slice(&body);
    s.write_all(&publish).await?;
    // PINGREQ / PINGRESP: the broker has handled the PUBLISH before it answers.
    exchange(&mut s, &[0xc0, 0], |a| a.len() >= 2).await?;
    s.write_all(&[0xe0, 0]).await?;
    Ok(())
}

/// Subscribe and return the payload of the retained message on `topic`.
async fn mqtt_retained(server: &TestServer, topic: &str) -> Result<String> {
    let mut s = mqtt_session(server, "fogg-tc-sub").await?;
    let mut body = vec![0, 1];
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.push(0);
    let mut subscribe = vec![0x82, body.len() as u8];
    subscribe.extend_from_slice(&body);
    // SUBACK (5 bytes) then the retained PUBLISH
    let answer = exchange(&mut s, &subscribe, |a| {
        a.len() > 7 && a.len() >= 5 + 2 + usize::from(a[6])
    })
    .await?;
    let publish = &answer[5..];
    if publish[0] & 0xf0 != 0x30 || publish[0] & 1 != 1 {
        return Err(format!("expected a retained PUBLISH, got {publish:02x?}").into());
    }
    let topic_len = usize::from(u16::from_be_bytes([publish[2], publish[3]]));
    let payload = &publish[4 + topic_len..2 + usize::from(publish[1])];
    Ok(String::from_utf8_lossy(payload).into_owned())
}

/// A real exchange over the service's protocol (beyond the readiness probe).
async fn talk(server: &TestServer) -> Result {
    match server.service() {
        Service::Redis => {
            assert_eq!(redis_cmd(server, &["PING"]).await?, "+PONG\r\n");
        }
        Service::Memcached => {
            let version = memcached_cmd(server, "version\r\n", "\r\n").await?;
            assert!(version.starts_with("VERSION "), "{version}");
            let stored = memcached_cmd(server, "set k 0 0 5\r\nhello\r\n", "\r\n").await?;
            assert_eq!(stored, "STORED\r\n");
            let got = memcached_cmd(server, "get k\r\n", "END\r\n").await?;
            assert_eq!(got, "VALUE k 0 5\r\nhello\r\nEND\r\n");
        }
        Service::Postgres => {
            // Startup message for the superuser: the server asks for SCRAM (AuthenticationSASL = 10).
            let mut s = connect(server).await?;
            let user = server.username().unwrap_or("postgres");
            let db = server.database().unwrap_or("postgres");
            let mut body = 196_608u32.to_be_bytes().to_vec();
            for part in ["user", user, "database", db, ""] {
                body.extend_from_slice(part.as_bytes());
                body.push(0);
            }
            let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
            msg.extend_from_slice(&body);
            let answer = exchange(&mut s, &msg, |a| a.len() >= 9).await?;
            assert_eq!(answer[0], b'R', "{answer:02x?}");
            assert_eq!(
                answer[5..9],
                10u32.to_be_bytes(),
                "SASL authentication expected"
            );
            assert!(String::from_utf8_lossy(&answer).contains("SCRAM-SHA-256"));
        }
        Service::Mysql => {
            let mut s = connect(server).await?;
            let greeting = exchange(&mut s, b"", |a| a.len() >= 6).await?;
            assert_eq!(greeting[4], 10, "protocol version 10");
            let version = String::from_utf8_lossy(&greeting[5..]);
            assert!(
                version.contains("MariaDB")
                    || version.chars().next().is_some_and(|c| c.is_ascii_digit())
            );
        }
        Service::Mongodb => {
            // OP_MSG {ping: 1, $db: "admin"} -> {ok: 1.0}
            let mut doc = vec![0x10];
            doc.extend_from_slice(b"ping\0");
            doc.extend_from_slice(&1i32.to_le_bytes());
            doc.push(0x02);
            doc.extend_from_slice(b"$db\0");
            doc.extend_from_slice(&6i32.to_le_bytes());
            doc.extend_from_slice(b"admin\0");
            doc.push(0);
            let mut section = vec![0, 0, 0, 0, 0];
            section.extend_from_slice(&((doc.len() + 4) as i32).to_le_bytes());
            section.extend_from_slice(&doc);
            let mut msg = ((16 + section.len()) as i32).to_le_bytes().to_vec();
            msg.extend_from_slice(&7i32.to_le_bytes());
            msg.extend_from_slice(&0i32.to_le_bytes());
            msg.extend_from_slice(&2013i32.to_le_bytes());
            msg.extend_from_slice(&section);
            let mut s = connect(server).await?;
            let answer = exchange(&mut s, &msg, |a| {
                a.len() >= 4 && a.len() >= i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as usize
            })
            .await?;
            assert_eq!(answer[8..12], 7i32.to_le_bytes(), "responseTo");
            assert_eq!(answer[12..16], 2013i32.to_le_bytes(), "OP_MSG");
            // "ok" as a double 1.0
            let ok = [&[0x01u8][..], b"ok\0", &1.0f64.to_le_bytes()].concat();
            assert!(answer.windows(ok.len()).any(|w| w == ok), "{answer:02x?}");
        }
        Service::Rabbitmq => {
            let mut s = connect(server).await?;
            let answer = exchange(&mut s, b"AMQP\x00\x00\x09\x01", |a| a.len() >= 11).await?;
            assert_eq!(answer[0], 1, "method frame");
            assert_eq!(answer[7..11], [0, 10, 0, 10], "connection.start");
            assert!(String::from_utf8_lossy(&answer).contains("PLAIN"));
        }
        Service::Mosquitto => {
            let mut s = mqtt_session(server, "fogg-tc-talk").await?;
            let pong = exchange(&mut s, &[0xc0, 0], |a| a.len() >= 2).await?;
            assert_eq!(pong[..2], [0xd0, 0]);
        }
        other => return Err(format!("no conversation written for {other}").into()),
    }
    Ok(())
}

/// Write something that must survive a restart (where the server keeps data).
async fn write_marker(server: &TestServer) -> Result {
    match server.service() {
        Service::Redis => {
            assert_eq!(
                redis_cmd(server, &["SET", "fogg:marker", "kept"]).await?,
                "+OK\r\n"
            );
        }
        Service::Mosquitto => mqtt_retain(server, "fogg/marker", "kept").await?,
        _ => {}
    }
    Ok(())
}

async fn check_marker(server: &TestServer) -> Result {
    match server.service() {
        Service::Redis => {
            assert_eq!(
                redis_cmd(server, &["GET", "fogg:marker"]).await?,
                "$4\r\nkept\r\n"
            );
        }
        Service::Mosquitto => assert_eq!(mqtt_retained(server, "fogg/marker").await?, "kept"),
        _ => {}
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            // a zombie is dead
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

async fn refuses_connections(server: &TestServer) -> bool {
    TcpStream::connect((server.host(), server.port()))
        .await
        .is_err()
}

async fn full_cycle(service: Service) -> Result {
    let started = Instant::now();
    let mut first = require!(fogg_testcontainers::start(service).await, Ok(()));
    eprintln!(
        "{service}: {} ready in {:?} at {}",
        first.origin(),
        started.elapsed(),
        first.url()
    );
    talk(&first).await?;
    if first.origin() != Origin::Local {
        // Servers from a URL are not ours to stop; Docker is checked where it runs.
        return Ok(());
    }
    assert_eq!(first.host(), "127.0.0.1");
    assert!(
        first.url().contains(&format!("127.0.0.1:{}", first.port())),
        "{}",
        first.url()
    );

    // A second instance at the same time: its own port, dir and data.
    let started = Instant::now();
    let second = fogg_testcontainers::start(service).await?;
    eprintln!(
        "{service}: second instance ready in {:?}",
        started.elapsed()
    );
    assert_ne!(first.port(), second.port());
    assert_ne!(first.data_dir(), second.data_dir());
    talk(&second).await?;
    if service == Service::Redis {
        write_marker(&first).await?;
        assert_eq!(
            redis_cmd(&second, &["GET", "fogg:marker"]).await?,
            "$-1\r\n"
        );
    }

    // Stop: an outage. Start: the same port, the same data.
    write_marker(&first).await?;
    let port = first.port();
    let started = Instant::now();
    first.stop().await?;
    eprintln!("{service}: stopped in {:?}", started.elapsed());
    assert!(!first.is_running());
    assert!(
        refuses_connections(&first).await,
        "{service} still answers after stop"
    );
    talk(&second).await?; // the other instance is untouched
    let started = Instant::now();
    first.start().await?;
    eprintln!("{service}: restarted in {:?}", started.elapsed());
    assert!(first.is_running());
    assert_eq!(first.port(), port);
    talk(&first).await?;
    check_marker(&first).await?;

    // A crash (SIGKILL) and a start again.
    first.kill().await?;
    assert!(
        refuses_connections(&first).await,
        "{service} still answers after kill"
    );
    first.start().await?;
    talk(&first).await?;

    // Drop kills the process group and removes the dir.
    let pid = first.pid().ok_or("no pid while running")?;
    let dir: PathBuf = first.data_dir().ok_or("no data dir")?.to_path_buf();
    assert!(dir.exists());
    assert!(pid_alive(pid));
    drop(first);
    assert!(
        !pid_alive(pid),
        "{service}: pid {pid} still alive after drop"
    );
    assert!(
        !dir.exists(),
        "{service}: {} still there after drop",
        dir.display()
    );
    let listener = std::net::TcpListener::bind(("127.0.0.1", port));
    assert!(
        listener.is_ok(),
        "{service}: port {port} still taken after drop"
    );
    drop(second);
    Ok(())
}

#[tokio::test]
async fn redis() -> Result {
    full_cycle(Service::Redis).await
}

#[tokio::test]
async fn postgres() -> Result {
    full_cycle(Service::Postgres).await
}

#[tokio::test]
async fn mysql() -> Result {
    full_cycle(Service::Mysql).await
}

#[tokio::test]
async fn mongodb() -> Result {
    full_cycle(Service::Mongodb).await
}

#[tokio::test]
async fn memcached() -> Result {
    full_cycle(Service::Memcached).await
}

#[tokio::test]
async fn rabbitmq() -> Result {
    full_cycle(Service::Rabbitmq).await
}

#[tokio::test]
async fn mosquitto() -> Result {
    full_cycle(Service::Mosquitto).await
}

#[tokio::test]
async fn stopping_a_stopped_server_and_starting_a_running_one_do_nothing() -> Result {
    let mut redis = require!(fogg_testcontainers::redis().await, Ok(()));
    if redis.origin() != Origin::Local {
        return Ok(());
    }
    let pid = redis.pid();
    redis.start().await?;
    assert_eq!(redis.pid(), pid);
    redis.stop().await?;
    redis.stop().await?;
    redis.kill().await?;
    assert!(!redis.is_running());
    redis.restart().await?;
    talk(&redis).await?;
    assert!(redis.log_tail(50).contains("fogg-testcontainers: stopped"));
    Ok(())
}
