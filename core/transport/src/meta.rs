//! What the transport learned about a connection.

use std::net::SocketAddr;

/// Who is on the other end, after PROXY header, TLS and WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionMeta {
    /// The client's address: the one a PROXY header (or, when trusted,
    /// `X-Forwarded-For`) reports, else the socket's peer.
    pub peer: SocketAddr,
    /// The socket's own peer: the proxy when there is one.
    pub socket_peer: SocketAddr,
    /// Our side of the socket.
    pub local: SocketAddr,
    /// The PROXY header, when the listener expects one.
    pub proxy: Option<ProxyInfo>,
    /// The TLS session this broker terminated.
    pub tls: Option<TlsInfo>,
    /// The WebSocket upgrade.
    pub ws: Option<WsInfo>,
}

impl ConnectionMeta {
    /// The client's certificate identity: from our own TLS session, else
    /// from a PROXY v2 header whose proxy verified a client certificate.
    pub fn identity(&self) -> Option<&str> {
        if let Some(tls) = &self.tls {
            return tls.identity.as_deref();
        }
        self.proxy
            .as_ref()
            .and_then(|p| p.tls.as_ref())
            .filter(|t| t.client_cert_verified)
            .and_then(|t| t.common_name.as_deref())
    }
}

/// A TLS session terminated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The IANA name of the cipher suite.
    pub cipher: &'static str,
    /// The server name the client asked for (SNI).
    pub sni: Option<String>,
    /// The verified client certificate's identity (CN or the configured SAN),
    /// when a certificate was presented and has that field.
    pub identity: Option<String>,
    /// Whether the client presented a (verified) certificate at all.
    pub client_cert: bool,
}

/// What a PROXY protocol header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInfo {
    /// 1 or 2.
    pub version: u8,
    /// The client as the proxy saw it; `None` for v1 `UNKNOWN` and v2
    /// `LOCAL` (the proxy's own health checks) or non-IP families.
    pub source: Option<SocketAddr>,
    /// The address the client connected to at the proxy.
    pub destination: Option<SocketAddr>,
    /// v2 `PP2_TYPE_SSL`: the client reached the proxy over TLS.
    pub tls: Option<ProxyTls>,
    /// v2 `PP2_TYPE_AUTHORITY`: the host name the client asked for (SNI).
    pub authority: Option<String>,
}

/// TLS details a proxy passed in PROXY v2 TLVs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyTls {
    /// `PP2_SUBTYPE_SSL_VERSION`, e.g. `TLSv1.3`.
    pub version: Option<String>,
    /// `PP2_SUBTYPE_SSL_CIPHER`.
    pub cipher: Option<String>,
    /// `PP2_SUBTYPE_SSL_CN`: the client certificate's subject CN.
    pub common_name: Option<String>,
    /// `PP2_CLIENT_CERT_CONN` (or `_SESS`) set and `verify` = 0: the proxy
    /// received and verified a client certificate.
    pub client_cert_verified: bool,
}

/// The WebSocket upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsInfo {
    pub path: String,
    /// The subprotocol echoed to the client (`mqtt` or `mqttv3.1`), if it offered one.
    pub subprotocol: Option<String>,
    /// The `X-Forwarded-For` address, when trusted and present.
    pub forwarded_for: Option<std::net::IpAddr>,
}
