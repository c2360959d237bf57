//! The one entry point: from an accepted socket to MQTT bytes plus what was
//! learned on the way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::error::{Stage, TransportError};
use crate::meta::ConnectionMeta;
use crate::settings::{Kind, Settings};
use crate::stream::Stream;
use crate::tls::TlsAcceptor;
use crate::{proxy, ws};

/// Turns accepted sockets of one listener into [`Stream`]s.
#[derive(Debug)]
pub struct Acceptor {
    settings: Settings,
    tls: Option<TlsAcceptor>,
}

impl Acceptor {
    /// Check the settings and load the certificates.
    pub fn new(settings: Settings) -> Result<Acceptor, TransportError> {
        if settings.kind.uses_websocket() && !settings.ws.path.starts_with('/') {
            return Err(TransportError::Setting {
                key: "ws_path",
                reason: format!("`{}` must start with `/`", settings.ws.path),
            });
        }
        if settings.handshake_timeout.is_zero() {
            return Err(TransportError::Setting {
                key: "handshake_timeout",
                reason: "must be more than 0".to_owned(),
            });
        }
        let tls = if settings.kind.uses_tls() {
            let Some(tls) = settings.tls.clone() else {
                return Err(TransportError::Setting {
                    key: "certfile",
                    reason: format!("a `{}` listener needs certfile and keyfile", settings.kind),
                });
            };
            Some(TlsAcceptor::new(tls)?)
        } else {
            None
        };
        Ok(Acceptor { settings, tls })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether accepting needs more than the socket (a handshake of some kind).
    pub fn is_plain_tcp(&self) -> bool {
        self.settings.kind == Kind::Tcp && !self.settings.proxy_protocol
    }

    /// Run the listener's handshakes on `tcp` (PROXY header, TLS, WebSocket
    /// upgrade, as configured) within the handshake timeout.
    pub async fn accept(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Stream, ConnectionMeta), TransportError> {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let meta = ConnectionMeta {
            peer,
            socket_peer: peer,
            local,
            proxy: None,
            tls: None,
            ws: None,
        };
        if self.is_plain_tcp() {
            return Ok((Stream::tcp(tcp), meta));
        }
        // Which stage a timeout interrupted, for the log.
        let stage = AtomicU8::new(0);
        let after = self.settings.handshake_timeout;
        match tokio::time::timeout(after, self.handshake(tcp, meta, &stage)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                stage: stage_from(stage.load(Ordering::Relaxed)),
                after,
            }),
        }
    }

    async fn handshake(
        &self,
        mut tcp: TcpStream,
        mut meta: ConnectionMeta,
        stage: &AtomicU8,
    ) -> Result<(Stream, ConnectionMeta), TransportError> {
        if self.settings.proxy_protocol {
            stage.store(Stage::Proxy as u8, Ordering::Relaxed);
            let info = proxy::read_header(&mut tcp).await?;
            if let Some(source) = info.source {
                meta.peer = source;
            }
            meta.proxy = Some(info);
        }
        let stream = match (self.settings.kind, &self.tls) {
            (Kind::Tcp, _) => Stream::tcp(tcp),
            (Kind::Ws, _) => {
                stage.store(Stage::WebSocket as u8, Ordering::Relaxed);
                let (ws, info) = ws::accept(tcp, &self.settings.ws).await?;
                note_forwarded(&mut meta, info);
                Stream::ws(ws)
            }
            (Kind::Tls, Some(tls)) => {
                stage.store(Stage::Tls as u8, Ordering::Relaxed);
                let (stream, info) = tls.accept(tcp).await?;
                meta.tls = Some(info);
                Stream::tls(stream)
            }
            (Kind::Wss, Some(tls)) => {
                stage.store(Stage::Tls as u8, Ordering::Relaxed);
                let (stream, info) = tls.accept(tcp).await?;
                meta.tls = Some(info);
                stage.store(Stage::WebSocket as u8, Ordering::Relaxed);
                let (ws, info) = ws::accept(stream, &self.settings.ws).await?;
                note_forwarded(&mut meta, info);
                Stream::wss(ws)
            }
            // `new` refuses TLS kinds without TLS settings.
            (Kind::Tls | Kind::Wss, None) => {
                return Err(TransportError::Setting {
                    key: "certfile",
                    reason: "missing".to_owned(),
                });
            }
        };
        Ok((stream, meta))
    }

    /// Re-read the certificate files now (SIGHUP). `Ok(false)` when this
    /// listener has no TLS. On error the previous certificates stay in use.
    pub fn reload(&self) -> Result<bool, TransportError> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        let result = tls.reload();
        self.log_reload(&result, "SIGHUP");
        result.map(|()| true)
    }

    /// Re-read the certificate files if they changed since the last load
    /// (logged either way); `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TransportError>> {
        let result = self.tls.as_ref()?.reload_if_changed()?;
        self.log_reload(&result, "files changed");
        Some(result)
    }

    fn log_reload(&self, result: &Result<(), TransportError>, why: &str) {
        match result {
            Ok(()) => {
                tracing::info!(listener = %self.settings.name, "TLS certificates reloaded ({why})")
            }
            Err(e) => tracing::error!(
                listener = %self.settings.name,
                error = %e,
                "TLS certificate reload failed ({why}); still using the previous certificates"
            ),
        }
    }

    /// Poll the certificate files every `every` and reload them when they
    /// change, until `stop` completes. Does nothing for listeners without TLS.
    pub async fn watch_files(self: Arc<Self>, every: Duration, stop: impl Future<Output = ()>) {
        if self.tls.is_none() || every.is_zero() {
            return;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
            let this = self.clone();
            // File reads and key parsing stay off the reactor threads.
            let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
        }
    }
}

fn note_forwarded(meta: &mut ConnectionMeta, info: crate::meta::WsInfo) {
    if let Some(ip) = info.forwarded_for {
        // The header has no port; 0 says "unknown" rather than inventing one.
        meta.peer = SocketAddr::new(ip, 0);
    }
    meta.ws = Some(info);
}

fn stage_from(n: u8) -> Stage {
    match n {
        n if n == Stage::Tls as u8 => Stage::Tls,
        n if n == Stage::WebSocket as u8 => Stage::WebSocket,
        _ => Stage::Proxy,
    }
}
