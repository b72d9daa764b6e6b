//! Micro-benchmarks of the produce path's batch checks in
//! `kraftwerk_protocol::batch`: `validate_all` (length, magic 2 and CRC32C
//! of every batch in a partition's payload, no record decoded) and
//! `with_records` (the cleaner's rebuild of a batch around new records).
//!
//! Batches are encoded by the `kafka-protocol` crate as an idempotent
//! producer would send them: ~100-byte JSON-like values, no keys.
//! Throughput is in bytes of the payload as it arrives on the wire.
//!
//! Run with `cargo bench -p kraftwerk-protocol`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kraftwerk_protocol::batch::{self, HEADER_BYTES};
use kraftwerk_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// What a record of [`value`] costs inside a batch, about: the value, its
/// length, and the varints around it. A first guess when sizing batches.
const RECORD_BYTES_ESTIMATE: usize = 108;
const PRODUCER_ID: i64 = 4242;
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A 100-byte value that compresses like typical event data.
fn value(i: usize) -> Bytes {
    let mut text = format!(
        "{{\"order\":{i},\"customer\":\"c-{:04}\",\"sku\":\"SKU-{:05}\",\"qty\":{},\"ts\":{}}}",
        i % 7919,
        (i * 31) % 100_000,
        i % 9 + 1,
        TIMESTAMP_MS + i as i64,
    );
    text.truncate(100);
    while text.len() < 100 {
        text.push(' ');
    }
    Bytes::from(text)
}

/// One batch of `count` records starting at sequence `first_sequence`.
fn encode_batch(first_sequence: usize, count: usize, compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: (first_sequence + i) as i32,
            timestamp: TIMESTAMP_MS + i as i64,
            key: None,
            value: Some(value(first_sequence + i)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode a batch");
    buffer.freeze()
}

/// The most records an uncompressed batch of at most `batch_bytes` holds
/// (about: the estimate is corrected until the batch fits).
fn records_for(batch_bytes: usize) -> usize {
    let mut count = (batch_bytes - HEADER_BYTES) / RECORD_BYTES_ESTIMATE;
    loop {
        let encoded = encode_batch(0, count, Compression::None).len();
        if encoded <= batch_bytes {
            return count;
        }
        count = count * batch_bytes / encoded;
    }
}

/// `batches` batches of about `batch_bytes` each, back to back, as one
/// partition's produce payload.
fn payload(batches: usize, batch_bytes: usize, compression: Compression) -> Bytes {
    let count = records_for(batch_bytes);
    let mut out = BytesMut::new();
    for b in 0..batches {
        out.extend_from_slice(&encode_batch(b * count, count, compression));
    }
    let out = out.freeze();
    let checked = batch::validate_all(&out).expect("the encoder's batches are valid");
    assert_eq!(checked.len(), batches);
    out
}

fn validate_all(c: &mut Criterion) {
    let cases = [
        ("one_batch_16KiB", payload(1, 16 * KIB, Compression::None)),
        ("one_batch_1MiB", payload(1, MIB, Compression::None)),
        (
            "64_batches_of_16KiB",
            payload(64, 16 * KIB, Compression::None),
        ),
        // The records of the 1 MiB batch, compressed: validation checks the
        // compressed bytes and never decompresses them.
        (
            "one_batch_1MiB_of_records_lz4",
            payload(1, MIB, Compression::Lz4),
        ),
    ];
    let mut group = c.benchmark_group("validate_all");
    for (name, payload) in &cases {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| batch::validate_all(black_box(payload)).expect("valid payload"))
        });
    }
    group.finish();
}

fn with_records(c: &mut Criterion) {
    let cases = [
        ("16KiB", payload(1, 16 * KIB, Compression::None)),
        ("1MiB", payload(1, MIB, Compression::None)),
    ];
    let mut group = c.benchmark_group("with_records");
    for (name, original) in &cases {
        let header = batch::validate_one(original).expect("valid batch");
        let records = &original[HEADER_BYTES..];
        group.throughput(Throughput::Bytes(original.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                batch::with_records(
                    black_box(original),
                    header.attributes,
                    header.record_count,
                    black_box(records),
                )
                .expect("rebuild the batch")
            })
        });
    }
    group.finish();
}

/// Short runs: the whole file finishes in well under a minute on 2 cores.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = validate_all, with_records
}
criterion_main!(benches);
