//! A client's access rules, loaded once at CONNECT and evaluated in memory.
//!
//! This is VerneMQ's model (its database backends read `publish_acl` and
//! `subscribe_acl` with the password and keep them until the client goes
//! away), so a PUBLISH never waits on a database. Backends translate their own
//! layout into [`AclRules`]; the broker evaluates them. The type is plain data
//! (serde) so an answer can be cached outside the broker (memcached, Redis).

use std::borrow::Cow;

use bytes::Bytes;
use fogg_codec::QoS;
use serde::{Deserialize, Serialize};

use crate::{ClientInfo, Decision, PublishRequest, SubscribeRequest};

/// VerneMQ's default `max_payload_size` (256 MiB, the MQTT maximum).
pub const DEFAULT_MAX_PAYLOAD: usize = 268_435_455;

/// Every publish and subscribe rule of one client. A request is allowed when
/// some rule matches it and that rule's limits hold; otherwise it is denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AclRules {
    pub publish: Vec<PublishRule>,
    pub subscribe: Vec<SubscribeRule>,
}

/// One entry of `publish_acl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishRule {
    /// An MQTT filter, possibly with `%u`, `%c`, `%m` filling whole levels.
    pub pattern: String,
    #[serde(with = "qos_number")]
    pub max_qos: QoS,
    pub max_payload_size: usize,
    pub allowed_retain: bool,
    /// Applied to an allowed PUBLISH without checking the rules again.
    pub modifiers: Option<PublishModifiers>,
}

/// One entry of `subscribe_acl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeRule {
    pub pattern: String,
    /// A matching subscription is granted at most this QoS.
    #[serde(with = "qos_number")]
    pub max_qos: QoS,
    /// When set, these subscriptions replace the requested one.
    pub modifiers: Option<Vec<SubscriptionRewrite>>,
}

/// What an authorizer changes in an allowed PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishModifiers {
    pub topic: Option<String>,
    pub payload: Option<Bytes>,
    #[serde(default, with = "opt_qos_number")]
    pub qos: Option<QoS>,
    pub retain: Option<bool>,
    pub mountpoint: Option<String>,
}

impl PublishModifiers {
    pub fn is_empty(&self) -> bool {
        *self == PublishModifiers::default()
    }
}

/// One subscription put in place of a requested one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRewrite {
    pub filter: String,
    #[serde(with = "qos_number")]
    pub qos: QoS,
}

/// The answer about one PUBLISH.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishDecision {
    Allow(Option<PublishModifiers>),
    Deny,
    /// "Not mine": ask the next authorizer.
    Next,
}

/// The answer about one SUBSCRIBE filter.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscribeDecision {
    Allow {
        /// The highest QoS granted; the broker grants the lower of this and
        /// the requested QoS.
        max_qos: QoS,
        /// Subscriptions that replace the requested one.
        replace: Option<Vec<SubscriptionRewrite>>,
    },
    Deny,
    Next,
}

impl SubscribeDecision {
    /// Allowed as requested.
    pub fn allow() -> SubscribeDecision {
        SubscribeDecision::Allow {
            max_qos: QoS::ExactlyOnce,
            replace: None,
        }
    }
}

impl From<Decision> for PublishDecision {
    fn from(decision: Decision) -> PublishDecision {
        match decision {
            Decision::Allow => PublishDecision::Allow(None),
            Decision::Deny => PublishDecision::Deny,
            Decision::Next => PublishDecision::Next,
        }
    }
}

impl From<Decision> for SubscribeDecision {
    fn from(decision: Decision) -> SubscribeDecision {
        match decision {
            Decision::Allow => SubscribeDecision::allow(),
            Decision::Deny => SubscribeDecision::Deny,
            Decision::Next => SubscribeDecision::Next,
        }
    }
}

impl AclRules {
    /// Whether no publish rule limits the payload size, so a decision
    /// depends only on the client, the topic, the QoS and the retain flag.
    pub fn payload_unlimited(&self) -> bool {
        self.publish
            .iter()
            .all(|rule| rule.max_payload_size >= DEFAULT_MAX_PAYLOAD)
    }

    /// Rules that allow everything (a superuser).
    pub fn allow_all() -> AclRules {
        AclRules {
            publish: vec![PublishRule::pattern("#")],
            subscribe: vec![SubscribeRule::pattern("#")],
        }
    }

    /// Never [`PublishDecision::Next`]: rules loaded for a client are complete.
    pub fn check_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> PublishDecision {
        self.publish
            .iter()
            .find(|rule| {
                rule.max_qos >= request.qos
                    && request.payload_len <= rule.max_payload_size
                    && (rule.allowed_retain || !request.retain)
                    && substitute(&rule.pattern, client)
                        .is_some_and(|pattern| covers(&pattern, request.topic))
            })
            .map_or(PublishDecision::Deny, |rule| {
                PublishDecision::Allow(rule.modifiers.clone())
            })
    }

    /// Never [`SubscribeDecision::Next`].
    pub fn check_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> SubscribeDecision {
        self.subscribe
            .iter()
            .find(|rule| {
                substitute(&rule.pattern, client)
                    .is_some_and(|pattern| covers(&pattern, request.filter))
            })
            .map_or(SubscribeDecision::Deny, |rule| SubscribeDecision::Allow {
                max_qos: rule.max_qos,
                replace: rule.modifiers.clone(),
            })
    }
}

impl PublishRule {
    /// A rule with VerneMQ's defaults: any QoS, any size, retain allowed.
    pub fn pattern(pattern: impl Into<String>) -> PublishRule {
        PublishRule {
            pattern: pattern.into(),
            max_qos: QoS::ExactlyOnce,
            max_payload_size: DEFAULT_MAX_PAYLOAD,
            allowed_retain: true,
            modifiers: None,
        }
    }
}

impl SubscribeRule {
    pub fn pattern(pattern: impl Into<String>) -> SubscribeRule {
        SubscribeRule {
            pattern: pattern.into(),
            max_qos: QoS::ExactlyOnce,
            modifiers: None,
        }
    }
}

/// `%u`, `%c`, `%m` replaced by username, client id and mountpoint where they
/// fill a whole topic level. A value that is missing or empty, or that would
/// change the filter's structure (`/`, `+`, `#`), makes the rule not apply:
/// `None`. A pattern without `%` comes back borrowed: checking a PUBLISH
/// against static rules allocates nothing.
pub fn substitute<'a>(pattern: &'a str, client: &ClientInfo) -> Option<Cow<'a, str>> {
    if !pattern.contains('%') {
        return Some(Cow::Borrowed(pattern));
    }
    let mut levels = Vec::new();
    for level in pattern.split('/') {
        let value = match level {
            "%u" => Some(client.username.as_deref()?),
            "%c" => Some(client.client_id.as_str()),
            "%m" => Some(client.mountpoint.as_str()),
            _ => None,
        };
        match value {
            Some(v) if v.is_empty() || v.contains(['/', '+', '#']) => return None,
            Some(v) => levels.push(v),
            None => levels.push(level),
        }
    }
    Some(Cow::Owned(levels.join("/")))
}

/// Whether a rule's `pattern` covers `target`, a topic or a subscription
/// filter. The pattern's wildcards cover any level of the target; the
/// target's own wildcards match only themselves (VerneMQ's behaviour), so
/// `a/+` covers a subscription to `a/+`, but `a/b` does not cover `a/#`.
pub fn covers(pattern: &str, target: &str) -> bool {
    let mut p = pattern.split('/');
    let mut t = target.split('/');
    loop {
        match (p.next(), t.next()) {
            (Some("#"), _) => return true,
            // `+` stands for one level; a target's `#` may be many.
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// QoS as the number VerneMQ's JSON uses.
mod qos_number {
    use fogg_codec::QoS;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(qos: &QoS, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*qos as u8)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
        let n = u8::deserialize(d)?;
        QoS::from_u8(n).ok_or_else(|| D::Error::custom(format!("QoS must be 0, 1 or 2, not {n}")))
    }
}

mod opt_qos_number {
    use fogg_codec::QoS;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(qos: &Option<QoS>, s: S) -> Result<S::Ok, S::Error> {
        match qos {
            Some(q) => s.serialize_some(&(*q as u8)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<QoS>, D::Error> {
        match Option::<u8>::deserialize(d)? {
            None => Ok(None),
            Some(n) => QoS::from_u8(n)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("QoS must be 0, 1 or 2, not {n}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_codec::ProtocolVersion;

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: "dev1".to_owned(),
            username: Some("alice".to_owned()),
            mountpoint: String::new(),
            peer: ([127, 0, 0, 1], 1).into(),
            protocol: ProtocolVersion::V3_1_1,
        }
    }

    fn publish(topic: &str, qos: QoS, retain: bool, len: usize) -> PublishRequest<'_> {
        PublishRequest {
            topic,
            qos,
            retain,
            payload_len: len,
        }
    }

    #[test]
    fn a_publish_needs_a_matching_rule_whose_limits_hold() {
        let rules = AclRules {
            publish: vec![
                PublishRule {
                    max_qos: QoS::AtLeastOnce,
                    max_payload_size: 10,
                    allowed_retain: false,
                    ..PublishRule::pattern("a/%u/#")
                },
                PublishRule::pattern("open/+"),
            ],
            subscribe: vec![],
        };
        let c = client();
        let allow = PublishDecision::Allow(None);
        assert_eq!(
            rules.check_publish(&c, &publish("a/alice/x", QoS::AtLeastOnce, false, 10)),
            allow
        );
        assert_eq!(
            rules.check_publish(&c, &publish("a/alice/x", QoS::ExactlyOnce, false, 1)),
            PublishDecision::Deny
        );
        assert_eq!(
            rules.check_publish(&c, &publish("a/alice/x", QoS::AtMostOnce, false, 11)),
            PublishDecision::Deny
        );
        assert_eq!(
            rules.check_publish(&c, &publish("a/alice/x", QoS::AtMostOnce, true, 1)),
            PublishDecision::Deny
        );
        assert_eq!(
            rules.check_publish(&c, &publish("a/bob/x", QoS::AtMostOnce, false, 1)),
            PublishDecision::Deny
        );
        assert_eq!(
            rules.check_publish(&c, &publish("open/x", QoS::ExactlyOnce, true, 99)),
            allow
        );
    }

    #[test]
    fn a_later_rule_can_allow_what_an_earlier_one_limits() {
        let rules = AclRules {
            publish: vec![
                PublishRule {
                    max_qos: QoS::AtMostOnce,
                    ..PublishRule::pattern("t")
                },
                PublishRule::pattern("#"),
            ],
            subscribe: vec![],
        };
        assert_eq!(
            rules.check_publish(&client(), &publish("t", QoS::ExactlyOnce, false, 1)),
            PublishDecision::Allow(None)
        );
    }

    #[test]
    fn a_subscription_is_granted_at_most_the_rules_qos() {
        let rewrite = vec![SubscriptionRewrite {
            filter: "x/y".to_owned(),
            qos: QoS::AtMostOnce,
        }];
        let rules = AclRules {
            publish: vec![],
            subscribe: vec![
                SubscribeRule {
                    max_qos: QoS::AtLeastOnce,
                    ..SubscribeRule::pattern("s/+")
                },
                SubscribeRule {
                    modifiers: Some(rewrite.clone()),
                    ..SubscribeRule::pattern("r")
                },
            ],
        };
        let c = client();
        let sub = |filter| SubscribeRequest {
            filter,
            qos: QoS::ExactlyOnce,
        };
        assert_eq!(
            rules.check_subscribe(&c, &sub("s/+")),
            SubscribeDecision::Allow {
                max_qos: QoS::AtLeastOnce,
                replace: None
            }
        );
        assert_eq!(
            rules.check_subscribe(&c, &sub("s/#")),
            SubscribeDecision::Deny
        );
        assert_eq!(
            rules.check_subscribe(&c, &sub("r")),
            SubscribeDecision::Allow {
                max_qos: QoS::ExactlyOnce,
                replace: Some(rewrite)
            }
        );
    }

    #[test]
    fn only_rules_without_payload_limits_are_payload_unlimited() {
        let mut rules = AclRules::allow_all();
        assert!(rules.payload_unlimited());
        rules.publish.push(PublishRule {
            max_payload_size: 10,
            ..PublishRule::pattern("small/#")
        });
        assert!(!rules.payload_unlimited());
    }

    #[test]
    fn substitution_fills_whole_levels_only() {
        let mut c = client();
        assert_eq!(substitute("%u/%c", &c).as_deref(), Some("alice/dev1"));
        assert_eq!(substitute("x%u/y", &c).as_deref(), Some("x%u/y"));
        c.username = Some("a/b".to_owned());
        assert_eq!(substitute("%u", &c), None);
        c.username = None;
        assert_eq!(substitute("%u", &c), None);
        assert_eq!(
            substitute("%m/x", &c),
            None,
            "an empty mountpoint fills no level"
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rules = AclRules {
            publish: vec![PublishRule {
                modifiers: Some(PublishModifiers {
                    payload: Some(Bytes::from_static(b"p")),
                    qos: Some(QoS::AtLeastOnce),
                    ..PublishModifiers::default()
                }),
                ..PublishRule::pattern("a")
            }],
            subscribe: vec![SubscribeRule::pattern("#")],
        };
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<AclRules>(&json).unwrap(), rules);
    }
}
