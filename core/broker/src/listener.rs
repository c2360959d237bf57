//! Accepting connections: one task per listener, connection caps, TCP
//! options, and the transport handshakes (PROXY header, TLS, WebSocket),
//! which run in each connection's own task so a slow client never holds up
//! the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fogg_transport::{Acceptor, ConnectionMeta};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerConfig, ListenerKind};
use crate::connection::{self, Accepted, ListenerInfo};
use crate::state::BrokerState;

/// Counts live connections against a cap; the slot is released on drop.
#[derive(Default)]
pub(crate) struct ConnectionCount {
    live: AtomicUsize,
}

pub(crate) struct Slot {
    counts: [Arc<ConnectionCount>; 2],
}

impl Drop for Slot {
    fn drop(&mut self) {
        for c in &self.counts {
            c.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl ConnectionCount {
    fn take(self: &Arc<Self>, other: &Arc<ConnectionCount>) -> Slot {
        self.live.fetch_add(1, Ordering::Relaxed);
        other.live.fetch_add(1, Ordering::Relaxed);
        Slot {
            counts: [self.clone(), other.clone()],
        }
    }

    fn over(&self, max: usize) -> bool {
        max > 0 && self.live.load(Ordering::Relaxed) > max
    }
}

pub(crate) struct AcceptLoop {
    pub listener: TcpListener,
    pub info: Arc<ListenerInfo>,
    pub acceptor: Arc<Acceptor>,
    pub broker: Arc<BrokerState>,
    pub global: Arc<ConnectionCount>,
    pub local: Arc<ConnectionCount>,
    pub max_local: usize,
    pub tracker: TaskTracker,
    pub shutdown: watch::Receiver<bool>,
}

impl AcceptLoop {
    pub async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.changed() => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %self.info.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Nagle costs up to 40 ms per small packet on both peers.
            let _ = stream.set_nodelay(true);
            let slot = self.local.take(&self.global);
            // Over the cap we still read CONNECT, to answer it with a reason.
            let over_limit = self.global.over(self.broker.settings.max_connections)
                || self.local.over(self.max_local);
            let task = serve_socket(
                Box::new(Handshake {
                    stream,
                    peer,
                    acceptor: self.acceptor.clone(),
                    info: self.info.clone(),
                    shutdown: self.shutdown.clone(),
                }),
                self.broker.clone(),
                Limits { slot, over_limit },
            );
            self.tracker.spawn(task);
        }
    }
}

/// What a fresh socket needs for its transport handshake.
pub(crate) struct Handshake {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Arc<Acceptor>,
    info: Arc<ListenerInfo>,
    shutdown: watch::Receiver<bool>,
}

/// The connection's place under the caps.
pub(crate) struct Limits {
    slot: Slot,
    over_limit: bool,
}

/// One connection's task: the transport handshake, then MQTT. Everything an
/// idle connection's task holds is in here, so it is kept lean: the
/// handshake (its input boxed too, as an async fn keeps its arguments for
/// its whole life) runs boxed and leaves only the stream and what `admit`
/// keeps.
pub(crate) async fn serve_socket(
    handshake: Box<Handshake>,
    broker: Arc<BrokerState>,
    limits: Limits,
) {
    let Some((stream, accepted, info)) = Box::pin(transport_handshake(handshake)).await else {
        return;
    };
    connection::serve(stream, accepted, info, broker, limits.over_limit).await;
    drop(limits.slot);
}

/// PROXY header, TLS and WebSocket handshakes as the listener asks;
/// `None` (logged) when the client does not get through.
async fn transport_handshake(
    handshake: Box<Handshake>,
) -> Option<(fogg_transport::Stream, Accepted, Arc<ListenerInfo>)> {
    let Handshake {
        stream,
        peer,
        acceptor,
        info,
        mut shutdown,
    } = *handshake;
    let accepted = tokio::select! {
        accepted = acceptor.accept(stream, peer) => accepted,
        // A handshake in progress must not hold up shutdown.
        _ = shutdown.changed() => return None,
    };
    match accepted {
        Ok((stream, meta)) => {
            let accepted = admit(&info, meta)?;
            Some((stream, accepted, info))
        }
        Err(e) => {
            tracing::info!(listener = %info.name, peer = %peer, error = %e, "connection refused");
            None
        }
    }
}

/// What the connection code needs of a finished transport handshake; `None`
/// (logged) when the listener wants a certificate identity the client lacks.
fn admit(info: &ListenerInfo, meta: ConnectionMeta) -> Option<Accepted> {
    let identity = if info.use_identity_as_username {
        let Some(identity) = meta.identity() else {
            tracing::info!(
                listener = %info.name,
                peer = %meta.peer,
                "connection refused: use_identity_as_username is set and the client certificate has no identity"
            );
            return None;
        };
        Some(identity.to_owned())
    } else {
        None
    };
    if meta.peer != meta.socket_peer {
        tracing::debug!(listener = %info.name, peer = %meta.peer, via = %meta.socket_peer, "client address reported by the proxy");
    }
    Some(Accepted {
        peer: meta.peer,
        identity,
    })
}

/// The transport settings of a configured listener. `max_packet_size` bounds
/// WebSocket messages (one may carry several packets, hence the slack).
pub fn transport_settings(lc: &ListenerConfig, max_packet_size: u32) -> fogg_transport::Settings {
    let kind = match lc.kind {
        ListenerKind::Tcp => fogg_transport::Kind::Tcp,
        ListenerKind::Tls => fogg_transport::Kind::Tls,
        ListenerKind::Ws => fogg_transport::Kind::Ws,
        ListenerKind::Wss => fogg_transport::Kind::Wss,
    };
    let tls = match (&lc.certfile, &lc.keyfile) {
        (Some(certfile), Some(keyfile)) if kind.uses_tls() => Some(fogg_transport::TlsSettings {
            certfile: certfile.clone(),
            keyfile: keyfile.clone(),
            cafile: lc.cafile.clone(),
            require_client_cert: lc.require_client_cert,
            identity_field: lc.identity_field,
            min_version: lc.tls_min_version,
        }),
        _ => None,
    };
    fogg_transport::Settings {
        name: lc.name.clone(),
        kind,
        proxy_protocol: lc.proxy_protocol,
        handshake_timeout: lc.handshake_timeout,
        tls,
        ws: fogg_transport::WsSettings {
            path: lc.ws_path.clone(),
            trust_forwarded_for: lc.ws_trust_forwarded_for,
            max_message_size: (max_packet_size as usize).saturating_add(64 * 1024),
        },
    }
}

/// Bind a TCP listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The task of every idle connection is this future: keep it small
    /// (`cargo test --release -p fogg-broker --lib task -- --nocapture`
    /// prints the figure that counts).
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(serve_socket);
        println!("connection task future: {size} bytes");
        assert!(size <= 1024, "the connection task future is {size} bytes");
    }
}
