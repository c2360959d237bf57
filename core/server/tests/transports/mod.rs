//! Helpers for the TLS, WebSocket and PROXY protocol tests: a throw-away PKI
//! written next to the configuration, and a small async MQTT client (on
//! fogg-codec) that runs over any byte stream, so reason codes can be read
//! exactly whatever the transport.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use fogg_codec::{
    ConnAck, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, Subscribe,
    SubscribeFilter, SubscriptionOptions,
};
use fogg_transport::test_pki::{Ca, Files, client_config};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const WAIT: Duration = Duration::from_secs(10);

/// The certificates of one test, as files in its configuration directory.
pub struct Pki {
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub server: Files,
    /// A CA the broker does not know.
    pub other: Ca,
    pub other_file: PathBuf,
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new("Fogg Test CA");
        let other = Ca::new("Some Other CA");
        Pki {
            ca_file: ca.write(dir, "ca.crt"),
            server: ca.server().write(dir, "server"),
            other_file: other.write(dir, "other-ca.crt"),
            ca,
            other,
            dir: dir.to_owned(),
        }
    }

    /// A client certificate (CN `cn`) from our CA, written as `NAME.crt/.key`.
    pub fn client(&self, cn: &str) -> Files {
        self.ca.client(cn).write(&self.dir, &format!("client-{cn}"))
    }

    /// The `[[listeners]]` keys of a TLS listener using these files.
    pub fn listener_keys(&self) -> String {
        format!(
            "certfile = \"{}\"\nkeyfile = \"{}\"\ncafile = \"{}\"\n",
            self.server.cert.display(),
            self.server.key.display(),
            self.ca_file.display()
        )
    }

    /// rustls client settings trusting our CA, with a client certificate
    /// with CN `cn` if given.
    pub fn client_config(&self, cn: Option<&str>) -> Arc<rustls::ClientConfig> {
        let cert = cn.map(|cn| self.ca.client(cn));
        client_config(&self.ca, cert.as_ref())
    }
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, config).await
}

pub async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<S>> {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, io)
        .await
}

/// An MQTT client over any byte stream, sending exactly what it is told.
pub struct Client<S> {
    pub stream: S,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S, version: ProtocolVersion) -> Self {
        Client {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        fogg_codec::encode(packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next packet; `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = fogg_codec::decode(&mut self.buf, self.version, u32::MAX).unwrap()
                {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet (or the close) in time")
    }

    /// CONNECT (clean, keep alive 60) as `username`, and the CONNACK.
    pub async fn connect(&mut self, id: &str, username: Option<&str>) -> ConnAck {
        self.send(&Packet::Connect(Box::new(Connect {
            protocol: self.version,
            clean_start: true,
            keep_alive: 60,
            client_id: id.to_owned(),
            will: None,
            username: username.map(str::to_owned),
            password: None,
            properties: Properties::default(),
        })))
        .await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => *ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// SUBSCRIBE at QoS 1; the SUBACK reason codes.
    pub async fn subscribe(&mut self, filters: &[&str]) -> Vec<ReasonCode> {
        self.send(&Packet::Subscribe(Box::new(Subscribe {
            packet_id: 1,
            filters: filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: (*f).to_owned(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..SubscriptionOptions::default()
                    },
                })
                .collect(),
            properties: Properties::default(),
        })))
        .await;
        match self.recv().await {
            Some(Packet::SubAck(ack)) => ack.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// PUBLISH at QoS 1; the PUBACK reason code.
    pub async fn publish_qos1(&mut self, topic: &str, payload: &str) -> ReasonCode {
        self.send(&publish(topic, payload, QoS::AtLeastOnce, Some(2)))
            .await;
        match self.recv().await {
            Some(Packet::PubAck(ack)) => ack.reason,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH, acknowledged if QoS 1.
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    self.send(&Packet::PubAck(fogg_codec::PubAck {
                        packet_id: id,
                        reason: ReasonCode::Success,
                        properties: fogg_codec::AckProperties::default(),
                    }))
                    .await;
                }
                *p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn ping(&mut self) {
        self.send(&Packet::PingReq).await;
        assert!(
            matches!(self.recv().await, Some(Packet::PingResp)),
            "expected PINGRESP"
        );
    }
}

pub fn publish(topic: &str, payload: &str, qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Box::new(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id,
        payload: payload.as_bytes().to_vec().into(),
        properties: Properties::default(),
    }))
}

/// The encoded bytes of `packet`.
pub fn encoded(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    fogg_codec::encode(packet, version, &mut out).unwrap();
    out.to_vec()
}
