//! mosquitto-go-auth mode: its MongoDB backend's collections.
//!
//! ```text
//! users: {username: "u", password: "PBKDF2$sha512$100000$...", superuser: false,
//!         acls: [{topic: "a/#", acc: 1}]}
//! acls:  {topic: "public/#", acc: 3}        (rules for every user)
//! ```
//!
//! `acc`: 1 read, 2 write, 3 readwrite, 4 subscribe (see
//! `fogg_auth_common::gocauth`). Rules are loaded at CONNECT — the user's own
//! and every common one — and handed over in the grant; go-auth asked the
//! database on each check instead. Malformed data is handled as go-auth's
//! decoding does: a user document that does not decode refuses that user
//! (logged); a common rule that does not decode is logged and skipped
//! (rules only grant, so skipping one never widens access).

use fogg_api::{AuthDecision, BackendError, ErrorKind};
use fogg_auth_common::gocauth::{self, GoAuthAcl};
use fogg_auth_common::passwords::{self, HashError};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use crate::MongoAuth;
use crate::convert::{field, integer, type_name};

pub(crate) async fn authenticate(
    auth: &MongoAuth,
    username: &str,
    password: &[u8],
) -> Result<AuthDecision, BackendError> {
    let settings = auth.connection.settings();
    let database = auth.connection.database().await?;
    let users = database.collection::<Document>(&settings.users_collection);
    let Some(user) = users
        .find_one(doc! {"username": username})
        .await
        .map_err(|e| auth.connection.error("find user", e))?
    else {
        return Ok(AuthDecision::Next);
    };
    let user = match User::read(&user) {
        Ok(user) => user,
        Err(cause) => {
            tracing::warn!(backend = %auth.name, username, cause, "malformed go-auth user document; CONNECT denied");
            return Ok(AuthDecision::Deny);
        }
    };
    let Some(hash) = user.password else {
        tracing::warn!(backend = %auth.name, username, "go-auth user without a password; CONNECT denied");
        return Ok(AuthDecision::Deny);
    };
    match passwords::verify(password, &hash).await {
        Ok(true) => {}
        Ok(false) => return Ok(AuthDecision::Deny),
        Err(HashError::Task(e)) => {
            return Err(BackendError::new(
                ErrorKind::Internal,
                auth.name.clone(),
                "authenticate",
                format!("password check: {e}"),
            ));
        }
        Err(e) => {
            tracing::warn!(backend = %auth.name, username, cause = %e, "unusable go-auth password hash; CONNECT denied");
            return Ok(AuthDecision::Deny);
        }
    }
    if user.superuser && settings.superusers {
        return Ok(AuthDecision::allow_with(gocauth::acl_rules(true, [])));
    }
    let mut acls = user.acls;
    let common = database.collection::<Document>(&settings.acls_collection);
    let mut cursor = common
        .find(doc! {})
        .await
        .map_err(|e| auth.connection.error("find common acls", e))?;
    while let Some(document) = cursor
        .try_next()
        .await
        .map_err(|e| auth.connection.error("read common acls", e))?
    {
        match acl_document(&document) {
            Ok(rule) => acls.push(rule),
            Err(cause) => tracing::warn!(
                backend = %auth.name,
                collection = %settings.acls_collection,
                id = %document.get("_id").map(ToString::to_string).unwrap_or_default(),
                cause,
                "malformed go-auth common acl; skipped"
            ),
        }
    }
    Ok(AuthDecision::allow_with(gocauth::acl_rules(false, acls)))
}

/// A go-auth user document, checked.
#[derive(Debug, PartialEq)]
struct User {
    /// `None`: absent, null or empty.
    password: Option<String>,
    superuser: bool,
    acls: Vec<GoAuthAcl>,
}

impl User {
    fn read(document: &Document) -> Result<User, String> {
        let password = match field(document, "password") {
            None => None,
            Some(Bson::String(s)) if s.is_empty() => None,
            Some(Bson::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(format!(
                    "password must be a string, got {}",
                    type_name(other)
                ));
            }
        };
        let superuser = match field(document, "superuser") {
            None => false,
            Some(Bson::Boolean(b)) => *b,
            Some(other) => {
                return Err(format!(
                    "superuser must be true or false, got {}",
                    type_name(other)
                ));
            }
        };
        let acls = match field(document, "acls") {
            None => Vec::new(),
            Some(Bson::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| acl(item).map_err(|e| format!("acls[{i}]: {e}")))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("acls must be an array, got {}", type_name(other))),
        };
        Ok(User {
            password,
            superuser,
            acls,
        })
    }
}

/// One `{topic, acc}` rule.
fn acl(value: &Bson) -> Result<GoAuthAcl, String> {
    match value {
        Bson::Document(entry) => acl_document(entry),
        other => Err(format!("must be a document, got {}", type_name(other))),
    }
}

fn acl_document(entry: &Document) -> Result<GoAuthAcl, String> {
    let topic = match field(entry, "topic") {
        Some(Bson::String(t)) => t.clone(),
        Some(other) => return Err(format!("topic must be a string, got {}", type_name(other))),
        None => return Err("topic is required".to_owned()),
    };
    let acc = match field(entry, "acc") {
        Some(v) => {
            integer(v).ok_or_else(|| format!("acc must be an integer, got {}", type_name(v)))?
        }
        None => return Err("acc is required".to_owned()),
    };
    GoAuthAcl::new(topic, acc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_auth_common::gocauth::Access;

    #[test]
    fn a_user_document() {
        let user = User::read(&doc! {
            "username": "u", "password": "PBKDF2$x", "superuser": false,
            "acls": [{"topic": "a/#", "acc": 1.0}, {"topic": "b", "acc": 3_i64}],
        })
        .unwrap();
        assert_eq!(user.password.as_deref(), Some("PBKDF2$x"));
        assert!(!user.superuser);
        assert_eq!(user.acls[0].access, Access::Read);
        assert_eq!(user.acls[1].access, Access::ReadWrite);
        let bare = User::read(&doc! {"username": "u", "password": ""}).unwrap();
        assert_eq!(
            bare,
            User {
                password: None,
                superuser: false,
                acls: vec![]
            }
        );
    }

    #[test]
    fn malformed_user_documents() {
        for (document, cause) in [
            (
                doc! {"password": 5},
                "password must be a string, got an integer",
            ),
            (
                doc! {"superuser": "yes"},
                "superuser must be true or false, got a string",
            ),
            (
                doc! {"acls": {"topic": "a"}},
                "acls must be an array, got a document",
            ),
            (
                doc! {"acls": ["a"]},
                "acls[0]: must be a document, got a string",
            ),
            (doc! {"acls": [{"acc": 1}]}, "acls[0]: topic is required"),
            (doc! {"acls": [{"topic": "a"}]}, "acls[0]: acc is required"),
            (
                doc! {"acls": [{"topic": "a", "acc": "1"}]},
                "acls[0]: acc must be an integer, got a string",
            ),
            (
                doc! {"acls": [{"topic": "a", "acc": 1.5}]},
                "acls[0]: acc must be an integer, got a double",
            ),
            (
                doc! {"acls": [{"topic": 1, "acc": 1}]},
                "acls[0]: topic must be a string, got an integer",
            ),
        ] {
            assert_eq!(User::read(&document).unwrap_err(), cause);
        }
        assert!(
            User::read(&doc! {"acls": [{"topic": "a", "acc": 9}]})
                .unwrap_err()
                .contains("unknown access code 9")
        );
        assert!(
            User::read(&doc! {"acls": [{"topic": "a/#/b", "acc": 1}]})
                .unwrap_err()
                .contains("a/#/b")
        );
    }
}
