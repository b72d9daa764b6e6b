//! The Rust producer's caller-side work, without a broker: the record
//! accumulator (append each record to its partition's open batch, then
//! drain the ready batches into one request per leader) and the batch
//! encoder (records into a v2 record batch, with and without compression).
//!
//! Each iteration is 10,000 records, so the time per iteration divided by
//! 10,000 is what one record costs the sending side before any I/O.
//!
//! Run with `cargo bench -p kraftwerk-client --bench producer`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::records::Compression;
use kraftwerk_client::producer::benching::AccumulatorRun;
use kraftwerk_client::records::{encode_batch, BatchIdentity, OutgoingRecord};

const RECORDS: usize = 10_000;
const TOPIC: &str = "bench";

fn record(size: usize) -> OutgoingRecord {
    OutgoingRecord {
        key: None,
        value: Some(Bytes::from(vec![b'x'; size])),
        headers: Vec::new(),
        timestamp_ms: 1_765_000_000_000,
    }
}

fn accumulator(c: &mut Criterion) {
    let mut group = c.benchmark_group("accumulator");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (size, partitions) in [(100, 1), (100, 6), (1024, 6), (100, 2_000)] {
        let one = record(size);
        group.bench_function(
            format!("append and drain, {size} B, {partitions} partitions"),
            |b| {
                b.iter_batched_ref(
                    || AccumulatorRun::new(TOPIC, partitions, 3, 16_384),
                    |run| black_box(run.append_and_drain(TOPIC, &one, RECORDS)),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoder");
    for size in [100, 1024] {
        // One batch.size (16 KiB) worth of records, as the accumulator
        // hands them over.
        let per_batch = (16_384 / (size + 20)).max(1);
        let records: Vec<OutgoingRecord> = (0..per_batch).map(|_| record(size)).collect();
        group.throughput(Throughput::Elements(per_batch as u64));
        for (name, compression) in [
            ("none", Compression::None),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            group.bench_function(format!("16 KiB batch of {size} B records, {name}"), |b| {
                b.iter(|| {
                    black_box(
                        encode_batch(black_box(&records), BatchIdentity::NONE, compression)
                            .map(|bytes| bytes.len()),
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, accumulator, encoder);
criterion_main!(benches);
