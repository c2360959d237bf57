//! Reading document fields: BSON into the JSON that `fogg-auth-common`
//! parses, and the scalar types the layouts use.

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

/// Doubles up to 2^53 hold every integer exactly.
const MAX_EXACT_DOUBLE: f64 = 9_007_199_254_740_992.0;

/// A BSON value as JSON, for VerneMQ's ACL parser. Integral doubles become
/// integers: the mongo shell stores every number as a double, so
/// `max_qos: 1` arrives as `1.0` and must read as `1`. Types JSON lacks
/// (ObjectId, dates, binary, ...) become their relaxed extended JSON
/// (an object), which the parser refuses wherever a known key expects a
/// string or a number, and ignores under an unknown key.
pub(crate) fn to_json(value: &Bson) -> Value {
    match value {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(n) => Value::from(*n),
        Bson::Int64(n) => Value::from(*n),
        Bson::Double(f) => match exact_integer(*f) {
            Some(n) => Value::from(n),
            None => {
                Number::from_f64(*f).map_or_else(|| Value::String(f.to_string()), Value::Number)
            }
        },
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Bson::Document(doc) => Value::Object(document_to_json(doc)),
        other => other.clone().into_relaxed_extjson(),
    }
}

pub(crate) fn document_to_json(doc: &Document) -> Map<String, Value> {
    doc.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

fn exact_integer(f: f64) -> Option<i64> {
    // The range check makes the cast exact.
    #[allow(clippy::cast_possible_truncation)]
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_DOUBLE).then_some(f as i64)
}

/// An integer field stored as int32, int64 or an integral double.
pub(crate) fn integer(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) => exact_integer(*f),
        _ => None,
    }
}

/// A field, treating an explicit `null` as absent.
pub(crate) fn field<'a>(doc: &'a Document, key: &str) -> Option<&'a Bson> {
    doc.get(key)
        .filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
}

/// The BSON type of a value, for log messages (never the value: it may be
/// a password hash).
pub(crate) fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "a double",
        Bson::String(_) => "a string",
        Bson::Array(_) => "an array",
        Bson::Document(_) => "a document",
        Bson::Boolean(_) => "a boolean",
        Bson::Null => "null",
        Bson::Int32(_) | Bson::Int64(_) => "an integer",
        Bson::ObjectId(_) => "an ObjectId",
        Bson::DateTime(_) => "a date",
        Bson::Binary(_) => "binary data",
        _ => "a value of another BSON type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId};
    use serde_json::json;

    #[test]
    fn numbers_from_the_shell_are_integers() {
        let d = doc! {"a": 1.0, "b": 2_i32, "c": 3_i64, "d": 1.5, "e": f64::NAN, "f": -0.0};
        assert_eq!(
            Value::Object(document_to_json(&d)),
            json!({"a": 1, "b": 2, "c": 3, "d": 1.5, "e": "NaN", "f": 0})
        );
        assert_eq!(integer(&Bson::Double(4.0)), Some(4));
        assert_eq!(integer(&Bson::Double(4.5)), None);
        assert_eq!(integer(&Bson::Double(1e300)), None);
        assert_eq!(integer(&Bson::String("4".into())), None);
    }

    #[test]
    fn nested_values_and_other_types() {
        let id = ObjectId::new();
        let d =
            doc! {"l": [{"pattern": "a", "max_qos": 1.0}], "n": Bson::Null, "id": id, "t": true};
        let j = Value::Object(document_to_json(&d));
        assert_eq!(j["l"], json!([{"pattern": "a", "max_qos": 1}]));
        assert_eq!(j["n"], Value::Null);
        assert_eq!(j["t"], json!(true));
        assert_eq!(j["id"], json!({"$oid": id.to_hex()}));
        assert_eq!(field(&d, "n"), None);
        assert_eq!(field(&d, "t"), Some(&Bson::Boolean(true)));
    }
}
