//! mosquitto-go-auth's Redis layout:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `<user>` | string | the password hash |
//! | `<user>:su` | string | `"true"`: a superuser |
//! | `<user>:racls`, `:wacls`, `:rwacls`, `:sacls` | sets | topics the user may read (1), write (2), read and write (3), subscribe to (4) |
//! | `common:racls`, `:wacls`, `:rwacls`, `:sacls` | sets | the same for every user (`%u`, `%c` substituted) |
//!
//! Everything is fetched in one pipeline and handed over as rules at
//! CONNECT. go-auth has no mountpoints or client-id rows: they are ignored.

use fogg_api::{AclRules, AuthDecision, BackendError, ConnectInfo, ErrorKind};
use fogg_auth_common::gocauth::{self, GoAuthAcl};
use fogg_auth_common::passwords::{self, HashError};
use fogg_auth_common::vernemq::credentials;

use crate::Redis;

/// The ACL set suffixes in go-auth, with their access codes.
const ACL_SETS: [(&str, i64); 4] = [("racls", 1), ("wacls", 2), ("rwacls", 3), ("sacls", 4)];

/// The key prefix of the ACLs every user has.
const COMMON: &str = "common";

/// The pipeline's reply: hash, superuser flag, the user's four sets, the
/// four common sets.
type Reply = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
);

pub(crate) async fn authenticate(
    redis: &Redis,
    info: &ConnectInfo,
) -> Result<AuthDecision, BackendError> {
    let Some((username, password)) = credentials(info) else {
        return Ok(AuthDecision::Next);
    };
    let deny = |cause: &dyn std::fmt::Display, what: &str| {
        tracing::warn!(
            backend = %redis.name,
            username,
            cause = %cause,
            "{what}; CONNECT denied"
        );
        Ok(AuthDecision::Deny)
    };

    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg(redis.key(username));
    pipe.cmd("GET").arg(redis.key(&format!("{username}:su")));
    for owner in [username, COMMON] {
        for (suffix, _) in ACL_SETS {
            pipe.cmd("SMEMBERS")
                .arg(redis.key(&format!("{owner}:{suffix}")));
        }
    }
    let reply: Result<Reply, BackendError> = redis.pool.query("authenticate", &pipe).await;
    let (hash, su, own, common) = match reply {
        Ok((hash, su, r, w, rw, s, cr, cw, crw, cs)) => {
            (hash, su, [r, w, rw, s], [cr, cw, crw, cs])
        }
        Err(e) if e.kind == ErrorKind::InvalidData => {
            return deny(&e.message, "malformed go-auth data in Redis");
        }
        Err(e) => return Err(e),
    };

    let Some(hash) = hash else {
        return Ok(AuthDecision::Next);
    };
    let Ok(hash) = String::from_utf8(hash) else {
        return deny(&"the stored hash is not UTF-8", "unusable password hash");
    };
    match passwords::verify_with(password, &hash, redis.verify).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(backend = %redis.name, username, "wrong password");
            return Ok(AuthDecision::Deny);
        }
        Err(HashError::Task(e)) => {
            return Err(BackendError::new(
                ErrorKind::Internal,
                redis.name.clone(),
                "authenticate",
                format!("password check: {e}"),
            ));
        }
        Err(e) => return deny(&e, "unusable password hash"),
    }

    let superuser = su.is_some_and(|v| v == b"true");
    if superuser {
        return Ok(AuthDecision::allow_with(AclRules::allow_all()));
    }
    let mut acls = Vec::new();
    for (owner, sets) in [(username, own), (COMMON, common)] {
        for ((suffix, code), topics) in ACL_SETS.into_iter().zip(sets) {
            for topic in topics {
                match GoAuthAcl::new(topic, code) {
                    Ok(acl) => acls.push(acl),
                    Err(e) => {
                        return deny(
                            &format_args!("{owner}:{suffix}: {e}"),
                            "malformed go-auth ACL in Redis",
                        );
                    }
                }
            }
        }
    }
    Ok(AuthDecision::allow_with(gocauth::acl_rules(false, acls)))
}
