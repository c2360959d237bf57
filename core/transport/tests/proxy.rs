//! PROXY protocol v1 and v2 in front of TCP, TLS and WebSocket: the
//! reported addresses and TLS details, and what is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Server, echo, round_trip, tls_over, ws_over};
use fogg_transport::proxy::build;
use fogg_transport::test_pki::{Ca, client_config};
use fogg_transport::{Kind, ProxyTls, Settings, Stage, TlsSettings, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn proxied(kind: Kind) -> Settings {
    Settings {
        kind,
        proxy_protocol: true,
        handshake_timeout: Duration::from_millis(500),
        ..Settings::tcp("test")
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const CLIENT: &str = "203.0.113.7:4242";
const FRONT: &str = "192.0.2.1:1883";

#[tokio::test]
async fn v1_and_v2_report_the_client_and_leave_the_payload_alone() {
    let mut server = Server::start(proxied(Kind::Tcp)).await;
    for header in [
        build::v1(addr(CLIENT), addr(FRONT)),
        build::v2(addr(CLIENT), addr(FRONT), None).unwrap(),
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // Header and the first MQTT bytes in one segment, as proxies do.
        let mut first = header.clone();
        first.extend_from_slice(b"\x10\x0c");
        tcp.write_all(&first).await.unwrap();
        let (mut stream, meta) = server.next_ok().await;
        assert_eq!(meta.peer, addr(CLIENT));
        assert_ne!(meta.socket_peer, meta.peer);
        let proxy = meta.proxy.unwrap();
        assert_eq!(proxy.destination, Some(addr(FRONT)));
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x10\x0c");
    }
}

#[tokio::test]
async fn a_header_in_pieces_is_still_read() {
    let mut server = Server::start(proxied(Kind::Tcp)).await;
    let header = build::v2(addr("[2001:db8::7]:9"), addr("[2001:db8::1]:1883"), None).unwrap();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    for chunk in header.chunks(7) {
        tcp.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (stream, meta) = server.next_ok().await;
    assert_eq!(meta.peer, addr("[2001:db8::7]:9"));
    echo(stream);
    round_trip(&mut tcp, b"after").await;
}

#[tokio::test]
async fn local_and_unknown_keep_the_socket_address() {
    let mut server = Server::start(proxied(Kind::Tcp)).await;
    for header in [build::v2_local(), b"PROXY UNKNOWN\r\n".to_vec()] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let (_, meta) = server.next_ok().await;
        assert_eq!(meta.peer, meta.socket_peer);
        assert_eq!(meta.proxy.unwrap().source, None);
    }
}

#[tokio::test]
async fn missing_garbage_truncated_and_stalled_headers_are_refused() {
    let mut server = Server::start(proxied(Kind::Tcp)).await;
    let cases: [(&str, Vec<u8>, bool); 4] = [
        (
            "MQTT without a header",
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00".to_vec(),
            false,
        ),
        ("garbage", b"HELLO THERE\r\n".to_vec(), false),
        (
            "a truncated header, then EOF",
            build::v1(addr(CLIENT), addr(FRONT))[..12].to_vec(),
            true,
        ),
        (
            "a bad address",
            b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n".to_vec(),
            false,
        ),
    ];
    for (what, bytes, close) in cases {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        if close {
            tcp.shutdown().await.unwrap();
        }
        let e = server.next_err().await;
        assert!(
            matches!(
                e,
                TransportError::Handshake {
                    stage: Stage::Proxy,
                    ..
                }
            ),
            "{what}: {e}"
        );
        // Refused means closed: the client reads EOF (or a reset).
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(common::WAIT, tcp.read(&mut buf))
            .await
            .unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "{what}: {n:?}");
    }
    // Nothing at all: the handshake bound applies.
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let e = server.next_err().await;
    assert!(
        matches!(
            e,
            TransportError::Timeout {
                stage: Stage::Proxy,
                ..
            }
        ),
        "{e}"
    );
    // A v1 line that never ends.
    let mut endless = TcpStream::connect(server.addr).await.unwrap();
    let line = format!("PROXY TCP4 {}", "1".repeat(200));
    endless.write_all(line.as_bytes()).await.unwrap();
    let e = server.next_err().await.to_string();
    assert!(e.contains("v1 line longer than 107 bytes"), "{e}");
}

#[tokio::test]
async fn proxy_before_tls_and_tls_details_from_v2_tlvs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let files = ca.server().write(dir.path(), "server");
    let mut settings = proxied(Kind::Tls);
    settings.tls = Some(TlsSettings::new(files.cert, files.key));
    let mut server = Server::start(settings).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&build::v1(addr(CLIENT), addr(FRONT)))
        .await
        .unwrap();
    let mut tls = tls_over(tcp, client_config(&ca, None)).await.unwrap();
    let (stream, meta) = server.next_ok().await;
    assert_eq!(meta.peer, addr(CLIENT));
    assert!(meta.tls.is_some());
    echo(stream);
    round_trip(&mut tls, b"over tls").await;

    // A proxy that terminated TLS itself and verified a client certificate.
    let mut server = Server::start(proxied(Kind::Tcp)).await;
    let passed = ProxyTls {
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_256_GCM_SHA384".into()),
        common_name: Some("device-42".into()),
        client_cert_verified: true,
    };
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&build::v2(addr(CLIENT), addr(FRONT), Some(&passed)).unwrap())
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), Some("device-42"));
    assert_eq!(meta.proxy.as_ref().unwrap().tls.as_ref(), Some(&passed));

    // Not verified by the proxy: no identity.
    let unverified = ProxyTls {
        client_cert_verified: false,
        ..passed
    };
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&build::v2(addr(CLIENT), addr(FRONT), Some(&unverified)).unwrap())
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.identity(), None);
}

#[tokio::test]
async fn proxy_before_websocket() {
    let mut server = Server::start(proxied(Kind::Ws)).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&build::v2(addr(CLIENT), addr(FRONT), None).unwrap())
        .await
        .unwrap();
    let _ws = ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "mqtt")
        .await
        .unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.peer, addr(CLIENT));
    assert!(meta.ws.is_some());
}
