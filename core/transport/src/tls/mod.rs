//! TLS with rustls: certificates from PEM files, optional client
//! certificates, and a configuration that can be replaced while running.
//!
//! Each handshake takes the configuration current at its start; swapping it
//! (on SIGHUP or when the files change) affects only later handshakes, so
//! live connections are never dropped. A reload that fails keeps the old
//! configuration.

mod identity;
mod load;
mod reload;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::error::{Stage, TransportError};
use crate::meta::TlsInfo;
use crate::settings::TlsSettings;

pub use identity::extract as identity_of;
use reload::Stamp;

/// The TLS side of a listener.
pub struct TlsAcceptor {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<ServerConfig>,
    /// The files as they were when `current` was built (or last tried).
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Load the files; any problem is an error naming the file.
    pub fn new(settings: TlsSettings) -> Result<TlsAcceptor, TransportError> {
        // Explicit, so the choice does not depend on which rustls features
        // other crates in the build happen to enable.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamp = Stamp::of(files(&settings));
        let config = load::server_config(&settings, &provider)?;
        Ok(TlsAcceptor {
            settings,
            provider,
            current: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
        })
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Run the server handshake on `io`.
    pub async fn accept<IO>(&self, io: IO) -> Result<(TlsStream<IO>, TlsInfo), TransportError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.load_full());
        let stream = acceptor.accept(io).await.map_err(|e| {
            // rustls reports its reasons (bad certificate, unknown CA, no
            // shared cipher, ...) as InvalidData; anything else is the socket.
            if e.kind() == std::io::ErrorKind::InvalidData {
                TransportError::handshake(Stage::Tls, e)
            } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                TransportError::handshake(Stage::Tls, "connection closed during the handshake")
            } else {
                TransportError::Io {
                    stage: Stage::Tls,
                    source: e,
                }
            }
        })?;
        let info = self.info(stream.get_ref().1);
        Ok((stream, info))
    }

    fn info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        let leaf = conn.peer_certificates().and_then(|chain| chain.first());
        TlsInfo {
            version,
            cipher,
            sni: conn.server_name().map(str::to_owned),
            identity: leaf.and_then(|der| identity::extract(der, self.settings.identity_field)),
            client_cert: leaf.is_some(),
        }
    }

    /// Re-read the files now. On error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TransportError> {
        let stamp = Stamp::of(files(&self.settings));
        // Recorded even when loading fails: a broken file is reported once
        // per change, not at every poll.
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let config = load::server_config(&self.settings, &self.provider)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// Re-read the files if any changed since the last (attempted) load;
    /// `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TransportError>> {
        let now = Stamp::of(files(&self.settings));
        if *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) == now {
            return None;
        }
        Some(self.reload())
    }
}

fn files(settings: &TlsSettings) -> impl Iterator<Item = &Path> {
    [
        Some(settings.certfile.as_path()),
        Some(settings.keyfile.as_path()),
        settings.cafile.as_deref(),
    ]
    .into_iter()
    .flatten()
}
