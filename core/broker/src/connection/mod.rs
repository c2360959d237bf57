//! One client connection: a single task that reads, decodes and handles
//! packets, and writes whatever its session has queued.
//!
//! Reading and writing share one `select!` loop so a client that stops reading
//! cannot deadlock a broker that is also waiting to read from it, and an idle
//! connection costs one small task and no buffers (about 2 KiB in all with
//! its session; the `a_connection_task_stays_small` tests guard the task).

mod authz;
mod handshake;
mod inbound;
mod outbound;
mod pipeline;
mod ratelimit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fogg_api::{AclRules, ClientInfo, PublishDecision};
use fogg_codec::{Connect, Disconnect, Packet, Properties, ProtocolVersion, ReasonCode, Will};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::ListenerConfig;
use crate::metrics::Metrics;
use crate::session::{Kick, QueueLimits, Session};
use crate::state::BrokerState;
use ratelimit::{RateLimit, RateSettings};

/// Stop reading from a client whose unsent output has grown past this: it is
/// not reading what we send (TCP back-pressure does the rest).
const PAUSE_READ_AT: usize = 1024 * 1024;
/// Stop moving queued messages into the write buffer past this.
const FILL_LIMIT: usize = 64 * 1024;
/// Buffers larger than this are released once empty, so idle connections stay small.
const KEEP_BUFFER: usize = 16 * 1024;
/// Read size for a quiet connection, which reads through the stack and
/// holds no read buffer while it waits.
const COLD_READ: usize = 64;
/// Read size once reads come back full: a busy client is drained in few syscalls.
const HOT_READ: usize = 8 * 1024;

/// What a listener tells its connections.
#[derive(Debug)]
pub(crate) struct ListenerInfo {
    pub name: String,
    pub mountpoint: String,
    /// The client certificate's identity replaces the CONNECT username.
    pub use_identity_as_username: bool,
    /// Queue limits of this listener's sessions.
    pub limits: QueueLimits,
    /// Most unacknowledged QoS 1/2 messages sent to a client; 0 = its
    /// Receive Maximum only.
    pub max_inflight: u16,
    /// Publish rate limit of this listener's clients.
    pub rate: RateSettings,
}

impl ListenerInfo {
    /// The listener's settings, falling back to `[broker]` for what it
    /// does not override.
    pub fn new(lc: &ListenerConfig, broker: &BrokerState) -> ListenerInfo {
        let b = &broker.settings;
        let mut limits = broker.queue_limits();
        limits.max_online = lc.max_online_messages.unwrap_or(limits.max_online);
        limits.max_offline = lc.max_offline_messages.unwrap_or(limits.max_offline);
        ListenerInfo {
            name: lc.name.clone(),
            mountpoint: lc.mountpoint.clone(),
            use_identity_as_username: lc.use_identity_as_username,
            limits,
            max_inflight: lc.max_inflight_messages.unwrap_or(b.max_inflight_messages),
            rate: RateSettings {
                messages: lc.max_message_rate.unwrap_or(b.max_message_rate),
                bytes: lc.max_byte_rate.unwrap_or(b.max_byte_rate),
            },
        }
    }
}

/// What the transport (PROXY header, TLS) established about a client.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The client's address: the one a PROXY header reported, if any. This
    /// is what logs, ACL backends, webhooks and the session see.
    pub peer: SocketAddr,
    /// The certificate identity to use as the username
    /// (`use_identity_as_username`).
    pub identity: Option<String>,
}

/// Why the main loop ended; decides the will and the last packet sent.
#[derive(Debug)]
pub(crate) enum Close {
    /// DISCONNECT 0x00 from the client: no will.
    Normal,
    /// DISCONNECT 0x04 from the client: publish the will.
    NormalWithWill,
    /// The socket closed or failed without DISCONNECT.
    Lost,
    /// The server ends the connection with this reason (MQTT 5 DISCONNECT).
    Server(ReasonCode, String),
    /// Someone else ended it.
    Kicked(Kick),
}

/// Per-connection state after a successful CONNECT.
pub(crate) struct Client {
    pub session: Arc<Session>,
    pub generation: u64,
    pub info: ClientInfo,
    pub keep_alive: Duration,
    /// Boxed: most clients have none, and the Properties inside are large.
    pub will: Option<Box<Will>>,
    /// Session Expiry Interval as currently in force.
    pub session_expiry: u32,
    /// The client's Maximum Packet Size (we never send larger).
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (aliases we may use towards it).
    pub client_alias_max: u16,
    /// Topic aliases in use, both ways (most clients use none).
    pub aliases: Option<Box<TopicAliases>>,
    /// Enhanced authentication method of this connection, if any.
    pub auth_method: Option<String>,
    /// A re-authentication in progress.
    pub reauth: Option<Box<fogg_api::EnhancedAuthContext>>,
    /// ACL answers that depend only on the topic (see `may_publish`), so a
    /// PUBLISH never waits on a backend twice: per topic, one per (QoS,
    /// retain) at `qos * 2 + retain`. Allocated on the first answer.
    pub publish_acl: Option<Box<PublishAnswers>>,
    /// The rules the authenticating backend handed over at CONNECT.
    pub acl: Option<Arc<AclRules>>,
    /// When the two above were loaded, and how to load them again
    /// (invalidation, `[auth] acl_cache_ttl`).
    pub acl_stamp: authz::AclStamp,
}

/// The PUBLISH answers kept by one connection, by topic.
pub(crate) type PublishAnswers = HashMap<String, [Option<PublishDecision>; 6]>;

/// The topic aliases of an MQTT 5 connection, allocated on first use.
#[derive(Default)]
pub(crate) struct TopicAliases {
    /// Aliases the client set up for its PUBLISHes.
    pub inbound: HashMap<u16, String>,
    /// Aliases we set up towards the client.
    pub outbound: HashMap<String, u16>,
}

pub(crate) struct Connection<S> {
    pub broker: Arc<BrokerState>,
    pub listener: Arc<ListenerInfo>,
    /// Not split in two halves: one task does both directions, and a split
    /// would cost every connection a shared, locked allocation.
    stream: S,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub version: ProtocolVersion,
    pub last_read: Instant,
    /// The client's MQTT 5 Maximum Packet Size, once its CONNECT is read.
    pub peer_max_packet_size: u32,
    /// Whether the last read brought more than a tiny packet (more is likely waiting).
    read_hot: bool,
    /// The client's publish rate limit, if its listener has one.
    pub rate: Option<Box<RateLimit>>,
    /// Packets wait in `rbuf` because the rate limit paused their handling.
    input_held: bool,
    /// PUBLISHes waiting on the message store (see `pipeline`); always
    /// empty between two reads.
    pipeline: pipeline::Pipeline,
}

/// Serve one accepted connection until it ends.
// Not an `async fn`: that would keep its arguments beside the connection
// built from them for the connection's whole life.
pub(crate) fn serve<S>(
    stream: S,
    accepted: Accepted,
    listener: Arc<ListenerInfo>,
    broker: Arc<BrokerState>,
    over_limit: bool,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = accepted.peer;
    // Boxed: needed by the handshake only, then freed (the connection's
    // future would keep it inline for its whole life).
    let origin = Box::new(accepted);
    let rate = RateLimit::new(listener.rate).map(Box::new);
    let mut conn = Connection {
        broker,
        listener,
        stream,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        version: ProtocolVersion::V3_1_1,
        last_read: Instant::now(),
        peer_max_packet_size: u32::MAX,
        read_hot: false,
        rate,
        input_held: false,
        pipeline: pipeline::Pipeline::default(),
    };
    let span = tracing::info_span!("conn", peer = %peer, client_id = tracing::field::Empty);
    async move {
        let handshake = {
            let mut shutdown = conn.broker.shutdown.clone();
            // Boxed: the handshake's state is large and only needed briefly;
            // inline it would stay in every idle connection's task.
            tokio::select! {
                client = Box::pin(conn.handshake(over_limit, &origin)) => client,
                // A connection that never finishes CONNECT must not hold up shutdown.
                _ = shutdown.changed() => None,
            }
        };
        drop(origin);
        match handshake {
            Some(client) => conn.run(client).await,
            None => {
                let _ = conn.flush().await;
            }
        }
    }
    .instrument(span)
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// `use_identity_as_username`: the verified certificate identity replaces
    /// whatever username CONNECT carried, before authentication and ACLs.
    pub(crate) fn with_identity(
        &self,
        mut connect: Box<Connect>,
        origin: &Accepted,
    ) -> Box<Connect> {
        if let Some(identity) = &origin.identity {
            if connect.username.as_ref().is_some_and(|u| u != identity) {
                tracing::debug!(identity = %identity, "CONNECT username replaced by the certificate identity");
            }
            connect.username = Some(identity.clone());
        }
        connect
    }

    /// Read until one packet is decoded. `None` on EOF.
    pub(crate) async fn read_packet(&mut self) -> Result<Option<Packet>, ReadError> {
        loop {
            match fogg_codec::decode(
                &mut self.rbuf,
                self.version,
                self.broker.settings.max_packet_size,
            ) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Decode(e)),
            }
            if !self.fill_read_buffer().await? {
                return Ok(None);
            }
        }
    }

    /// One read from the socket into `rbuf`. Returns false on EOF.
    async fn fill_read_buffer(&mut self) -> Result<bool, ReadError> {
        self.reserve_read();
        let n = self
            .stream
            .read_buf(&mut self.rbuf)
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(false);
        }
        self.note_read(n);
        Ok(true)
    }

    /// Encode a packet into the write buffer.
    pub(crate) fn send(&mut self, packet: &Packet) {
        if let Err(e) = fogg_codec::encode(packet, self.version, &mut self.wbuf) {
            tracing::warn!(packet = packet.name(), error = %e, "could not encode packet");
            return;
        }
        Metrics::add(&self.broker.metrics.messages_sent, 1);
    }

    /// Write out everything buffered.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            let n = self.stream.write(&self.wbuf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.wbuf.advance(n);
            Metrics::add(&self.broker.metrics.bytes_sent, n as u64);
        }
        self.stream.flush().await?;
        self.release_buffers();
        Ok(())
    }

    /// Offer a large read to a busy connection. A quiet one with nothing
    /// buffered holds no read buffer at all: `poll_io` reads it through the
    /// stack.
    fn reserve_read(&mut self) {
        if self.read_hot {
            self.rbuf.reserve(HOT_READ);
        } else if !self.rbuf.is_empty() {
            self.rbuf.reserve(COLD_READ);
        }
    }

    fn note_read(&mut self, n: usize) {
        self.read_hot = n >= COLD_READ;
        self.last_read = Instant::now();
        Metrics::add(&self.broker.metrics.bytes_received, n as u64);
    }

    fn release_buffers(&mut self) {
        if self.wbuf.is_empty() && self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = BytesMut::new();
        }
        // A quiet connection gives its read buffer back; a busy one keeps it.
        let keep = if self.read_hot { KEEP_BUFFER } else { 0 };
        if self.rbuf.is_empty() && self.rbuf.capacity() > keep {
            self.rbuf = BytesMut::new();
        }
    }

    /// Queue a DISCONNECT with a reason (MQTT 5 only; older versions just close).
    pub(crate) fn send_disconnect(&mut self, reason: ReasonCode, why: &str) {
        if self.version.is_v5() {
            let properties = Properties {
                reason_string: (!why.is_empty()).then(|| why.to_owned()),
                ..Properties::default()
            };
            let mut packet = Packet::Disconnect(Box::new(Disconnect { reason, properties }));
            // [MQTT-3.14.2-3]: leave the reason string out rather than exceed
            // the client's Maximum Packet Size.
            if fogg_codec::encoded_len(&packet, self.version) > self.peer_max_packet_size as usize {
                packet = Packet::Disconnect(Box::new(Disconnect {
                    reason,
                    properties: Properties::default(),
                }));
            }
            self.send(&packet);
        }
    }

    /// The connected phase.
    // `Client` is boxed: async fns keep their by-value arguments and locals
    // side by side, and an inline Client would be stored twice in every
    // connection's task.
    async fn run(&mut self, mut client: Box<Client>) {
        self.resume_inflight(&mut client);
        self.fill(&mut client).await;
        // CONNECT is handled: an idle client keeps no read buffer.
        self.release_buffers();
        let session = client.session.clone();
        let mut rate_paused = false;
        let close = loop {
            // Registered before the checks below, so a takeover or shutdown
            // that happens after them still wakes this connection.
            let wake = session.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if self.broker.is_stopping() {
                break Close::Kicked(Kick::ShuttingDown);
            }
            if session.attached() != Some(client.generation) {
                break Close::Kicked(Kick::TakenOver);
            }
            // Over its publish rate the client is not read until it is back
            // within it (TCP back-pressure slows it; nothing is dropped).
            let rate_pause = self
                .rate
                .as_ref()
                .and_then(|r| r.paused_until(Instant::now()));
            match (rate_paused, rate_pause.is_some()) {
                (false, true) => Metrics::add(&self.broker.overload.rate_pauses, 1),
                // What the client sent meanwhile waited in the socket: the
                // keep alive counts from the end of the pause.
                (true, false) => self.last_read = Instant::now(),
                _ => {}
            }
            rate_paused = rate_pause.is_some();
            if rate_pause.is_none() && self.input_held {
                // Packets left in the read buffer when the pause began.
                self.input_held = false;
                if let Some(close) = Box::pin(self.process_input(&mut client)).await {
                    break close;
                }
                self.fill(&mut client).await;
                continue;
            }
            let want_read = self.wbuf.len() < PAUSE_READ_AT && rate_pause.is_none();
            if want_read {
                self.reserve_read();
            }
            // Time spent paused by the broker does not count against the
            // client's keep alive.
            let keepalive_deadline = (!client.keep_alive.is_zero()).then(|| {
                self.last_read.max(rate_pause.unwrap_or(self.last_read))
                    + client.keep_alive.mul_f32(1.5)
            });
            // One timer for both: the end of a rate pause comes first.
            let deadline = rate_pause.or(keepalive_deadline);
            tokio::select! {
                biased;
                io = std::future::poll_fn(|cx| self.poll_io(cx, want_read)) => match io {
                    Io::Wrote(n) => {
                        self.wbuf.advance(n);
                        Metrics::add(&self.broker.metrics.bytes_sent, n as u64);
                        if self.wbuf.is_empty() {
                            self.release_buffers();
                            self.fill(&mut client).await;
                        }
                    }
                    Io::Read(n) => {
                        self.note_read(n);
                        if let Some(close) = Box::pin(self.process_input(&mut client)).await {
                            break close;
                        }
                        self.fill(&mut client).await;
                        self.release_buffers();
                    }
                    Io::Closed => break Close::Lost,
                    Io::Failed(e) => {
                        tracing::debug!(error = %e, "socket failed");
                        break Close::Lost;
                    }
                },
                // Also a takeover or shutdown: the checks above see it.
                _ = &mut wake => {
                    if self.wbuf.len() < FILL_LIMIT {
                        self.fill(&mut client).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)) => {
                    if keepalive_deadline.is_some_and(|at| at <= Instant::now()) {
                        break Close::Server(
                            ReasonCode::KeepAliveTimeout,
                            "[MQTT-3.1.2-22] no packet within 1.5 times the keep alive".to_owned(),
                        );
                    }
                }
            }
        };
        Box::pin(self.finish(client, close)).await;
    }

    /// Decode and handle every complete packet in the read buffer; then
    /// remove what the client acknowledged from the store, in one batch.
    async fn process_input(&mut self, client: &mut Client) -> Option<Close> {
        let close = self.handle_buffered(client).await;
        self.broker.forget_delivered_soon(&client.session);
        close
    }

    async fn handle_buffered(&mut self, client: &mut Client) -> Option<Close> {
        let close = self.handle_decoded(client).await;
        // Whatever ended the batch, PUBLISHes already routed are settled
        // (their deliveries queued, their PUBACKs sent) before it counts.
        let settled = if self.pipeline.is_empty() {
            None
        } else {
            self.drain_pipeline().await
        };
        close.or(settled)
    }

    async fn handle_decoded(&mut self, client: &mut Client) -> Option<Close> {
        loop {
            // Over its publish rate: the rest waits in the buffer (and the
            // socket) until the pause ends.
            if self
                .rate
                .as_ref()
                .is_some_and(|r| r.paused_until(Instant::now()).is_some())
            {
                self.input_held = !self.rbuf.is_empty();
                return None;
            }
            match fogg_codec::decode(
                &mut self.rbuf,
                self.version,
                self.broker.settings.max_packet_size,
            ) {
                Ok(Some(packet)) => {
                    Metrics::add(&self.broker.metrics.messages_received, 1);
                    if !self.pipeline.is_empty()
                        && !pipeline::may_overtake(&packet)
                        && let Some(close) = self.drain_pipeline().await
                    {
                        return Some(close);
                    }
                    if let Some(close) = self.handle(client, packet).await {
                        return Some(close);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::info!(rule = e.rule, detail = %e.detail, reason = %e.reason, "protocol violation");
                    return Some(Close::Server(e.reason, format!("{} {}", e.rule, e.detail)));
                }
            }
        }
    }

    /// Send the last words, release the session, publish the will if due.
    async fn finish(&mut self, client: Box<Client>, close: Close) {
        let publish_will = match &close {
            Close::Normal => false,
            Close::NormalWithWill | Close::Lost | Close::Server(..) => true,
            Close::Kicked(Kick::TakenOver) => true,
            // The client did nothing wrong, and every subscriber is being
            // disconnected too: wills would only be noise across a restart.
            Close::Kicked(Kick::ShuttingDown) => false,
        };
        match &close {
            Close::Server(reason, why) => {
                tracing::info!(reason = %reason, why = %why, "closing connection");
                self.send_disconnect(*reason, why);
            }
            Close::Kicked(Kick::TakenOver) => {
                tracing::info!("session taken over by a new connection");
                self.send_disconnect(
                    ReasonCode::SessionTakenOver,
                    "another connection took over this client id",
                );
            }
            Close::Kicked(Kick::ShuttingDown) => {
                self.send_disconnect(ReasonCode::ServerShuttingDown, "server shutting down");
            }
            Close::Lost => tracing::debug!("connection lost"),
            Close::Normal | Close::NormalWithWill => tracing::debug!("client disconnected"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        let _ = self.stream.shutdown().await;
        Metrics::sub(&self.broker.metrics.clients_connected, 1);
        crate::lifecycle::detach(&self.broker, *client, publish_will).await;
    }
}

/// What one turn of the socket brought.
enum Io {
    Wrote(usize),
    Read(usize),
    /// End of stream, or a write that took nothing.
    Closed,
    Failed(std::io::Error),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Write what is buffered, else read when `want_read`: both directions
    /// of the one stream in one future.
    fn poll_io(&mut self, cx: &mut Context<'_>, want_read: bool) -> Poll<Io> {
        if !self.wbuf.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Io::Closed),
                Poll::Ready(Ok(n)) => return Poll::Ready(Io::Wrote(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Io::Failed(e)),
                Poll::Pending => {}
            }
        }
        if want_read && self.rbuf.capacity() == 0 {
            // Waiting with an allocated buffer would cost every idle
            // connection; read a quiet one's next bytes through the stack.
            let mut stack = [0u8; COLD_READ];
            let mut buf = ReadBuf::new(&mut stack);
            return match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Io::Closed),
                Poll::Ready(Ok(())) => {
                    self.rbuf.extend_from_slice(buf.filled());
                    Poll::Ready(Io::Read(buf.filled().len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Io::Failed(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        if want_read {
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Io::Closed),
                Poll::Ready(Ok(n)) => return Poll::Ready(Io::Read(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Io::Failed(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// A deadline that never comes in practice (a plain `Sleep` is smaller in
/// every connection's future than an optional one).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Failure while reading a packet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("socket: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Decode(fogg_codec::DecodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, D, E, F: std::future::Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn run_size<A, B, F: std::future::Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle connection holds its task's future: keep it small.
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(serve::<tokio::net::TcpStream>);
        println!(
            "connection future: {size} bytes; Connection {}; Client {}; Session {}; Message {}; Delivery {}",
            std::mem::size_of::<Connection<tokio::net::TcpStream>>(),
            std::mem::size_of::<Client>(),
            std::mem::size_of::<Session>(),
            std::mem::size_of::<crate::message::Message>(),
            std::mem::size_of::<crate::message::Delivery>(),
        );
        println!(
            "SessionState {}; Notify {}; ClientInfo {}; AclStamp {}; run {}; Sleep {}; Notified {}",
            std::mem::size_of::<crate::session::SessionState>(),
            std::mem::size_of::<tokio::sync::Notify>(),
            std::mem::size_of::<ClientInfo>(),
            std::mem::size_of::<authz::AclStamp>(),
            run_size(Connection::<tokio::net::TcpStream>::run),
            std::mem::size_of::<tokio::time::Sleep>(),
            std::mem::size_of::<tokio::sync::futures::Notified<'static>>(),
        );
        assert!(size <= 1024, "the connection future is {size} bytes");
    }
}
