//! What a listener asks of its transport.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The bound on PROXY header + TLS handshake + WebSocket upgrade together.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where MQTT over WebSocket is served unless configured otherwise.
pub const DEFAULT_WS_PATH: &str = "/mqtt";

/// The transport of a listener, below the optional PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Kind {
    pub fn uses_tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::Wss)
    }

    pub fn uses_websocket(self) -> bool {
        matches!(self, Kind::Ws | Kind::Wss)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        })
    }
}

/// Everything an [`Acceptor`](crate::Acceptor) needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The listener's name, for logs.
    pub name: String,
    pub kind: Kind,
    /// Expect a PROXY protocol (v1 or v2) header before anything else.
    pub proxy_protocol: bool,
    /// Bound on the PROXY header, TLS handshake and WebSocket upgrade together.
    pub handshake_timeout: Duration,
    /// Required for `tls` and `wss`, ignored otherwise.
    pub tls: Option<TlsSettings>,
    /// Used for `ws` and `wss`.
    pub ws: WsSettings,
}

impl Settings {
    /// Plain TCP, no PROXY header: the default listener.
    pub fn tcp(name: impl Into<String>) -> Settings {
        Settings {
            name: name.into(),
            kind: Kind::Tcp,
            proxy_protocol: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            tls: None,
            ws: WsSettings::default(),
        }
    }
}

/// Certificates and client authentication of a `tls` / `wss` listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM: the server certificate first, then its intermediates.
    pub certfile: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC), unencrypted.
    pub keyfile: PathBuf,
    /// PEM: the CAs client certificates are verified against. Clients may
    /// present a certificate only when this is set.
    pub cafile: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `cafile`). When
    /// false and `cafile` is set, a certificate is optional but, if sent,
    /// must verify.
    pub require_client_cert: bool,
    /// Which part of a client certificate is its identity.
    pub identity_field: IdentityField,
    /// Oldest TLS version accepted.
    pub min_version: TlsVersion,
}

impl TlsSettings {
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            cafile: None,
            require_client_cert: false,
            identity_field: IdentityField::Cn,
            min_version: TlsVersion::Tls12,
        }
    }
}

/// The part of a client certificate taken as the client's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityField {
    /// The subject's Common Name (as mosquitto and VerneMQ do).
    #[default]
    Cn,
    /// The first DNS name of the Subject Alternative Name extension.
    SanDns,
    /// The first e-mail address (rfc822Name) of the SAN extension.
    SanEmail,
    /// The first URI of the SAN extension (SPIFFE IDs live here).
    SanUri,
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityField::Cn => "cn",
            IdentityField::SanDns => "san_dns",
            IdentityField::SanEmail => "san_email",
            IdentityField::SanUri => "san_uri",
        })
    }
}

/// A TLS protocol version, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// The WebSocket endpoint of a `ws` / `wss` listener.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// The request path MQTT is served on; others get 404.
    pub path: String,
    /// Take the client address from the last `X-Forwarded-For` entry. Only
    /// for listeners that a trusted HTTP proxy alone can reach: anyone else
    /// could claim any address.
    pub trust_forwarded_for: bool,
    /// Largest WebSocket message (and frame) accepted, in bytes.
    pub max_message_size: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            path: DEFAULT_WS_PATH.to_owned(),
            trust_forwarded_for: false,
            max_message_size: 16 << 20,
        }
    }
}
