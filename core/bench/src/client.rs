//! A minimal MQTT 3.1.1 client on fogg-codec: just what the scenarios need.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::BytesMut;
use fogg_codec::{
    Connect, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscribeFilter,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::transport::{Stream, Transport};

pub const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Largest packet a client accepts.
pub const MAX_PACKET: u32 = 1 << 20;
/// Time allowed for a TCP connect plus CONNECT/CONNACK, or a SUBSCRIBE/SUBACK.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where clients connect to, the loopback source addresses they connect
/// from (taken in turn, so many connections get past one address's port
/// range), the transport they speak and the credentials their CONNECTs
/// carry.
#[derive(Debug)]
pub struct Addrs {
    pub broker: SocketAddrV4,
    sources: Vec<Ipv4Addr>,
    next: AtomicUsize,
    transport: Transport,
    credentials: Credentials,
}

/// Username and password of every CONNECT (both optional).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Credentials {
    /// Puts them into a CONNECT packet.
    pub fn apply(&self, packet: &mut Packet) {
        if let Packet::Connect(c) = packet {
            c.username = self.username.clone();
            c.password = self.password.clone().map(bytes::Bytes::from);
        }
    }
}

impl Addrs {
    /// `sources` addresses 127.0.0.2, .3, ...; only loopback brokers.
    pub fn new(broker: SocketAddrV4, sources: u8, transport: Transport) -> Result<Addrs> {
        if !broker.ip().is_loopback() {
            bail!(
                "only loopback broker addresses (127.0.0.0/8) are allowed, not {}",
                broker.ip()
            );
        }
        if sources == 0 || sources > 253 {
            bail!("--source-addrs must be 1..=253");
        }
        let sources = (0..sources)
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
            .collect();
        Ok(Addrs {
            broker,
            sources,
            next: AtomicUsize::new(0),
            transport,
            credentials: Credentials::default(),
        })
    }

    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Every CONNECT made through these addresses carries `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> Addrs {
        self.credentials = credentials;
        self
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A connection to the broker over the transport (TCP with TCP_NODELAY,
    /// then the TLS handshake or WebSocket upgrade), from the next source
    /// address.
    pub async fn open(&self) -> Result<Stream> {
        let tcp = self.tcp().await?;
        self.transport.wrap(tcp).await
    }

    /// A TCP connection to the broker with TCP_NODELAY, from the next source
    /// address.
    async fn tcp(&self) -> Result<tokio::net::TcpStream> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
        let src = SocketAddr::V4(SocketAddrV4::new(self.sources[i], 0));
        let socket = TcpSocket::new_v4()?;
        socket
            .bind(src)
            .with_context(|| format!("binding a client socket to {src}"))?;
        let stream = socket
            .connect(SocketAddr::V4(self.broker))
            .await
            .with_context(|| format!("connecting to {} from {src}", self.broker))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// One connected client.
pub struct Conn {
    pub stream: Stream,
    pub rbuf: BytesMut,
}

impl Conn {
    /// TCP connect, CONNECT (clean session, no keep alive) and a successful
    /// CONNACK, within [`HANDSHAKE_TIMEOUT`].
    pub async fn connect(addrs: &Addrs, client_id: &str) -> Result<Conn> {
        Conn::connect_with(addrs, client_id, true).await
    }

    /// As [`Conn::connect`]; `clean_session: false` asks for a persistent
    /// session (the broker must keep and store what is queued for it).
    pub async fn connect_with(addrs: &Addrs, client_id: &str, clean_session: bool) -> Result<Conn> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let stream = addrs.open().await?;
            let mut conn = Conn {
                stream,
                rbuf: BytesMut::with_capacity(4096),
            };
            let mut connect = connect_packet(client_id, clean_session);
            addrs.credentials.apply(&mut connect);
            conn.send(&connect).await?;
            match conn.recv().await? {
                Packet::ConnAck(ack) if ack.reason == ReasonCode::Success => Ok(conn),
                Packet::ConnAck(ack) => bail!("CONNACK refused: {:?}", ack.reason),
                other => bail!("expected CONNACK, got {}", other.name()),
            }
        })
        .await
        .map_err(|_| anyhow!("no CONNACK within {HANDSHAKE_TIMEOUT:?}"))?
        .with_context(|| format!("client {client_id}"))
    }

    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut buf = BytesMut::new();
        fogg_codec::encode(packet, VERSION, &mut buf)?;
        self.stream.write_all(&buf).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Next packet; an error on EOF or a malformed packet.
    pub async fn recv(&mut self) -> Result<Packet> {
        loop {
            if let Some(packet) = fogg_codec::decode(&mut self.rbuf, VERSION, MAX_PACKET)? {
                return Ok(packet);
            }
            self.rbuf.reserve(4096);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    /// SUBSCRIBE to one filter and wait for a SUBACK granting `qos`.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let packet = Packet::Subscribe(Box::new(Subscribe {
            packet_id: 1,
            filters: vec![SubscribeFilter {
                filter: filter.to_string(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Default::default(),
        }));
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            self.send(&packet).await?;
            match self.recv().await? {
                Packet::SubAck(ack) => {
                    let granted = ack.reasons.first().copied();
                    let want = match qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
                    };
                    if granted != Some(want) {
                        bail!("SUBACK for {filter} granted {granted:?}, wanted {want:?}");
                    }
                    Ok(())
                }
                other => bail!("expected SUBACK, got {}", other.name()),
            }
        })
        .await
        .map_err(|_| anyhow!("no SUBACK within {HANDSHAKE_TIMEOUT:?}"))?
    }

    /// DISCONNECT and close; errors are ignored (the broker may be gone).
    pub async fn disconnect(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.send(&disconnect_packet()).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

pub fn connect_packet(client_id: &str, clean_session: bool) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: VERSION,
        clean_start: clean_session,
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }))
}

pub fn disconnect_packet() -> Packet {
    Packet::Disconnect(Box::default())
}

/// Encodes `packet` onto `buf` (packets the bench builds itself always
/// encode).
pub fn put(packet: &Packet, buf: &mut BytesMut) -> Result<()> {
    fogg_codec::encode(packet, VERSION, buf)?;
    Ok(())
}

/// Runs `count` async jobs with at most `concurrency` at once and returns
/// their results in index order.
pub async fn bounded<T, F, Fut>(count: usize, concurrency: usize, job: F) -> Vec<Result<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = sem.clone().acquire_owned().await;
        let fut = job(i);
        set.spawn(async move {
            let _permit = permit;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<Result<T>>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => {
                // A panicked job: keep its slot as an error.
                if let Some(slot) = out.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(Err(anyhow!("job failed: {e}")));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("job did not finish"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_into_the_connect() {
        let mut packet = connect_packet("c", true);
        Credentials {
            username: Some("u".into()),
            password: Some("p".into()),
        }
        .apply(&mut packet);
        let Packet::Connect(c) = packet else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    }
}
