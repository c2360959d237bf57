//! VerneMQ mode: `vmq_acl_auth` documents.
//!
//! ```text
//! {mountpoint: "", client_id: "*", username: "u", passhash: "$2a$10$...",
//!  publish_acl: [{pattern: "a/#", max_qos: 1}], subscribe_acl: [{pattern: "b/+"}]}
//! ```
//!
//! Looked up as VerneMQ's `mongodb.lua` does: the document with the exact
//! (mountpoint, client_id, username), else the one with client id `*` —
//! both fetched with one query (`client_id: {$in: [id, "*"]}`), so a
//! CONNECT costs one round trip either way.
//! What a found document means is `fogg_auth_common::vernemq::decide`,
//! shared with every other VerneMQ database backend.

use fogg_api::{AuthDecision, BackendError, ConnectInfo};
use fogg_auth_common::vernemq::{self, AclValue, RowKey, StoredPassword, VmqRow};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use crate::MongoAuth;
use crate::convert::{field, to_json, type_name};

pub(crate) async fn authenticate(
    auth: &MongoAuth,
    info: &ConnectInfo,
    username: &str,
) -> Result<AuthDecision, BackendError> {
    let collection = auth
        .connection
        .database()
        .await?
        .collection::<Document>(&auth.connection.settings().collection);
    // Both candidates in one round trip; the order of `lookup_order` picks
    // (the exact document, else the `*` one), as two lookups would.
    let order = vernemq::lookup_order(&info.mountpoint, &info.client_id, username);
    let client_ids: Vec<&str> = order.iter().map(|k| k.client_id.as_str()).collect();
    let mut cursor = collection
        .find(doc! {
            "mountpoint": &info.mountpoint,
            "username": username,
            "client_id": {"$in": client_ids},
        })
        .limit(8)
        .await
        .map_err(|e| auth.connection.error("find", e))?;
    let mut candidates = Vec::new();
    while let Some(document) = cursor
        .try_next()
        .await
        .map_err(|e| auth.connection.error("find", e))?
    {
        candidates.push(document);
    }
    let found = order.into_iter().find_map(|key| {
        candidates
            .iter()
            .position(
                |d| matches!(d.get("client_id"), Some(Bson::String(c)) if *c == key.client_id),
            )
            .map(|i| (key, candidates.swap_remove(i)))
    });
    let Some((key, document)) = found else {
        return vernemq::decide(&auth.name, info, None).await;
    };
    match row(&document) {
        Ok(row) => vernemq::decide(&auth.name, info, Some((key, row))).await,
        Err(cause) => {
            malformed(&auth.name, &key, &cause);
            Ok(AuthDecision::Deny)
        }
    }
}

/// A document's fields in the shape `decide` takes; `Err` names the field
/// that cannot be used (a wrong BSON type).
fn row(document: &Document) -> Result<VmqRow, String> {
    let password = match field(document, "passhash") {
        None => StoredPassword::Missing,
        Some(Bson::String(hash)) => StoredPassword::Hash(hash.clone()),
        Some(other) => {
            return Err(format!(
                "passhash must be a string, got {}",
                type_name(other)
            ));
        }
    };
    // Everything else about the lists (not an array, entries, types) is
    // checked by the shared parser, which names list and entry.
    let acl = |key: &str| {
        document
            .get(key)
            .map_or(AclValue::Missing, |value| AclValue::Json(to_json(value)))
    };
    Ok(VmqRow {
        password,
        publish_acl: acl("publish_acl"),
        subscribe_acl: acl("subscribe_acl"),
    })
}

fn malformed(backend: &str, key: &RowKey, cause: &str) {
    tracing::warn!(
        backend,
        mountpoint = %key.mountpoint,
        client_id = %key.client_id,
        username = %key.username,
        cause,
        "malformed vmq_acl_auth document; CONNECT denied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_become_a_row() {
        let r = row(&doc! {"passhash": "$2a$x", "publish_acl": [{"pattern": "a"}]}).unwrap();
        assert_eq!(r.password, StoredPassword::Hash("$2a$x".to_owned()));
        assert_eq!(r.publish_acl, AclValue::Json(json!([{"pattern": "a"}])));
        assert_eq!(r.subscribe_acl, AclValue::Missing);
        let r = row(&doc! {"passhash": Bson::Null, "subscribe_acl": Bson::Null}).unwrap();
        assert_eq!(r.password, StoredPassword::Missing);
        assert_eq!(r.subscribe_acl, AclValue::Json(serde_json::Value::Null));
        let e = row(&doc! {"passhash": 12}).unwrap_err();
        assert_eq!(e, "passhash must be a string, got an integer");
        // A string list is handed over as a string, which the parser refuses.
        let r = row(&doc! {"passhash": "h", "publish_acl": "[]"}).unwrap();
        assert_eq!(r.publish_acl, AclValue::Json(json!("[]")));
        assert!(vernemq::parse_acl(&r.publish_acl, &r.subscribe_acl).is_err());
    }
}
