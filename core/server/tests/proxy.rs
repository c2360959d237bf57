//! PROXY protocol listeners end to end: headers written by the test playing
//! the load balancer, in front of TCP, TLS and WebSocket. The address the
//! header reports is the one the broker logs; a client certificate a proxy
//! verified reaches the ACL as the username; connections without a valid
//! header are refused and the broker goes on serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod transports;

use std::fs;
use std::net::SocketAddr;

use bytes::Bytes;
use fogg_codec::{ProtocolVersion, ReasonCode};
use fogg_transport::ProxyTls;
use fogg_transport::proxy::build;
use futures_util::SinkExt;
use support::{Fogg, WAIT, dir_with, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use transports::{Client, Pki, encoded, tls_over};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The proxy's own front address, as the header reports it.
const FRONT: &str = "192.0.2.1:1883";

/// fogg with one listener of `kind` behind PROXY, anonymous clients refused
/// (so each CONNECT leaves an INFO line with the peer), and `rest`.
fn start(kind: &str, listener_extra: &str, rest: &str) -> Fogg {
    let config = format!(
        "[auth]\nallow_anonymous = false\n\n{rest}\n\
         [[listeners]]\nname = \"lb\"\nkind = \"{kind}\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n{listener_extra}"
    );
    Fogg::start(dir_with(&[("fogg.toml", &config)]), 1)
}

/// Wait for a "CONNECT refused" log line naming `peer`.
fn refused_in_log_with_peer(fogg: &Fogg, peer: &str) {
    eventually(
        &format!("a CONNECT refusal logged for {peer}"),
        WAIT,
        || {
            fogg.log()
                .lines()
                .any(|l| l.contains("CONNECT refused") && l.contains(&format!("peer={peer}")))
                .then_some(())
        },
    );
}

#[tokio::test]
async fn v1_and_v2_report_the_client_address_to_the_broker() {
    let fogg = start("tcp", "", "");
    for (header, client) in [
        (
            build::v1(addr("203.0.113.7:4242"), addr(FRONT)),
            "203.0.113.7:4242",
        ),
        (
            build::v2(addr("198.51.100.9:50000"), addr(FRONT), None).unwrap(),
            "198.51.100.9:50000",
        ),
        (
            build::v2(addr("[2001:db8::42]:7"), addr("[2001:db8::1]:1883"), None).unwrap(),
            "[2001:db8::42]:7",
        ),
    ] {
        let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let mut c = Client::new(tcp, V5);
        assert_eq!(
            c.connect("proxied", None).await.reason,
            ReasonCode::NotAuthorized
        );
        refused_in_log_with_peer(&fogg, client);
    }
    // The socket's own address (the proxy's) is not what the broker reports.
    let log = fogg.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("CONNECT refused") && l.contains("peer=127.0.0.1")),
        "{log}"
    );
}

#[tokio::test]
async fn connections_without_a_valid_header_are_refused_and_others_still_served() {
    let fogg = start("tcp", "handshake_timeout = \"1s\"\n", "");
    let mqtt = encoded(&support::connect_packet(V5, "direct"), V5);
    let v2 = build::v2(addr("203.0.113.50:1"), addr(FRONT), None).unwrap();
    let cases: [(&str, Vec<u8>, bool); 5] = [
        ("MQTT with no header", mqtt, false),
        ("garbage", b"\x00\xffnot a proxy header\r\n".to_vec(), false),
        (
            "a bad v1 address",
            b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n".to_vec(),
            false,
        ),
        ("a truncated v2 header", v2[..20].to_vec(), true),
        (
            "a v2 header with a wrong version",
            {
                let mut h = v2.clone();
                h[12] = 0x31;
                h
            },
            false,
        ),
    ];
    for (what, bytes, close) in cases {
        let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        if close {
            tcp.shutdown().await.unwrap();
        }
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: not closed"));
        assert!(matches!(read, Ok(0) | Err(_)), "{what}: got {read:?}");
    }
    // A client that sends nothing is dropped after the handshake bound.
    let mut silent = TcpStream::connect(fogg.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    for needle in [
        "PROXY protocol header: no valid PROXY v1/v2 header",
        "PROXY protocol header: connection closed after",
        "PROXY protocol header not finished within 1s",
    ] {
        eventually(needle, WAIT, || fogg.log().contains(needle).then_some(()));
    }
    // And a proper proxied client is still served.
    let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
    tcp.write_all(&build::v1(addr("203.0.113.99:9"), addr(FRONT)))
        .await
        .unwrap();
    let mut c = Client::new(tcp, V5);
    assert_eq!(
        c.connect("ok", None).await.reason,
        ReasonCode::NotAuthorized
    );
    refused_in_log_with_peer(&fogg, "203.0.113.99:9");
}

#[tokio::test]
async fn proxy_before_tls() {
    let dir = dir_with(&[]);
    let pki = Pki::new(dir.path());
    let config = format!(
        "[auth]\nallow_anonymous = false\n\n\
         [[listeners]]\nname = \"lb\"\nkind = \"tls\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = true\n{}",
        pki.listener_keys()
    );
    fs::write(dir.path().join("fogg.toml"), config).unwrap();
    let fogg = Fogg::start(dir, 1);
    let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
    tcp.write_all(&build::v2(addr("203.0.113.8:8883"), addr(FRONT), None).unwrap())
        .await
        .unwrap();
    let tls = tls_over(tcp, pki.client_config(None)).await.unwrap();
    let mut c = Client::new(tls, V5);
    assert_eq!(
        c.connect("tls", None).await.reason,
        ReasonCode::NotAuthorized
    );
    refused_in_log_with_peer(&fogg, "203.0.113.8:8883");
}

#[tokio::test]
async fn proxy_before_websocket() {
    let fogg = start("ws", "", "");
    let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
    tcp.write_all(&build::v1(addr("203.0.113.9:443"), addr(FRONT)))
        .await
        .unwrap();
    let mut request = format!("ws://{}/mqtt", fogg.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    ws.send(Message::Binary(Bytes::from(encoded(
        &support::connect_packet(V5, "ws"),
        V5,
    ))))
    .await
    .unwrap();
    refused_in_log_with_peer(&fogg, "203.0.113.9:443");
}

/// A proxy that terminated TLS and verified the client certificate passes
/// its CN in a PROXY v2 TLV; with use_identity_as_username it is the
/// username the ACL sees.
#[tokio::test]
async fn a_certificate_cn_from_the_proxy_is_the_username() {
    let acl = "[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopic = \"devices/%u/#\"\n\n\
               [[acl.rules]]\npermission = \"deny\"\naction = \"all\"\ntopic = \"#\"\n";
    let fogg = start("tcp", "use_identity_as_username = true\n", acl);
    let verified = ProxyTls {
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        common_name: Some("dev7".into()),
        client_cert_verified: true,
    };
    let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
    tcp.write_all(&build::v2(addr("203.0.113.10:1"), addr(FRONT), Some(&verified)).unwrap())
        .await
        .unwrap();
    let mut c = Client::new(tcp, V5);
    assert_eq!(
        c.connect("d7", Some("someone-else")).await.reason,
        ReasonCode::Success
    );
    assert_eq!(
        c.subscribe(&["devices/dev7/#", "devices/someone-else/#"])
            .await,
        [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );

    // Without a verified certificate there is no identity: refused.
    let unverified = ProxyTls {
        client_cert_verified: false,
        ..verified
    };
    let mut tcp = TcpStream::connect(fogg.addr()).await.unwrap();
    tcp.write_all(&build::v2(addr("203.0.113.11:1"), addr(FRONT), Some(&unverified)).unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eventually("the refusal in the log", WAIT, || {
        fogg.log()
            .contains("the client certificate has no identity")
            .then_some(())
    });
}
