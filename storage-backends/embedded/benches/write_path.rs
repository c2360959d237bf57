//! The persistent-session write path: what the broker pays per QoS 1 message
//! for a persistent session, through `DynMessageStore` as the broker holds it.
//!
//! `cargo bench -p fogg-storage-embedded --bench write_path` (add
//! `-- --quick` for a fast pass, or a filter such as `-- pair/1`).
//!
//! * `pair`: one `enqueue` plus one `remove` of a 64-byte message, each task
//!   on its own session; 1 and 50 concurrent tasks on a 2-worker runtime.
//! * `qos1`: what the broker writes per message: `enqueue_many` (one key),
//!   `set_delivery_state(Sent)` when sent, `remove` at PUBACK.
//!
//! Stores: `memory`; `embedded` with `durability = "os"` and `"fsync"`, each
//! through both write paths: `thread` (the default: the store's writer
//! thread, fed by a queue, answers with oneshots) and `blocking` (each write
//! hops to tokio's blocking pool and commits there, the first design).
//! Throughput is in operations (pairs or messages) per second. The figures
//! and the reasoning behind the default are in the crate README.

#![allow(
    clippy::expect_used,
    reason = "a bench that cannot set up stops loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fogg_api::dynamic::DynMessageStore;
use fogg_api::{DeliveryStage, DeliveryState, QoS, SessionKey, StoredMessage};
use fogg_codec::Properties;
use fogg_storage_embedded::{Durability, EmbeddedStore, Options, WritePath};
use fogg_storage_memory::MemoryStore;

fn message() -> StoredMessage {
    StoredMessage {
        topic: "sensors/1/temp".to_owned(),
        payload: Bytes::from(vec![0x5A; 64]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
        expires_at: None,
    }
}

/// A store under test and what keeps it alive.
struct Subject {
    name: &'static str,
    store: Arc<dyn DynMessageStore>,
    slow: bool,
    _dir: Option<tempfile::TempDir>,
}

fn embedded(name: &'static str, durability: Durability, write_path: WritePath) -> Subject {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(
        dir.path(),
        Options {
            name: name.to_owned(),
            durability,
            write_path,
        },
    )
    .expect("open the store");
    Subject {
        name,
        store: Arc::new(store),
        slow: durability == Durability::Fsync,
        _dir: Some(dir),
    }
}

fn subject(name: &'static str) -> Subject {
    match name {
        "os-thread" => embedded(name, Durability::Os, WritePath::Thread),
        "os-blocking" => embedded(name, Durability::Os, WritePath::Blocking),
        "fsync-thread" => embedded(name, Durability::Fsync, WritePath::Thread),
        "fsync-blocking" => embedded(name, Durability::Fsync, WritePath::Blocking),
        _ => Subject {
            name: "memory",
            store: Arc::new(MemoryStore::new()),
            slow: false,
            _dir: None,
        },
    }
}

#[derive(Clone, Copy)]
enum Workload {
    /// enqueue + remove
    Pair,
    /// enqueue_many (one key) + set_delivery_state + remove
    Qos1,
}

async fn one(store: &dyn DynMessageStore, key: &SessionKey, m: &StoredMessage, work: Workload) {
    match work {
        Workload::Pair => {
            let seq = store.enqueue(key, m).await.expect("enqueue");
            store.remove(key, seq).await.expect("remove");
        }
        Workload::Qos1 => {
            let seqs = store
                .enqueue_many(std::slice::from_ref(key), m)
                .await
                .expect("enqueue_many");
            let state = DeliveryState {
                packet_id: 1,
                stage: DeliveryStage::Sent,
            };
            store
                .set_delivery_state(key, seqs[0], Some(state))
                .await
                .expect("set_delivery_state");
            store.remove(key, seqs[0]).await.expect("remove");
        }
    }
}

/// Runs `iters` operations spread over `tasks` concurrent tasks.
fn run(
    runtime: &tokio::runtime::Runtime,
    store: &Arc<dyn DynMessageStore>,
    tasks: usize,
    iters: u64,
    work: Workload,
) -> Duration {
    let per_task = iters.div_ceil(tasks as u64);
    runtime.block_on(async {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(tasks);
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let key = SessionKey::new("bench", format!("p{t}"));
                let m = message();
                for _ in 0..per_task {
                    one(store.as_ref(), &key, &m, work).await;
                }
            }));
        }
        for handle in handles {
            handle.await.expect("bench task");
        }
        // Per operation: the last task may have done a few more.
        start
            .elapsed()
            .mul_f64(iters as f64 / (per_task * tasks as u64) as f64)
    })
}

fn bench(c: &mut Criterion, workload: &str, work: Workload, names: &[&'static str]) {
    // Like the broker on this 2-core machine: a multi-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for name in names {
        // One store open at a time: each has its own engine threads.
        let subject = subject(name);
        for tasks in [1usize, 50] {
            let mut group = c.benchmark_group(format!("{workload}/{tasks}"));
            group.throughput(Throughput::Elements(1));
            if subject.slow {
                group.sample_size(10);
                group.measurement_time(Duration::from_secs(8));
            } else {
                group.measurement_time(Duration::from_secs(4));
            }
            group.bench_function(subject.name, |b| {
                b.iter_custom(|iters| run(&runtime, &subject.store, tasks, iters, work));
            });
            group.finish();
        }
    }
}

fn pair(c: &mut Criterion) {
    bench(
        c,
        "pair",
        Workload::Pair,
        &[
            "memory",
            "os-thread",
            "os-blocking",
            "fsync-thread",
            "fsync-blocking",
        ],
    );
}

fn qos1(c: &mut Criterion) {
    bench(
        c,
        "qos1",
        Workload::Qos1,
        &["memory", "os-thread", "os-blocking", "fsync-thread"],
    );
}

criterion_group!(benches, pair, qos1);
criterion_main!(benches);
