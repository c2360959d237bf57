//! Topic index cost per PUBLISH: matching a topic against many subscriptions.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fogg_broker::bench_support::{IndexFixture, rss_bytes};

fn filters(n: usize) -> Vec<String> {
    // A realistic mix: exact device topics, per-site wildcards, a few catch-alls.
    (0..n)
        .map(|i| {
            let site = (i / 10) % 100;
            match i % 10 {
                0 => format!("site/{site}/device/+/temperature"),
                1 => format!("site/{site}/#"),
                _ => format!("site/{site}/device/{i}/temperature"),
            }
        })
        .collect()
}

fn bench_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_index_match");
    group.throughput(Throughput::Elements(1));
    for n in [1_000usize, 100_000, 1_000_000] {
        let filters = filters(n);
        let before = rss_bytes();
        let fixture = IndexFixture::new(filters.iter().map(String::as_str));
        let grown = rss_bytes().saturating_sub(before);
        println!(
            "{n} subscriptions (one session each): RSS +{} MiB, {} bytes each",
            grown / (1 << 20),
            grown / n as u64
        );
        // Matched by one exact filter and by the wildcards of site 44.
        let topic = "site/44/device/442/temperature";
        assert!(fixture.match_count(topic) > 0);
        group.bench_with_input(BenchmarkId::new("subscriptions", n), &topic, |b, t| {
            b.iter(|| fixture.match_count(std::hint::black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_match);
criterion_main!(benches);
