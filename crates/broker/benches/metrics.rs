//! What the hot path pays for `/metrics`: the counters a Produce or Fetch
//! request adds to ([`BrokerMetrics::produced`], [`BrokerMetrics::fetched`])
//! and the per-API request count and latency histogram every answered
//! request records ([`BrokerMetrics::answered`]).
//!
//! Each iteration is one request's worth of recording, so the time per
//! iteration times the requests per second of a run is the share of a
//! core the metrics take (see "Metrics overhead" in docs/performance.md).
//!
//! Run with `cargo bench -p kraftwerk-broker --bench metrics`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kraftwerk_broker::metrics::BrokerMetrics;

fn recording(c: &mut Criterion) {
    let metrics = BrokerMetrics::new();
    let topics: Vec<String> = (0..100).map(|i| format!("topic-{i}")).collect();
    let mut group = c.benchmark_group("metrics");
    group.bench_function("produce request (one topic)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % topics.len();
            metrics.produced(black_box(&topics[i]), 16_384, 150);
            metrics.answered(black_box("Produce"), Duration::from_micros(350));
        })
    });
    group.bench_function("fetch request (one topic)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % topics.len();
            metrics.fetched(black_box(&topics[i]), 1_048_576);
            metrics.answered(black_box("Fetch"), Duration::from_micros(900));
        })
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
