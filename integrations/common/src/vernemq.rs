//! VerneMQ's database auth layout, shared by the redis, postgres, mysql and
//! mongodb backends: the ACL JSON, the row lookup order, the Redis key, and
//! what a found row means for a CONNECT.
//!
//! ## ACL JSON
//!
//! `publish_acl` and `subscribe_acl` are JSON arrays of objects:
//!
//! ```json
//! [{"pattern": "a/%u/#", "max_qos": 1, "max_payload_size": 128, "allowed_retain": false,
//!   "modifiers": {"topic": "t", "payload": "p", "qos": 0, "retain": false, "mountpoint": "m"}}]
//! [{"pattern": "s/+", "max_qos": 1, "modifiers": [["new/topic", 1]]}]
//! ```
//!
//! `pattern` is required (a valid MQTT filter); `max_qos` defaults to 2,
//! `max_payload_size` to 268435455, `allowed_retain` to true. Publish
//! modifiers take the payload as VerneMQ's database plugins do: a string,
//! used as the payload's bytes. Subscribe modifiers are `[topic, qos]`
//! pairs that replace the subscription. A missing, `null` or empty value is
//! an empty list (nothing allowed).
//!
//! Unknown keys are logged (`warn`) and ignored. Anything else that is wrong
//! (bad JSON, a list that is not an array, an entry without `pattern`, a
//! value of the wrong type or out of range, an invalid filter) is an
//! [`AclError`] for the whole row: the backend logs it and denies the
//! CONNECT. That is what VerneMQ does (its Lua `json.decode` fails and the
//! hook errors), and it is the safe reading: a half-understood ACL is not
//! applied.
//!
//! ## Lookup
//!
//! Rows are keyed by (mountpoint, client_id, username). [`lookup_order`]
//! gives the exact key, then the same key with client id `*`. The first row
//! found decides alone: a wrong password on the exact row is a denial, the
//! `*` row is not tried (so a shared `*` password never unlocks a client that
//! has a row of its own).

use std::future::Future;

use bytes::Bytes;
use fogg_api::{
    AclRules, AuthDecision, BackendError, ConnectInfo, ErrorKind, PublishModifiers, PublishRule,
    QoS, SubscribeRule, SubscriptionRewrite, acl::DEFAULT_MAX_PAYLOAD,
};
use serde_json::{Map, Value};

use crate::passwords::{self, HashError};
use crate::topic::{validate_filter, validate_topic};

/// The client id of a row that matches any client of that username.
pub const ANY_CLIENT_ID: &str = "*";

/// Which list an [`AclError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclList {
    Publish,
    Subscribe,
}

impl AclList {
    pub fn name(self) -> &'static str {
        match self {
            AclList::Publish => "publish_acl",
            AclList::Subscribe => "subscribe_acl",
        }
    }
}

/// Why a stored ACL was refused; names the list and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {reason}", list.name(), index.map(|i| format!("[{i}]")).unwrap_or_default())]
pub struct AclError {
    pub list: AclList,
    /// The entry, when the problem is inside one.
    pub index: Option<usize>,
    pub reason: String,
}

/// A stored ACL list, as the database returns it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AclValue {
    /// NULL / absent.
    #[default]
    Missing,
    /// JSON text (PostgreSQL `::TEXT`, MySQL TEXT).
    Text(String),
    /// Already-decoded JSON (MongoDB documents, the Redis value's fields).
    Json(Value),
}

/// Both lists parsed into rules the broker evaluates.
pub fn parse_acl(publish: &AclValue, subscribe: &AclValue) -> Result<AclRules, AclError> {
    Ok(AclRules {
        publish: parse_publish_acl(publish)?,
        subscribe: parse_subscribe_acl(subscribe)?,
    })
}

fn entries(list: AclList, value: &AclValue) -> Result<Vec<Map<String, Value>>, AclError> {
    let err = |index: Option<usize>, reason: String| AclError {
        list,
        index,
        reason,
    };
    let parsed;
    let value = match value {
        AclValue::Missing => return Ok(Vec::new()),
        AclValue::Text(text) if text.trim().is_empty() => return Ok(Vec::new()),
        AclValue::Text(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| err(None, format!("bad JSON: {e}")))?;
            &parsed
        }
        AclValue::Json(value) => value,
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(map.clone()),
                other => Err(err(
                    Some(i),
                    format!("an entry must be an object, got {}", type_name(other)),
                )),
            })
            .collect(),
        other => Err(err(
            None,
            format!("must be a JSON array, got {}", type_name(other)),
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one entry's fields, remembering which keys were used.
struct Entry<'a> {
    list: AclList,
    index: usize,
    map: &'a Map<String, Value>,
}

impl Entry<'_> {
    fn err(&self, reason: String) -> AclError {
        AclError {
            list: self.list,
            index: Some(self.index),
            reason,
        }
    }

    /// `Some(value)` unless absent or null.
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn pattern(&self) -> Result<String, AclError> {
        match self.get("pattern") {
            Some(Value::String(p)) => {
                validate_filter(p).map_err(|e| self.err(format!("pattern {p:?} {e}")))?;
                Ok(p.clone())
            }
            Some(other) => Err(self.err(format!(
                "pattern must be a string, got {}",
                type_name(other)
            ))),
            None => Err(self.err("pattern is required".to_owned())),
        }
    }

    fn qos(&self, key: &str, value: &Value) -> Result<QoS, AclError> {
        value
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(QoS::from_u8)
            .ok_or_else(|| self.err(format!("{key} must be 0, 1 or 2, got {value}")))
    }

    fn max_qos(&self) -> Result<QoS, AclError> {
        self.get("max_qos")
            .map_or(Ok(QoS::ExactlyOnce), |v| self.qos("max_qos", v))
    }

    fn warn_unknown(&self, known: &[&str], map: &Map<String, Value>, what: &str) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            tracing::warn!(
                list = self.list.name(),
                index = self.index,
                key = %key,
                "unknown key in a VerneMQ ACL {what}; ignored"
            );
        }
    }
}

const PUBLISH_KEYS: [&str; 5] = [
    "pattern",
    "max_qos",
    "max_payload_size",
    "allowed_retain",
    "modifiers",
];
const PUBLISH_MODIFIER_KEYS: [&str; 5] = ["topic", "payload", "qos", "retain", "mountpoint"];
const SUBSCRIBE_KEYS: [&str; 3] = ["pattern", "max_qos", "modifiers"];

/// `publish_acl` into publish rules.
pub fn parse_publish_acl(value: &AclValue) -> Result<Vec<PublishRule>, AclError> {
    let list = AclList::Publish;
    entries(list, value)?
        .iter()
        .enumerate()
        .map(|(index, map)| {
            let e = Entry { list, index, map };
            e.warn_unknown(&PUBLISH_KEYS, map, "entry");
            let max_payload_size = match e.get("max_payload_size") {
                None => DEFAULT_MAX_PAYLOAD,
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        e.err(format!(
                            "max_payload_size must be a non-negative integer, got {v}"
                        ))
                    })?,
            };
            let allowed_retain = match e.get("allowed_retain") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(v) => {
                    return Err(e.err(format!("allowed_retain must be true or false, got {v}")));
                }
            };
            Ok(PublishRule {
                pattern: e.pattern()?,
                max_qos: e.max_qos()?,
                max_payload_size,
                allowed_retain,
                modifiers: publish_modifiers(&e)?,
            })
        })
        .collect()
}

fn publish_modifiers(e: &Entry<'_>) -> Result<Option<PublishModifiers>, AclError> {
    let map = match e.get("modifiers") {
        None => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(e.err(format!(
                "modifiers must be an object, got {}",
                type_name(other)
            )));
        }
    };
    e.warn_unknown(&PUBLISH_MODIFIER_KEYS, map, "publish modifier");
    let field = |key: &str| map.get(key).filter(|v| !v.is_null());
    let string = |key: &str| -> Result<Option<String>, AclError> {
        match field(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(e.err(format!("modifiers.{key} must be a string, got {v}"))),
        }
    };
    let topic = string("topic")?;
    if let Some(t) = &topic {
        validate_topic(t).map_err(|err| e.err(format!("modifiers.topic {t:?} {err}")))?;
    }
    let modifiers = PublishModifiers {
        topic,
        payload: string("payload")?.map(Bytes::from),
        qos: field("qos")
            .map(|v| e.qos("modifiers.qos", v))
            .transpose()?,
        retain: match field("retain") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                return Err(e.err(format!("modifiers.retain must be true or false, got {v}")));
            }
        },
        mountpoint: string("mountpoint")?,
    };
    Ok((!modifiers.is_empty()).then_some(modifiers))
}

/// `subscribe_acl` into subscribe rules.
pub fn parse_subscribe_acl(value: &AclValue) -> Result<Vec<SubscribeRule>, AclError> {
    let list = AclList::Subscribe;
    entries(list, value)?
        .iter()
        .enumerate()
        .map(|(index, map)| {
            let e = Entry { list, index, map };
            e.warn_unknown(&SUBSCRIBE_KEYS, map, "entry");
            Ok(SubscribeRule {
                pattern: e.pattern()?,
                max_qos: e.max_qos()?,
                modifiers: subscribe_modifiers(&e)?,
            })
        })
        .collect()
}

fn subscribe_modifiers(e: &Entry<'_>) -> Result<Option<Vec<SubscriptionRewrite>>, AclError> {
    let items = match e.get("modifiers") {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(e.err(format!(
                "modifiers must be a list of [topic, qos] pairs, got {}",
                type_name(other)
            )));
        }
    };
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_array().map(Vec::as_slice) {
            Some([Value::String(filter), qos]) => {
                validate_filter(filter)
                    .map_err(|err| e.err(format!("modifiers[{i}] topic {filter:?} {err}")))?;
                Ok(SubscriptionRewrite {
                    filter: filter.clone(),
                    qos: e.qos(&format!("modifiers[{i}] qos"), qos)?,
                })
            }
            _ => Err(e.err(format!(
                "modifiers[{i}] must be a [topic, qos] pair, got {item}"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

// ---------------------------------------------------------------------------
// Keys and lookup.

/// The identity a row is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub mountpoint: String,
    pub client_id: String,
    pub username: String,
}

impl RowKey {
    pub fn new(
        mountpoint: impl Into<String>,
        client_id: impl Into<String>,
        username: impl Into<String>,
    ) -> RowKey {
        RowKey {
            mountpoint: mountpoint.into(),
            client_id: client_id.into(),
            username: username.into(),
        }
    }

    /// Whether this is the `*` fallback key.
    pub fn is_any_client(&self) -> bool {
        self.client_id == ANY_CLIENT_ID
    }

    /// VerneMQ's Redis key: the compact JSON array
    /// `["<mountpoint>","<client_id>","<username>"]`, escaped as JSON.
    pub fn redis_key(&self) -> String {
        redis_key(&self.mountpoint, &self.client_id, &self.username)
    }
}

/// VerneMQ's Redis key for a row: `["<mountpoint>","<client_id>","<username>"]`.
pub fn redis_key(mountpoint: &str, client_id: &str, username: &str) -> String {
    // Serializing an array of strings cannot fail; the fallback is unreachable
    // but keeps this function total.
    serde_json::to_string(&[mountpoint, client_id, username]).unwrap_or_default()
}

/// The keys to try, in order: the exact one, then client id `*` (once, when
/// the client id is itself `*`).
pub fn lookup_order(mountpoint: &str, client_id: &str, username: &str) -> Vec<RowKey> {
    let exact = RowKey::new(mountpoint, client_id, username);
    if exact.is_any_client() {
        return vec![exact];
    }
    let any = RowKey::new(mountpoint, ANY_CLIENT_ID, username);
    vec![exact, any]
}

/// Fetch rows in [`lookup_order`] until one is found.
pub async fn find_row<T, F, Fut>(
    mountpoint: &str,
    client_id: &str,
    username: &str,
    mut fetch: F,
) -> Result<Option<(RowKey, T)>, BackendError>
where
    F: FnMut(RowKey) -> Fut,
    Fut: Future<Output = Result<Option<T>, BackendError>>,
{
    for key in lookup_order(mountpoint, client_id, username) {
        if let Some(row) = fetch(key.clone()).await? {
            return Ok(Some((key, row)));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// What a row means.

/// The password part of a found row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// A hash to check in the broker (bcrypt, `$6$`, ...).
    Hash(String),
    /// The database already compared (PostgreSQL `crypt`, MySQL `sha2`, ...).
    Checked { matches: bool },
    /// NULL / absent / empty.
    Missing,
}

/// A row found by [`find_row`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmqRow {
    pub password: StoredPassword,
    pub publish_acl: AclValue,
    pub subscribe_acl: AclValue,
}

/// The username and password of a CONNECT, when it has both. Only such
/// CONNECTs can succeed through VerneMQ's database layout; for the others a
/// backend answers [`AuthDecision::Next`].
pub fn credentials(info: &ConnectInfo) -> Option<(&str, &[u8])> {
    Some((info.username.as_deref()?, info.password.as_deref()?))
}

/// The answer for a CONNECT given the row found for it:
/// * no username or no password in the CONNECT, or no row: `Next`;
/// * a row without a password, a wrong password, an unreadable hash or ACL:
///   `Deny` (the last three logged with the backend, the row's key and the
///   cause; never the password or the whole hash);
/// * else `Allow` with the row's ACL.
///
/// Hashes are checked off the reactor ([`passwords::verify`]).
pub async fn decide(
    backend: &str,
    info: &ConnectInfo,
    found: Option<(RowKey, VmqRow)>,
) -> Result<AuthDecision, BackendError> {
    let Some((_, password)) = credentials(info) else {
        return Ok(AuthDecision::Next);
    };
    let Some((key, row)) = found else {
        return Ok(AuthDecision::Next);
    };
    let log = |cause: &dyn std::fmt::Display, what: &str| {
        tracing::warn!(
            backend,
            mountpoint = %key.mountpoint,
            client_id = %key.client_id,
            username = %key.username,
            cause = %cause,
            "{what}; CONNECT denied"
        );
    };
    match &row.password {
        StoredPassword::Missing => {
            log(&"no password stored", "row without a password");
            return Ok(AuthDecision::Deny);
        }
        StoredPassword::Checked { matches: false } => return Ok(AuthDecision::Deny),
        StoredPassword::Checked { matches: true } => {}
        StoredPassword::Hash(hash) => match passwords::verify(password, hash).await {
            Ok(true) => {}
            Ok(false) => return Ok(AuthDecision::Deny),
            Err(HashError::Task(e)) => {
                return Err(BackendError::new(
                    ErrorKind::Internal,
                    backend,
                    "authenticate",
                    format!("password check: {e}"),
                ));
            }
            Err(HashError::Empty) => {
                log(&"no password stored", "row without a password");
                return Ok(AuthDecision::Deny);
            }
            Err(e) => {
                log(&e, "unusable password hash");
                return Ok(AuthDecision::Deny);
            }
        },
    }
    match parse_acl(&row.publish_acl, &row.subscribe_acl) {
        Ok(rules) => Ok(AuthDecision::allow_with(rules)),
        Err(e) => {
            log(&e, "malformed ACL");
            Ok(AuthDecision::Deny)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_api::ProtocolVersion;
    use serde_json::json;

    fn text(s: &str) -> AclValue {
        AclValue::Text(s.to_owned())
    }

    #[test]
    fn every_publish_key() {
        let rules = parse_publish_acl(&text(
            r#"[{"pattern":"a/%u/#","max_qos":1,"max_payload_size":128,"allowed_retain":false,
                 "modifiers":{"topic":"t/x","payload":"p","qos":0,"retain":true,"mountpoint":"m"}}]"#,
        ))
        .unwrap();
        assert_eq!(
            rules,
            vec![PublishRule {
                pattern: "a/%u/#".to_owned(),
                max_qos: QoS::AtLeastOnce,
                max_payload_size: 128,
                allowed_retain: false,
                modifiers: Some(PublishModifiers {
                    topic: Some("t/x".to_owned()),
                    payload: Some(Bytes::from_static(b"p")),
                    qos: Some(QoS::AtMostOnce),
                    retain: Some(true),
                    mountpoint: Some("m".to_owned()),
                }),
            }]
        );
    }

    #[test]
    fn defaults() {
        let rules = parse_acl(
            &AclValue::Json(json!([{"pattern": "p"}])),
            &AclValue::Json(json!([{"pattern": "s/#"}])),
        )
        .unwrap();
        assert_eq!(rules.publish, vec![PublishRule::pattern("p")]);
        assert_eq!(rules.publish[0].max_payload_size, 268_435_455);
        assert_eq!(rules.subscribe, vec![SubscribeRule::pattern("s/#")]);
        // Explicit nulls are defaults too.
        let rules = parse_publish_acl(&AclValue::Json(json!([
            {"pattern": "p", "max_qos": null, "allowed_retain": null, "modifiers": null}
        ])))
        .unwrap();
        assert_eq!(rules, vec![PublishRule::pattern("p")]);
    }

    #[test]
    fn subscribe_modifiers() {
        let rules = parse_subscribe_acl(&text(
            r#"[{"pattern":"r","max_qos":1,"modifiers":[["x/y",0],["x/#",2]]}]"#,
        ))
        .unwrap();
        assert_eq!(rules[0].max_qos, QoS::AtLeastOnce);
        assert_eq!(
            rules[0].modifiers,
            Some(vec![
                SubscriptionRewrite {
                    filter: "x/y".to_owned(),
                    qos: QoS::AtMostOnce
                },
                SubscriptionRewrite {
                    filter: "x/#".to_owned(),
                    qos: QoS::ExactlyOnce
                },
            ])
        );
    }

    #[test]
    fn missing_null_and_empty_are_empty_lists() {
        for value in [
            AclValue::Missing,
            AclValue::Json(Value::Null),
            text("null"),
            text(""),
            text("  "),
            text("[]"),
        ] {
            assert_eq!(parse_publish_acl(&value).unwrap(), vec![], "{value:?}");
            assert_eq!(parse_subscribe_acl(&value).unwrap(), vec![], "{value:?}");
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let rules = parse_publish_acl(&AclValue::Json(json!([
            {"pattern": "p", "colour": "blue", "modifiers": {"qos": 1, "shape": 3}}
        ])))
        .unwrap();
        assert_eq!(rules[0].pattern, "p");
        assert_eq!(
            rules[0].modifiers.as_ref().unwrap().qos,
            Some(QoS::AtLeastOnce)
        );
        let rules =
            parse_subscribe_acl(&AclValue::Json(json!([{"pattern": "s", "extra": [1]}]))).unwrap();
        assert_eq!(rules, vec![SubscribeRule::pattern("s")]);
    }

    #[test]
    fn malformed_input_is_an_error_naming_list_and_entry() {
        let publish_cases = [
            (r#"[{"pattern":"a"},"#, "publish_acl: bad JSON"),
            (
                r#"{"pattern":"a"}"#,
                "publish_acl: must be a JSON array, got an object",
            ),
            (r#""a""#, "publish_acl: must be a JSON array, got a string"),
            (
                r#"[1]"#,
                "publish_acl[0]: an entry must be an object, got a number",
            ),
            (
                r#"[{"pattern":"a"},{}]"#,
                "publish_acl[1]: pattern is required",
            ),
            (
                r#"[{"pattern":5}]"#,
                "publish_acl[0]: pattern must be a string",
            ),
            (
                r#"[{"pattern":""}]"#,
                "publish_acl[0]: pattern \"\" [MQTT-4.7.3-1] topic filter is empty",
            ),
            (
                r#"[{"pattern":"a/#/b"}]"#,
                "publish_acl[0]: pattern \"a/#/b\"",
            ),
            (
                r#"[{"pattern":"a","max_qos":3}]"#,
                "publish_acl[0]: max_qos must be 0, 1 or 2, got 3",
            ),
            (
                r#"[{"pattern":"a","max_qos":"1"}]"#,
                "max_qos must be 0, 1 or 2",
            ),
            (
                r#"[{"pattern":"a","max_qos":1.5}]"#,
                "max_qos must be 0, 1 or 2",
            ),
            (
                r#"[{"pattern":"a","max_payload_size":-1}]"#,
                "max_payload_size must be a non-negative integer",
            ),
            (
                r#"[{"pattern":"a","allowed_retain":"yes"}]"#,
                "allowed_retain must be true or false",
            ),
            (
                r#"[{"pattern":"a","modifiers":[]}]"#,
                "modifiers must be an object",
            ),
            (
                r#"[{"pattern":"a","modifiers":{"topic":"x/+"}}]"#,
                "modifiers.topic \"x/+\"",
            ),
            (
                r#"[{"pattern":"a","modifiers":{"payload":1}}]"#,
                "modifiers.payload must be a string",
            ),
            (
                r#"[{"pattern":"a","modifiers":{"qos":7}}]"#,
                "modifiers.qos must be 0, 1 or 2",
            ),
            (
                r#"[{"pattern":"a","modifiers":{"retain":1}}]"#,
                "modifiers.retain must be true or false",
            ),
        ];
        for (input, expected) in publish_cases {
            let e = parse_publish_acl(&text(input)).unwrap_err();
            assert!(e.to_string().contains(expected), "{input}: {e}");
        }
        let subscribe_cases = [
            (
                r#"[{"max_qos":1}]"#,
                "subscribe_acl[0]: pattern is required",
            ),
            (
                r#"[{"pattern":"a","modifiers":{"x":1}}]"#,
                "modifiers must be a list of [topic, qos] pairs",
            ),
            (
                r#"[{"pattern":"a","modifiers":[["x"]]}]"#,
                "modifiers[0] must be a [topic, qos] pair",
            ),
            (
                r#"[{"pattern":"a","modifiers":[["x",3]]}]"#,
                "modifiers[0] qos must be 0, 1 or 2",
            ),
            (
                r#"[{"pattern":"a","modifiers":[[1,1]]}]"#,
                "modifiers[0] must be a [topic, qos] pair",
            ),
            (
                r#"[{"pattern":"a","modifiers":[["a#",1]]}]"#,
                "modifiers[0] topic \"a#\"",
            ),
        ];
        for (input, expected) in subscribe_cases {
            let e = parse_subscribe_acl(&text(input)).unwrap_err();
            assert!(e.to_string().contains(expected), "{input}: {e}");
        }
    }

    #[test]
    fn redis_keys_are_compact_escaped_json() {
        assert_eq!(redis_key("", "c1", "u"), r#"["","c1","u"]"#);
        assert_eq!(
            RowKey::new("m", "*", "a\"b\\c").redis_key(),
            r#"["m","*","a\"b\\c"]"#
        );
        assert_eq!(redis_key("", "ü", "\n"), "[\"\",\"ü\",\"\\n\"]");
    }

    #[test]
    fn lookup_order_is_exact_then_any_client() {
        assert_eq!(
            lookup_order("m", "c", "u"),
            vec![RowKey::new("m", "c", "u"), RowKey::new("m", "*", "u")]
        );
        assert_eq!(
            lookup_order("m", "*", "u"),
            vec![RowKey::new("m", "*", "u")]
        );
    }

    #[tokio::test]
    async fn find_row_stops_at_the_first_row() {
        let mut asked = Vec::new();
        let found = find_row("m", "c", "u", |key| {
            asked.push(key.clone());
            async move { Ok(key.is_any_client().then_some(7)) }
        })
        .await
        .unwrap();
        assert_eq!(found, Some((RowKey::new("m", "*", "u"), 7)));
        assert_eq!(asked.len(), 2);

        let mut calls = 0;
        let found = find_row("m", "c", "u", |_| {
            calls += 1;
            async { Ok(Some(1)) }
        })
        .await
        .unwrap();
        assert_eq!(found.map(|(k, _)| k.client_id), Some("c".to_owned()));
        assert_eq!(calls, 1);
    }

    fn connect(username: Option<&str>, password: Option<&str>) -> ConnectInfo {
        ConnectInfo {
            client_id: "c".to_owned(),
            username: username.map(str::to_owned),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            mountpoint: String::new(),
            peer: ([127, 0, 0, 1], 1).into(),
            listener: "mqtt".to_owned(),
            protocol: ProtocolVersion::V5,
            clean_start: true,
        }
    }

    fn row(password: StoredPassword, publish: &str) -> Option<(RowKey, VmqRow)> {
        Some((
            RowKey::new("", "*", "u"),
            VmqRow {
                password,
                publish_acl: text(publish),
                subscribe_acl: AclValue::Missing,
            },
        ))
    }

    #[tokio::test]
    async fn decide_follows_the_documented_table() {
        let hash = passwords::hash_for_tests(passwords::Scheme::Bcrypt, b"pw").unwrap();
        let good = || row(StoredPassword::Hash(hash.clone()), r#"[{"pattern":"a"}]"#);
        let d = |info, found| async move { decide("db", &info, found).await.unwrap() };

        assert_eq!(
            d(connect(Some("u"), None), good()).await,
            AuthDecision::Next
        );
        assert_eq!(
            d(connect(None, Some("pw")), good()).await,
            AuthDecision::Next
        );
        assert_eq!(
            d(connect(Some("u"), Some("pw")), None).await,
            AuthDecision::Next
        );
        let AuthDecision::Allow(grant) = d(connect(Some("u"), Some("pw")), good()).await else {
            panic!("right password");
        };
        assert_eq!(grant.acl.unwrap().publish, vec![PublishRule::pattern("a")]);
        assert_eq!(
            d(connect(Some("u"), Some("nope")), good()).await,
            AuthDecision::Deny
        );
        for password in [
            StoredPassword::Missing,
            StoredPassword::Hash(String::new()),
            StoredPassword::Hash("$9$what".to_owned()),
            StoredPassword::Checked { matches: false },
        ] {
            assert_eq!(
                d(connect(Some("u"), Some("pw")), row(password.clone(), "[]")).await,
                AuthDecision::Deny,
                "{password:?}"
            );
        }
        assert_eq!(
            d(
                connect(Some("u"), Some("pw")),
                row(StoredPassword::Checked { matches: true }, "[]")
            )
            .await,
            AuthDecision::allow_with(AclRules::default())
        );
        assert_eq!(
            d(
                connect(Some("u"), Some("pw")),
                row(StoredPassword::Hash(hash.clone()), "[{")
            )
            .await,
            AuthDecision::Deny,
            "bad ACL JSON"
        );
    }
}
