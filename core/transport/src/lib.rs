//! fogg-transport: everything between an accepted TCP socket and the bytes
//! of MQTT.
//!
//! One [`Acceptor`] per listener turns a freshly accepted `TcpStream` into a
//! [`Stream`] carrying MQTT, running in order whatever the listener asks for:
//!
//! 1. a PROXY protocol v1/v2 header ([`proxy`]), which replaces the peer
//!    address (and may carry the TLS details of a proxy that terminated TLS);
//! 2. a TLS handshake with rustls ([`tls`]), with optional client
//!    certificates and certificates that can be swapped while running;
//! 3. a WebSocket upgrade ([`ws`]) whose binary frames are turned back into
//!    a byte stream.
//!
//! The whole sequence is bounded by one handshake timeout, so a client that
//! stalls costs a bounded time and a bounded amount of memory. The broker's
//! connection code only sees `AsyncRead + AsyncWrite` and a
//! [`ConnectionMeta`]: who the peer is and what it proved.
//!
//! This crate knows nothing of MQTT or of the broker's configuration format.

mod acceptor;
mod error;
mod meta;
pub mod proxy;
mod settings;
mod stream;
#[cfg(feature = "test-pki")]
pub mod test_pki;
pub mod tls;
pub mod ws;

pub use acceptor::Acceptor;
pub use error::{Stage, TransportError};
pub use meta::{ConnectionMeta, ProxyInfo, ProxyTls, TlsInfo, WsInfo};
pub use settings::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_WS_PATH, IdentityField, Kind, Settings, TlsSettings,
    TlsVersion, WsSettings,
};
pub use stream::{FlushOnRead, Stream};
pub use ws::WsStream;
