//! Micro-benchmarks of a partition `Log` on real files in a temporary
//! directory, default log config (1 GiB segments, no fsync per append):
//!
//! * `append_as_leader`: one produce request's already validated batches
//!   get offsets and the leader epoch and go to the active segment in one
//!   write (plus sparse index entries). The OS page cache absorbs the
//!   writes; nothing is fsynced.
//! * `read`: a consumer's fetch of whole batches from a populated log
//!   (index lookup, pread, copy into `Bytes`), from the page cache.
//!
//! Batches come from the `kafka-protocol` encoder: ~100-byte JSON-like
//! values, no keys, no producer id (a repeated idempotent batch would be
//! answered as a duplicate and not written). Throughput is in batch bytes.
//!
//! Run with `cargo bench -p kraftwerk-storage`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kraftwerk_protocol::batch::{self, BatchHeader, HEADER_BYTES};
use kraftwerk_storage::Log;
use kraftwerk_types::LogConfig;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// What a record of [`value`] costs inside a batch, about: a first guess
/// when sizing batches.
const RECORD_BYTES_ESTIMATE: usize = 108;
const NOW_MS: i64 = 1_700_000_000_000;
const LEADER_EPOCH: i32 = 0;
/// The append benchmark empties its log (untimed) before the log grows
/// past this, so the disk and the dirty page cache stay bounded and the
/// 1 GiB segment never rolls.
const APPEND_LOG_BYTES_MAX: u64 = 256 * MIB as u64;
/// How much the read benchmark writes before it starts reading.
const READ_LOG_BYTES: usize = 64 * MIB;

/// A 100-byte value that compresses like typical event data.
fn value(i: usize) -> Bytes {
    let mut text = format!(
        "{{\"order\":{i},\"customer\":\"c-{:04}\",\"sku\":\"SKU-{:05}\",\"qty\":{},\"ts\":{}}}",
        i % 7919,
        (i * 31) % 100_000,
        i % 9 + 1,
        NOW_MS + i as i64,
    );
    text.truncate(100);
    while text.len() < 100 {
        text.push(' ');
    }
    Bytes::from(text)
}

/// One uncompressed batch of at most `batch_bytes`, as full as the
/// estimate allows, without producer id.
fn encode_batch(batch_bytes: usize) -> Bytes {
    let mut count = (batch_bytes - HEADER_BYTES) / RECORD_BYTES_ESTIMATE;
    loop {
        let encoded = encode_records(count);
        if encoded.len() <= batch_bytes {
            return encoded;
        }
        count = count * batch_bytes / encoded.len();
    }
}

fn encode_records(count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence
            // changes; a base sequence of -1 means "no sequence".
            sequence: i as i32 - 1,
            timestamp: NOW_MS + i as i64,
            key: None,
            value: Some(value(i)),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode a batch");
    buffer.freeze()
}

/// What the produce handler hands to the log: the checked batches.
fn validated(payload: &Bytes) -> Vec<(BatchHeader, Bytes)> {
    let batches = batch::validate_all(payload).expect("the encoder's batches are valid");
    assert_eq!(batches.len(), 1, "the records fit one batch");
    batches
}

fn open_log(dir: &tempfile::TempDir) -> Log {
    Log::open(dir.path().join("bench-0"), LogConfig::default()).expect("open the log")
}

fn append(c: &mut Criterion) {
    let cases = [
        ("one_batch_16KiB", encode_batch(16 * KIB)),
        ("one_batch_1MiB", encode_batch(MIB)),
    ];
    let mut group = c.benchmark_group("append_as_leader");
    for (name, payload) in &cases {
        let batches = validated(payload);
        let payload_bytes = payload.len() as u64;
        group.throughput(Throughput::Bytes(payload_bytes));
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let log = open_log(&dir);
                // The first append of an epoch writes the leader-epoch
                // checkpoint; keep that out of the figures.
                let warm_up = |log: &Log| {
                    log.append_as_leader(batches.clone(), LEADER_EPOCH, NOW_MS)
                        .expect("append");
                };
                warm_up(&log);
                let mut measured = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    if log.size_bytes() + payload_bytes > APPEND_LOG_BYTES_MAX {
                        log.truncate_fully_and_start_at(0).expect("empty the log");
                        warm_up(&log);
                    }
                    let room = (APPEND_LOG_BYTES_MAX - log.size_bytes()) / payload_bytes;
                    let chunk = room.min(iters - done);
                    let start = Instant::now();
                    for _ in 0..chunk {
                        let info = log
                            .append_as_leader(batches.clone(), LEADER_EPOCH, NOW_MS)
                            .expect("append");
                        black_box(info);
                    }
                    measured += start.elapsed();
                    done += chunk;
                }
                measured
            })
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = open_log(&dir);
    let payload = encode_batch(16 * KIB);
    let batches = validated(&payload);
    let mut base_offsets = Vec::new();
    for _ in 0..READ_LOG_BYTES / payload.len() {
        let info = log
            .append_as_leader(batches.clone(), LEADER_EPOCH, NOW_MS)
            .expect("append");
        base_offsets.push(info.base_offset);
    }

    // max_bytes 16 KiB returns one batch (min_one_batch), 1 MiB returns as
    // many whole batches as fit: Kafka's default max.partition.fetch.bytes.
    let cases = [("16KiB", 16 * KIB, 1), ("1MiB", MIB, MIB / payload.len())];
    let mut group = c.benchmark_group("read");
    for (name, max_bytes, batches_per_read) in cases {
        // Consumers that continue where the last fetch ended, spread over
        // the whole log.
        let starts: Vec<i64> = base_offsets
            .iter()
            .step_by(batches_per_read)
            .copied()
            .collect();
        let probe = log
            .read(starts[0], max_bytes, i64::MAX, true)
            .expect("read");
        assert_eq!(probe.len(), batches_per_read * payload.len());
        group.throughput(Throughput::Bytes(probe.len() as u64));
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let start = starts[next % starts.len()];
                next += 1;
                log.read(black_box(start), max_bytes, i64::MAX, true)
                    .expect("read")
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
    targets = append, read
}
criterion_main!(benches);
