//! Accepting connections: one task per listener, connection caps, TCP options.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::connection::{self, ListenerInfo};
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
            let info = self.info.clone();
            let broker = self.broker.clone();
            self.tracker.spawn(async move {
                connection::serve(stream, peer, info, broker, over_limit).await;
                drop(slot);
            });
        }
    }
}

/// Bind a TCP listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
