//! WebSocket and WSS: MQTT bytes in any split across binary frames, pings,
//! close, text frames, and refused upgrades.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Server, echo, tls_connect, ws_over};
use fogg_transport::test_pki::{Ca, client_config};
use fogg_transport::{Kind, Settings, Stage, TlsSettings, TransportError, WsSettings};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn ws_settings() -> Settings {
    Settings {
        kind: Kind::Ws,
        ..Settings::tcp("test")
    }
}

/// A CONNECT, a PINGREQ and a DISCONNECT, as one MQTT client would send them.
const PACKETS: &[u8] = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\xc0\x00\xe0\x00";

async fn next_binary<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Bytes
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        match msg {
            Message::Binary(b) => return b,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn packets_split_across_frames_and_packed_into_one_arrive_as_bytes() {
    let mut server = Server::start(ws_settings()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "mqtt")
        .await
        .unwrap();
    let (mut stream, meta) = server.next_ok().await;
    let info = meta.ws.clone().unwrap();
    assert_eq!(info.subprotocol.as_deref(), Some("mqtt"));
    assert_eq!(info.path, "/mqtt");

    // CONNECT in three frames (one of them a single byte), then PINGREQ and
    // DISCONNECT together in one.
    for part in [
        &PACKETS[..1],
        &PACKETS[1..7],
        &PACKETS[7..14],
        &PACKETS[14..],
    ] {
        ws.send(Message::Binary(Bytes::copy_from_slice(part)))
            .await
            .unwrap();
    }
    let mut got = vec![0u8; PACKETS.len()];
    tokio::time::timeout(common::WAIT, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, PACKETS);

    // Each server write is one binary frame holding what was written.
    stream.write_all(b"\x20\x02\x00\x00\xd0\x00").await.unwrap();
    stream.flush().await.unwrap();
    assert_eq!(&next_binary(&mut ws).await[..], b"\x20\x02\x00\x00\xd0\x00");
}

#[tokio::test]
async fn pings_are_answered_and_a_close_ends_the_stream() {
    let mut server = Server::start(ws_settings()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "mqttv3.1")
        .await
        .unwrap();
    let (stream, meta) = server.next_ok().await;
    assert_eq!(meta.ws.unwrap().subprotocol.as_deref(), Some("mqttv3.1"));
    let echoed = echo(stream);
    ws.send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"abc")))
        .await
        .unwrap();
    let mut pong = false;
    loop {
        match tokio::time::timeout(common::WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"hi");
                pong = true;
            }
            Message::Binary(b) => {
                assert_eq!(&b[..], b"abc");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pong, "no pong before the echo");
    ws.close(None).await.unwrap();
    // The server sees end of stream, shuts down, the close handshake completes.
    let total = tokio::time::timeout(common::WAIT, echoed)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(total, 3);
    loop {
        match tokio::time::timeout(common::WAIT, ws.next()).await.unwrap() {
            None | Some(Err(WsError::ConnectionClosed)) => break,
            Some(Ok(Message::Close(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_text_frame_is_a_protocol_error() {
    let mut server = Server::start(ws_settings()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "mqtt")
        .await
        .unwrap();
    let (mut stream, _) = server.next_ok().await;
    ws.send(Message::text("CONNECT")).await.unwrap();
    let mut buf = [0u8; 16];
    let e = stream.read(&mut buf).await.expect_err("text refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("[MQTT-6.0.0-1]"), "{e}");
}

#[tokio::test]
async fn wrong_paths_and_subprotocols_get_an_http_error() {
    let mut server = Server::start(ws_settings()).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    match ws_over(tcp, &format!("ws://{}/chat", server.addr), "mqtt").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 404);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("served at /mqtt"), "{body}");
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let e = server.next_err().await.to_string();
    assert!(
        e.starts_with("WebSocket upgrade: refused with HTTP 404"),
        "{e}"
    );

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    match ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "chat").await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    let e = server.next_err().await.to_string();
    assert!(e.contains("unsupported WebSocket subprotocol chat"), "{e}");

    // Plain HTTP (no upgrade) and garbage: refused, nothing else.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let e = server.next_err().await;
    assert!(
        matches!(
            e,
            TransportError::Handshake {
                stage: Stage::WebSocket,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_configured_path_is_served_and_a_stalled_upgrade_times_out() {
    let mut settings = ws_settings();
    settings.ws = WsSettings {
        path: "/ws/mqtt".into(),
        ..WsSettings::default()
    };
    settings.handshake_timeout = Duration::from_millis(300);
    let mut server = Server::start(settings).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    ws_over(tcp, &format!("ws://{}/ws/mqtt", server.addr), "mqtt")
        .await
        .unwrap();
    server.next_ok().await;

    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /ws/mqtt HTTP/1.1\r\n")
        .await
        .unwrap();
    let e = server.next_err().await;
    assert!(
        matches!(
            e,
            TransportError::Timeout {
                stage: Stage::WebSocket,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn wss_is_tls_then_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let files = ca.server().write(dir.path(), "server");
    let settings = Settings {
        kind: Kind::Wss,
        tls: Some(TlsSettings::new(files.cert, files.key)),
        ..Settings::tcp("test")
    };
    let mut server = Server::start(settings).await;
    let tls = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let mut ws = ws_over(
        tls,
        &format!("wss://localhost:{}/mqtt", server.addr.port()),
        "mqtt",
    )
    .await
    .unwrap();
    let (stream, meta) = server.next_ok().await;
    assert!(meta.tls.is_some() && meta.ws.is_some(), "{meta:?}");
    echo(stream);
    ws.send(Message::Binary(Bytes::from_static(PACKETS)))
        .await
        .unwrap();
    assert_eq!(&next_binary(&mut ws).await[..], PACKETS);
}

#[tokio::test]
async fn x_forwarded_for_is_used_only_when_trusted() {
    let mut settings = ws_settings();
    settings.ws.trust_forwarded_for = true;
    let mut server = Server::start(settings).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/mqtt",
            server.addr
        ))
        .unwrap();
    request.headers_mut().insert(
        "X-Forwarded-For",
        "203.0.113.1, 198.51.100.20".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let _ws = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let (_, meta) = server.next_ok().await;
    assert_eq!(meta.peer, "198.51.100.20:0".parse().unwrap());
    assert_ne!(meta.socket_peer, meta.peer);
}
