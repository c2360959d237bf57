//! The ACL file (mosquitto / VerneMQ `vmq_acl` format):
//!
//! ```text
//! # Before any `user` line: rules for anonymous clients.
//! topic read $SYS/#
//!
//! user alice
//! topic readwrite home/alice/#
//! topic sensors/+/temp          # no access word: readwrite
//!
//! # Applies to every client, wherever it stands.
//! pattern write devices/%c/status
//! pattern read users/%u/#
//! ```
//!
//! `read` grants subscribing, `write` publishing, `readwrite` both. `%u`,
//! `%c` (and Fogg's `%m`) are substituted where they fill a whole level, in
//! `pattern` lines and, unlike mosquitto, in `topic` lines too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use fogg_api::{AclRules, PublishRule, SubscribeRule};
use fogg_auth_common::topic::validate_filter;

use crate::ParseError;

/// A parsed ACL file, as ready-made rules per client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AclFile {
    /// Clients without a username: the `topic` lines before the first
    /// `user` line, then every `pattern`.
    anonymous: Arc<AclRules>,
    /// Each `user` section's `topic` lines, then every `pattern`.
    users: HashMap<String, Arc<AclRules>>,
    /// Usernames without a section: every `pattern`.
    others: Arc<AclRules>,
}

impl AclFile {
    /// The rules of a client with this username (`None`: anonymous).
    pub fn rules_for(&self, username: Option<&str>) -> Arc<AclRules> {
        match username {
            None => self.anonymous.clone(),
            Some(name) => self.users.get(name).unwrap_or(&self.others).clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

fn add(rules: &mut AclRules, access: Access, filter: &str) {
    if matches!(access, Access::Write | Access::ReadWrite) {
        rules.publish.push(PublishRule::pattern(filter));
    }
    if matches!(access, Access::Read | Access::ReadWrite) {
        rules.subscribe.push(SubscribeRule::pattern(filter));
    }
}

/// `[read|write|readwrite|deny] <filter>`: the rest of the line after the
/// keyword (a filter may contain spaces).
fn access_and_filter(rest: &str) -> Result<(Access, &str), String> {
    let rest = rest.trim();
    let (word, after) = match rest.split_once(char::is_whitespace) {
        Some((word, after)) => (word, after.trim()),
        None => (rest, ""),
    };
    let access = match word {
        "read" => Access::Read,
        "write" => Access::Write,
        "readwrite" => Access::ReadWrite,
        "deny" => Access::Deny,
        _ => return Ok((Access::ReadWrite, rest)),
    };
    if after.is_empty() {
        return Err(format!("`{word}` needs a topic filter after it"));
    }
    Ok((access, after))
}

/// Parse an ACL file. Blank lines and lines starting with `#` are skipped.
/// An unknown keyword, a `user` line without a name, a `topic` / `pattern`
/// line without a filter or with an invalid one is an error naming the line,
/// and the whole file is refused. `deny` lines (mosquitto 2) are logged and
/// ignored: Fogg's rules only grant, so a `deny` cannot carve an exception
/// out of a broader grant — write the grants narrower instead.
pub fn parse(path: &Path, text: &str) -> Result<AclFile, ParseError> {
    let mut anonymous = AclRules::default();
    let mut patterns = AclRules::default();
    let mut users: HashMap<String, AclRules> = HashMap::new();
    let mut current: Option<String> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |reason: String| ParseError::new(path, line, reason);
        let (keyword, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        match keyword {
            "user" => {
                let name = rest.trim();
                if name.is_empty() {
                    return Err(err("`user` needs a username".to_owned()));
                }
                users.entry(name.to_owned()).or_default();
                current = Some(name.to_owned());
            }
            "topic" | "pattern" => {
                let (access, filter) = access_and_filter(rest).map_err(&err)?;
                if filter.is_empty() {
                    return Err(err(format!("`{keyword}` needs a topic filter")));
                }
                validate_filter(filter).map_err(|e| err(format!("topic filter {filter:?} {e}")))?;
                if access == Access::Deny {
                    tracing::warn!(
                        file = %path.display(),
                        line,
                        filter,
                        "`deny` lines are not supported and are ignored: grant narrower topics instead"
                    );
                    continue;
                }
                let rules = match (keyword, &current) {
                    ("pattern", _) => &mut patterns,
                    (_, None) => &mut anonymous,
                    (_, Some(name)) => users.entry(name.clone()).or_default(),
                };
                add(rules, access, filter);
            }
            other => {
                return Err(err(format!(
                    "unknown keyword `{other}` (expected `topic`, `pattern` or `user`)"
                )));
            }
        }
    }
    let with_patterns = |mut rules: AclRules| {
        rules.publish.extend(patterns.publish.iter().cloned());
        rules.subscribe.extend(patterns.subscribe.iter().cloned());
        Arc::new(rules)
    };
    Ok(AclFile {
        anonymous: with_patterns(anonymous),
        users: users
            .into_iter()
            .map(|(name, rules)| (name, with_patterns(rules)))
            .collect(),
        others: with_patterns(AclRules::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<AclFile, ParseError> {
        parse(Path::new("acl"), text)
    }

    fn patterns(rules: &AclRules) -> (Vec<&str>, Vec<&str>) {
        (
            rules.publish.iter().map(|r| r.pattern.as_str()).collect(),
            rules.subscribe.iter().map(|r| r.pattern.as_str()).collect(),
        )
    }

    #[test]
    fn sections_access_words_and_patterns() {
        let file = p("\
# comment
topic read $SYS/#
topic write anon/w

user alice
topic readwrite home/alice/#
topic sensors/+/temp
  topic read with space/x
user bob
topic write bob/out
pattern read users/%u/#
user alice
topic write alice/again
")
        .unwrap();
        assert_eq!(
            patterns(&file.rules_for(None)),
            (vec!["anon/w"], vec!["$SYS/#", "users/%u/#"])
        );
        assert_eq!(
            patterns(&file.rules_for(Some("alice"))),
            (
                vec!["home/alice/#", "sensors/+/temp", "alice/again"],
                vec![
                    "home/alice/#",
                    "sensors/+/temp",
                    "with space/x",
                    "users/%u/#"
                ]
            )
        );
        assert_eq!(
            patterns(&file.rules_for(Some("bob"))),
            (vec!["bob/out"], vec!["users/%u/#"])
        );
        assert_eq!(
            patterns(&file.rules_for(Some("nobody"))),
            (vec![], vec!["users/%u/#"])
        );
    }

    #[test]
    fn deny_lines_are_ignored() {
        let file = p("user a\ntopic deny secret/#\ntopic read open/#\n").unwrap();
        assert_eq!(
            patterns(&file.rules_for(Some("a"))),
            (vec![], vec!["open/#"])
        );
    }

    #[test]
    fn broken_lines_name_file_and_line() {
        for (text, expected) in [
            ("topic read a\nuser\n", "acl:2: `user` needs a username"),
            (
                "\n\ntopic read\n",
                "acl:3: `read` needs a topic filter after it",
            ),
            ("topic\n", "acl:1: `topic` needs a topic filter"),
            (
                "pattern write a/#/b\n",
                "acl:1: topic filter \"a/#/b\" [MQTT-4.7.1-1] '#' must be the whole last level",
            ),
            (
                "user a\ntopic readwrite x+\n",
                "acl:2: topic filter \"x+\" [MQTT-4.7.1-2] '+' must occupy a whole level",
            ),
            (
                "user a\nallow read x\n",
                "acl:2: unknown keyword `allow` (expected `topic`, `pattern` or `user`)",
            ),
        ] {
            assert_eq!(p(text).unwrap_err().to_string(), expected, "{text:?}");
        }
    }
}
