//! VerneMQ's Redis layout: key `["<mountpoint>","<client_id>","<username>"]`,
//! value `{"passhash": "...", "publish_acl": [...], "subscribe_acl": [...]}`.

use fogg_api::{AuthDecision, BackendError, ConnectInfo, ErrorKind};
use fogg_auth_common::vernemq::{self, AclValue, RowKey, StoredPassword, VmqRow};
use serde_json::Value;

use crate::Redis;

/// What one key held.
enum Fetched {
    Row(VmqRow),
    /// Not a JSON object of the expected shape (or not a string value).
    Malformed(String),
}

pub(crate) async fn authenticate(
    redis: &Redis,
    info: &ConnectInfo,
) -> Result<AuthDecision, BackendError> {
    let Some((username, _)) = vernemq::credentials(info) else {
        return Ok(AuthDecision::Next);
    };
    let found = vernemq::find_row(&info.mountpoint, &info.client_id, username, |key| {
        fetch(redis, key)
    })
    .await?;
    match found {
        Some((key, Fetched::Malformed(cause))) => {
            tracing::warn!(
                backend = %redis.name,
                key = %key.redis_key(),
                cause = %cause,
                "malformed VerneMQ auth value in Redis; CONNECT denied"
            );
            Ok(AuthDecision::Deny)
        }
        Some((key, Fetched::Row(row))) => {
            vernemq::decide(&redis.name, info, Some((key, row))).await
        }
        None => Ok(AuthDecision::Next),
    }
}

async fn fetch(redis: &Redis, key: RowKey) -> Result<Option<Fetched>, BackendError> {
    let result: Result<Option<Vec<u8>>, BackendError> = redis
        .pool
        .query(
            "authenticate",
            redis::cmd("GET").arg(redis.key(&key.redis_key())),
        )
        .await;
    match result {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => Ok(Some(parse(&bytes))),
        // A key holding a list or a hash: bad data, not an outage.
        Err(e) if e.kind == ErrorKind::InvalidData => Ok(Some(Fetched::Malformed(e.message))),
        Err(e) => Err(e),
    }
}

fn parse(bytes: &[u8]) -> Fetched {
    let object = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Fetched::Malformed("the value is not a JSON object".to_owned()),
        Err(e) => return Fetched::Malformed(format!("the value is not JSON: {e}")),
    };
    let password = match object.get("passhash") {
        None | Some(Value::Null) => StoredPassword::Missing,
        Some(Value::String(s)) if s.is_empty() => StoredPassword::Missing,
        Some(Value::String(s)) => StoredPassword::Hash(s.clone()),
        Some(_) => return Fetched::Malformed("passhash must be a string".to_owned()),
    };
    let acl = |name: &str| {
        object
            .get(name)
            .cloned()
            .map_or(AclValue::Missing, AclValue::Json)
    };
    Fetched::Row(VmqRow {
        password,
        publish_acl: acl("publish_acl"),
        subscribe_acl: acl("subscribe_acl"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_vernemq_writes_them() {
        let Fetched::Row(row) =
            parse(br#"{"passhash":"$2a$10$x","publish_acl":[{"pattern":"a"}],"other":1}"#)
        else {
            panic!("a good value");
        };
        assert_eq!(row.password, StoredPassword::Hash("$2a$10$x".to_owned()));
        assert!(matches!(row.publish_acl, AclValue::Json(Value::Array(_))));
        assert_eq!(row.subscribe_acl, AclValue::Missing);
        let Fetched::Row(row) = parse(br#"{"passhash":null}"#) else {
            panic!("no password is a row");
        };
        assert_eq!(row.password, StoredPassword::Missing);
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"\"text\"",
            br#"{"passhash": 7}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse(bad), Fetched::Malformed(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
