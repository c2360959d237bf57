//! The byte stream a listener hands to the broker.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::settings::Kind;
use crate::ws::WsStream;

/// MQTT bytes over one of the listener kinds: `AsyncRead + AsyncWrite`.
///
/// Plain TCP is the socket itself, with nothing added. The others are boxed
/// so that an idle TCP connection does not carry the size of a TLS session,
/// and are wrapped in [`FlushOnRead`].
#[derive(Debug)]
pub struct Stream {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Tcp(TcpStream),
    Tls(Box<FlushOnRead<TlsStream<TcpStream>>>),
    Ws(Box<FlushOnRead<WsStream<TcpStream>>>),
    Wss(Box<FlushOnRead<WsStream<TlsStream<TcpStream>>>>),
}

impl Stream {
    pub(crate) fn tcp(s: TcpStream) -> Stream {
        Stream {
            inner: Inner::Tcp(s),
        }
    }

    pub(crate) fn tls(s: TlsStream<TcpStream>) -> Stream {
        Stream {
            inner: Inner::Tls(Box::new(FlushOnRead::new(s))),
        }
    }

    pub(crate) fn ws(s: WsStream<TcpStream>) -> Stream {
        Stream {
            inner: Inner::Ws(Box::new(FlushOnRead::new(s))),
        }
    }

    pub(crate) fn wss(s: WsStream<TlsStream<TcpStream>>) -> Stream {
        Stream {
            inner: Inner::Wss(Box::new(FlushOnRead::new(s))),
        }
    }

    pub fn kind(&self) -> Kind {
        match self.inner {
            Inner::Tcp(_) => Kind::Tcp,
            Inner::Tls(_) => Kind::Tls,
            Inner::Ws(_) => Kind::Ws,
            Inner::Wss(_) => Kind::Wss,
        }
    }
}

/// Forward a call to whichever stream this is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match &mut $self.get_mut().inner {
            Inner::Tcp($s) => {
                let $s = Pin::new($s);
                $call
            }
            Inner::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $call
            }
            Inner::Ws($s) => {
                let $s = Pin::new(&mut **$s);
                $call
            }
            Inner::Wss($s) => {
                let $s = Pin::new(&mut **$s);
                $call
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// A stream that keeps written bytes of its own (TLS records, WebSocket
/// frames) when the socket is full, made to push them out by itself.
///
/// tokio-rustls and tungstenite accept a write and keep what the socket did
/// not take until the next write or flush. A caller that writes and then
/// only waits to read (the broker, once its buffer is empty) would leave
/// those bytes waiting for the next message. So every read first flushes
/// what is pending: a read is always being polled, and the flush registers
/// the task for the socket becoming writable.
#[derive(Debug)]
pub struct FlushOnRead<S> {
    inner: S,
    /// Written since the last completed flush.
    dirty: bool,
}

impl<S> FlushOnRead<S> {
    fn new(inner: S) -> Self {
        FlushOnRead {
            inner,
            dirty: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FlushOnRead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.dirty {
            match Pin::new(&mut self.inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.dirty = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Woken when the socket takes more; read meanwhile.
                Poll::Pending => {}
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for FlushOnRead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.dirty = true;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.dirty = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
