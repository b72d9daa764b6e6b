//! Compaction tests on real files: batches encoded and results decoded by
//! the `kafka-protocol` crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kraftwerk_protocol::batch::BatchHeader;
use kraftwerk_types::config::Ratio;
use kraftwerk_types::{CleanupPolicy, ErrorCode, LogConfig};

use crate::cleaner::{CleanerStep, CLEANER_CHECKPOINT_FILE};
use crate::segment::mark_deleted;
use crate::tests::{files_with_suffix, split, test_config, NOW_MS};
use crate::{CompactOutcome, CompactStats, Log, StorageError};

/// (key, value); a None value is a tombstone.
pub(crate) type Entry<'a> = (Option<&'a str>, Option<&'a str>);

/// How long the tests wait for another thread before failing.
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Producer {
    id: i64,
    epoch: i16,
    first_sequence: i32,
}

fn encode(
    entries: &[Entry],
    timestamp: i64,
    producer: Option<Producer>,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |p| p.id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map_or(-1, |p| p.first_sequence + i as i32),
            timestamp: timestamp + i as i64,
            key: key.map(|k| Bytes::from(k.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode");
    buffer.freeze()
}

/// One uncompressed batch of `entries`, record `i` at `timestamp + i`.
pub(crate) fn batch_of(entries: &[Entry], timestamp: i64, producer: Option<Producer>) -> Bytes {
    encode(entries, timestamp, producer, Compression::None)
}

fn append(log: &Log, bytes: Bytes) -> Result<crate::AppendInfo, StorageError> {
    log.append_as_leader(split(&bytes), 0, NOW_MS)
}

/// A compacted topic with small segments that cleans whenever anything is dirty.
fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        min_cleanable_dirty_ratio: Ratio::new(0.0).expect("ratio"),
        delete_retention_ms: 1000,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..test_config()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
}

/// Every batch, CRC-checked, reading from the log start until the log end
/// or a read that finds nothing (a gap at the end of the closed segments
/// while the active one is empty).
fn batches(log: &Log) -> Vec<(BatchHeader, Bytes)> {
    let mut out: Vec<(BatchHeader, Bytes)> = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let chunk = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        let got = split(&chunk);
        let Some((last, _)) = got.last() else {
            break;
        };
        assert!(got[0].0.last_offset() >= offset, "read went back");
        offset = last.last_offset() + 1;
        out.extend(got);
    }
    for pair in out.windows(2) {
        assert!(
            pair[1].0.base_offset > pair[0].0.last_offset(),
            "batches overlap: {:?} then {:?}",
            pair[0].0,
            pair[1].0
        );
    }
    out
}

fn decode(bytes: &Bytes) -> Vec<Record> {
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode(&mut buf)
        .expect("decode")
        .records
}

fn text(bytes: &Option<Bytes>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn records(log: &Log) -> Vec<Stored> {
    let mut out = Vec::new();
    for (header, bytes) in batches(log) {
        for record in decode(&bytes) {
            assert!(
                record.offset >= header.base_offset && record.offset <= header.last_offset(),
                "record {} outside its batch {header:?}",
                record.offset
            );
            out.push(Stored {
                offset: record.offset,
                key: text(&record.key),
                value: text(&record.value),
            });
        }
    }
    assert!(
        out.windows(2).all(|w| w[1].offset > w[0].offset),
        "record offsets increase"
    );
    out
}

fn latest_per_key(records: &[Stored]) -> BTreeMap<String, Stored> {
    let mut latest = BTreeMap::new();
    for record in records {
        if let Some(key) = &record.key {
            latest.insert(key.clone(), record.clone());
        }
    }
    latest
}

/// The base offset of the active (last) segment, from the file names.
fn active_base(dir: &Path) -> i64 {
    let logs = files_with_suffix(dir, ".log");
    let last = logs.last().expect("a segment");
    last.trim_end_matches(".log").parse().expect("base offset")
}

fn cleaner_leftovers(dir: &Path) -> Vec<String> {
    let mut out = files_with_suffix(dir, ".cleaned");
    out.extend(files_with_suffix(dir, ".swap"));
    out.extend(files_with_suffix(dir, ".deleted"));
    out
}

/// Appends `batches` batches updating keys `k0`..`k{keys-1}` (batch n has
/// 1 to 3 records, value `n{n}i{i}`, timestamps `NOW_MS + 10n + i`), then
/// one more so that the last update batch is in a closed segment.
fn write_updates(log: &Log, batches: i64, keys: i64) {
    for n in 0..batches {
        let keys: Vec<String> = (0..n % 3 + 1)
            .map(|i| format!("k{}", (n * 7 + i) % keys))
            .collect();
        let values: Vec<String> = (0..n % 3 + 1).map(|i| format!("n{n}i{i}")).collect();
        let entries: Vec<Entry> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
            .collect();
        append(log, batch_of(&entries, NOW_MS + 10 * n, None)).expect("append");
    }
}

/// Appends filler records (key `filler`) until the active segment holds
/// nothing but them, so everything before is in closed segments.
fn roll(log: &Log) {
    let dir = log.dir().to_path_buf();
    let before = active_base(&dir);
    while active_base(&dir) == before {
        append(log, batch_of(&[(Some("filler"), Some("x"))], NOW_MS, None)).expect("filler");
    }
}

#[test]
fn compaction_keeps_the_latest_record_of_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Written as a delete topic (so keyless records get in), then switched
    // to compact, as `kafka-configs --alter` would.
    let delete_config = LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: true,
            compact: false,
        },
        ..compact_config()
    };
    let log = Log::open(dir.path().to_path_buf(), delete_config).expect("open");
    write_updates(&log, 150, 10);
    for n in 0..5 {
        let entries: [Entry; 2] = [(None, Some("keyless")), (Some("k1"), Some("late"))];
        append(&log, batch_of(&entries, NOW_MS + 2000 + n, None)).expect("append");
    }
    write_updates(&log, 150, 10);
    roll(&log);
    log.update_config(compact_config());

    let segments_before = log.segment_count();
    let (log_start, log_end) = (log.log_start_offset(), log.log_end_offset());
    let before = records(&log);
    let ranges_before: BTreeSet<(i64, i64)> = batches(&log)
        .iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect();
    let keyless_before = before.iter().filter(|r| r.key.is_none()).count();
    let stats = log.compact(NOW_MS + 10_000, log_end).expect("compact");
    assert_eq!(stats.outcome, CompactOutcome::Cleaned, "{stats:?}");
    assert!(stats.records_removed > 200, "{stats:?}");
    assert!(stats.bytes_after < stats.bytes_before, "{stats:?}");
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (log_start, log_end)
    );
    assert!(cleaner_leftovers(dir.path()).is_empty());

    let after = records(&log);
    assert_eq!(latest_per_key(&after), latest_per_key(&before));
    assert_eq!(
        after.iter().filter(|r| r.key.is_none()).count(),
        keyless_before,
        "keyless records stay"
    );
    let closed_end = active_base(dir.path());
    let mut seen = BTreeSet::new();
    for record in after.iter().filter(|r| r.offset < closed_end) {
        if let Some(key) = &record.key {
            assert!(seen.insert(key.clone()), "{key} twice in cleaned segments");
        }
    }
    assert_eq!(
        log.compact(NOW_MS + 10_000, log_end)
            .expect("again")
            .outcome,
        CompactOutcome::NothingToClean
    );

    // Reads by offset: a kept offset is in the first batch returned; a
    // removed one gives the next batch after the gap.
    for offset in log_start..log_end {
        let chunk = log.read(offset, 1, i64::MAX, true).expect("read");
        let got = split(&chunk);
        if let Some((header, _)) = got.first() {
            assert!(header.last_offset() >= offset, "offset {offset}");
        }
        if after.iter().any(|r| r.offset == offset) {
            let (header, bytes) = got.first().expect("a batch");
            assert!(header.base_offset <= offset);
            assert!(decode(bytes).iter().any(|r| r.offset == offset));
        }
    }
    // A cleaned batch covers exactly the offsets it covered before.
    let stored = batches(&log);
    for (header, _) in &stored {
        let range = (header.base_offset, header.last_offset());
        assert!(ranges_before.contains(&range), "{header:?}");
    }
    // The time index of cleaned segments still answers ListOffsets.
    for timestamp in [NOW_MS, NOW_MS + 333, NOW_MS + 1491, NOW_MS + 2002] {
        let want = stored
            .iter()
            .find(|(h, _)| h.max_timestamp >= timestamp)
            .map(|(h, _)| (h.base_offset, h.max_timestamp));
        assert_eq!(
            log.offset_for_timestamp(timestamp).expect("lookup"),
            want,
            "ts {timestamp}"
        );
    }

    // After a restart, the same content and the same index files: the
    // cleaner built them exactly as recovery does.
    let index_bytes = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut names = files_with_suffix(dir, ".index");
        names.extend(files_with_suffix(dir, ".timeindex"));
        names
            .into_iter()
            .map(|n| {
                let bytes = fs::read(dir.join(&n)).expect("index");
                (n, bytes)
            })
            .collect()
    };
    let indexes = index_bytes(dir.path());
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
    assert_eq!(records(&log), after);
    assert_eq!(index_bytes(dir.path()), indexes);
    assert_eq!(log.first_dirty_offset(), closed_end);

    // Groups are sized by the segments they replace (as in Kafka), so the
    // segments the first pass shrank merge on the next one.
    write_updates(&log, 10, 10);
    roll(&log);
    let expected = latest_per_key(&records(&log));
    let stats = log
        .compact(NOW_MS + 10_000, log.log_end_offset())
        .expect("second pass");
    assert!(
        stats.segments_replaced > stats.segments_written + 10,
        "{stats:?}"
    );
    assert!(log.segment_count() < segments_before / 4);
    assert_eq!(latest_per_key(&records(&log)), expected);
}

#[test]
fn tombstones_stay_until_delete_retention_ms_then_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
    let entries: [Entry; 5] = [
        (Some("a"), Some("a1")),
        (Some("b"), Some("b1")),
        (Some("a"), None),
        (Some("b"), Some("b2")),
        (Some("c"), None),
    ];
    for entry in entries {
        append(&log, batch_of(&[entry], NOW_MS, None)).expect("append");
    }
    roll(&log);
    let log_end = log.log_end_offset();
    // delete.retention.ms is 1000: at +500 the tombstones are young.
    let stats = log.compact(NOW_MS + 500, log_end).expect("compact");
    assert_eq!(stats.tombstones_removed, 0, "{stats:?}");
    let latest = latest_per_key(&records(&log));
    assert_eq!(latest["a"].value, None);
    assert_eq!(latest["b"].value.as_deref(), Some("b2"));
    assert_eq!(latest["c"].value, None);
    let kept: Vec<(Option<String>, Option<String>)> = records(&log)
        .into_iter()
        .filter(|r| r.key.as_deref() != Some("filler"))
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        kept,
        vec![
            (Some("a".into()), None),
            (Some("b".into()), Some("b2".into())),
            (Some("c".into()), None)
        ]
    );

    // Later, with new data to trigger a pass, they are gone.
    roll(&log);
    let stats = log
        .compact(NOW_MS + 5000, log.log_end_offset())
        .expect("compact");
    assert_eq!(stats.tombstones_removed, 2, "{stats:?}");
    let latest = latest_per_key(&records(&log));
    assert!(!latest.contains_key("a") && !latest.contains_key("c"));
    assert_eq!(latest["b"].value.as_deref(), Some("b2"));
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
    assert_eq!(latest_per_key(&records(&log)), latest);
}

/// Starts a compaction pass on its own thread and returns once the pass has
/// written its first cleaned segment, before swapping it in. The pass waits
/// there until the returned sender is used (or `WAIT` passes).
fn start_paused_pass(
    log: &Arc<Log>,
    now_ms: i64,
    log_end: i64,
) -> (
    mpsc::Sender<()>,
    std::thread::JoinHandle<Result<CompactStats, StorageError>>,
) {
    let (reached, reached_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let paused = AtomicBool::new(false);
    log.set_cleaner_hook(Some(Box::new(move |step| {
        if step == CleanerStep::CleanedWritten && !paused.swap(true, Ordering::SeqCst) {
            let _ = reached.send(());
            let _ = release_rx.recv_timeout(WAIT);
        }
        true
    })));
    let cleaner = {
        let log = Arc::clone(log);
        std::thread::spawn(move || log.compact(now_ms, log_end))
    };
    reached_rx
        .recv_timeout(WAIT)
        .expect("the pass wrote a segment");
    (release, cleaner)
}

#[test]
fn appends_and_reads_go_on_while_a_pass_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path().to_path_buf(), compact_config()).expect("open"));
    write_updates(&log, 300, 10);
    roll(&log);
    let log_end = log.log_end_offset();

    // The pass stops between writing its first cleaned segment and
    // swapping it in, and waits to be released.
    let (release, cleaner) = start_paused_pass(&log, NOW_MS + 10_000, log_end);

    let (done, done_rx) = mpsc::channel();
    let appender = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for n in 0..50 {
                let value = format!("during{n}");
                let batch = batch_of(&[(Some("k3"), Some(&value))], NOW_MS + 5000, None);
                append(&log, batch).expect("append during the pass");
                let _ = log
                    .read(0, 4096, i64::MAX, true)
                    .expect("read during the pass");
            }
            let _ = done.send(());
        })
    };
    // Appends finish while the pass is still paused: it holds no lock.
    let finished = done_rx.recv_timeout(WAIT);
    let _ = release.send(());
    assert!(
        finished.is_ok(),
        "appends were blocked by the compaction pass"
    );
    appender.join().expect("appender");
    let stats = cleaner.join().expect("cleaner thread").expect("compact");
    assert_eq!(stats.outcome, CompactOutcome::Cleaned, "{stats:?}");
    assert!(stats.records_removed > 0);
    log.set_cleaner_hook(None);

    assert_eq!(log.log_end_offset(), log_end + 50);
    let all = records(&log);
    assert_eq!(
        latest_per_key(&all)["k3"].value.as_deref(),
        Some("during49")
    );
    assert_eq!(
        all.iter().filter(|r| r.offset >= log_end).count(),
        50,
        "every append during the pass is there"
    );
}

#[test]
fn reads_racing_swaps_never_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path().to_path_buf(), compact_config()).expect("open"));
    write_updates(&log, 100, 10);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (log, stop, reads) = (Arc::clone(&log), Arc::clone(&stop), Arc::clone(&reads));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let end = log.log_end_offset();
                let mut offset = log.log_start_offset();
                while offset < end {
                    let chunk = log.read(offset, 300, i64::MAX, true).expect("read");
                    let got = split(&chunk);
                    reads.fetch_add(1, Ordering::SeqCst);
                    let Some((last, _)) = got.last() else { break };
                    offset = last.last_offset() + 1;
                }
            }
        })
    };
    let mut cleaned = 0;
    for _ in 0..15 {
        write_updates(&log, 40, 10);
        let stats = log
            .compact(NOW_MS + 10_000, log.log_end_offset())
            .expect("compact");
        if stats.segments_written > 0 {
            cleaned += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("reader saw no error");
    assert!(cleaned > 10 && reads.load(Ordering::SeqCst) > 0);
}

#[test]
fn compressed_batches_compact_with_every_codec() {
    for (compression, codec) in [
        (Compression::None, 0),
        (Compression::Gzip, 1),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
        for n in 0..60i64 {
            let keys: Vec<String> = (0..5).map(|i| format!("k{}", (n + i) % 7)).collect();
            let values: Vec<String> = (0..5).map(|i| format!("{compression:?}-{n}-{i}")).collect();
            let entries: Vec<Entry> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (Some(k.as_str()), Some(v.as_str())))
                .collect();
            let batch = encode(&entries, NOW_MS + n, None, compression);
            append(&log, batch).expect("append");
        }
        roll(&log);
        let before = records(&log);
        let stats = log
            .compact(NOW_MS + 10_000, log.log_end_offset())
            .expect("compact");
        assert!(stats.records_removed > 200, "{compression:?}: {stats:?}");
        let after = records(&log);
        assert_eq!(
            latest_per_key(&after),
            latest_per_key(&before),
            "{compression:?}"
        );
        let updates = after
            .iter()
            .filter(|r| r.key.as_deref() != Some("filler"))
            .count();
        assert_eq!(updates, 7, "{compression:?}: one record per key");
        for (header, bytes) in batches(&log) {
            let ours = decode(&bytes)
                .iter()
                .any(|r| r.key.as_deref() != Some(&b"filler"[..]));
            if ours {
                assert_eq!(header.compression(), codec, "{compression:?}");
            }
        }
    }
}

#[test]
fn idempotent_producer_state_survives_compaction_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
    let producer = |n: i32| {
        let entries: [Entry; 2] = [(Some("a"), Some("pa")), (Some("b"), Some("pb"))];
        let p = Producer {
            id: 42,
            epoch: 0,
            first_sequence: 2 * n,
        };
        batch_of(&entries, NOW_MS + n as i64, Some(p))
    };
    let mut infos = Vec::new();
    for n in 0..8 {
        infos.push(append(&log, producer(n)).expect("producer batch"));
    }
    // A later writer supersedes everything the producer wrote.
    let entries: [Entry; 2] = [(Some("a"), Some("last-a")), (Some("b"), Some("last-b"))];
    append(&log, batch_of(&entries, NOW_MS + 100, None)).expect("append");
    roll(&log);

    let stats = log
        .compact(NOW_MS + 10_000, log.log_end_offset())
        .expect("compact");
    assert!(stats.records_removed >= 16, "{stats:?}");
    // The producer's batches the producer state remembers (the last five)
    // stay, empty, with their offsets; the three before them are gone.
    let kept: Vec<(i64, i64, i32)> = batches(&log)
        .iter()
        .filter(|(h, _)| h.producer_id == 42)
        .map(|(h, _)| (h.base_offset, h.last_offset(), h.record_count))
        .collect();
    let want: Vec<(i64, i64, i32)> = infos[3..]
        .iter()
        .map(|i| (i.base_offset, i.last_offset, 0))
        .collect();
    assert_eq!(kept, want);

    drop(log); // no close: recovery rebuilds the producer state from the log
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
    let retry = append(&log, producer(7)).expect("retry of the last batch");
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (infos[7].base_offset, infos[7].last_offset)
    );
    let older = append(&log, producer(4)).expect("retry of an older batch");
    assert!(older.duplicate);
    assert_eq!(older.base_offset, infos[4].base_offset);
    let gap = append(&log, producer(10)).expect_err("a gap in sequences");
    assert_eq!(gap.error_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);
    let next = append(&log, producer(8)).expect("the next sequence");
    assert!(!next.duplicate);
}

#[test]
fn compact_delete_policy_compacts_and_applies_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: 1000,
        cleanup_policy: CleanupPolicy {
            delete: true,
            compact: true,
        },
        ..compact_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    // Old data (timestamps around NOW_MS), then new data 10 s later.
    write_updates(&log, 60, 6);
    for n in 0..60 {
        let value = format!("new{n}");
        let key = format!("k{}", n % 6);
        let batch = batch_of(&[(Some(&key), Some(&value))], NOW_MS + 10_000 + n, None);
        append(&log, batch).expect("append");
    }
    roll(&log);
    let stats = log
        .compact(NOW_MS + 10_500, log.log_end_offset())
        .expect("compact");
    assert!(stats.records_removed > 0, "{stats:?}");
    let compacted = records(&log);
    // Cleaned segments kept their batches' timestamps, so retention sees
    // the same ages as before compaction.
    let deleted = log.apply_retention(NOW_MS + 10_500).expect("retention");
    assert!(deleted > 0);
    let log_start = log.log_start_offset();
    assert!(log_start > 0);
    let remaining = records(&log);
    let want: Vec<Stored> = compacted
        .into_iter()
        .filter(|r| r.offset >= log_start)
        .collect();
    assert_eq!(remaining, want);
    for value in latest_per_key(&remaining)
        .values()
        .filter_map(|r| r.value.as_ref())
    {
        assert!(value.starts_with("new") || value == "x", "{value}");
    }
}

#[test]
fn dirty_ratio_lag_and_bounds_decide_whether_a_pass_runs() {
    struct Case {
        name: &'static str,
        config: LogConfig,
        /// Updates after a first full pass (none: no first pass).
        after_first_pass: Option<i64>,
        now_ms: i64,
        clean_below: Option<i64>,
        want: CompactOutcome,
    }
    let ratio = |r: f64| Ratio::new(r).expect("ratio");
    let cases = [
        Case {
            name: "delete policy",
            config: LogConfig {
                cleanup_policy: CleanupPolicy {
                    delete: true,
                    compact: false,
                },
                ..compact_config()
            },
            after_first_pass: None,
            now_ms: NOW_MS + 10_000,
            clean_below: None,
            want: CompactOutcome::NotCompacted,
        },
        Case {
            name: "all dirty",
            config: LogConfig {
                min_cleanable_dirty_ratio: ratio(0.5),
                ..compact_config()
            },
            after_first_pass: None,
            now_ms: NOW_MS + 10_000,
            clean_below: None,
            want: CompactOutcome::Cleaned,
        },
        Case {
            name: "a little new data, below the ratio",
            config: LogConfig {
                min_cleanable_dirty_ratio: ratio(0.9),
                ..compact_config()
            },
            after_first_pass: Some(20),
            now_ms: NOW_MS + 10_000,
            clean_below: None,
            want: CompactOutcome::BelowDirtyRatio,
        },
        Case {
            name: "below the ratio but past max.compaction.lag.ms",
            config: LogConfig {
                min_cleanable_dirty_ratio: ratio(0.9),
                max_compaction_lag_ms: 5000,
                ..compact_config()
            },
            after_first_pass: Some(20),
            now_ms: NOW_MS + 10_000,
            clean_below: None,
            want: CompactOutcome::Cleaned,
        },
        Case {
            name: "records younger than min.compaction.lag.ms",
            config: LogConfig {
                min_compaction_lag_ms: 60_000,
                ..compact_config()
            },
            after_first_pass: None,
            now_ms: NOW_MS + 10_000,
            clean_below: None,
            want: CompactOutcome::NothingToClean,
        },
        Case {
            name: "high watermark inside the first segment",
            config: compact_config(),
            after_first_pass: None,
            now_ms: NOW_MS + 10_000,
            clean_below: Some(1),
            want: CompactOutcome::NothingToClean,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
        write_updates(&log, 200, 10);
        roll(&log);
        if let Some(updates) = case.after_first_pass {
            let first = log
                .compact(case.now_ms, log.log_end_offset())
                .expect("first pass");
            assert_eq!(first.outcome, CompactOutcome::Cleaned, "{}", case.name);
            write_updates(&log, updates, 10);
            roll(&log);
        }
        log.update_config(case.config);
        let before = records(&log);
        let clean_below = case.clean_below.unwrap_or(log.log_end_offset());
        let stats = log.compact(case.now_ms, clean_below).expect("compact");
        assert_eq!(stats.outcome, case.want, "{}: {stats:?}", case.name);
        if case.want != CompactOutcome::Cleaned {
            assert_eq!(
                stats,
                CompactStats {
                    outcome: case.want,
                    ..Default::default()
                }
            );
            assert_eq!(records(&log), before, "{}", case.name);
        }
    }
}

/// Builds a log with several segments to clean and what it must hold after.
fn crash_fixture(dir: &Path) -> (Log, BTreeMap<String, Stored>, Vec<Stored>) {
    let log = Log::open(dir.to_path_buf(), compact_config()).expect("open");
    write_updates(&log, 120, 8);
    // Tombstones, old enough to be dropped by the pass.
    for key in ["k2", "k5"] {
        append(&log, batch_of(&[(Some(key), None)], NOW_MS + 1300, None)).expect("tombstone");
    }
    write_updates(&log, 30, 3);
    roll(&log);
    let before = records(&log);
    let latest = latest_per_key(&before);
    (log, latest, before)
}

/// A reopened log after a crash: the latest value of every key (or its
/// tombstone, or nothing when the tombstone was dropped), offsets
/// increasing, the log end where it was, no leftovers; and a new pass works.
fn assert_recovered(dir: &Path, latest: &BTreeMap<String, Stored>, log_end: i64, what: &str) {
    let log = Log::open(dir.to_path_buf(), compact_config()).expect("reopen after a crash");
    assert!(
        cleaner_leftovers(dir).is_empty(),
        "{what}: {:?}",
        cleaner_leftovers(dir)
    );
    assert_eq!(log.log_end_offset(), log_end, "{what}");
    let now = records(&log);
    let got = latest_per_key(&now);
    for (key, want) in latest {
        match (got.get(key), want.value.is_none()) {
            (Some(found), _) => assert_eq!(found, want, "{what}: {key}"),
            (None, true) => {} // a dropped tombstone
            (None, false) => panic!("{what}: {key} lost"),
        }
    }
    assert!(got.len() <= latest.len(), "{what}");
    let stats = log
        .compact(NOW_MS + 10_000, log_end)
        .expect("a pass after recovery");
    assert_ne!(stats.outcome, CompactOutcome::Aborted, "{what}");
    let cleaned = latest_per_key(&records(&log));
    let want: BTreeMap<String, Stored> = latest
        .iter()
        .filter(|(_, r)| r.value.is_some())
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    assert_eq!(cleaned, want, "{what}: after a full pass");
}

#[test]
fn a_crash_at_each_swap_step_recovers() {
    enum Damage {
        None,
        /// Step 2 half done: an index renamed to `.swap`, the log not.
        IndexSwappedOnly,
        /// Step 3 half done: only the first replaced segment renamed.
        FirstSourceDeletedOnly,
        /// Step 4 half done: the indexes in place, the log still `.swap`.
        IndexesInstalledOnly,
    }
    let cases = [
        (CleanerStep::CleanedWritten, 1, Damage::None),
        (CleanerStep::CleanedWritten, 2, Damage::None),
        (CleanerStep::CleanedWritten, 1, Damage::IndexSwappedOnly),
        (CleanerStep::SwapCommitted, 1, Damage::None),
        (CleanerStep::SwapCommitted, 2, Damage::None),
        (
            CleanerStep::SwapCommitted,
            1,
            Damage::FirstSourceDeletedOnly,
        ),
        (CleanerStep::SourcesDeleted, 1, Damage::None),
        (CleanerStep::SourcesDeleted, 1, Damage::IndexesInstalledOnly),
        (CleanerStep::SwapInstalled, 1, Damage::None),
        (CleanerStep::SwapInstalled, 2, Damage::None),
    ];
    for (step, nth, damage) in cases {
        let what = format!("crash at {step:?} #{nth}");
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, latest, _) = crash_fixture(dir.path());
        let log_end = log.log_end_offset();
        let seen = AtomicUsize::new(0);
        log.set_cleaner_hook(Some(Box::new(move |at| {
            !(at == step && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth)
        })));
        let result = log.compact(NOW_MS + 10_000, log_end);
        assert!(
            result.is_err(),
            "{what}: the hook stops the pass: {result:?}"
        );
        drop(log);
        let path = |base: i64, suffix: &str| dir.path().join(format!("{base:020}.{suffix}"));
        let group_base = |suffix: &str| -> i64 {
            let names = files_with_suffix(dir.path(), suffix);
            names[0][..20].parse().expect("base")
        };
        match damage {
            Damage::None => {}
            Damage::IndexSwappedOnly => {
                let base = group_base(".log.cleaned");
                fs::rename(path(base, "index.cleaned"), path(base, "index.swap")).expect("rename");
            }
            Damage::FirstSourceDeletedOnly => {
                let base = group_base(".log.swap");
                mark_deleted(dir.path(), base).expect("rename");
            }
            Damage::IndexesInstalledOnly => {
                let base = group_base(".log.swap");
                fs::rename(path(base, "index.swap"), path(base, "index")).expect("rename");
                fs::rename(path(base, "timeindex.swap"), path(base, "timeindex")).expect("rename");
            }
        }
        assert_recovered(dir.path(), &latest, log_end, &what);
    }
}

#[test]
fn a_pass_racing_retention_or_truncation_discards_its_work() {
    for truncate in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            retention_ms: 1000,
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: true,
            },
            ..compact_config()
        };
        let log = Arc::new(Log::open(dir.path().to_path_buf(), config).expect("open"));
        write_updates(&log, 200, 10);
        roll(&log);
        let log_end = log.log_end_offset();
        let (release, cleaner) = start_paused_pass(&log, NOW_MS + 500, log_end);
        if truncate {
            // Inside the first segment, which the first group replaces.
            log.truncate_to(5).expect("truncate");
        } else {
            assert!(log.apply_retention(NOW_MS + 1900).expect("retention") > 0);
        }
        let expected = records(&log);
        let _ = release.send(());
        let stats = cleaner.join().expect("cleaner").expect("compact");
        assert_eq!(
            stats.outcome,
            CompactOutcome::Aborted,
            "truncate {truncate}"
        );
        assert_eq!(records(&log), expected, "truncate {truncate}");
        assert!(cleaner_leftovers(dir.path()).is_empty());
        log.set_cleaner_hook(None);
        drop(log);
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
        assert_eq!(records(&log), expected, "truncate {truncate}");
    }
}

#[test]
fn truncate_fully_and_start_at_empties_the_log_and_survives_reopen() {
    for start_at in [500, 7, 0] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
        let p = Producer {
            id: 3,
            epoch: 0,
            first_sequence: 0,
        };
        let producer = batch_of(&[(Some("p"), Some("v"))], NOW_MS, Some(p));
        append(&log, producer.clone()).expect("producer");
        for epoch in [1, 2] {
            let batch = batch_of(&[(Some("k"), Some("v"))], NOW_MS, None);
            log.append_as_leader(split(&batch), epoch, NOW_MS)
                .expect("append");
        }
        write_updates(&log, 40, 5);
        log.compact(NOW_MS + 10_000, log.log_end_offset())
            .expect("compact");
        assert!(log.segment_count() > 1 && log.log_end_offset() > 7);

        log.truncate_fully_and_start_at(start_at)
            .expect("truncate fully");
        let check = |log: &Log| {
            assert_eq!(log.log_start_offset(), start_at);
            assert_eq!(log.log_end_offset(), start_at);
            assert_eq!(log.segment_count(), 1);
            assert!(log.epoch_entries().is_empty());
            assert_eq!(log.first_dirty_offset(), start_at);
            assert!(log
                .read(start_at, 1024, i64::MAX, true)
                .expect("at the end")
                .is_empty());
            if start_at > 0 {
                let error = log
                    .read(0, 1024, i64::MAX, true)
                    .expect_err("below the start");
                assert!(matches!(error, StorageError::OffsetOutOfRange { .. }));
            }
        };
        check(&log);
        assert_eq!(files_with_suffix(dir.path(), ".log").len(), 1);
        assert!(cleaner_leftovers(dir.path()).is_empty());
        drop(log);
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
        check(&log);
        // The producer state is gone: the old batch is new data now.
        let info = append(&log, producer).expect("append");
        assert!(!info.duplicate);
        assert_eq!(info.base_offset, start_at);
        assert_eq!(log.epoch_entries(), vec![(0, start_at)]);
        drop(log);
        let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
        assert_eq!(log.log_start_offset(), start_at);
        assert_eq!(log.log_end_offset(), start_at + 1);
    }
}

#[test]
fn keyless_records_are_refused_on_compacted_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("open");
    for compression in [Compression::None, Compression::Zstd] {
        let entries: [Entry; 2] = [(Some("k"), Some("v")), (None, Some("v"))];
        let batch = encode(&entries, NOW_MS, None, compression);
        let error = append(&log, batch).expect_err("keyless");
        assert_eq!(error.error_code(), ErrorCode::INVALID_RECORD, "{error}");
        assert_eq!(log.log_end_offset(), 0);
    }
    let tombstone = batch_of(&[(Some("k"), None)], NOW_MS, None);
    append(&log, tombstone).expect("a keyed tombstone is fine");
    log.update_config(LogConfig {
        cleanup_policy: CleanupPolicy {
            delete: true,
            compact: false,
        },
        ..compact_config()
    });
    append(&log, batch_of(&[(None, Some("v"))], NOW_MS, None)).expect("delete topic");
}

#[test]
fn a_follower_replicates_a_compacted_leader() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let leader = Log::open(leader_dir.path().to_path_buf(), compact_config()).expect("open");
    write_updates(&leader, 200, 10);
    roll(&leader);
    leader
        .compact(NOW_MS + 10_000, leader.log_end_offset())
        .expect("compact");
    let follower = Log::open(follower_dir.path().to_path_buf(), compact_config()).expect("open");
    // The follower fetches at its log end offset, as the fetcher does.
    loop {
        let fetched = leader
            .read(follower.log_end_offset(), 2048, i64::MAX, true)
            .expect("leader read");
        if fetched.is_empty() {
            break;
        }
        follower
            .append_as_follower(fetched)
            .expect("follower append");
    }
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(records(&follower), records(&leader));
}

/// The child side of the kill -9 test: runs only when re-executed with the
/// directory in this environment variable.
const COMPACTION_CRASH_DIR_ENV: &str = "KRAFTWERK_STORAGE_COMPACTION_CRASH_DIR";
/// Set to a `CleanerStep` name: the child parks its pass there (the
/// `PARK_AT_OCCURRENCE`th time) and says so, for the parent to kill it there.
const COMPACTION_CRASH_STEP_ENV: &str = "KRAFTWERK_STORAGE_COMPACTION_CRASH_STEP";
const COMPACTION_CRASH_PARK_AT_OCCURRENCE: usize = 40;
/// Bounds the child in case the parent never kills it.
const COMPACTION_CRASH_APPENDS_MAX: i64 = 100_000;
const COMPACTION_CRASH_PARK_MAX: Duration = Duration::from_secs(60);
/// Without a step to park at, the parent kills after this many acks.
const COMPACTION_CRASH_ACKS_BEFORE_KILL: usize = 1500;
const COMPACTION_CRASH_KEYS: i64 = 17;
const COMPACTION_CRASH_RECORDS_PER_BATCH: i64 = 3;

/// Record `i` of batch `n`: its key, and its value (None: a tombstone).
fn crash_record(n: i64, i: i64) -> (String, Option<String>) {
    let serial = n * COMPACTION_CRASH_RECORDS_PER_BATCH + i;
    let key = format!("k{}", serial % COMPACTION_CRASH_KEYS);
    let value = (serial % 11 != 0).then(|| format!("n{n}i{i}"));
    (key, value)
}

fn compaction_crash_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        delete_retention_ms: 0,
        ..compact_config()
    }
}

#[test]
fn compaction_crash_child() {
    let Ok(dir) = std::env::var(COMPACTION_CRASH_DIR_ENV) else {
        return;
    };
    let log = Log::open(PathBuf::from(dir), compaction_crash_config()).expect("child open");
    if let Ok(park_at) = std::env::var(COMPACTION_CRASH_STEP_ENV) {
        let seen = AtomicUsize::new(0);
        log.set_cleaner_hook(Some(Box::new(move |step| {
            if format!("{step:?}") == park_at
                && seen.fetch_add(1, Ordering::SeqCst) + 1 == COMPACTION_CRASH_PARK_AT_OCCURRENCE
            {
                println!("PARKED {step:?}");
                std::thread::sleep(COMPACTION_CRASH_PARK_MAX);
            }
            true
        })));
    }
    for n in 0..COMPACTION_CRASH_APPENDS_MAX {
        let records: Vec<(String, Option<String>)> = (0..COMPACTION_CRASH_RECORDS_PER_BATCH)
            .map(|i| crash_record(n, i))
            .collect();
        let entries: Vec<Entry> = records
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_deref()))
            .collect();
        let info = append(&log, batch_of(&entries, NOW_MS + n, None)).expect("child append");
        println!("ACK {n} {}", info.base_offset);
        if n % 7 == 6 {
            log.compact(NOW_MS + 1_000_000, log.log_end_offset())
                .expect("child compact");
        }
    }
}

/// What the child printed.
enum ChildLine {
    Ack(i64, i64),
    Parked,
}

/// Runs the child until it parks at `park_at` (or, without one, until it
/// acknowledged enough), kills it with SIGKILL and checks the reopened log.
fn kill_9_case(park_at: Option<CleanerStep>) {
    let what = format!("killed at {park_at:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "cleaner_tests::compaction_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(COMPACTION_CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(step) = park_at {
        command.env(COMPACTION_CRASH_STEP_ENV, format!("{step:?}"));
    }
    let mut child = command.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness may print its own text on the same line first.
            let parsed = if line.contains("PARKED ") {
                Some(ChildLine::Parked)
            } else if let Some(at) = line.find("ACK ") {
                let mut fields = line[at..].split_whitespace().skip(1);
                match (
                    fields.next().and_then(|f| f.parse::<i64>().ok()),
                    fields.next().and_then(|f| f.parse::<i64>().ok()),
                ) {
                    (Some(n), Some(base)) => Some(ChildLine::Ack(n, base)),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(parsed) = parsed {
                if sender.send(parsed).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    let mut parked = false;
    while !parked && (park_at.is_some() || acked.len() < COMPACTION_CRASH_ACKS_BEFORE_KILL) {
        match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(ChildLine::Ack(n, base)) => acked.push((n, base)),
            Ok(ChildLine::Parked) => parked = true,
            Err(_) => break,
        }
    }
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    let _ = reader.join();
    for line in receiver.try_iter() {
        if let ChildLine::Ack(n, base) = line {
            acked.push((n, base));
        }
    }
    assert!(
        park_at.is_none() || parked,
        "{what}: the child never parked"
    );
    assert!(
        acked.len() > 100,
        "{what}: child acknowledged only {}",
        acked.len()
    );

    // What was acknowledged: per key, the offset of its last write and
    // whether that was a tombstone; per offset, the record written there.
    let mut last_acked: HashMap<String, (i64, bool)> = HashMap::new();
    let mut written: HashMap<i64, (String, Option<String>)> = HashMap::new();
    for (i, (n, base)) in acked.iter().enumerate() {
        assert_eq!(*n, i as i64, "acks are in order");
        for r in 0..COMPACTION_CRASH_RECORDS_PER_BATCH {
            let (key, value) = crash_record(*n, r);
            last_acked.insert(key.clone(), (base + r, value.is_none()));
            written.insert(base + r, (key, value));
        }
    }
    let last_acked_offset = acked
        .last()
        .map_or(0, |(_, base)| base + COMPACTION_CRASH_RECORDS_PER_BATCH - 1);

    let check = |log: &Log, when: &str| {
        assert!(log.log_end_offset() > last_acked_offset, "{what} {when}");
        let stored = records(log);
        let mut present: HashMap<String, i64> = HashMap::new();
        for record in &stored {
            let key = record.key.clone().expect("every record has a key");
            if let Some((want_key, want_value)) = written.get(&record.offset) {
                assert_eq!(
                    (&key, &record.value),
                    (want_key, want_value),
                    "{what} {when}: offset {}",
                    record.offset
                );
            }
            present.insert(key, record.offset);
        }
        for (key, (offset, tombstone)) in &last_acked {
            match present.get(key) {
                Some(found) => assert!(
                    found >= offset,
                    "{what} {when}: {key} went back from {offset} to {found}"
                ),
                None => assert!(
                    *tombstone,
                    "{what} {when}: {key} lost its value at {offset}"
                ),
            }
        }
    };
    assert!(
        dir.path().join(CLEANER_CHECKPOINT_FILE).exists(),
        "{what}: the child completed passes"
    );
    let leftovers = cleaner_leftovers(dir.path());
    if park_at.is_some_and(|s| s != CleanerStep::SwapInstalled) {
        assert!(
            !leftovers.is_empty(),
            "{what}: the kill left the swap half done"
        );
    }
    let log =
        Log::open(dir.path().to_path_buf(), compaction_crash_config()).expect("reopen after kill");
    assert!(cleaner_leftovers(dir.path()).is_empty(), "{what}");
    check(&log, "after the restart");
    log.compact(NOW_MS + 1_000_000, log.log_end_offset())
        .expect("compact after recovery");
    check(&log, "after another pass");
    eprintln!(
        "compaction kill -9 ({what}): acknowledged {}, lost 0, cleaner files the kill left {:?}, \
         segments {}, log end {}",
        acked.len(),
        leftovers,
        log.segment_count(),
        log.log_end_offset()
    );
}

#[test]
fn compaction_survives_kill_9_at_any_point() {
    kill_9_case(None);
    for step in [
        CleanerStep::CleanedWritten,
        CleanerStep::SwapCommitted,
        CleanerStep::SourcesDeleted,
        CleanerStep::SwapInstalled,
    ] {
        kill_9_case(Some(step));
    }
}

/// Kafka's `__consumer_offsets` keys: offset commit (key version 1: group,
/// topic, partition) and group metadata (key version 2: group).
fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = 1i16.to_be_bytes().to_vec();
    for s in [group, topic] {
        key.extend_from_slice(&(s.len() as i16).to_be_bytes());
        key.extend_from_slice(s.as_bytes());
    }
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn group_key(group: &str) -> Vec<u8> {
    let mut key = 2i16.to_be_bytes().to_vec();
    key.extend_from_slice(&(group.len() as i16).to_be_bytes());
    key.extend_from_slice(group.as_bytes());
    key
}

/// One coordinator write of (key, value) records, encoded as the group
/// coordinator does: no producer id and sequence -1, with which the
/// `kafka-protocol` encoder puts every record in a batch of its own.
fn coordinator_batch(records: &[(Vec<u8>, Option<String>)], timestamp: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp,
            key: Some(Bytes::from(key.clone())),
            value: value.clone().map(Bytes::from),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode");
    buffer.freeze()
}

/// What the group coordinator's replay (`crates/broker/src/group/mod.rs`)
/// rebuilds, with its loop: reads from the log start in 1 MiB chunks,
/// advances by each batch's last offset (a cleaned batch keeps its last
/// offset even when its last records are gone) and stops at an empty read;
/// a null value removes the key, and a group tombstone also drops that
/// group's offsets seen so far.
fn replay(log: &Log) -> (BTreeMap<Vec<u8>, String>, BTreeSet<Vec<u8>>) {
    let mut offsets: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut groups: BTreeSet<Vec<u8>> = BTreeSet::new();
    let end = log.log_end_offset();
    let mut at = log.log_start_offset();
    while at < end {
        let chunk = log.read(at, 1 << 20, end, true).expect("read");
        if chunk.is_empty() {
            break;
        }
        let mut buf = chunk;
        let mut next = at;
        while !buf.is_empty() {
            let header = BatchHeader::parse(&buf).expect("batch header");
            next = next.max(header.last_offset() + 1);
            let set = RecordBatchDecoder::decode(&mut buf).expect("decode");
            assert!(
                set.records.len() <= 1,
                "coordinator batches hold one record"
            );
            for record in set.records {
                let key = record.key.expect("key").to_vec();
                let group_record = key[..2] == 2i16.to_be_bytes();
                match (group_record, text(&record.value)) {
                    (false, Some(value)) => {
                        offsets.insert(key, value);
                    }
                    (false, None) => {
                        offsets.remove(&key);
                    }
                    (true, Some(_)) => {
                        groups.insert(key);
                    }
                    (true, None) => {
                        // The group's name follows the version and length.
                        let name = key[4..].to_vec();
                        offsets.retain(|k, _| !k[4..].starts_with(&name));
                        groups.remove(&key);
                    }
                }
            }
        }
        assert!(next > at, "the replay made no progress at {at}");
        at = next;
    }
    (offsets, groups)
}

#[test]
fn consumer_offsets_replay_is_the_same_after_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        ..compact_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    let value = |s: String| Some(s);
    for n in 0..200i64 {
        // g1 commits both partitions of t every time; g2 commits p0 and
        // sometimes p1; g3's membership changes now and then.
        let mut batch = vec![
            (offset_key("g1", "t", 0), value(format!("g1-0-{n}"))),
            (offset_key("g1", "t", 1), value(format!("g1-1-{n}"))),
        ];
        if n % 3 == 0 {
            batch.push((offset_key("g2", "t", 0), value(format!("g2-0-{n}"))));
        }
        if n == 50 {
            batch.push((offset_key("g2", "t", 1), value(format!("g2-1-{n}"))));
        }
        if n % 20 == 0 {
            batch.push((group_key("g3"), value(format!("gen{n}"))));
            batch.push((group_key("g2"), value(format!("gen{n}"))));
        }
        append(&log, coordinator_batch(&batch, NOW_MS + n)).expect("append");
        if n == 120 {
            // DeleteGroups g2: offset tombstones, then the group's.
            let deletion = vec![
                (offset_key("g2", "t", 0), None),
                (offset_key("g2", "t", 1), None),
                (group_key("g2"), None),
            ];
            append(&log, coordinator_batch(&deletion, NOW_MS + n)).expect("delete group");
        }
        if n == 100 {
            // A commit of g4 (never repeated) followed by one superseded
            // later, as the last records of a segment.
            let commit = vec![
                (offset_key("g4", "t", 0), value("g4-once".to_string())),
                (
                    offset_key("g1", "t", 0),
                    value("g1-0-superseded".to_string()),
                ),
            ];
            append(&log, coordinator_batch(&commit, NOW_MS + n)).expect("commit");
            roll(&log);
        }
        if n == 150 {
            // g3's offsets expire: a tombstone for one that never existed too.
            let expiry = vec![(offset_key("g3", "t", 9), None)];
            append(&log, coordinator_batch(&expiry, NOW_MS + n)).expect("expire");
        }
    }
    roll(&log);
    // `roll` wrote keys that are not the coordinator's: replay ignores the
    // filler key by treating it as an offset key it never looks up.
    let before = replay(&log);
    assert!(before.0.contains_key(&offset_key("g2", "t", 0)));
    let log_end = log.log_end_offset();
    // Tombstones young, then old enough to go.
    for now_ms in [NOW_MS + 500, NOW_MS + 100_000] {
        let stats = log.compact(now_ms, log_end).expect("compact");
        assert!(
            stats.segments_written > 0 || now_ms > NOW_MS + 500,
            "{stats:?}"
        );
        assert_eq!(replay(&log), before, "now {now_ms}");
        roll(&log);
    }
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), compact_config()).expect("reopen");
    assert_eq!(replay(&log), before);
}
