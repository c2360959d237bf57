//! fogg-broker: the MQTT broker core.
//!
//! Listeners accept connections; each connection runs one task that decodes
//! packets, routes PUBLISHes through the [topic index](topics) straight into
//! the subscribers' bounded session queues, and writes what its own session
//! has queued. There is no central router task: publishing connections route
//! their own messages, so throughput scales with cores.

pub mod config;

mod acl;
#[doc(hidden)]
pub mod bench_support;
mod connection;
mod handover;
mod lifecycle;
mod listener;
mod message;
mod metrics;
mod overload;
mod retain;
mod routing;
mod services;
mod session;
mod session_table;
mod state;
mod sys;
mod topics;

pub use config::Config;
pub use fogg_api::InvalidateScope;
pub use listener::transport_settings;
pub use services::{ChainLink, OnError, Services};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::acl::Acl;
use crate::connection::ListenerInfo;
use crate::listener::{AcceptLoop, ConnectionCount};
use crate::state::BrokerState;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listeners[{index}] ({name}): cannot bind {addr}: {source}")]
    Bind {
        index: usize,
        name: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listeners[{index}] ({name}): {reason}")]
    UnsupportedListener {
        index: usize,
        name: String,
        /// The listener key at fault.
        key: &'static str,
        reason: String,
    },
    /// Certificates that cannot be loaded, and the like.
    #[error("listeners[{index}] ({name}): {source}")]
    Transport {
        index: usize,
        name: String,
        #[source]
        source: fogg_transport::TransportError,
    },
    /// `[overload]` watermarks that cannot work.
    #[error("overload.{key}: {reason}")]
    Overload { key: &'static str, reason: String },
    #[error("loading {what} from storage: {source}")]
    Storage {
        what: &'static str,
        #[source]
        source: fogg_api::BackendError,
    },
}

/// A started broker.
pub struct RunningBroker {
    addrs: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    state: Arc<BrokerState>,
    acceptors: Vec<Arc<fogg_transport::Acceptor>>,
}

/// A cheap, cloneable handle on a running broker for control operations
/// (SIGHUP, the admin API).
#[derive(Clone)]
pub struct BrokerHandle {
    state: Arc<BrokerState>,
}

impl BrokerHandle {
    /// Invalidate cached ACL answers. The connections in `scope` drop the
    /// authorizers' answers they keep and fetch the rules their
    /// authenticator handed over at CONNECT again, at their next PUBLISH or
    /// SUBSCRIBE (a client whose credentials are no longer accepted is then
    /// disconnected with 0x87); the shared `[auth] cache` entries of the
    /// scope are emptied (a client id scope empties those of the username the
    /// client is connected with). Subscriptions already granted stay.
    /// Returns the number of connected clients affected.
    pub async fn invalidate_acl(&self, scope: InvalidateScope) -> usize {
        let affected = self.state.invalidate_acl(&scope).await;
        tracing::info!(%scope, connected_clients = affected, "ACL answers invalidated");
        affected
    }
}

impl RunningBroker {
    /// A handle for control operations that outlives borrows of `self`.
    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            state: self.state.clone(),
        }
    }

    /// See [`BrokerHandle::invalidate_acl`].
    pub async fn invalidate_acl(&self, scope: InvalidateScope) -> usize {
        self.handle().invalidate_acl(scope).await
    }

    /// Re-read every TLS listener's certificate files (SIGHUP). New
    /// handshakes use the new certificates, live connections carry on; a
    /// listener whose files fail to load keeps its previous ones (logged
    /// with the file and the cause).
    pub fn reload_certificates(&self) {
        for acceptor in &self.acceptors {
            // The outcome is logged by the acceptor.
            let _ = acceptor.reload();
        }
    }

    /// Each listener's name and the address it is bound to (useful with port 0).
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Stop accepting, disconnect clients (MQTT 5: DISCONNECT 0x8B), persist
    /// what must outlive the process, and return.
    pub async fn shutdown(self) {
        self.state.begin_stop();
        let _ = self.shutdown.send(true);
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        let sessions: Vec<_> = self.state.sessions.lock().values().cloned().collect();
        for session in sessions {
            if session.state.lock().expiry_interval > 0 {
                lifecycle::persist(&self.state, &session).await;
            }
        }
        tracing::info!("broker stopped");
    }
}

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Bind every listener and start serving.
pub async fn start(config: Config, services: Services) -> Result<RunningBroker, StartError> {
    if let Some((key, reason)) = config.overload.invalid() {
        return Err(StartError::Overload { key, reason });
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let max_packet_size = config.broker.max_packet_size;
    let overload = Arc::new(overload::Overload::new(&config.overload));
    let state = Arc::new(BrokerState::new(
        config.broker,
        overload.clone(),
        Acl::new(config.acl.rules),
        &config.auth,
        services,
        shutdown_rx.clone(),
    ));
    lifecycle::restore(&state).await?;

    let tracker = TaskTracker::new();
    let global = Arc::new(ConnectionCount::default());
    let mut addrs = Vec::new();
    let mut loops = Vec::new();
    let mut acceptors = Vec::new();
    for (index, lc) in config.listeners.iter().enumerate() {
        if let Some((key, reason)) = lc.unsupported() {
            return Err(StartError::UnsupportedListener {
                index,
                name: lc.name.clone(),
                key,
                reason,
            });
        }
        // Certificates are loaded before anything is bound, so a bad file
        // stops the start with its name and cause.
        let acceptor =
            fogg_transport::Acceptor::new(listener::transport_settings(lc, max_packet_size))
                .map(Arc::new)
                .map_err(|source| StartError::Transport {
                    index,
                    name: lc.name.clone(),
                    source,
                })?;
        let listener = listener::bind(lc.bind)
            .await
            .map_err(|source| StartError::Bind {
                index,
                name: lc.name.clone(),
                addr: lc.bind,
                source,
            })?;
        let local = listener.local_addr().unwrap_or(lc.bind);
        tracing::debug!(listener = %lc.name, addr = %local, "bound");
        addrs.push((lc.name.clone(), local));
        loops.push(AcceptLoop {
            listener,
            info: Arc::new(ListenerInfo::new(lc, &state)),
            acceptor: acceptor.clone(),
            broker: state.clone(),
            global: global.clone(),
            local: Arc::new(ConnectionCount::default()),
            max_local: lc.max_connections,
            tracker: tracker.clone(),
            shutdown: shutdown_rx.clone(),
        });
        let mut stop = shutdown_rx.clone();
        tokio::spawn(
            acceptor
                .clone()
                .watch_files(lc.cert_reload_interval, async move {
                    let _ = stop.changed().await;
                }),
        );
        acceptors.push(acceptor);
    }
    for accept in loops {
        tokio::spawn(accept.run());
    }
    tokio::spawn(overload.watch_rss(shutdown_rx.clone()));
    tokio::spawn(sys::run(state.clone(), shutdown_rx));
    Ok(RunningBroker {
        addrs,
        shutdown: shutdown_tx,
        tracker,
        state,
        acceptors,
    })
}
