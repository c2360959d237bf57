//! Typed configuration of the broker core.
//!
//! These structs mirror the TOML keys fixed in `shared/docs/contract.md`. Every
//! struct rejects unknown keys, so a typo is an error naming the key rather
//! than a silently ignored setting. Loading and layering the files is the
//! binary's job; this module only says what a valid configuration is.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration.
///
/// `Debug` is written by hand: backend tables carry URLs and passwords,
/// which must never reach a log.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub broker: BrokerSettings,
    pub listeners: Vec<ListenerConfig>,
    pub storage: StorageConfig,
    /// Named backend instances: `[backends.NAME]` with a `kind` and its own keys.
    pub backends: BTreeMap<String, toml::Table>,
    pub auth: AuthConfig,
    pub acl: AclConfig,
    /// `[[bridges]]` tables; checked by the bridge crates once they exist.
    pub bridges: Vec<toml::Table>,
    /// `[overload]`: load shedding watermarks.
    pub overload: OverloadSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker: BrokerSettings::default(),
            listeners: vec![ListenerConfig::default()],
            storage: StorageConfig::default(),
            backends: BTreeMap::new(),
            auth: AuthConfig::default(),
            acl: AclConfig::default(),
            bridges: Vec::new(),
            overload: OverloadSettings::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backends: BTreeMap<&str, Option<&str>> = self
            .backends
            .iter()
            .map(|(name, table)| (name.as_str(), table.get("kind").and_then(|k| k.as_str())))
            .collect();
        f.debug_struct("Config")
            .field("broker", &self.broker)
            .field("listeners", &self.listeners)
            .field("storage", &self.storage)
            .field("backends (name: kind)", &backends)
            .field("auth", &self.auth)
            .field("acl", &self.acl)
            .field("bridges", &self.bridges.len())
            .field("overload", &self.overload)
            .finish()
    }
}

/// `[broker]`: protocol limits and session behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Seconds; > 0 caps the client's keep alive. MQTT 5 clients are told the
    /// cap (Server Keep Alive); MQTT 3.1/3.1.1 clients asking for more (or 0)
    /// are refused with return code 2, as mosquitto does, since they cannot be told.
    pub max_keepalive: u16,
    /// Largest packet accepted, in bytes (MQTT 5 Maximum Packet Size sent in CONNACK).
    pub max_packet_size: u32,
    /// MQTT 5 server Receive Maximum: unacknowledged QoS 1/2 PUBLISHes a client may send.
    pub receive_maximum: u16,
    /// Largest topic alias a client may use (MQTT 5 Topic Alias Maximum); 0 = none.
    pub topic_alias_maximum: u16,
    /// Time a new connection has to send CONNECT.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most simultaneous client connections over all listeners; 0 = unlimited.
    pub max_connections: usize,
    /// Messages queued for a connected client beyond its inflight window; 0 = unlimited.
    pub max_online_messages: usize,
    /// Messages queued for a disconnected persistent session; 0 = unlimited.
    pub max_offline_messages: usize,
    /// Which end of a full queue gives way (see [`QueueType`]).
    pub queue_type: QueueType,
    /// Whether QoS 0 messages are queued for offline sessions (off, as in VerneMQ).
    pub queue_qos0_offline: bool,
    /// Upper bound for a client's Session Expiry Interval in seconds; 0 = no cap.
    pub max_session_expiry: u32,
    /// Whether retained messages are supported (MQTT 5 Retain Available).
    pub retain_available: bool,
    /// How a shared subscription group picks the member that gets a message.
    pub shared_subscription_policy: SharedPolicy,
    /// Deepest topic accepted, in levels.
    pub max_topic_levels: usize,
    /// Interval of `$SYS/broker/...` updates; 0 disables them.
    #[serde(with = "humantime_serde")]
    pub sys_interval: Duration,
    /// Most unacknowledged QoS 1/2 messages sent to one client at a time
    /// (the outgoing inflight window); the client's own Receive Maximum
    /// caps it further. 0 = only the client's Receive Maximum.
    pub max_inflight_messages: u16,
    /// Most PUBLISH packets per second a client may send; 0 = unlimited.
    /// A client over its rate is not dropped: the broker stops reading its
    /// socket until the rate is back within bounds (TCP back-pressure), after
    /// allowing a burst of one second's worth.
    pub max_message_rate: u32,
    /// Most PUBLISH bytes (topic and payload) per second a client may send;
    /// 0 = unlimited. Enforced like `max_message_rate`.
    pub max_byte_rate: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            data_dir: PathBuf::from("./data"),
            max_keepalive: 0,
            max_packet_size: 268_435_455,
            receive_maximum: 65_535,
            topic_alias_maximum: 65_535,
            connect_timeout: Duration::from_secs(10),
            max_connections: 0,
            max_online_messages: 1_000,
            max_offline_messages: 1_000,
            queue_type: QueueType::Fifo,
            queue_qos0_offline: false,
            max_session_expiry: 0,
            retain_available: true,
            shared_subscription_policy: SharedPolicy::RoundRobin,
            max_topic_levels: 128,
            sys_interval: Duration::from_secs(10),
            max_inflight_messages: 0,
            max_message_rate: 0,
            max_byte_rate: 0,
        }
    }
}

/// Queue discipline when a session queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Deliver oldest first; when full, drop the newest message.
    Fifo,
    /// Deliver newest first; when full, drop the oldest message.
    Lifo,
}

/// Balancing policy for shared subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedPolicy {
    Random,
    RoundRobin,
}

/// Listener transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        })
    }
}

/// `[[listeners]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    pub name: String,
    pub kind: ListenerKind,
    pub bind: SocketAddr,
    /// Tenant prefix added invisibly to every topic of this listener's clients.
    pub mountpoint: String,
    /// Expect a PROXY protocol header before MQTT.
    pub proxy_protocol: bool,
    /// tls/wss: PEM server certificate, then its intermediates.
    pub certfile: Option<PathBuf>,
    /// tls/wss: PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC), unencrypted.
    pub keyfile: Option<PathBuf>,
    /// tls/wss: PEM CA certificates that client certificates are verified
    /// against. Without it clients cannot present certificates.
    pub cafile: Option<PathBuf>,
    /// tls/wss: refuse clients without a certificate that `cafile` verifies.
    /// When false and `cafile` is set, a certificate is optional.
    pub require_client_cert: bool,
    /// The client certificate's identity (see `identity_field`) replaces the
    /// CONNECT username, before authentication and ACLs. A verified
    /// certificate counts as authenticated when no backend decides. Needs
    /// `require_client_cert` on tls/wss; with `proxy_protocol` the CN a
    /// PROXY v2 header reports for a certificate the proxy verified is used.
    pub use_identity_as_username: bool,
    /// Which part of a client certificate is its identity: `cn` (subject
    /// Common Name), `san_dns`, `san_email` or `san_uri` (first such SAN).
    /// A PROXY v2 header carries only the CN, so behind a proxy it is the CN.
    pub identity_field: fogg_transport::IdentityField,
    /// tls/wss: oldest TLS version accepted, "1.2" or "1.3".
    pub tls_min_version: fogg_transport::TlsVersion,
    /// tls/wss: how often the certificate files are checked for changes
    /// (and reloaded, without dropping connections); 0 = only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub cert_reload_interval: Duration,
    /// Bound on the PROXY header, TLS handshake and WebSocket upgrade
    /// together; a client that takes longer is disconnected and logged.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// ws/wss: the HTTP path MQTT is served on; other paths get 404.
    pub ws_path: String,
    /// ws/wss: take the client address from the last `X-Forwarded-For`
    /// entry. Only for listeners that nothing but a trusted HTTP proxy can
    /// reach, since any client can send the header.
    pub ws_trust_forwarded_for: bool,
    /// Most simultaneous connections on this listener; 0 = only the global
    /// cap (`[broker] max_connections`). Past either cap a new client gets
    /// CONNACK 0x97 Quota exceeded (MQTT 3.1/3.1.1: 0x03 Server unavailable).
    pub max_connections: usize,
    /// Overrides `[broker] max_message_rate` for this listener's clients.
    pub max_message_rate: Option<u32>,
    /// Overrides `[broker] max_byte_rate` for this listener's clients.
    pub max_byte_rate: Option<u64>,
    /// Overrides `[broker] max_inflight_messages` for this listener's clients.
    pub max_inflight_messages: Option<u16>,
    /// Overrides `[broker] max_online_messages` for this listener's sessions.
    pub max_online_messages: Option<usize>,
    /// Overrides `[broker] max_offline_messages` for this listener's sessions.
    pub max_offline_messages: Option<usize>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            name: "mqtt".to_owned(),
            kind: ListenerKind::Tcp,
            bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
            mountpoint: String::new(),
            proxy_protocol: false,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_client_cert: false,
            use_identity_as_username: false,
            identity_field: fogg_transport::IdentityField::Cn,
            tls_min_version: fogg_transport::TlsVersion::Tls12,
            cert_reload_interval: Duration::from_secs(5),
            handshake_timeout: fogg_transport::DEFAULT_HANDSHAKE_TIMEOUT,
            ws_path: fogg_transport::DEFAULT_WS_PATH.to_owned(),
            ws_trust_forwarded_for: false,
            max_connections: 0,
            max_message_rate: None,
            max_byte_rate: None,
            max_inflight_messages: None,
            max_online_messages: None,
            max_offline_messages: None,
        }
    }
}

impl ListenerConfig {
    /// Why this listener cannot be served as configured, as (key, reason):
    /// settings that are missing or contradict each other. The files
    /// themselves are read when the listener starts (and by `--check`).
    /// `start()` refuses the same, so `--check` and startup always agree.
    pub fn unsupported(&self) -> Option<(&'static str, String)> {
        let tls = matches!(self.kind, ListenerKind::Tls | ListenerKind::Wss);
        let kind = self.kind;
        if tls {
            if self.certfile.is_none() {
                return Some((
                    "certfile",
                    format!("a `{kind}` listener needs certfile (and keyfile)"),
                ));
            }
            if self.keyfile.is_none() {
                return Some((
                    "keyfile",
                    format!("a `{kind}` listener needs keyfile (and certfile)"),
                ));
            }
            if self.require_client_cert && self.cafile.is_none() {
                return Some((
                    "cafile",
                    "require_client_cert = true needs cafile, the CA certificates client certificates are verified against".to_owned(),
                ));
            }
            if self.use_identity_as_username && !self.require_client_cert {
                return Some((
                    "require_client_cert",
                    "use_identity_as_username = true needs require_client_cert = true (and cafile)"
                        .to_owned(),
                ));
            }
        } else {
            let set = [
                ("certfile", self.certfile.is_some()),
                ("keyfile", self.keyfile.is_some()),
                ("cafile", self.cafile.is_some()),
                ("require_client_cert", self.require_client_cert),
            ];
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Some((
                    key,
                    format!("only tls and wss listeners use certificates; this one is `{kind}`"),
                ));
            }
            if self.use_identity_as_username && !self.proxy_protocol {
                return Some((
                    "use_identity_as_username",
                    format!(
                        "a `{kind}` listener has no client certificates; use kind \"tls\" or \"wss\", or proxy_protocol with a proxy that verifies them"
                    ),
                ));
            }
        }
        if matches!(self.kind, ListenerKind::Ws | ListenerKind::Wss)
            && !self.ws_path.starts_with('/')
        {
            return Some(("ws_path", format!("`{}` must start with `/`", self.ws_path)));
        }
        if self.handshake_timeout.is_zero() {
            return Some(("handshake_timeout", "must be more than 0".to_owned()));
        }
        None
    }
}

/// `[overload]`: when the broker sheds load, and when it stops.
///
/// Past a high watermark the broker is overloaded: new connections are
/// refused (CONNACK 0x89 Server busy; MQTT 3.1/3.1.1: 0x03 Server
/// unavailable) and QoS 0 messages for slow consumers (sessions with a
/// backlog, or offline) are dropped. QoS 1/2 messages are never shed. Below
/// the low watermark (of every measure that went past its high one) the
/// broker is back to normal by itself. Every refusal and drop is counted
/// under `$SYS/broker/load/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OverloadSettings {
    /// Bytes of messages (topic and payload, counted per delivery) waiting
    /// in memory in session queues and inflight windows above which the
    /// broker sheds load; 0 = no limit.
    pub queued_bytes_high: u64,
    /// Below this many queued bytes the queue pressure is over. Must be
    /// less than `queued_bytes_high`; 0 = half of it.
    pub queued_bytes_low: u64,
    /// Resident memory of the process (bytes) above which the broker sheds
    /// load; 0 = no limit. Read every `check_interval` (Linux only).
    pub rss_high: u64,
    /// Below this resident memory the memory pressure is over. Must be less
    /// than `rss_high`; 0 = 80% of it.
    pub rss_low: u64,
    /// How often the resident memory is read.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for OverloadSettings {
    fn default() -> Self {
        OverloadSettings {
            queued_bytes_high: 0,
            queued_bytes_low: 0,
            rss_high: 0,
            rss_low: 0,
            check_interval: Duration::from_secs(1),
        }
    }
}

impl OverloadSettings {
    /// The low watermark in force for the queued bytes.
    pub fn queued_low(&self) -> u64 {
        if self.queued_bytes_low == 0 {
            self.queued_bytes_high / 2
        } else {
            self.queued_bytes_low
        }
    }

    /// The low watermark in force for the resident memory.
    pub fn rss_low_in_force(&self) -> u64 {
        if self.rss_low == 0 {
            self.rss_high / 5 * 4
        } else {
            self.rss_low
        }
    }

    /// Why these watermarks cannot work, as (key, reason).
    pub fn invalid(&self) -> Option<(&'static str, String)> {
        if self.queued_bytes_low > 0 && self.queued_bytes_low >= self.queued_bytes_high {
            return Some((
                "queued_bytes_low",
                format!(
                    "must be less than queued_bytes_high ({}), got {}",
                    self.queued_bytes_high, self.queued_bytes_low
                ),
            ));
        }
        if self.rss_low > 0 && self.rss_low >= self.rss_high {
            return Some((
                "rss_low",
                format!(
                    "must be less than rss_high ({}), got {}",
                    self.rss_high, self.rss_low
                ),
            ));
        }
        if self.rss_high > 0 && self.check_interval.is_zero() {
            return Some((
                "check_interval",
                "must be more than 0 when rss_high is set".to_owned(),
            ));
        }
        None
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `embedded` (on disk under `[broker] data_dir`), `memory`, or the name
    /// of a `[backends.NAME]` instance.
    pub backend: String,
    /// For the embedded store: `os` (written to the operating system before
    /// an acknowledgement; survives the process dying) or `fsync` (on disk;
    /// survives power loss).
    pub durability: Durability,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "embedded".to_owned(),
            durability: Durability::Os,
        }
    }
}

/// How far a write must get before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    Os,
    Fsync,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Os => "os",
            Durability::Fsync => "fsync",
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept clients without credentials when no backend decides.
    pub allow_anonymous: bool,
    /// Backend names tried in order; each answers allow / deny / next.
    pub chain: Vec<String>,
    /// Optional backend (memcached or Redis) caching authentication answers
    /// of the chain, shared by every broker that uses it.
    pub cache: String,
    /// How long a cached answer stands. A connect succeeds from the cache
    /// while the database is down for at most this long.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Cache wrong-password answers too (off: a user whose password was just
    /// fixed is never refused from the cache).
    pub cache_denials: bool,
    /// How long a connection keeps its ACL answers (the rules handed over at
    /// CONNECT and the authorizers' answers) before fetching them again.
    /// `None`, the default: for the connection's life, as VerneMQ does (an
    /// invalidation or SIGHUP still refreshes them).
    #[serde(with = "humantime_serde")]
    pub acl_cache_ttl: Option<Duration>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            chain: Vec::new(),
            cache: String::new(),
            cache_ttl: Duration::from_secs(60),
            cache_denials: false,
            acl_cache_ttl: None,
        }
    }
}

/// `[acl]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclConfig {
    /// Static rules, first match wins; evaluated before the backend chain.
    pub rules: Vec<AclRule>,
}

/// One `[[acl.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub permission: Permission,
    pub action: AclAction,
    /// MQTT topic filter; `%u`, `%c`, `%m` are replaced by username, client id, mountpoint.
    pub topic: String,
    /// Only for this username.
    #[serde(default)]
    pub username: Option<String>,
    /// Only for this client id.
    #[serde(default)]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Publish,
    Subscribe,
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_backend_secrets() {
        let mut config = Config::default();
        let table: toml::Table =
            toml::from_str("kind = \"postgres\"\nurl = \"postgres://u:hunter2@h/db\"").unwrap();
        config.backends.insert("db".into(), table);
        let shown = format!("{config:?}");
        assert!(shown.contains("postgres"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
