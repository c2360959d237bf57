//! The shared storage behavior suite, run against the embedded store built
//! through its factory, as the broker builds it from `kind = "embedded"`.

// clippy only treats `#[test]` functions as test code, not their helpers.
#![allow(clippy::expect_used, reason = "test code fails by panicking")]

use std::borrow::Borrow;

use fogg_api::{Backend, BackendConfig, BackendFactory};
use fogg_storage_embedded::EmbeddedFactory;

/// A backend on a fresh temporary directory, removed when the case ends
/// (after the store: fields drop in order).
struct Fixture {
    backend: Backend,
    _dir: tempfile::TempDir,
}

impl Borrow<Backend> for Fixture {
    fn borrow(&self) -> &Backend {
        &self.backend
    }
}

fn build(durability: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut settings = toml::Table::new();
    settings.insert("path".to_owned(), dir.path().display().to_string().into());
    settings.insert("durability".to_owned(), durability.into());
    let backend = EmbeddedFactory
        .build(&BackendConfig {
            name: "embedded-behavior".to_owned(),
            kind: "embedded".to_owned(),
            settings,
        })
        .expect("the embedded backend builds on a fresh directory");
    Fixture { backend, _dir: dir }
}

async fn embedded_backend() -> Fixture {
    build("os")
}

fogg_storage_behavior::storage_behavior_tests!(embedded_backend());

/// Every case in sequence on one store, in each durability mode: the cases
/// do not depend on a fresh store, and `fsync` mode behaves the same.
#[test]
fn run_all_cases_on_one_store_in_both_modes() {
    for durability in ["os", "fsync"] {
        let fixture = build(durability);
        fogg_storage_behavior::run_case("run_all", async {
            fogg_storage_behavior::run_all(&fixture.backend).await;
        });
    }
    assert_eq!(fogg_storage_behavior::CASES.len(), 34);
}
