//! One accepted connection at a time through a real `Acceptor` on
//! 127.0.0.1:0, and the client ends of TLS and WebSocket.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fogg_transport::{Acceptor, ConnectionMeta, Settings, Stream, TransportError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream as ClientTls;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub const WAIT: Duration = Duration::from_secs(10);

pub type Accepted = Result<(Stream, ConnectionMeta), TransportError>;

/// A listener whose every connection goes through `acceptor`; each result
/// is handed over in order.
pub struct Server {
    pub addr: SocketAddr,
    pub acceptor: Arc<Acceptor>,
    results: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    _task: JoinHandle<()>,
}

impl Server {
    pub async fn start(settings: Settings) -> Server {
        let acceptor = Arc::new(Acceptor::new(settings).expect("acceptor"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, results) = tokio::sync::mpsc::unbounded_channel();
        let task = {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, peer)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(acceptor.accept(tcp, peer).await);
                    });
                }
            })
        };
        Server {
            addr,
            acceptor,
            results,
            _task: task,
        }
    }

    /// The next accepted connection (or its error).
    pub async fn next(&mut self) -> Accepted {
        tokio::time::timeout(WAIT, self.results.recv())
            .await
            .expect("a connection result in time")
            .expect("server running")
    }

    pub async fn next_ok(&mut self) -> (Stream, ConnectionMeta) {
        match self.next().await {
            Ok(pair) => pair,
            Err(e) => panic!("accept failed: {e}"),
        }
    }

    pub async fn next_err(&mut self) -> TransportError {
        match self.next().await {
            Ok((_, meta)) => panic!("accepted, expected a refusal: {meta:?}"),
            Err(e) => e,
        }
    }
}

/// Echo everything until EOF.
pub fn echo(stream: Stream) -> JoinHandle<std::io::Result<u64>> {
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let mut total = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                w.shutdown().await?;
                return Ok(total);
            }
            w.write_all(&buf[..n]).await?;
            w.flush().await?;
            total += n as u64;
        }
    })
}

/// Write `data`, read back as many bytes.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) {
    stream.write_all(data).await.unwrap();
    stream.flush().await.unwrap();
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, data);
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientTls<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, config).await
}

pub async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientTls<S>> {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, io)
        .await
}

/// A WebSocket client upgrade on `io`, offering `protocols`.
pub async fn ws_over<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    url: &str,
    protocols: &str,
) -> Result<WebSocketStream<S>, tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    tokio_tungstenite::client_async(request, io)
        .await
        .map(|(ws, _)| ws)
}
