//! mosquitto-go-auth mode: its ACL rows into [`AclRules`].
//!
//! go-auth stores ACLs as (topic filter, access code) pairs: 1 read,
//! 2 write, 3 readwrite, 4 subscribe; a superuser may do anything. Fogg
//! hands the rules over at CONNECT like VerneMQ's, so they map to:
//!
//! | access | becomes |
//! |---|---|
//! | 1 read, 4 subscribe | a subscribe rule |
//! | 2 write | a publish rule |
//! | 3 readwrite | both |
//! | superuser | [`AclRules::allow_all`] |
//!
//! Fogg checks a subscription when it is made, not each message when it is
//! delivered, so go-auth's "read" (receive) and "subscribe" are one right
//! here. `%u` and `%c` in go-auth topics are substituted by the broker as in
//! every other rule (where they fill a whole level).

use fogg_api::{AclRules, PublishRule, SubscribeRule};

use crate::topic::validate_filter;

/// A go-auth access code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Subscribe,
}

impl Access {
    /// From go-auth's number (`acc` column / field).
    pub fn from_code(code: i64) -> Option<Access> {
        match code {
            1 => Some(Access::Read),
            2 => Some(Access::Write),
            3 => Some(Access::ReadWrite),
            4 => Some(Access::Subscribe),
            _ => None,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            Access::Read => 1,
            Access::Write => 2,
            Access::ReadWrite => 3,
            Access::Subscribe => 4,
        }
    }

    /// The codes whose rows grant this right in a go-auth ACL query
    /// (`$2` of the user-written query): publishing is allowed by write and
    /// readwrite rows, subscribing by read, readwrite and subscribe rows.
    pub fn publish_codes() -> [i64; 2] {
        [2, 3]
    }

    pub fn subscribe_codes() -> [i64; 3] {
        [1, 3, 4]
    }
}

/// One go-auth ACL row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAuthAcl {
    pub topic: String,
    pub access: Access,
}

/// Why a go-auth ACL row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoAuthAclError {
    #[error("unknown access code {0} (go-auth uses 1 read, 2 write, 3 readwrite, 4 subscribe)")]
    Access(i64),
    #[error("topic {topic:?} {reason}")]
    Topic { topic: String, reason: String },
}

impl GoAuthAcl {
    /// A row from its topic and access code, checked.
    pub fn new(topic: impl Into<String>, code: i64) -> Result<GoAuthAcl, GoAuthAclError> {
        let topic = topic.into();
        let access = Access::from_code(code).ok_or(GoAuthAclError::Access(code))?;
        validate_filter(&topic).map_err(|e| GoAuthAclError::Topic {
            topic: topic.clone(),
            reason: e.to_string(),
        })?;
        Ok(GoAuthAcl { topic, access })
    }
}

/// Add one ACL row a user query returned. A row that cannot be read grants
/// nothing and is logged; the others stay (the SQL backends' policy).
pub fn push_row(
    acls: &mut Vec<GoAuthAcl>,
    backend: &str,
    username: &str,
    topic: String,
    code: i64,
) {
    match GoAuthAcl::new(topic, code) {
        Ok(acl) => acls.push(acl),
        Err(e) => tracing::warn!(
            backend,
            username,
            access = code,
            cause = %e,
            "go-auth ACL row ignored"
        ),
    }
}

/// A user's rights from their go-auth rows (own and `common` ones alike).
pub fn acl_rules(superuser: bool, acls: impl IntoIterator<Item = GoAuthAcl>) -> AclRules {
    if superuser {
        return AclRules::allow_all();
    }
    let mut rules = AclRules::default();
    for acl in acls {
        let (publish, subscribe) = match acl.access {
            Access::Write => (true, false),
            Access::Read | Access::Subscribe => (false, true),
            Access::ReadWrite => (true, true),
        };
        if publish {
            rules.publish.push(PublishRule::pattern(acl.topic.clone()));
        }
        if subscribe
            && !rules
                .subscribe
                .iter()
                .any(|r: &SubscribeRule| r.pattern == acl.topic)
        {
            rules.subscribe.push(SubscribeRule::pattern(acl.topic));
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_api::{ClientInfo, ProtocolVersion, PublishDecision, PublishRequest, QoS};

    fn acl(topic: &str, code: i64) -> GoAuthAcl {
        GoAuthAcl::new(topic, code).unwrap()
    }

    #[test]
    fn access_codes_map_to_publish_and_subscribe_rules() {
        let rules = acl_rules(
            false,
            [
                acl("r/#", 1),
                acl("w/#", 2),
                acl("rw/%u", 3),
                acl("s/+", 4),
                acl("r/#", 4),
            ],
        );
        let publish: Vec<_> = rules.publish.iter().map(|r| r.pattern.as_str()).collect();
        let subscribe: Vec<_> = rules.subscribe.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(publish, ["w/#", "rw/%u"]);
        assert_eq!(subscribe, ["r/#", "rw/%u", "s/+"], "duplicates are merged");
        let client = ClientInfo {
            client_id: "c".to_owned(),
            username: Some("bob".to_owned()),
            mountpoint: String::new(),
            peer: ([127, 0, 0, 1], 1).into(),
            protocol: ProtocolVersion::V3_1_1,
        };
        let publish = |topic| PublishRequest {
            topic,
            qos: QoS::ExactlyOnce,
            retain: true,
            payload_len: 10,
        };
        assert_eq!(
            rules.check_publish(&client, &publish("rw/bob")),
            PublishDecision::Allow(None)
        );
        assert_eq!(
            rules.check_publish(&client, &publish("rw/eve")),
            PublishDecision::Deny
        );
    }

    #[test]
    fn superusers_may_do_anything() {
        assert_eq!(acl_rules(true, [acl("x", 1)]), AclRules::allow_all());
    }

    #[test]
    fn bad_rows_are_errors() {
        assert_eq!(GoAuthAcl::new("a", 5), Err(GoAuthAclError::Access(5)));
        assert!(matches!(
            GoAuthAcl::new("a/#/b", 1),
            Err(GoAuthAclError::Topic { .. })
        ));
        for code in 1..=4 {
            assert_eq!(Access::from_code(code).unwrap().code(), code);
        }
        assert_eq!(Access::from_code(0), None);
    }
}
