//! The live sessions by (mountpoint, client id): a set of sessions keyed by
//! their own `key`, so a connected client costs the table one pointer
//! instead of a second copy of its key.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use fogg_api::SessionKey;

use crate::session::Session;

/// A session in the table, hashed and compared by its key.
struct Entry(Arc<Session>);

impl Borrow<SessionKey> for Entry {
    fn borrow(&self) -> &SessionKey {
        &self.0.key
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Entry {}

#[derive(Default)]
pub(crate) struct SessionTable {
    entries: HashSet<Entry>,
}

impl SessionTable {
    pub fn get(&self, key: &SessionKey) -> Option<&Arc<Session>> {
        self.entries.get(key).map(|e| &e.0)
    }

    /// Add a session, replacing (and returning) one with the same key.
    pub fn insert(&mut self, session: Arc<Session>) -> Option<Arc<Session>> {
        self.entries.replace(Entry(session)).map(|e| e.0)
    }

    pub fn remove(&mut self, key: &SessionKey) -> Option<Arc<Session>> {
        self.entries.take(key).map(|e| e.0)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.entries.iter().map(|e| &e.0)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogg_codec::ProtocolVersion;

    fn session(mountpoint: &str, id: &str) -> Arc<Session> {
        Arc::new(Session::new(
            SessionKey::new(mountpoint, id),
            ProtocolVersion::V5,
            0,
        ))
    }

    #[test]
    fn sessions_are_found_replaced_and_removed_by_key() {
        let mut table = SessionTable::default();
        let a = session("", "a");
        assert!(table.insert(a.clone()).is_none());
        assert!(table.insert(session("tenant", "a")).is_none());
        assert_eq!(table.len(), 2);
        let key = SessionKey::new("", "a");
        assert!(Arc::ptr_eq(table.get(&key).unwrap(), &a));
        let b = session("", "a");
        let replaced = table.insert(b.clone()).unwrap();
        assert!(Arc::ptr_eq(&replaced, &a));
        assert!(Arc::ptr_eq(table.get(&key).unwrap(), &b));
        assert!(table.remove(&key).is_some());
        assert!(table.get(&key).is_none());
        assert_eq!(table.values().count(), 1);
    }
}
