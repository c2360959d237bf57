//! Retained messages at scale: a subscription's wildcard answered from the
//! index over 1,000,000 retained messages, and the memory they take.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fogg_broker::bench_support::{RetainFixture, rss_bytes};

fn bench_retained(c: &mut Criterion) {
    let before = rss_bytes();
    let fixture = RetainFixture::new((0..1_000_000).map(|i| {
        let (site, sensor) = (i / 1000, i % 1000);
        format!("site/{site}/sensor/{sensor}/temperature")
    }));
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "1,000,000 retained messages (64-byte payloads): RSS +{} MiB, {} bytes each",
        grown / (1 << 20),
        grown / 1_000_000
    );
    let mut group = c.benchmark_group("retained_match_1m");
    for filter in [
        "site/42/sensor/7/temperature",
        "site/42/sensor/+/temperature",
        "site/42/#",
        "site/+/sensor/7/temperature",
    ] {
        let n = fixture.match_count(filter);
        assert!(n > 0);
        group.bench_with_input(BenchmarkId::new("filter", filter), &filter, |b, f| {
            b.iter(|| fixture.match_count(std::hint::black_box(f)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_retained);
criterion_main!(benches);
