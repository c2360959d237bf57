//! Authorization: static `[[acl.rules]]` first (first match wins), then the
//! backend chain (allow / deny / next). With no rule matching and no chain,
//! everything is allowed, as in mosquitto with no ACL file.

use fogg_api::dynamic::{BoxFuture, DynAuthorizer};
use fogg_api::{BackendError, ClientInfo, Decision, PublishRequest, SubscribeRequest};

use crate::config::{AclAction, AclRule, Permission};
use crate::services::ChainLink;

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Publish,
    Subscribe,
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

    /// Full check of a PUBLISH: static rules, then the chain.
    pub async fn check_publish(
        &self,
        chain: &[ChainLink],
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<bool, BackendError> {
        if let Some(permission) = self.static_decision(client, Action::Publish, request.topic) {
            return Ok(permission == Permission::Allow);
        }
        ask_chain(chain, |authorizer| {
            authorizer.authorize_publish(client, request)
        })
        .await
    }

    /// Full check of one SUBSCRIBE filter.
    pub async fn check_subscribe(
        &self,
        chain: &[ChainLink],
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<bool, BackendError> {
        if let Some(permission) = self.static_decision(client, Action::Subscribe, request.filter) {
            return Ok(permission == Permission::Allow);
        }
        ask_chain(chain, |authorizer| {
            authorizer.authorize_subscribe(client, request)
        })
        .await
    }
}

/// Ask each authorizer of the chain in order until one allows or denies.
/// When every one passes, the request is allowed only if nobody was asked.
async fn ask_chain<'a>(
    chain: &'a [ChainLink],
    ask: impl Fn(&'a dyn DynAuthorizer) -> BoxFuture<'a, Result<Decision, BackendError>>,
) -> Result<bool, BackendError> {
    let mut asked = false;
    for authorizer in chain.iter().filter_map(|link| link.authorizer.as_deref()) {
        asked = true;
        match ask(authorizer).await? {
            Decision::Allow => return Ok(true),
            Decision::Deny => return Ok(false),
            Decision::Next => {}
        }
    }
    Ok(!asked)
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

/// `%u`, `%c`, `%m` substituted where they fill a whole level. A value that is
/// missing or would change the filter's structure makes the rule not apply.
fn substitute(pattern: &str, client: &ClientInfo) -> Option<String> {
    if !pattern.contains('%') {
        return Some(pattern.to_owned());
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
    Some(levels.join("/"))
}

fn covers(pattern: &str, target: &str) -> bool {
    let mut p = pattern.split('/');
    let mut t = target.split('/');
    loop {
        match (p.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
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
