//! Object-safe shims over the `async fn` traits.
//!
//! Backends implement the plain traits; the core stores `Arc<dyn Dyn...>`.
//! The blanket impls box each future once at this boundary, so backend code
//! never deals with pinning or boxing itself.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::{
    AuthCache, AuthDecision, AuthStep, Authenticator, Authorizer, BackendError, ClientInfo,
    ConnectInfo, DeliveryState, EnhancedAuthContext, EnhancedAuthenticator, InvalidateScope,
    MessageStore, PublishDecision, PublishRequest, RetainStore, SessionKey, SessionStore,
    StoredMessage, StoredSession, SubscribeDecision, SubscribeRequest,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Res<T> = Result<T, BackendError>;

pub trait DynAuthenticator: Send + Sync {
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> BoxFuture<'a, Res<AuthDecision>>;
    fn invalidate<'a>(&'a self, scope: &'a InvalidateScope) -> BoxFuture<'a, ()>;
}

impl<T: Authenticator> DynAuthenticator for T {
    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> BoxFuture<'a, Res<AuthDecision>> {
        Box::pin(Authenticator::authenticate(self, info))
    }
    fn invalidate<'a>(&'a self, scope: &'a InvalidateScope) -> BoxFuture<'a, ()> {
        Box::pin(Authenticator::invalidate(self, scope))
    }
}

pub trait DynAuthorizer: Send + Sync {
    fn authorize_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        request: &'a PublishRequest<'a>,
    ) -> BoxFuture<'a, Res<PublishDecision>>;

    fn authorize_subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        request: &'a SubscribeRequest<'a>,
    ) -> BoxFuture<'a, Res<SubscribeDecision>>;
}

impl<T: Authorizer> DynAuthorizer for T {
    fn authorize_publish<'a>(
        &'a self,
        client: &'a ClientInfo,
        request: &'a PublishRequest<'a>,
    ) -> BoxFuture<'a, Res<PublishDecision>> {
        Box::pin(Authorizer::authorize_publish(self, client, request))
    }

    fn authorize_subscribe<'a>(
        &'a self,
        client: &'a ClientInfo,
        request: &'a SubscribeRequest<'a>,
    ) -> BoxFuture<'a, Res<SubscribeDecision>> {
        Box::pin(Authorizer::authorize_subscribe(self, client, request))
    }
}

pub trait DynEnhancedAuthenticator: Send + Sync {
    fn methods(&self) -> Vec<String>;
    fn auth_step<'a>(
        &'a self,
        context: &'a EnhancedAuthContext,
        data: Option<Bytes>,
    ) -> BoxFuture<'a, Res<AuthStep>>;
}

impl<T: EnhancedAuthenticator> DynEnhancedAuthenticator for T {
    fn methods(&self) -> Vec<String> {
        EnhancedAuthenticator::methods(self)
    }

    fn auth_step<'a>(
        &'a self,
        context: &'a EnhancedAuthContext,
        data: Option<Bytes>,
    ) -> BoxFuture<'a, Res<AuthStep>> {
        Box::pin(EnhancedAuthenticator::auth_step(self, context, data))
    }
}

pub trait DynSessionStore: Send + Sync {
    fn save_session<'a>(&'a self, session: &'a StoredSession) -> BoxFuture<'a, Res<()>>;
    fn load_session<'a>(&'a self, key: &'a SessionKey)
    -> BoxFuture<'a, Res<Option<StoredSession>>>;
    fn delete_session<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<()>>;
    fn list_sessions(&self) -> BoxFuture<'_, Res<Vec<StoredSession>>>;
}

impl<T: SessionStore> DynSessionStore for T {
    fn save_session<'a>(&'a self, session: &'a StoredSession) -> BoxFuture<'a, Res<()>> {
        Box::pin(SessionStore::save_session(self, session))
    }
    fn load_session<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Res<Option<StoredSession>>> {
        Box::pin(SessionStore::load_session(self, key))
    }
    fn delete_session<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<()>> {
        Box::pin(SessionStore::delete_session(self, key))
    }
    fn list_sessions(&self) -> BoxFuture<'_, Res<Vec<StoredSession>>> {
        Box::pin(SessionStore::list_sessions(self))
    }
}

pub trait DynMessageStore: Send + Sync {
    fn enqueue<'a>(
        &'a self,
        key: &'a SessionKey,
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<u64>>;
    fn read_queue<'a>(
        &'a self,
        key: &'a SessionKey,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<(u64, StoredMessage)>>>;
    fn remove<'a>(&'a self, key: &'a SessionKey, seq: u64) -> BoxFuture<'a, Res<()>>;
    fn queue_len<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<usize>>;
    fn clear_queue<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<()>>;
    fn enqueue_many<'a>(
        &'a self,
        keys: &'a [SessionKey],
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<Vec<u64>>>;
    fn enqueue_batch<'a>(
        &'a self,
        writes: &'a [(&'a [SessionKey], &'a StoredMessage)],
    ) -> BoxFuture<'a, Res<Vec<u64>>>;
    fn remove_many<'a>(&'a self, key: &'a SessionKey, seqs: &'a [u64]) -> BoxFuture<'a, Res<()>>;
    fn set_delivery_state<'a>(
        &'a self,
        key: &'a SessionKey,
        seq: u64,
        state: Option<DeliveryState>,
    ) -> BoxFuture<'a, Res<()>>;
    fn delivery_states<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Res<Vec<(u64, DeliveryState)>>>;
    fn set_incoming_qos2<'a>(
        &'a self,
        key: &'a SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> BoxFuture<'a, Res<()>>;
    fn incoming_qos2<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<Vec<u16>>>;
}

impl<T: MessageStore> DynMessageStore for T {
    fn enqueue<'a>(
        &'a self,
        key: &'a SessionKey,
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<u64>> {
        Box::pin(MessageStore::enqueue(self, key, message))
    }
    fn read_queue<'a>(
        &'a self,
        key: &'a SessionKey,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Res<Vec<(u64, StoredMessage)>>> {
        Box::pin(MessageStore::read_queue(self, key, after, limit))
    }
    fn remove<'a>(&'a self, key: &'a SessionKey, seq: u64) -> BoxFuture<'a, Res<()>> {
        Box::pin(MessageStore::remove(self, key, seq))
    }
    fn queue_len<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<usize>> {
        Box::pin(MessageStore::queue_len(self, key))
    }
    fn clear_queue<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<()>> {
        Box::pin(MessageStore::clear_queue(self, key))
    }
    fn enqueue_many<'a>(
        &'a self,
        keys: &'a [SessionKey],
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<Vec<u64>>> {
        Box::pin(MessageStore::enqueue_many(self, keys, message))
    }
    fn enqueue_batch<'a>(
        &'a self,
        writes: &'a [(&'a [SessionKey], &'a StoredMessage)],
    ) -> BoxFuture<'a, Res<Vec<u64>>> {
        Box::pin(MessageStore::enqueue_batch(self, writes))
    }
    fn remove_many<'a>(&'a self, key: &'a SessionKey, seqs: &'a [u64]) -> BoxFuture<'a, Res<()>> {
        Box::pin(MessageStore::remove_many(self, key, seqs))
    }
    fn set_delivery_state<'a>(
        &'a self,
        key: &'a SessionKey,
        seq: u64,
        state: Option<DeliveryState>,
    ) -> BoxFuture<'a, Res<()>> {
        Box::pin(MessageStore::set_delivery_state(self, key, seq, state))
    }
    fn delivery_states<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Res<Vec<(u64, DeliveryState)>>> {
        Box::pin(MessageStore::delivery_states(self, key))
    }
    fn set_incoming_qos2<'a>(
        &'a self,
        key: &'a SessionKey,
        packet_id: u16,
        pending: bool,
    ) -> BoxFuture<'a, Res<()>> {
        Box::pin(MessageStore::set_incoming_qos2(
            self, key, packet_id, pending,
        ))
    }
    fn incoming_qos2<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Res<Vec<u16>>> {
        Box::pin(MessageStore::incoming_qos2(self, key))
    }
}

pub trait DynRetainStore: Send + Sync {
    fn put_retained<'a>(
        &'a self,
        mountpoint: &'a str,
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<()>>;
    fn delete_retained<'a>(&'a self, mountpoint: &'a str, topic: &'a str)
    -> BoxFuture<'a, Res<()>>;
    fn match_retained<'a>(
        &'a self,
        mountpoint: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Res<Vec<StoredMessage>>>;
    fn list_retained(&self) -> BoxFuture<'_, Res<Vec<(String, StoredMessage)>>>;
}

impl<T: RetainStore> DynRetainStore for T {
    fn put_retained<'a>(
        &'a self,
        mountpoint: &'a str,
        message: &'a StoredMessage,
    ) -> BoxFuture<'a, Res<()>> {
        Box::pin(RetainStore::put_retained(self, mountpoint, message))
    }
    fn delete_retained<'a>(
        &'a self,
        mountpoint: &'a str,
        topic: &'a str,
    ) -> BoxFuture<'a, Res<()>> {
        Box::pin(RetainStore::delete_retained(self, mountpoint, topic))
    }
    fn match_retained<'a>(
        &'a self,
        mountpoint: &'a str,
        filter: &'a str,
    ) -> BoxFuture<'a, Res<Vec<StoredMessage>>> {
        Box::pin(RetainStore::match_retained(self, mountpoint, filter))
    }
    fn list_retained(&self) -> BoxFuture<'_, Res<Vec<(String, StoredMessage)>>> {
        Box::pin(RetainStore::list_retained(self))
    }
}

pub trait DynAuthCache: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Res<Option<Bytes>>>;
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Res<()>>;
}

impl<T: AuthCache> DynAuthCache for T {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Res<Option<Bytes>>> {
        Box::pin(AuthCache::get(self, key))
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, Res<()>> {
        Box::pin(AuthCache::set(self, key, value, ttl))
    }
}
