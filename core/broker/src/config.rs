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
    /// Messages queued for a connected client beyond its inflight window.
    pub max_online_messages: usize,
    /// Messages queued for a disconnected persistent session.
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
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    pub cafile: Option<PathBuf>,
    pub require_client_cert: bool,
    pub use_identity_as_username: bool,
    /// Most simultaneous connections on this listener; 0 = only the global cap.
    pub max_connections: usize,
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
            max_connections: 0,
        }
    }
}

impl ListenerConfig {
    /// Why this broker cannot serve the listener yet, as (key, reason).
    /// `start()` refuses the same, so `--check` and startup always agree.
    pub fn unsupported(&self) -> Option<(&'static str, String)> {
        if self.kind != ListenerKind::Tcp {
            return Some((
                "kind",
                format!(
                    "listener kind `{}` is not supported yet; use `tcp`",
                    self.kind
                ),
            ));
        }
        if self.proxy_protocol {
            return Some((
                "proxy_protocol",
                "the PROXY protocol is not supported yet; set false".to_owned(),
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
    /// Optional backend caching answers.
    pub cache: String,
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: true,
            chain: Vec::new(),
            cache: String::new(),
            cache_ttl: Duration::from_secs(60),
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
