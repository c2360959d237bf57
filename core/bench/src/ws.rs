//! MQTT over WebSocket, client side: the upgrade (subprotocol `mqtt`) and
//! the connection as a byte stream.
//!
//! MQTT packets are not aligned with frames [MQTT-6.0.0-2], so reads hand out
//! the payload of binary messages in order and each write becomes one binary
//! frame. tungstenite writes a frame out at once (no write buffer), and a
//! write first finishes flushing the previous frame, so a frame never waits
//! in a buffer for a flush nobody calls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use anyhow::{Context as _, Result, bail};
use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub struct WsClientStream {
    inner: WebSocketStream<TcpStream>,
    /// What is left of the last binary message.
    pending: Bytes,
    /// A frame was handed to tungstenite but not yet all written.
    unflushed: bool,
}

impl WsClientStream {
    /// The HTTP upgrade to `url` (`ws://HOST:PORT/PATH`) asking for the
    /// `mqtt` subprotocol; fails unless the server agrees to it.
    pub async fn connect(url: &str, tcp: TcpStream) -> Result<WsClientStream> {
        let mut request = url
            .into_client_request()
            .with_context(|| format!("WebSocket URL {url}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let config = WebSocketConfig::default().write_buffer_size(0);
        let (inner, response) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .with_context(|| format!("WebSocket upgrade at {url}"))?;
        let agreed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if agreed != Some("mqtt") {
            bail!(
                "WebSocket upgrade at {url}: the server chose subprotocol {agreed:?}, not \"mqtt\""
            );
        }
        Ok(WsClientStream {
            inner,
            pending: Bytes::new(),
            unflushed: false,
        })
    }
}

impl AsyncRead for WsClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "[MQTT-6.0.0-1] the broker sent a text frame; MQTT travels in binary frames",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl AsyncWrite for WsClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        if this.unflushed {
            ready!(Pin::new(&mut this.inner).poll_flush(cx)).map_err(to_io)?;
            this.unflushed = false;
        }
        let mut inner = Pin::new(&mut this.inner);
        ready!(inner.as_mut().poll_ready(cx)).map_err(to_io)?;
        inner
            .as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        match inner.poll_flush(cx) {
            Poll::Ready(r) => r.map_err(to_io)?,
            Poll::Pending => this.unflushed = true,
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx)).map_err(to_io)?;
        self.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx).map_err(to_io)
    }
}

fn to_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
