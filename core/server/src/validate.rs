//! Checks that serde cannot express: cross references between sections,
//! uniqueness, what this build supports. Run after parsing and before any
//! backend is built, so `--check` and startup refuse the same things.

use std::collections::{BTreeMap, BTreeSet};

use fogg_api::{Capabilities, Concern, Registry};
use fogg_broker::Config;

use crate::config_loader::Provenance;
use crate::error::{ConfigError, Key};

/// `[storage] backend` values that are not `[backends.NAME]` instances.
pub const STORAGE_MEMORY: &str = "memory";
pub const STORAGE_EMBEDDED: &str = "embedded";

/// The concerns a store serves; `[storage] backend` needs all three.
const STORAGE_CONCERNS: [Concern; 3] = [Concern::Sessions, Concern::Messages, Concern::Retained];

/// The largest packet MQTT can express (variable byte integer limit).
const MQTT_MAX_PACKET: u32 = 268_435_455;

pub fn check(
    config: &Config,
    provenance: &Provenance,
    registry: &Registry,
) -> Result<(), ConfigError> {
    let err = |key: Key, reason: String| ConfigError::key(provenance.origin(&key), key, reason);

    if !config.bridges.is_empty() {
        return Err(err(
            Key::of(&["bridges"]),
            "bridges are not supported yet; remove the [[bridges]] tables".to_owned(),
        ));
    }
    check_broker(config, &err)?;
    if let Some((key, reason)) = config.overload.invalid() {
        return Err(err(Key::of(&["overload", key]), reason));
    }
    check_listeners(config, &err)?;
    let kinds = check_backends(config, provenance, registry, &err)?;
    check_storage(config, registry, &kinds, &err)?;
    check_auth(config, registry, &kinds, &err)?;
    check_acl(config, &err)
}

fn check_broker(
    config: &Config,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let broker = &config.broker;
    // MQTT 5 makes 0 a protocol error for both values when sent in CONNACK.
    if broker.receive_maximum == 0 {
        return Err(err(
            Key::of(&["broker", "receive_maximum"]),
            "must be at least 1 (MQTT 5 forbids 0)".to_owned(),
        ));
    }
    if broker.max_packet_size == 0 || broker.max_packet_size > MQTT_MAX_PACKET {
        return Err(err(
            Key::of(&["broker", "max_packet_size"]),
            format!(
                "must be between 1 and {MQTT_MAX_PACKET} bytes, got {}",
                broker.max_packet_size
            ),
        ));
    }
    if broker.max_topic_levels == 0 {
        return Err(err(
            Key::of(&["broker", "max_topic_levels"]),
            "must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

fn check_listeners(
    config: &Config,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if config.listeners.is_empty() {
        return Err(err(
            Key::of(&["listeners"]),
            "at least one [[listeners]] table is required".to_owned(),
        ));
    }
    let mut names = BTreeMap::new();
    let mut binds = BTreeMap::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let key = Key::of(&["listeners"]).index(i);
        if listener.name.is_empty() {
            return Err(err(key.field("name"), "must not be empty".to_owned()));
        }
        if let Some(first) = names.insert(listener.name.as_str(), i) {
            return Err(err(
                key.field("name"),
                format!(
                    "duplicate listener name `{}` (also listeners[{first}]); names must be unique",
                    listener.name
                ),
            ));
        }
        // Port 0 asks the OS for a fresh port each time, so it never clashes.
        if listener.bind.port() != 0
            && let Some(first) = binds.insert(listener.bind, i)
        {
            return Err(err(
                key.field("bind"),
                format!(
                    "address {} is already used by listeners[{first}]",
                    listener.bind
                ),
            ));
        }
        if let Some((field, reason)) = listener.unsupported() {
            return Err(err(
                key.field(field),
                format!("listener `{}`: {reason}", listener.name),
            ));
        }
        // Read the certificate and key files as the listener will, so a
        // missing or unparseable file fails `--check` naming it.
        let settings = fogg_broker::transport_settings(listener, config.broker.max_packet_size);
        if let Err(e) = fogg_transport::Acceptor::new(settings) {
            return Err(err(
                key.field(e.config_key().unwrap_or("kind")),
                format!("listener `{}`: {e}", listener.name),
            ));
        }
        if listener.mountpoint.contains(['+', '#', '\0']) {
            return Err(err(
                key.field("mountpoint"),
                "must not contain `+`, `#` or U+0000: it prefixes topic names".to_owned(),
            ));
        }
    }
    Ok(())
}

/// Checks every `[backends.NAME]` and returns each instance's kind.
fn check_backends<'c>(
    config: &'c Config,
    provenance: &Provenance,
    registry: &Registry,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<BTreeMap<&'c str, &'c str>, ConfigError> {
    let mut kinds = BTreeMap::new();
    for (name, table) in &config.backends {
        let key = Key::of(&["backends", name]);
        // Reserved so that `[storage] backend = "memory"` has one meaning.
        if name == STORAGE_MEMORY || name == STORAGE_EMBEDDED {
            return Err(err(
                key,
                format!(
                    "the backend name `{name}` is reserved for the built-in store; choose another name"
                ),
            ));
        }
        let kind = match table.get("kind") {
            Some(toml::Value::String(kind)) => kind.as_str(),
            Some(other) => {
                return Err(err(
                    key.field("kind"),
                    format!("wrong type: found {}, expected a string", other.type_str()),
                ));
            }
            None => {
                // Blame the file holding the table: that is where `kind` goes.
                return Err(ConfigError::key(
                    provenance.origin(&key),
                    key.field("kind"),
                    format!(
                        "missing required key; compiled-in kinds: {}",
                        known_kinds(registry)
                    ),
                ));
            }
        };
        if registry.capabilities(kind).is_none() {
            return Err(err(
                key.field("kind"),
                format!(
                    "unknown backend kind `{kind}`; compiled-in kinds: {}",
                    known_kinds(registry)
                ),
            ));
        }
        kinds.insert(name.as_str(), kind);
    }
    Ok(kinds)
}

fn check_storage(
    config: &Config,
    registry: &Registry,
    kinds: &BTreeMap<&str, &str>,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let key = Key::of(&["storage", "backend"]);
    let backend = config.storage.backend.as_str();
    match backend {
        STORAGE_EMBEDDED => match registry.capabilities(STORAGE_EMBEDDED) {
            Some(_) => Ok(()),
            None => Err(err(
                key,
                "the embedded store is not compiled in (cargo feature `storage-embedded`)"
                    .to_owned(),
            )),
        },
        STORAGE_MEMORY => match registry.capabilities(STORAGE_MEMORY) {
            Some(_) => Ok(()),
            None => Err(err(
                key,
                "the memory store is not compiled in (cargo feature `storage-memory`)".to_owned(),
            )),
        },
        name => {
            let Some(kind) = kinds.get(name) else {
                return Err(err(
                    key,
                    format!(
                        "`{name}` is neither \"memory\", \"embedded\" nor a defined [backends.NAME]{}",
                        defined(kinds)
                    ),
                ));
            };
            let caps = registry.capabilities(kind).unwrap_or(Capabilities(&[]));
            match STORAGE_CONCERNS.iter().find(|c| !caps.serves(**c)) {
                Some(missing) => Err(err(
                    key,
                    format!(
                        "backend `{name}` (kind `{kind}`) cannot serve {missing}; it serves: {}",
                        serves(caps)
                    ),
                )),
                None => Ok(()),
            }
        }
    }
}

fn check_auth(
    config: &Config,
    registry: &Registry,
    kinds: &BTreeMap<&str, &str>,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, name) in config.auth.chain.iter().enumerate() {
        let key = Key::of(&["auth", "chain"]).index(i);
        let Some(kind) = kinds.get(name.as_str()) else {
            return Err(err(
                key,
                format!(
                    "`{name}` is not a defined [backends.NAME]{}",
                    defined(kinds)
                ),
            ));
        };
        if !seen.insert(name) {
            return Err(err(key, format!("`{name}` is listed twice")));
        }
        let caps = registry.capabilities(kind).unwrap_or(Capabilities(&[]));
        if !caps.serves(Concern::Authentication) && !caps.serves(Concern::Authorization) {
            return Err(err(
                key,
                format!(
                    "backend `{name}` (kind `{kind}`) cannot serve {} or {}; it serves: {}",
                    Concern::Authentication,
                    Concern::Authorization,
                    serves(caps)
                ),
            ));
        }
    }
    if config.auth.acl_cache_ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(err(
            Key::of(&["auth", "acl_cache_ttl"]),
            "must be longer than 0s (every PUBLISH would wait on the database); \
             leave it out to keep ACL answers for the connection's life"
                .to_owned(),
        ));
    }
    let cache = &config.auth.cache;
    if !cache.is_empty() {
        let key = Key::of(&["auth", "cache"]);
        let Some(kind) = kinds.get(cache.as_str()) else {
            return Err(err(
                key,
                format!(
                    "`{cache}` is not a defined [backends.NAME]{}",
                    defined(kinds)
                ),
            ));
        };
        let caps = registry.capabilities(kind).unwrap_or(Capabilities(&[]));
        if !caps.serves(Concern::Cache) {
            return Err(err(
                key,
                format!(
                    "backend `{cache}` (kind `{kind}`) cannot serve as {}; it serves: {}",
                    Concern::Cache,
                    serves(caps)
                ),
            ));
        }
    }
    Ok(())
}

fn check_acl(
    config: &Config,
    err: &impl Fn(Key, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (i, rule) in config.acl.rules.iter().enumerate() {
        if let Err(bad) = fogg_codec::topic::validate_topic_filter(&rule.topic) {
            return Err(err(
                Key::of(&["acl", "rules"]).index(i).field("topic"),
                format!(
                    "`{}` is not a valid topic filter: {}",
                    rule.topic, bad.detail
                ),
            ));
        }
    }
    Ok(())
}

fn known_kinds(registry: &Registry) -> String {
    let kinds = registry.kinds();
    if kinds.is_empty() {
        "none (build with backend features)".to_owned()
    } else {
        kinds.join(", ")
    }
}

fn serves(caps: Capabilities) -> String {
    if caps.0.is_empty() {
        return "nothing".to_owned();
    }
    caps.0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (defined: a, b)` or ` (none are defined)`, to append to a reference error.
fn defined(kinds: &BTreeMap<&str, &str>) -> String {
    if kinds.is_empty() {
        " (no [backends.NAME] is defined)".to_owned()
    } else {
        format!(
            " (defined: {})",
            kinds.keys().copied().collect::<Vec<_>>().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::config_loader::load_dir;
    use crate::services::registry;

    /// The error `check` gives for these files, or "" when they are valid.
    fn check_files(files: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let loaded = load_dir(dir.path()).unwrap();
        match check(&loaded.config, &loaded.provenance, &registry()) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(check_files(&[]), "");
    }

    #[test]
    fn listener_names_must_be_unique() {
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\n",
        )]);
        assert!(
            text.contains(
                "l.toml: listeners[1].name: duplicate listener name `a` (also listeners[0])"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_defaulted_key_is_blamed_on_its_table_as_a_default() {
        // Both listeners default their name to "mqtt".
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n",
        )]);
        assert!(
            text.contains("l.toml (key not set there: built-in default): listeners[1].name: duplicate listener name `mqtt`"),
            "{text}"
        );
    }

    #[test]
    fn acl_cache_ttl_is_optional_and_never_zero() {
        assert_eq!(
            check_files(&[("a.toml", "[auth]\nacl_cache_ttl = \"30s\"\n")]),
            ""
        );
        let text = check_files(&[("a.toml", "[auth]\nacl_cache_ttl = \"0s\"\n")]);
        assert!(
            text.contains("a.toml: auth.acl_cache_ttl: must be longer than 0s"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_listener_list_is_refused() {
        let text = check_files(&[("l.toml", "listeners = []\n")]);
        assert!(text.contains("l.toml: listeners: at least one"), "{text}");
    }

    #[test]
    fn the_same_address_twice_is_refused() {
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n\
             [[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:1\"\n",
        )]);
        assert!(
            text.contains("listeners[1].bind: address 127.0.0.1:1 is already used by listeners[0]"),
            "{text}"
        );
    }

    #[test]
    fn tls_listeners_need_their_files() {
        let text = check_files(&[("l.toml", "[[listeners]]\nkind = \"wss\"\n")]);
        assert!(
            text.contains(
                "l.toml (key not set there: built-in default): listeners[0].certfile: listener `mqtt`: a `wss` listener needs certfile (and keyfile)"
            ),
            "{text}"
        );
        // Files are read at check time: the error names the key and the file.
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nkind = \"tls\"\ncertfile = \"/nonexistent/server.pem\"\nkeyfile = \"/nonexistent/server.key\"\n",
        )]);
        assert!(
            text.contains("l.toml: listeners[0].certfile: listener `mqtt`: certfile /nonexistent/server.pem: cannot read: "),
            "{text}"
        );
    }

    #[test]
    fn tls_settings_must_agree() {
        let tls = "[[listeners]]\nkind = \"tls\"\ncertfile = \"c\"\nkeyfile = \"k\"\n";
        let text = check_files(&[("l.toml", &format!("{tls}use_identity_as_username = true\n"))]);
        assert!(
            text.contains("listeners[0].require_client_cert: listener `mqtt`: use_identity_as_username = true needs require_client_cert = true"),
            "{text}"
        );
        let text = check_files(&[("l.toml", &format!("{tls}require_client_cert = true\n"))]);
        assert!(
            text.contains(
                "listeners[0].cafile: listener `mqtt`: require_client_cert = true needs cafile"
            ),
            "{text}"
        );
        let text = check_files(&[("l.toml", "[[listeners]]\ncertfile = \"c\"\n")]);
        assert!(
            text.contains("listeners[0].certfile: listener `mqtt`: only tls and wss listeners use certificates; this one is `tcp`"),
            "{text}"
        );
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nkind = \"ws\"\nuse_identity_as_username = true\n",
        )]);
        assert!(text.contains("listeners[0].use_identity_as_username: listener `mqtt`: a `ws` listener has no client certificates"), "{text}");
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nkind = \"ws\"\nws_path = \"mqtt\"\n",
        )]);
        assert!(
            text.contains("listeners[0].ws_path: listener `mqtt`: `mqtt` must start with `/`"),
            "{text}"
        );
        // Plain ws, and PROXY in front of anything, need nothing more.
        let text = check_files(&[(
            "l.toml",
            "[[listeners]]\nkind = \"ws\"\nproxy_protocol = true\n",
        )]);
        assert_eq!(text, "");
    }

    #[test]
    fn mountpoints_cannot_hold_wildcards() {
        let text = check_files(&[("l.toml", "[[listeners]]\nmountpoint = \"a/#\"\n")]);
        assert!(
            text.contains("listeners[0].mountpoint: must not contain"),
            "{text}"
        );
    }

    #[test]
    fn overload_watermarks_must_be_ordered() {
        let text = check_files(&[(
            "o.toml",
            "[overload]\nqueued_bytes_high = 1000\nqueued_bytes_low = 1000\n",
        )]);
        assert!(
            text.contains("o.toml") && text.contains("overload.queued_bytes_low: must be less"),
            "{text}"
        );
        let text = check_files(&[("o.toml", "[overload]\nrss_high = 10\nrss_low = 20\n")]);
        assert!(text.contains("overload.rss_low"), "{text}");
        // A misspelt key is refused while loading, naming the file and key.
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("o.toml"),
            "[overload]\nqueued_bytes_hi = 10\n",
        )
        .unwrap();
        let text = load_dir(dir.path()).err().unwrap().to_string();
        assert!(
            text.contains("o.toml") && text.contains("overload.queued_bytes_hi"),
            "{text}"
        );
        let ok = check_files(&[(
            "o.toml",
            "[broker]\nmax_message_rate = 100\nmax_byte_rate = 100000\nmax_inflight_messages = 10\n\
             [overload]\nqueued_bytes_high = 1000\nrss_high = 1000000000\n\
             [[listeners]]\nmax_message_rate = 5\nmax_byte_rate = 500\nmax_inflight_messages = 2\n\
             max_online_messages = 10\nmax_offline_messages = 20\n",
        )]);
        assert_eq!(ok, "");
    }

    #[test]
    fn storage_must_name_something_that_exists() {
        let text = check_files(&[("s.toml", "[storage]\nbackend = \"pg\"\n")]);
        assert!(
            text.contains("s.toml: storage.backend: `pg` is neither \"memory\", \"embedded\" nor a defined [backends.NAME]"),
            "{text}"
        );
    }

    #[test]
    fn embedded_storage_is_accepted() {
        let text = check_files(&[("s.toml", "[storage]\nbackend = \"embedded\"\n")]);
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn a_named_memory_backend_can_be_the_store() {
        let text = check_files(&[(
            "s.toml",
            "[storage]\nbackend = \"mem\"\n[backends.mem]\nkind = \"memory\"\n",
        )]);
        assert_eq!(text, "");
    }

    #[test]
    fn unknown_kinds_list_the_compiled_in_ones() {
        let text = check_files(&[(
            "b.toml",
            "[backends.db]\nkind = \"oracle\"\nurl = \"oracle://u:pw@h/db\"\n",
        )]);
        let kinds = crate::services::registry().kinds().join(", ");
        assert!(
            text.contains(&format!(
                "b.toml: backends.db.kind: unknown backend kind `oracle`; compiled-in kinds: {kinds}"
            )),
            "{text}"
        );
    }

    #[test]
    fn kind_must_be_a_present_string() {
        let text = check_files(&[("b.toml", "[backends.x]\nkind = 3\n")]);
        assert!(
            text.contains("backends.x.kind: wrong type: found integer, expected a string"),
            "{text}"
        );
        let text = check_files(&[("b.toml", "[backends.x]\nurl = \"redis://h\"\n")]);
        let kinds = crate::services::registry().kinds().join(", ");
        assert!(
            text.contains(&format!(
                "b.toml: backends.x.kind: missing required key; compiled-in kinds: {kinds}"
            )),
            "{text}"
        );
    }

    #[test]
    fn reserved_backend_names_are_refused() {
        let text = check_files(&[("b.toml", "[backends.memory]\nkind = \"memory\"\n")]);
        assert!(
            text.contains("backends.memory: the backend name `memory` is reserved"),
            "{text}"
        );
    }

    #[test]
    fn the_chain_must_name_defined_backends() {
        let text = check_files(&[("a.toml", "[auth]\nchain = [\"ghost\"]\n")]);
        assert!(text.contains("a.toml: auth.chain[0]: `ghost` is not a defined [backends.NAME] (no [backends.NAME] is defined)"), "{text}");
    }

    #[test]
    fn a_chain_backend_must_serve_auth() {
        let text = check_files(&[(
            "a.toml",
            "[auth]\nchain = [\"mem\"]\n[backends.mem]\nkind = \"memory\"\n",
        )]);
        assert!(
            text.contains("auth.chain[0]: backend `mem` (kind `memory`) cannot serve authentication or authorization (ACL); it serves: session storage"),
            "{text}"
        );
    }

    #[test]
    fn bridges_are_refused_and_the_auth_cache_must_be_a_cache() {
        let text = check_files(&[("b.toml", "[[bridges]]\nname = \"cloud\"\n")]);
        assert!(
            text.contains("b.toml: bridges: bridges are not supported yet"),
            "{text}"
        );
        let text = check_files(&[("a.toml", "[auth]\ncache = \"mc\"\n")]);
        assert!(
            text.contains("a.toml: auth.cache: `mc` is not a defined [backends.NAME]"),
            "{text}"
        );
        let text = check_files(&[(
            "a.toml",
            "[auth]\ncache = \"mem\"\n[backends.mem]\nkind = \"memory\"\n",
        )]);
        assert!(
            text.contains(
                "auth.cache: backend `mem` (kind `memory`) cannot serve as authentication cache"
            ),
            "{text}"
        );
    }

    #[test]
    fn acl_topics_must_be_filters() {
        let text = check_files(&[(
            "acl.toml",
            "[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopic = \"a/#/b\"\n",
        )]);
        assert!(
            text.contains("acl.toml: acl.rules[0].topic: `a/#/b` is not a valid topic filter"),
            "{text}"
        );
    }

    #[test]
    fn broker_limits_are_range_checked() {
        let text = check_files(&[("b.toml", "[broker]\nreceive_maximum = 0\n")]);
        assert!(
            text.contains("b.toml: broker.receive_maximum: must be at least 1"),
            "{text}"
        );
        let text = check_files(&[("b.toml", "[broker]\nmax_packet_size = 268435456\n")]);
        assert!(
            text.contains("broker.max_packet_size: must be between 1 and 268435455"),
            "{text}"
        );
    }
}
