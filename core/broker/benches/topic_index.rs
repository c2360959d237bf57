//! Topic matching cost: the per-PUBLISH work of the router.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fogg_codec::topic::matches;

fn bench_matches(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic_matches");
    for (filter, topic) in [
        ("sensors/+/temperature", "sensors/kitchen/temperature"),
        ("sensors/#", "sensors/kitchen/temperature/celsius"),
        ("a/b/c/d/e/f/g", "a/b/c/d/e/f/g"),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(filter), &(filter, topic), |b, (f, t)| {
            b.iter(|| matches(std::hint::black_box(f), std::hint::black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_matches);
criterion_main!(benches);
