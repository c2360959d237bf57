//! WebSocket and WSS listeners end to end: a Rust WebSocket client
//! (tokio-tungstenite) sending MQTT split across frames and packed several
//! to a frame, refused upgrades, WSS, and MQTT.js in headless Chromium
//! receiving what mosquitto_pub sends over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod transports;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use fogg_codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use futures_util::{SinkExt, StreamExt};
use support::{Fogg, LineChild, Mqtt, WAIT, dir_with, eventually};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use transports::{Pki, encoded, publish, tls_connect};

/// fogg with a `tcp` and a `ws` listener (plus `extra` keys on the latter).
fn start_tcp_and_ws(extra: &str) -> (Fogg, SocketAddr, SocketAddr) {
    let config = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"ws\"\nkind = \"ws\"\nbind = \"127.0.0.1:0\"\n{extra}"
    );
    let fogg = Fogg::start(dir_with(&[("fogg.toml", &config)]), 2);
    let addr = |name: &str| {
        fogg.listeners()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap()
    };
    let (tcp, ws) = (addr("tcp"), addr("ws"));
    (fogg, tcp, ws)
}

/// A WebSocket upgrade on `io` to `url`, offering `protocols`.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    url: &str,
    protocols: &str,
) -> Result<WebSocketStream<S>, WsError> {
    let mut request = url.into_client_request().unwrap();
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    }
    let (ws, response) = tokio_tungstenite::client_async(request, io).await?;
    if !protocols.is_empty() {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocols.split(',').next().unwrap().trim(),
            "the chosen subprotocol is echoed"
        );
    }
    Ok(ws)
}

/// MQTT over a client WebSocket: frames as the test chooses, packets
/// decoded from whatever frames arrive.
struct WsMqtt<S> {
    ws: WebSocketStream<S>,
    version: ProtocolVersion,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsMqtt<S> {
    /// Send these byte slices, one binary frame each.
    async fn frames(&mut self, frames: &[&[u8]]) {
        for frame in frames {
            self.ws
                .send(Message::Binary(Bytes::copy_from_slice(frame)))
                .await
                .unwrap();
        }
    }

    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = fogg_codec::decode(&mut self.buf, self.version, u32::MAX).unwrap()
                {
                    return Some(p);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Text(t))) => panic!("the broker sent a text frame: {t}"),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(Message::Frame(_))) => {}
                }
            }
        })
        .await
        .expect("a packet (or the close) in time")
    }
}

fn connect_packet(version: ProtocolVersion, id: &str) -> Packet {
    support::connect_packet(version, id)
}

fn subscribe_packet(topic: &str) -> Packet {
    Packet::Subscribe(Box::new(fogg_codec::Subscribe {
        packet_id: 1,
        filters: vec![fogg_codec::SubscribeFilter {
            filter: topic.to_owned(),
            options: fogg_codec::SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        }],
        properties: Default::default(),
    }))
}

/// CONNECT split over three frames; SUBSCRIBE, PUBLISH and PINGREQ packed
/// into one; the answers decoded from whatever frames the broker sends.
async fn split_and_packed<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocketStream<S>,
    version: ProtocolVersion,
) {
    let mut client = WsMqtt {
        ws,
        version,
        buf: BytesMut::new(),
    };
    let connect = encoded(&connect_packet(version, "ws-split"), version);
    client
        .frames(&[&connect[..1], &connect[1..5], &connect[5..]])
        .await;
    match client.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut packed = encoded(&subscribe_packet("ws/split"), version);
    packed.extend(encoded(
        &publish("ws/split", "packed", QoS::AtLeastOnce, Some(7)),
        version,
    ));
    packed.extend(encoded(&Packet::PingReq, version));
    client.frames(&[&packed]).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(client.recv().await.expect("four answers"));
    }
    assert!(matches!(got[0], Packet::SubAck(_)), "{got:?}");
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 7)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::Publish(m) if &m.payload[..] == b"packed")),
        "{got:?}"
    );
    assert!(got.iter().any(|p| matches!(p, Packet::PingResp)), "{got:?}");
}

#[tokio::test]
async fn packets_split_across_frames_and_packed_into_one_frame() {
    let (_fogg, _, ws_addr) = start_tcp_and_ws("");
    for (version, protocol) in [
        (ProtocolVersion::V5, "mqtt"),
        (ProtocolVersion::V3_1_1, "mqtt"),
        (ProtocolVersion::V3_1, "mqttv3.1"),
    ] {
        let tcp = TcpStream::connect(ws_addr).await.unwrap();
        let ws = upgrade(tcp, &format!("ws://{ws_addr}/mqtt"), protocol)
            .await
            .unwrap();
        split_and_packed(ws, version).await;
    }
}

#[tokio::test]
async fn messages_cross_between_tcp_and_websocket() {
    let (_fogg, tcp_addr, ws_addr) = start_tcp_and_ws("");
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    let ws = upgrade(tcp, &format!("ws://{ws_addr}/mqtt"), "mqtt")
        .await
        .unwrap();
    let mut ws = WsMqtt {
        ws,
        version: ProtocolVersion::V5,
        buf: BytesMut::new(),
    };
    let v5 = ProtocolVersion::V5;
    ws.frames(&[&encoded(&connect_packet(v5, "ws-side"), v5)])
        .await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    ws.frames(&[&encoded(&subscribe_packet("cross/#"), v5)])
        .await;
    assert!(matches!(ws.recv().await, Some(Packet::SubAck(_))));

    let mut tcp_client = transports::Client::new(TcpStream::connect(tcp_addr).await.unwrap(), v5);
    assert_eq!(
        tcp_client.connect("tcp-side", None).await.reason,
        ReasonCode::Success
    );
    tcp_client.subscribe(&["back/#"]).await;
    tcp_client
        .send(&publish("cross/1", "to ws", QoS::AtMostOnce, None))
        .await;
    match ws.recv().await {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], b"to ws"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    ws.frames(&[&encoded(
        &publish("back/1", "to tcp", QoS::AtMostOnce, None),
        v5,
    )])
    .await;
    assert_eq!(&tcp_client.expect_publish().await.payload[..], b"to tcp");
}

#[tokio::test]
async fn wrong_paths_subprotocols_and_text_frames_are_refused() {
    let (fogg, _, ws_addr) = start_tcp_and_ws("ws_path = \"/broker\"\n");
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    match upgrade(tcp, &format!("ws://{ws_addr}/mqtt"), "mqtt").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 404);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("served at /broker"), "{body}");
        }
        other => panic!("expected HTTP 404, got {:?}", other.map(|_| ())),
    }
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    match upgrade(tcp, &format!("ws://{ws_addr}/broker"), "chat, superchat").await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("unsupported WebSocket subprotocol chat, superchat"),
                "{body}"
            );
        }
        other => panic!("expected HTTP 400, got {:?}", other.map(|_| ())),
    }
    eventually("both refusals in the log", WAIT, || {
        let log = fogg.log();
        (log.contains("WebSocket upgrade: refused with HTTP 404")
            && log.contains("WebSocket upgrade: refused with HTTP 400"))
        .then_some(())
    });

    // A text frame after CONNECT: the connection is closed [MQTT-6.0.0-1].
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    let ws = upgrade(tcp, &format!("ws://{ws_addr}/broker"), "mqtt")
        .await
        .unwrap();
    let v4 = ProtocolVersion::V3_1_1;
    let mut client = WsMqtt {
        ws,
        version: v4,
        buf: BytesMut::new(),
    };
    client
        .frames(&[&encoded(&connect_packet(v4, "texter"), v4)])
        .await;
    assert!(matches!(client.recv().await, Some(Packet::ConnAck(_))));
    client.ws.send(Message::text("PINGREQ")).await.unwrap();
    assert!(
        client.recv().await.is_none(),
        "still open after a text frame"
    );

    // And the listener still serves a well-behaved client.
    let tcp = TcpStream::connect(ws_addr).await.unwrap();
    let ws = upgrade(tcp, &format!("ws://{ws_addr}/broker"), "mqtt")
        .await
        .unwrap();
    split_and_packed(ws, ProtocolVersion::V5).await;
}

#[tokio::test]
async fn wss_serves_mqtt_over_tls() {
    let dir = dir_with(&[]);
    let pki = Pki::new(dir.path());
    let config = format!(
        "[[listeners]]\nname = \"wss\"\nkind = \"wss\"\nbind = \"127.0.0.1:0\"\n{}",
        pki.listener_keys()
    );
    fs::write(dir.path().join("fogg.toml"), config).unwrap();
    let fogg = Fogg::start(dir, 1);
    let tls = tls_connect(fogg.addr(), pki.client_config(None))
        .await
        .unwrap();
    let ws = upgrade(
        tls,
        &format!("wss://localhost:{}/mqtt", fogg.port()),
        "mqtt",
    )
    .await
    .unwrap();
    split_and_packed(ws, ProtocolVersion::V5).await;
}

// ---------------------------------------------------------------------------
// MQTT.js in headless Chromium

fn browser_dir() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser"))
}

/// node, Debian's chromium and the npm packages of tests/browser.
fn have_browser() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let ok = Path::new(&chromium).exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        && browser_dir()
            .join("node_modules/mqtt/dist/mqtt.min.js")
            .exists()
        && browser_dir().join("node_modules/playwright-core").exists();
    if ok {
        return true;
    }
    let message = "headless Chromium + MQTT.js: not installed; run scripts/install-browser-deps.sh \
                   (Debian chromium, and `npm ci` in core/server/tests/browser)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPING: {message} !!!!!!!!\n");
    false
}

/// The page subscribes over WebSocket; mosquitto_pub (or our raw client)
/// publishes over TCP; the page must get the message.
fn browser_receives(version: u8) {
    if !have_browser() {
        return;
    }
    let (fogg, tcp_addr, ws_addr) = start_tcp_and_ws("");
    let topic = format!("browser/v{version}");
    let mut page = LineChild::spawn(
        Command::new("node")
            .arg(browser_dir().join("subscribe.mjs"))
            .arg(format!("ws://{ws_addr}/mqtt"))
            .arg(&topic)
            .arg(version.to_string())
            .current_dir(browser_dir()),
    );
    // Chromium's first start can be slow on a busy machine.
    page.wait_for_line("SUBSCRIBED");
    let payload = format!("hello browser v{version}");
    if support::have_mosquitto_clients() {
        support::mosquitto_pub(
            tcp_addr.port(),
            Mqtt::V311,
            &["-q", "1", "-t", &topic, "-m", &payload],
        );
    } else {
        let mut client = support::RawClient::connect(tcp_addr, ProtocolVersion::V3_1_1, "pub").0;
        client.publish_qos1(&topic, &payload, 1);
    }
    let (status, lines, stderr) = page.finish(WAIT);
    assert!(
        status.success(),
        "browser failed: {stderr}\nstdout:\n{}\nfogg:\n{}",
        lines.join("\n"),
        fogg.log()
    );
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("MESSAGE {topic} {payload}")),
        "{lines:?}\n{stderr}"
    );
}

#[test]
fn mqtt_js_in_headless_chromium_receives_over_websocket_v311() {
    browser_receives(4);
}

#[test]
fn mqtt_js_in_headless_chromium_receives_over_websocket_v5() {
    browser_receives(5);
}
