//! How clients reach the broker: plain TCP, TLS (rustls) or WebSocket
//! (subprotocol `mqtt`), each as one byte stream the MQTT client reads and
//! writes. TCP keeps tokio's own split halves, so plain-TCP figures are what
//! they were before the other transports existed.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, anyhow};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::ws::WsClientStream;

/// What every new connection is wrapped in after its TCP connect.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
    Ws {
        /// `ws://HOST:PORT/PATH`.
        url: String,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls { .. } => "tls",
            Transport::Ws { .. } => "ws",
        }
    }

    /// TLS trusting the PEM CA certificates in `cafile`, checking the
    /// server certificate against `server_name`. With `resume` false every
    /// connection makes a full handshake (no session tickets or IDs kept).
    pub fn tls(cafile: &Path, server_name: &str, resume: bool) -> Result<Transport> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(cafile)
            .with_context(|| format!("reading CA certificates from {}", cafile.display()))?;
        for cert in certs {
            let cert =
                cert.with_context(|| format!("a certificate in {} is bad", cafile.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {} is unusable", cafile.display()))?;
        }
        if roots.is_empty() {
            return Err(anyhow!("no certificate in {}", cafile.display()));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| anyhow!("--tls-server-name {server_name:?}: {e}"))?;
        Ok(Transport::Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Runs this transport's handshake over a connected TCP stream.
    pub async fn wrap(&self, tcp: TcpStream) -> Result<Stream> {
        match self {
            Transport::Tcp => Ok(Stream::Tcp(tcp)),
            Transport::Tls {
                connector,
                server_name,
            } => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Transport::Ws { url } => Ok(Stream::Ws(Box::new(
                WsClientStream::connect(url, tcp).await?,
            ))),
        }
    }
}

/// A connection to the broker, whatever its transport.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Ws(Box<WsClientStream>),
}

impl Stream {
    /// Read and write halves that can be driven by different tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            other => {
                let (r, w) = tokio::io::split(other);
                (ReadHalf::Other(r), WriteHalf::Other(w))
            }
        }
    }
}

pub enum ReadHalf {
    Tcp(OwnedReadHalf),
    Other(tokio::io::ReadHalf<Stream>),
}

pub enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Other(tokio::io::WriteHalf<Stream>),
}

/// Forwards the `AsyncRead` / `AsyncWrite` calls of an enum to its variants.
macro_rules! delegate {
    ($self:ident, $ty:ident { $($variant:ident),* }, $s:ident => $e:expr) => {
        match $self.get_mut() {
            $($ty::$variant($s) => $e,)*
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, Stream { Tcp, Tls, Ws }, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, Stream { Tcp, Tls, Ws }, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, Stream { Tcp, Tls, Ws }, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, Stream { Tcp, Tls, Ws }, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, ReadHalf { Tcp, Other }, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, WriteHalf { Tcp, Other }, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, WriteHalf { Tcp, Other }, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, WriteHalf { Tcp, Other }, s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_name_the_ca_file() {
        let missing = Path::new("/nonexistent/fogg-bench-ca.pem");
        let e = Transport::tls(missing, "localhost", false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/fogg-bench-ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("fogg-bench-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Transport::tls(&empty, "localhost", false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("no certificate in"), "{e}");
    }

    #[test]
    fn names() {
        assert_eq!(Transport::Tcp.name(), "tcp");
        let ws = Transport::Ws {
            url: "ws://127.0.0.1:1/mqtt".into(),
        };
        assert_eq!(ws.name(), "ws");
    }
}
