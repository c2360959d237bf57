//! Layers the binary wraps around any backend, so that no backend has to
//! implement them itself: a timeout and retries for transient errors
//! ([`Resilient`]), and a shared answer cache ([`CachedAuthenticator`]).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dynamic::{DynAuthCache, DynAuthenticator, DynAuthorizer};
use crate::{
    AclRules, AuthDecision, Authenticator, Authorizer, BackendError, ClientInfo, ConnectInfo,
    ErrorKind, Grant, InvalidateScope, PublishDecision, PublishRequest, SubscribeDecision,
    SubscribeRequest,
};

/// A deadline per attempt and retries for errors marked retryable.
pub struct Resilient<T: ?Sized> {
    inner: Arc<T>,
    backend: String,
    timeout: Duration,
    retries: u32,
}

impl<T: ?Sized> Resilient<T> {
    pub fn new(inner: Arc<T>, backend: impl Into<String>, timeout: Duration, retries: u32) -> Self {
        Resilient {
            inner,
            backend: backend.into(),
            timeout,
            retries,
        }
    }

    async fn call<'a, R, F>(
        &'a self,
        operation: &'static str,
        attempt: impl Fn() -> F,
    ) -> Result<R, BackendError>
    where
        F: Future<Output = Result<R, BackendError>> + 'a,
    {
        let mut tries = 0;
        loop {
            let error = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => e,
                Err(_) => BackendError::new(
                    ErrorKind::Timeout,
                    self.backend.clone(),
                    operation,
                    format!("no answer within {:?}", self.timeout),
                ),
            };
            if !error.retryable || tries >= self.retries {
                return Err(error);
            }
            tries += 1;
            tracing::debug!(backend = %self.backend, operation, error = %error, tries, "retrying");
            // A short, growing pause: a restarting database gets a moment.
            tokio::time::sleep(Duration::from_millis(50 << tries.min(5))).await;
        }
    }
}

impl Authenticator for Resilient<dyn DynAuthenticator> {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        self.call("authenticate", || self.inner.authenticate(info))
            .await
    }

    async fn invalidate(&self, scope: &InvalidateScope) {
        self.inner.invalidate(scope).await;
    }
}

impl Authorizer for Resilient<dyn DynAuthorizer> {
    async fn authorize_publish(
        &self,
        client: &ClientInfo,
        request: &PublishRequest<'_>,
    ) -> Result<PublishDecision, BackendError> {
        self.call("authorize publish", || {
            self.inner.authorize_publish(client, request)
        })
        .await
    }

    async fn authorize_subscribe(
        &self,
        client: &ClientInfo,
        request: &SubscribeRequest<'_>,
    ) -> Result<SubscribeDecision, BackendError> {
        self.call("authorize subscribe", || {
            self.inner.authorize_subscribe(client, request)
        })
        .await
    }
}

/// Authentication answers kept in a shared cache for `ttl`. The key covers
/// every field the answer depends on (backend, mountpoint, client id,
/// username, password), so a changed password or client id never finds a
/// stale entry; it is a SHA-256 digest, so neither the password nor the
/// identity appears in the cache in clear.
///
/// Invalidation: memcached cannot delete by prefix, so the key also covers
/// two generation values kept in the cache itself, one for everybody
/// (`fogg:auth:gen`) and one per username (`fogg:auth:gen:u:<sha256>`).
/// [`Authenticator::invalidate`] writes a fresh value there, so every entry
/// written before is never found again (it expires after `ttl`), on every
/// broker sharing the cache. A lookup costs two more reads of the cache.
/// A [`InvalidateScope::Client`] scope has no generation of its own: the
/// broker turns it into the username the client is connected with.
pub struct CachedAuthenticator {
    inner: Arc<dyn DynAuthenticator>,
    backend: String,
    cache: Arc<dyn DynAuthCache>,
    cache_name: String,
    ttl: Duration,
    cache_denials: bool,
}

/// What is stored per answer.
#[derive(Serialize, Deserialize)]
struct CachedAnswer {
    allow: bool,
    acl: Option<AclRules>,
}

impl CachedAuthenticator {
    pub fn new(
        inner: Arc<dyn DynAuthenticator>,
        backend: impl Into<String>,
        cache: Arc<dyn DynAuthCache>,
        cache_name: impl Into<String>,
        ttl: Duration,
        cache_denials: bool,
    ) -> CachedAuthenticator {
        CachedAuthenticator {
            inner,
            backend: backend.into(),
            cache,
            cache_name: cache_name.into(),
            ttl,
            cache_denials,
        }
    }

    fn key(&self, info: &ConnectInfo, generations: &Generations) -> String {
        let mut digest = Sha256::new();
        let fields: [&[u8]; 7] = [
            self.backend.as_bytes(),
            info.mountpoint.as_bytes(),
            info.client_id.as_bytes(),
            info.username.as_deref().unwrap_or("").as_bytes(),
            info.password.as_deref().unwrap_or(b""),
            &generations.all,
            &generations.user,
        ];
        for field in fields {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            digest.update((field.len() as u64).to_be_bytes());
            digest.update(field);
        }
        let mut key = String::with_capacity(14 + 64);
        key.push_str("fogg:auth:v2:");
        push_hex(&mut key, &digest.finalize());
        key
    }

    /// The generation values the key of `info` depends on; `None` when the
    /// cache cannot be read (the answer is then neither read nor stored).
    async fn generations(&self, info: &ConnectInfo) -> Option<Generations> {
        let read = |key: String| async move {
            match self.cache.get(&key).await {
                Ok(found) => Some(found.unwrap_or_default()),
                Err(e) => {
                    tracing::warn!(cache = %self.cache_name, error = %e, "auth cache read failed; asking the backend");
                    None
                }
            }
        };
        let all = read(GENERATION_ALL.to_owned()).await?;
        let user = match &info.username {
            Some(username) => read(user_generation_key(username)).await?,
            None => Bytes::new(),
        };
        Some(Generations { all, user })
    }

    async fn lookup(&self, key: &str) -> Option<AuthDecision> {
        let bytes = match self.cache.get(key).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(cache = %self.cache_name, error = %e, "auth cache read failed; asking the backend");
                return None;
            }
        };
        match serde_json::from_slice::<CachedAnswer>(&bytes) {
            Ok(CachedAnswer { allow: true, acl }) => Some(AuthDecision::Allow(Grant {
                acl: acl.map(Arc::new),
            })),
            Ok(CachedAnswer { allow: false, .. }) => Some(AuthDecision::Deny),
            Err(e) => {
                tracing::warn!(cache = %self.cache_name, error = %e, "unreadable auth cache entry; asking the backend");
                None
            }
        }
    }

    async fn store(&self, key: &str, decision: &AuthDecision) {
        let answer = match decision {
            AuthDecision::Allow(grant) => CachedAnswer {
                allow: true,
                acl: grant.acl.as_deref().cloned(),
            },
            AuthDecision::Deny if self.cache_denials => CachedAnswer {
                allow: false,
                acl: None,
            },
            AuthDecision::Deny | AuthDecision::Next => return,
        };
        let value = match serde_json::to_vec(&answer) {
            Ok(v) => Bytes::from(v),
            Err(e) => {
                tracing::warn!(cache = %self.cache_name, error = %e, "cannot encode auth answer");
                return;
            }
        };
        if let Err(e) = self.cache.set(key, value, self.ttl).await {
            tracing::warn!(cache = %self.cache_name, error = %e, "auth cache write failed");
        }
    }
}

impl Authenticator for CachedAuthenticator {
    async fn authenticate(&self, info: &ConnectInfo) -> Result<AuthDecision, BackendError> {
        let Some(generations) = self.generations(info).await else {
            return self.inner.authenticate(info).await;
        };
        let key = self.key(info, &generations);
        if let Some(answer) = self.lookup(&key).await {
            return Ok(answer);
        }
        let decision = self.inner.authenticate(info).await?;
        self.store(&key, &decision).await;
        Ok(decision)
    }

    async fn invalidate(&self, scope: &InvalidateScope) {
        let key = match scope {
            InvalidateScope::All => GENERATION_ALL.to_owned(),
            InvalidateScope::Username(username) => user_generation_key(username),
            // No generation of its own; the broker sends the username.
            InvalidateScope::Client { .. } => return self.inner.invalidate(scope).await,
        };
        // Outlives every entry written under the previous value: once it
        // expires, those have expired too.
        let ttl = self.ttl + Duration::from_secs(3600);
        match self.cache.set(&key, fresh_generation(), ttl).await {
            Ok(()) => {
                tracing::info!(cache = %self.cache_name, backend = %self.backend, %scope, "auth cache entries invalidated");
            }
            Err(e) => {
                tracing::warn!(cache = %self.cache_name, %scope, error = %e, "auth cache invalidation failed; entries expire after cache_ttl");
            }
        }
        self.inner.invalidate(scope).await;
    }
}

/// The cache key of the generation every entry depends on.
const GENERATION_ALL: &str = "fogg:auth:gen";

/// The cache key of one username's generation (a digest: any username
/// makes a valid memcached key).
fn user_generation_key(username: &str) -> String {
    let mut key = String::with_capacity(16 + 64);
    key.push_str("fogg:auth:gen:u:");
    push_hex(&mut key, &Sha256::digest(username.as_bytes()));
    key
}

/// The generation values an entry's key covers ("" before any invalidation).
struct Generations {
    all: Bytes,
    user: Bytes,
}

/// A generation value never used before: the time in nanoseconds, the
/// process and a counter.
fn fresh_generation() -> Bytes {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    Bytes::from(format!("{nanos:x}-{:x}-{count:x}", std::process::id()))
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use parking_lot::Mutex;

    use super::*;
    use crate::{AuthCache, ProtocolVersion};

    #[derive(Default)]
    struct Counting {
        calls: AtomicU32,
        fail_first: u32,
        answer: Option<AuthDecision>,
    }

    impl Authenticator for Counting {
        async fn authenticate(&self, _: &ConnectInfo) -> Result<AuthDecision, BackendError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail_first {
                return Err(BackendError::new(
                    ErrorKind::Unavailable,
                    "db",
                    "authenticate",
                    "down",
                ));
            }
            Ok(self.answer.clone().unwrap_or(AuthDecision::Deny))
        }
    }

    /// A cache in a map: these tests are about the layer's keys and policy;
    /// the real memcached and Redis caches run the suite on real servers.
    #[derive(Default)]
    struct MapCache(Mutex<HashMap<String, Bytes>>);

    impl AuthCache for MapCache {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, BackendError> {
            Ok(self.0.lock().get(key).cloned())
        }
        async fn set(&self, key: &str, value: Bytes, _: Duration) -> Result<(), BackendError> {
            self.0.lock().insert(key.to_owned(), value);
            Ok(())
        }
    }

    /// The layer over `inner` with a fresh map cache and a 60 s TTL.
    fn cached(inner: Arc<Counting>, cache_denials: bool) -> CachedAuthenticator {
        CachedAuthenticator::new(
            inner,
            "db",
            Arc::new(MapCache::default()),
            "mc",
            Duration::from_secs(60),
            cache_denials,
        )
    }

    fn info(password: &str) -> ConnectInfo {
        ConnectInfo {
            client_id: "c".to_owned(),
            username: Some("u".to_owned()),
            password: Some(Bytes::copy_from_slice(password.as_bytes())),
            mountpoint: String::new(),
            peer: ([127, 0, 0, 1], 1).into(),
            listener: "mqtt".to_owned(),
            protocol: ProtocolVersion::V5,
            clean_start: true,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_limit() {
        let inner = Arc::new(Counting {
            fail_first: 2,
            answer: Some(AuthDecision::allow()),
            ..Counting::default()
        });
        let layer =
            Resilient::<dyn DynAuthenticator>::new(inner.clone(), "db", Duration::from_secs(1), 2);
        assert_eq!(
            Authenticator::authenticate(&layer, &info("p"))
                .await
                .unwrap(),
            AuthDecision::allow()
        );
        let layer = Resilient::<dyn DynAuthenticator>::new(
            Arc::new(Counting {
                fail_first: 5,
                ..Counting::default()
            }),
            "db",
            Duration::from_secs(1),
            1,
        );
        let e = Authenticator::authenticate(&layer, &info("p"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
    }

    #[tokio::test]
    async fn a_slow_backend_times_out() {
        struct Slow;
        impl Authenticator for Slow {
            async fn authenticate(&self, _: &ConnectInfo) -> Result<AuthDecision, BackendError> {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(AuthDecision::allow())
            }
        }
        let layer = Resilient::<dyn DynAuthenticator>::new(
            Arc::new(Slow),
            "db",
            Duration::from_millis(20),
            0,
        );
        let e = Authenticator::authenticate(&layer, &info("p"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.to_string().contains("`db`"), "{e}");
    }

    #[tokio::test]
    async fn allowed_answers_are_served_from_the_cache_per_password() {
        let acl = AclRules::allow_all();
        let inner = Arc::new(Counting {
            answer: Some(AuthDecision::allow_with(acl.clone())),
            ..Counting::default()
        });
        let layer = cached(inner.clone(), false);
        for _ in 0..3 {
            let answer = Authenticator::authenticate(&layer, &info("right"))
                .await
                .unwrap();
            assert_eq!(answer, AuthDecision::allow_with(acl.clone()));
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
        Authenticator::authenticate(&layer, &info("other"))
            .await
            .unwrap();
        assert_eq!(
            inner.calls.load(Ordering::SeqCst),
            2,
            "another password is another key"
        );
    }

    #[tokio::test]
    async fn denials_are_cached_only_when_asked() {
        for (cache_denials, calls) in [(false, 2), (true, 1)] {
            let inner = Arc::new(Counting::default());
            let layer = cached(inner.clone(), cache_denials);
            for _ in 0..2 {
                assert_eq!(
                    Authenticator::authenticate(&layer, &info("x"))
                        .await
                        .unwrap(),
                    AuthDecision::Deny
                );
            }
            assert_eq!(inner.calls.load(Ordering::SeqCst), calls);
        }
    }

    #[tokio::test]
    async fn invalidation_hides_the_entries_of_its_scope_only() {
        let inner = Arc::new(Counting {
            answer: Some(AuthDecision::allow()),
            ..Counting::default()
        });
        let layer = cached(inner.clone(), false);
        let calls = || inner.calls.load(Ordering::SeqCst);
        async fn connect(layer: &CachedAuthenticator) {
            Authenticator::authenticate(layer, &info("p"))
                .await
                .unwrap();
        }
        connect(&layer).await;
        connect(&layer).await;
        assert_eq!(calls(), 1);
        // Another user's generation, and a client scope (which the broker
        // turns into a username), leave the entry alone.
        for scope in [
            InvalidateScope::Username("other".to_owned()),
            InvalidateScope::Client {
                mountpoint: String::new(),
                client_id: "c".to_owned(),
            },
        ] {
            Authenticator::invalidate(&layer, &scope).await;
            connect(&layer).await;
            assert_eq!(calls(), 1, "{scope}");
        }
        Authenticator::invalidate(&layer, &InvalidateScope::Username("u".to_owned())).await;
        connect(&layer).await;
        assert_eq!(calls(), 2, "the user's entry is gone");
        connect(&layer).await;
        assert_eq!(calls(), 2, "and cached again");
        Authenticator::invalidate(&layer, &InvalidateScope::All).await;
        connect(&layer).await;
        assert_eq!(calls(), 3, "every entry is gone");
    }
}
