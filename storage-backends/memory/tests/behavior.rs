//! The shared storage behavior suite, run against the memory backend built
//! through its factory, as the broker builds it from `kind = "memory"`.

// clippy only treats `#[test]` functions as test code, not their helpers.
#![allow(clippy::expect_used, reason = "test code fails by panicking")]

use fogg_api::{Backend, BackendConfig, BackendFactory};
use fogg_storage_memory::MemoryFactory;

/// A fresh, empty store per case.
async fn memory_backend() -> Backend {
    MemoryFactory
        .build(&BackendConfig {
            name: "memory-behavior".to_owned(),
            kind: "memory".to_owned(),
            settings: Default::default(),
        })
        .expect("the memory backend builds with no settings")
}

fogg_storage_behavior::storage_behavior_tests!(memory_backend());

/// `run_all` (one backend, every case in sequence) also passes: the cases
/// do not depend on a fresh store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_cases_on_one_store() {
    let backend = memory_backend().await;
    fogg_storage_behavior::run_all(&backend).await;
    assert_eq!(fogg_storage_behavior::CASES.len(), 34);
}
