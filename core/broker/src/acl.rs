//! Authorization, in this order: static `[[acl.rules]]` (first match
//! wins), then the rules the authenticating backend handed over at CONNECT
//! (evaluated in memory, never waiting on a database), then the chain's
//! authorizers (allow / deny / next). With no rule matching and nobody to
//! ask, everything is allowed, as in mosquitto with no ACL file.

use fogg_api::acl::{covers, substitute};
use fogg_api::{
    AclRules, BackendError, ClientInfo, PublishDecision, PublishRequest, SubscribeDecision,
    SubscribeRequest,
};

use crate::config::{AclAction, AclRule, Permission};
use crate::services::{ChainLink, OnError};

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Publish,
    Subscribe,
}

/// Whether an answer holds for every PUBLISH to the same topic with the
/// same QoS and retain flag, so the connection may keep it per topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Nothing to ask (no rules, no authorizer): as cheap as a cache.
    Nobody,
    /// Depends on more (the payload size, under the connection's own rules
    /// with a `max_payload_size`): asked every time.
    PerMessage,
    /// Static rules (they see only the client and the topic), the
    /// connection's own rules without payload limits, or an authorizer.
    PerTopic,
}

pub(crate) struct Acl {
    rules: Vec<AclRule>,
}

impl Acl {
    pub fn new(rules: Vec<AclRule>) -> Acl {
        Acl { rules }
    }

    /// The first static rule that applies, if any.
    pub fn static_decision(
        &self,
        client: &ClientInfo,
        action: Action,
        topic_or_filter: &str,
    ) -> Option<Permission> {
        self.rules
            .iter()
            .find(|rule| rule_applies(rule, client, action, topic_or_filter))
            .map(|rule| rule.permission)
    }

    /// Full check of a PUBLISH. The answer is never `Next`.
    pub async fn check_publish(
        &self,
        chain: &[ChainLink],
        own_rules: Option<&AclRules>,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<(PublishDecision, Source), BackendError> {
        if let Some(permission) = self.static_decision(client, Action::Publish, request.topic) {
            let decision = match permission {
                Permission::Allow => PublishDecision::Allow(None),
                Permission::Deny => PublishDecision::Deny,
            };
            return Ok((decision, Source::PerTopic));
        }
        if let Some(rules) = own_rules {
            let source = if rules.payload_unlimited() {
                Source::PerTopic
            } else {
                Source::PerMessage
            };
            return Ok((rules.check_publish(client, request), source));
        }
        let mut asked = false;
        for (link, authorizer) in authorizers(chain) {
            asked = true;
            match authorizer.authorize_publish(client, request).await {
                Ok(PublishDecision::Next) => {}
                Ok(decision) => return Ok((decision, Source::PerTopic)),
                Err(e) => skip_or_fail(link, e)?,
            }
        }
        Ok(if asked {
            (PublishDecision::Deny, Source::PerTopic)
        } else {
            (PublishDecision::Allow(None), Source::Nobody)
        })
    }

    /// Full check of one SUBSCRIBE filter. The answer is never `Next`.
    pub async fn check_subscribe(
        &self,
        chain: &[ChainLink],
        own_rules: Option<&AclRules>,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        if let Some(permission) = self.static_decision(client, Action::Subscribe, request.filter) {
            return Ok(match permission {
                Permission::Allow => SubscribeDecision::allow(),
                Permission::Deny => SubscribeDecision::Deny,
            });
        }
        if let Some(rules) = own_rules {
            return Ok(rules.check_subscribe(client, request));
        }
        let mut asked = false;
        for (link, authorizer) in authorizers(chain) {
            asked = true;
            match authorizer.authorize_subscribe(client, request).await {
                Ok(SubscribeDecision::Next) => {}
                Ok(decision) => return Ok(decision),
                Err(e) => skip_or_fail(link, e)?,
            }
        }
        Ok(if asked {
            SubscribeDecision::Deny
        } else {
            SubscribeDecision::allow()
        })
    }
}

fn authorizers(
    chain: &[ChainLink],
) -> impl Iterator<Item = (&ChainLink, &dyn fogg_api::dynamic::DynAuthorizer)> {
    chain
        .iter()
        .filter_map(|link| Some((link, link.authorizer.as_deref()?)))
}

/// A failing backend either fails the request (the default: fail closed) or,
/// when configured `on_error = "next"`, is passed over.
fn skip_or_fail(link: &ChainLink, error: BackendError) -> Result<(), BackendError> {
    match link.on_error {
        OnError::Fail => Err(error),
        OnError::Next => {
            tracing::warn!(backend = %link.name, error = %error, "authorization backend failed; asking the next");
            Ok(())
        }
    }
}

fn rule_applies(rule: &AclRule, client: &ClientInfo, action: Action, target: &str) -> bool {
    let action_ok = match rule.action {
        AclAction::All => true,
        AclAction::Publish => action == Action::Publish,
        AclAction::Subscribe => action == Action::Subscribe,
    };
    if !action_ok {
        return false;
    }
    if let Some(user) = &rule.username
        && client.username.as_deref() != Some(user.as_str())
    {
        return false;
    }
    if let Some(id) = &rule.client_id
        && client.client_id != *id
    {
        return false;
    }
    let Some(pattern) = substitute(&rule.topic, client) else {
        return false;
    };
    // A subscription filter is checked as if it were a topic: the rule's
    // wildcards cover any level of it, its own wildcards match only themselves
    // (VerneMQ's behaviour), so `a/+` in a rule covers a subscription to `a/+`
    // but `a/b` in a rule does not cover a subscription to `a/#`.
    covers(&pattern, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_codec::ProtocolVersion;

    fn client(user: Option<&str>, id: &str) -> ClientInfo {
        ClientInfo {
            client_id: id.to_owned(),
            username: user.map(str::to_owned),
            mountpoint: String::new(),
            peer: "127.0.0.1:1".parse().unwrap(),
            protocol: ProtocolVersion::V5,
        }
    }

    fn rule(permission: Permission, action: AclAction, topic: &str) -> AclRule {
        AclRule {
            permission,
            action,
            topic: topic.to_owned(),
            username: None,
            client_id: None,
        }
    }

    #[test]
    fn first_match_wins() {
        let acl = Acl::new(vec![
            rule(Permission::Deny, AclAction::Subscribe, "test/nosubscribe"),
            rule(Permission::Allow, AclAction::All, "#"),
        ]);
        let c = client(None, "c");
        assert_eq!(
            acl.static_decision(&c, Action::Subscribe, "test/nosubscribe"),
            Some(Permission::Deny)
        );
        assert_eq!(
            acl.static_decision(&c, Action::Publish, "test/nosubscribe"),
            Some(Permission::Allow)
        );
    }

    #[test]
    fn substitution_fills_whole_levels_only() {
        let acl = Acl::new(vec![rule(Permission::Allow, AclAction::All, "users/%u/#")]);
        assert!(
            acl.static_decision(&client(Some("bob"), "c"), Action::Publish, "users/bob/x")
                .is_some()
        );
        assert!(
            acl.static_decision(&client(Some("bob"), "c"), Action::Publish, "users/eve/x")
                .is_none()
        );
        // No username: the rule cannot apply.
        assert!(
            acl.static_decision(&client(None, "c"), Action::Publish, "users/x")
                .is_none()
        );
        // A username that would smuggle a wildcard in does not apply either.
        assert!(
            acl.static_decision(&client(Some("+"), "c"), Action::Publish, "users/+/x")
                .is_none()
        );
    }

    #[test]
    fn subscription_filters_are_covered_not_intersected() {
        assert!(covers("a/+", "a/+"));
        assert!(covers("a/#", "a/b/#"));
        assert!(!covers("a/b", "a/#"));
        assert!(!covers("a/b", "a/+"));
    }
}
