//! Log tests on real files in temporary directories, with batches encoded
//! by the `kafka-protocol` crate.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as RecordTimestampType,
};
use kraftwerk_protocol::batch::{self, BatchHeader, ATTR_TIMESTAMP_TYPE};
use kraftwerk_types::{ErrorCode, LogConfig, TimestampType};

use crate::{Log, StorageError};

pub(crate) const NOW_MS: i64 = 1_700_000_000_000;

/// A batch of `count` records from `producer_id` (-1: not idempotent), with
/// record timestamps `timestamp`, `timestamp + 1`, ... and values `tag-i`.
fn encoded_batch(
    producer_id: i64,
    producer_epoch: i16,
    first_sequence: i32,
    count: i64,
    timestamp: i64,
    tag: &str,
) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: RecordTimestampType::Creation,
            offset: i,
            // The encoder keeps records in one batch while offset - sequence
            // is constant; base sequence -1 means "no sequence".
            sequence: first_sequence.wrapping_add(i as i32),
            timestamp: timestamp + i,
            key: None,
            value: Some(Bytes::from(format!("{tag}-{i}"))),
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

fn plain(count: i64, timestamp: i64) -> Bytes {
    encoded_batch(-1, -1, -1, count, timestamp, "v")
}

pub(crate) fn split(bytes: &Bytes) -> Vec<(BatchHeader, Bytes)> {
    batch::validate_all(bytes).expect("valid batches")
}

fn append(log: &Log, bytes: Bytes) -> Result<crate::AppendInfo, StorageError> {
    log.append_as_leader(split(&bytes), 0, NOW_MS)
}

/// (base offset, last offset) of every batch in `bytes`, CRC-checked.
fn ranges(bytes: &Bytes) -> Vec<(i64, i64)> {
    split(bytes)
        .iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

fn read_all(log: &Log) -> Bytes {
    let mut out = BytesMut::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let chunk = log.read(offset, 1 << 20, i64::MAX, true).expect("read");
        let batches = split(&chunk);
        let Some((last, _)) = batches.last() else {
            // Only a gap between segments could give nothing.
            panic!("no progress reading at {offset}");
        };
        offset = last.last_offset() + 1;
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}

pub(crate) fn test_config() -> LogConfig {
    LogConfig {
        flush_messages: i64::MAX,
        flush_ms: i64::MAX,
        ..LogConfig::default()
    }
}

pub(crate) fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn last_segment_path(dir: &Path) -> PathBuf {
    let logs = files_with_suffix(dir, ".log");
    dir.join(logs.last().expect("a segment"))
}

#[test]
fn append_then_read_round_trips_with_contiguous_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut expected = Vec::new();
    for (count, want_base) in [(3, 0), (2, 3), (1, 5)] {
        let info = log
            .append_as_leader(split(&plain(count, NOW_MS)), 7, NOW_MS)
            .expect("append");
        assert_eq!(info.base_offset, want_base);
        assert_eq!(info.last_offset, want_base + count - 1);
        assert_eq!(info.log_append_time_ms, -1);
        assert!(!info.duplicate);
        expected.push((want_base, want_base + count - 1));
    }
    // Two batches in one call get consecutive offsets too.
    let two = Bytes::from([plain(2, NOW_MS), plain(2, NOW_MS)].concat());
    let info = log
        .append_as_leader(split(&two), 7, NOW_MS)
        .expect("append");
    assert_eq!((info.base_offset, info.last_offset), (6, 9));
    expected.extend([(6, 7), (8, 9)]);

    assert_eq!(log.log_end_offset(), 10);
    let data = log.read(0, 1 << 20, i64::MAX, true).expect("read");
    assert_eq!(ranges(&data), expected);
    assert!(split(&data)
        .iter()
        .all(|(h, _)| h.partition_leader_epoch == 7));
    assert_eq!(log.size_bytes(), data.len() as u64);
    // A read from the middle of a batch starts at that batch.
    let data = log.read(4, 1 << 20, i64::MAX, true).expect("read");
    assert_eq!(ranges(&data).first(), Some(&(3, 4)));
}

#[test]
fn read_respects_max_bytes_min_one_batch_and_max_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    let one = plain(2, NOW_MS);
    let size = one.len();
    for _ in 0..4 {
        append(&log, one.clone()).expect("append");
    }
    // Batches: 0-1, 2-3, 4-5, 6-7; all the same size.
    struct Case {
        start: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
        want: Vec<(i64, i64)>,
    }
    let cases = [
        Case {
            start: 0,
            max_bytes: 10 * size,
            max_offset: i64::MAX,
            min_one_batch: true,
            want: vec![(0, 1), (2, 3), (4, 5), (6, 7)],
        },
        Case {
            start: 0,
            max_bytes: 2 * size,
            max_offset: i64::MAX,
            min_one_batch: true,
            want: vec![(0, 1), (2, 3)],
        },
        Case {
            start: 0,
            max_bytes: 2 * size - 1,
            max_offset: i64::MAX,
            min_one_batch: true,
            want: vec![(0, 1)],
        },
        Case {
            start: 0,
            max_bytes: 1,
            max_offset: i64::MAX,
            min_one_batch: true,
            want: vec![(0, 1)],
        },
        Case {
            start: 0,
            max_bytes: 1,
            max_offset: i64::MAX,
            min_one_batch: false,
            want: vec![],
        },
        Case {
            start: 3,
            max_bytes: 10 * size,
            max_offset: 6,
            min_one_batch: true,
            want: vec![(2, 3), (4, 5)],
        },
        Case {
            start: 0,
            max_bytes: 10 * size,
            max_offset: 5,
            min_one_batch: true,
            want: vec![(0, 1), (2, 3)],
        },
        Case {
            start: 4,
            max_bytes: 10 * size,
            max_offset: 4,
            min_one_batch: true,
            want: vec![],
        },
        Case {
            start: 8,
            max_bytes: 10 * size,
            max_offset: i64::MAX,
            min_one_batch: true,
            want: vec![],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let data = log
            .read(
                case.start,
                case.max_bytes,
                case.max_offset,
                case.min_one_batch,
            )
            .expect("read");
        assert_eq!(ranges(&data), case.want, "case {i}");
    }
}

#[test]
fn reads_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    append(&log, plain(3, NOW_MS)).expect("append");
    for offset in [-1, 4, 100] {
        let error = log
            .read(offset, 1024, i64::MAX, true)
            .expect_err("out of range");
        assert!(
            matches!(
                error,
                StorageError::OffsetOutOfRange {
                    log_start_offset: 0,
                    log_end_offset: 3,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(error.error_code(), ErrorCode::OFFSET_OUT_OF_RANGE);
    }
    assert!(log
        .read(3, 1024, i64::MAX, true)
        .expect("at the end")
        .is_empty());
}

#[test]
fn segments_roll_by_size_and_everything_is_found_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(5, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        index_interval_bytes: 0,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
    for _ in 0..10 {
        append(&log, one.clone()).expect("append");
    }
    // Three batches per segment: bases 0, 15, 30, 45.
    let want: Vec<String> = [0, 15, 30, 45]
        .iter()
        .map(|b| format!("{b:020}.log"))
        .collect();
    assert_eq!(files_with_suffix(dir.path(), ".log"), want);
    assert_eq!(files_with_suffix(dir.path(), ".index").len(), 4);
    assert_eq!(files_with_suffix(dir.path(), ".timeindex").len(), 4);
    let before = read_all(&log);
    assert_eq!(ranges(&before).len(), 10);
    // Each read stays in one segment.
    let data = log.read(12, 1 << 20, i64::MAX, true).expect("read");
    assert_eq!(ranges(&data), vec![(10, 14)]);
    log.close().expect("close");
    drop(log);

    let log = Log::open(dir.path().to_path_buf(), config).expect("reopen");
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(read_all(&log), before);
    let info = append(&log, one).expect("append");
    assert_eq!(info.base_offset, 50);
}

#[test]
fn a_torn_or_garbage_tail_is_cut_on_reopen() {
    enum Damage {
        CutInLastBatch,
        AppendGarbage,
        FlipByteInLastBatch,
    }
    for damage in [
        Damage::CutInLastBatch,
        Damage::AppendGarbage,
        Damage::FlipByteInLastBatch,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
        for _ in 0..3 {
            append(&log, plain(4, NOW_MS)).expect("append");
        }
        drop(log); // no close: an unclean shutdown
        let path = last_segment_path(dir.path());
        let mut bytes = fs::read(&path).expect("read segment");
        let whole = bytes.len();
        let surviving_end = match damage {
            Damage::CutInLastBatch => {
                bytes.truncate(whole - 10);
                8
            }
            Damage::AppendGarbage => {
                bytes.extend_from_slice(&[0xAB; 100]);
                12
            }
            Damage::FlipByteInLastBatch => {
                bytes[whole - 3] ^= 0xFF;
                8
            }
        };
        fs::write(&path, &bytes).expect("damage");

        let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
        assert_eq!(log.log_end_offset(), surviving_end);
        let data = read_all(&log);
        assert_eq!(ranges(&data).last().map(|r| r.1), Some(surviving_end - 1));
        let info = append(&log, plain(1, NOW_MS)).expect("append after recovery");
        assert_eq!(info.base_offset, surviving_end);
        assert_eq!(ranges(&read_all(&log)).len() as i64, surviving_end / 4 + 1);
    }
}

/// Found by the `log_recovery` fuzz target: a segment before the last one
/// whose index looks sound is scanned by headers only; when the scan hits
/// damage, the segments after it go and it becomes the last, so it must be
/// CRC-checked in full before anything is appended after it.
#[test]
fn a_damaged_earlier_segment_is_checked_in_full_before_it_is_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(2, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        index_interval_bytes: 0,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
    for _ in 0..6 {
        append(&log, one.clone()).expect("append");
    }
    log.close().expect("close");
    drop(log);
    let first = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&first).expect("read segment");
    assert_eq!(bytes.len(), one.len() * 3);
    // The second batch's records are damaged (its CRC fails), the third
    // batch's header is garbage.
    bytes[one.len() * 2 - 1] ^= 0xFF;
    bytes[one.len() * 2 + 16] = 0x7F;
    fs::write(&first, &bytes).expect("damage");

    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("reopen");
    assert_eq!(log.segment_count(), 1, "the segments after the damage go");
    assert_eq!(log.log_end_offset(), 2, "the batch with a bad CRC goes too");
    let info = append(&log, one.clone()).expect("append");
    assert_eq!(info.base_offset, 2);
    drop(log); // unclean: the next open checks the last segment's CRCs
    let log = Log::open(dir.path().to_path_buf(), config).expect("reopen");
    assert_eq!(log.log_end_offset(), 4, "nothing acknowledged is cut");
    assert_eq!(ranges(&read_all(&log)), vec![(0, 1), (2, 3)]);
}

/// Found by the `log_recovery` fuzz target: a segment that is not the last
/// file but becomes the last segment because every one after it is dropped
/// (here one named beyond the offset range) is CRC-checked in full on an
/// unclean open. Scanned by headers only, it kept a batch whose records
/// are corrupt; the next unclean open cut that batch and all appended
/// after it.
#[test]
fn a_segment_left_last_by_dropped_ones_is_checked_in_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(2, NOW_MS);
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    for _ in 0..3 {
        append(&log, one.clone()).expect("append");
    }
    log.close().expect("close");
    drop(log);
    fs::remove_file(dir.path().join(crate::CLEAN_SHUTDOWN_FILE)).expect("unclean");
    let first = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&first).expect("read segment");
    // The second batch's last record byte: its CRC fails, its header is sound.
    bytes[one.len() * 2 - 1] ^= 0xFF;
    fs::write(&first, &bytes).expect("damage");
    fs::write(dir.path().join("09000000000000000000.log"), b"not a batch").expect("stray");

    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.log_end_offset(),
        2,
        "the batch with a bad CRC goes, and those after it"
    );
    let info = append(&log, one.clone()).expect("append");
    assert_eq!(info.base_offset, 2);
    drop(log); // unclean again
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
    assert_eq!(log.log_end_offset(), 4, "nothing acknowledged is cut");
    assert_eq!(ranges(&read_all(&log)), vec![(0, 1), (2, 3)]);
}

/// Found by the `log_recovery` fuzz target: when recovery cuts the log
/// below the log start offset DeleteRecords had set, the log starts again
/// at that offset (as Kafka's log loader does) instead of taking appends
/// below it that no reader would see.
#[test]
fn a_log_cut_below_its_start_offset_starts_again_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    for _ in 0..3 {
        append(&log, plain(4, NOW_MS)).expect("append");
    }
    assert_eq!(
        log.advance_log_start_offset(10).expect("delete records"),
        10
    );
    drop(log); // unclean
    let path = last_segment_path(dir.path());
    let bytes = fs::read(&path).expect("read segment");
    fs::write(&path, &bytes[..bytes.len() - 10]).expect("tear the last batch");

    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    let info = append(&log, plain(2, NOW_MS)).expect("append");
    assert_eq!(info.base_offset, 10);
    assert_eq!(log.log_start_offset(), 10);
    assert_eq!(ranges(&read_all(&log)), vec![(10, 11)]);
}

#[test]
fn a_deleted_or_garbled_index_is_rebuilt() {
    for garble in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            index_interval_bytes: 0,
            ..test_config()
        };
        let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
        for i in 0..20 {
            append(&log, plain(2, NOW_MS + i)).expect("append");
        }
        log.close().expect("close");
        drop(log);
        let index = dir.path().join(format!("{:020}.index", 0));
        let original = fs::read(&index).expect("index");
        assert_eq!(
            original.len(),
            19 * 8,
            "every batch after the first is indexed"
        );
        if garble {
            fs::write(&index, vec![0xFFu8; original.len() + 3]).expect("garble");
        } else {
            fs::remove_file(&index).expect("delete");
        }
        let log = Log::open(dir.path().to_path_buf(), config).expect("reopen");
        assert_eq!(fs::read(&index).expect("rebuilt index"), original);
        for offset in [0, 7, 21, 39] {
            let data = log.read(offset, 1, i64::MAX, true).expect("read");
            let (first, last) = ranges(&data)[0];
            assert!(first <= offset && offset <= last, "offset {offset}");
        }
        // Batch i holds offsets 2i, 2i+1 with timestamps NOW_MS + i, + i + 1.
        assert_eq!(
            log.offset_for_timestamp(NOW_MS + 10).expect("ts"),
            Some((18, NOW_MS + 10))
        );
    }
}

#[test]
fn retention_deletes_whole_old_segments_but_never_the_active_one() {
    let one = plain(5, NOW_MS);
    let base_config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..test_config()
    };
    struct Case {
        name: &'static str,
        retention_ms: i64,
        retention_bytes: i64,
        now_ms: i64,
        want_deleted: usize,
    }
    let old = NOW_MS; // segments 0,10 hold timestamps around NOW_MS; 20 holds newer ones
    let cases = [
        Case {
            name: "nothing expired",
            retention_ms: 1000,
            retention_bytes: -1,
            now_ms: old + 100,
            want_deleted: 0,
        },
        Case {
            name: "by time",
            retention_ms: 1000,
            retention_bytes: -1,
            now_ms: old + 5000,
            want_deleted: 2,
        },
        Case {
            name: "everything expired keeps active",
            retention_ms: 1000,
            retention_bytes: -1,
            now_ms: old + 1_000_000,
            want_deleted: 2,
        },
        Case {
            name: "by size",
            retention_ms: -1,
            retention_bytes: (one.len() * 2) as i64,
            now_ms: old,
            want_deleted: 2,
        },
        Case {
            name: "by size, one segment over",
            retention_ms: -1,
            retention_bytes: (one.len() * 4) as i64,
            now_ms: old,
            want_deleted: 1,
        },
        Case {
            name: "unlimited",
            retention_ms: -1,
            retention_bytes: -1,
            now_ms: old + 1_000_000,
            want_deleted: 0,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), base_config.clone()).expect("open");
        for i in 0..4 {
            append(&log, plain(5, NOW_MS + i)).expect("append");
        }
        append(&log, plain(5, NOW_MS + 4500)).expect("append");
        append(&log, plain(5, NOW_MS + 4501)).expect("append");
        // Segments: [0, 10), [10, 20), [20, 30) active.
        assert_eq!(log.segment_count(), 3, "{}", case.name);
        log.update_config(LogConfig {
            retention_ms: case.retention_ms,
            retention_bytes: case.retention_bytes,
            ..base_config.clone()
        });
        let deleted = log.apply_retention(case.now_ms).expect("retention");
        assert_eq!(deleted, case.want_deleted, "{}", case.name);
        assert_eq!(log.log_start_offset(), 10 * deleted as i64, "{}", case.name);
        assert_eq!(log.log_end_offset(), 30, "{}", case.name);
        assert_eq!(
            files_with_suffix(dir.path(), ".log").len(),
            3 - deleted,
            "{}",
            case.name
        );
        assert!(files_with_suffix(dir.path(), ".deleted").is_empty());
        if deleted > 0 {
            let error = log.read(0, 1024, i64::MAX, true).expect_err("gone");
            assert!(matches!(error, StorageError::OffsetOutOfRange { .. }));
        }
        drop(log);
        let log = Log::open(dir.path().to_path_buf(), base_config.clone()).expect("reopen");
        assert_eq!(log.log_start_offset(), 10 * deleted as i64, "{}", case.name);
    }
}

#[test]
fn retention_needs_the_delete_cleanup_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(5, NOW_MS);
    let mut config = LogConfig {
        segment_bytes: one.len() as u64,
        retention_ms: 1,
        ..test_config()
    };
    config.cleanup_policy.delete = false;
    config.cleanup_policy.compact = true;
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    // A compacted topic takes keyed records only.
    let keyed = crate::cleaner_tests::batch_of(&[(Some("k"), Some("v"))], NOW_MS, None);
    for _ in 0..3 {
        append(&log, keyed.clone()).expect("append");
    }
    assert_eq!(log.apply_retention(NOW_MS * 2).expect("retention"), 0);
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_reaching_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 100,
        segment_bytes: 2000,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    // Batch i: offsets [2i, 2i+1], timestamps 1000+10i and 1000+10i+1,
    // except batch 5 which goes back in time.
    for i in 0..30i64 {
        let timestamp = if i == 5 { 500 } else { 1000 + 10 * i };
        append(&log, plain(2, timestamp)).expect("append");
    }
    assert!(log.segment_count() > 1);
    let cases = [
        (0, Some((0, 1001))),
        (1001, Some((0, 1001))),
        (1002, Some((2, 1011))),
        (1045, Some((12, 1061))),
        (1060, Some((12, 1061))),
        (1291, Some((58, 1291))),
        (1292, None),
    ];
    for (timestamp, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(timestamp).expect("lookup"),
            want,
            "ts {timestamp}"
        );
    }
    assert_eq!(log.max_timestamp_and_offset(), Some((1291, 59)));
}

#[test]
fn idempotent_producers_are_deduplicated_ordered_and_fenced_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    let producer = |epoch: i16, sequence: i32, count: i64| {
        encoded_batch(9, epoch, sequence, count, NOW_MS, "p")
    };
    append(&log, plain(1, NOW_MS)).expect("append");
    let first = append(&log, producer(0, 0, 3)).expect("seq 0-2");
    let second = append(&log, producer(0, 3, 2)).expect("seq 3-4");
    assert_eq!((first.base_offset, second.base_offset), (1, 4));
    let size = log.size_bytes();

    let retry = append(&log, producer(0, 0, 3)).expect("retry");
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (1, 3));
    assert_eq!(log.size_bytes(), size, "a duplicate writes nothing");

    let gap = append(&log, producer(0, 7, 1)).expect_err("gap");
    assert_eq!(gap.error_code(), ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER);

    // All or nothing: a good batch followed by a gap in one call.
    let mixed = Bytes::from([producer(0, 5, 1), producer(0, 9, 1)].concat());
    assert!(log.append_as_leader(split(&mixed), 0, NOW_MS).is_err());
    assert_eq!(log.size_bytes(), size);
    // In order within one call is fine.
    let pair = Bytes::from([producer(0, 5, 1), producer(0, 6, 1)].concat());
    let info = log.append_as_leader(split(&pair), 0, NOW_MS).expect("pair");
    assert_eq!((info.base_offset, info.last_offset), (6, 7));
    log.flush().expect("flush");
    drop(log);

    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
    let retry = append(&log, producer(0, 3, 2)).expect("retry after restart");
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 4);
    let gap = append(&log, producer(0, 0, 1)).expect_err("not a remembered batch");
    assert!(matches!(
        gap,
        StorageError::OutOfOrderSequence {
            expected_sequence: 7,
            ..
        }
    ));

    // A new epoch must start at sequence 0 and fences the old one.
    let bad = append(&log, producer(1, 7, 1)).expect_err("new epoch from 7");
    assert!(matches!(bad, StorageError::OutOfOrderSequence { .. }));
    append(&log, producer(1, 0, 1)).expect("new epoch from 0");
    let fenced = append(&log, producer(0, 7, 1)).expect_err("old epoch");
    assert_eq!(fenced.error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
}

#[test]
fn leader_epochs_are_cached_persisted_and_answered_like_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("open");
    for (epoch, count) in [(1, 3), (1, 2), (3, 4), (5, 1)] {
        log.append_as_leader(split(&plain(count, NOW_MS)), epoch, NOW_MS)
            .expect("append");
    }
    assert_eq!(log.epoch_entries(), vec![(1, 0), (3, 5), (5, 9)]);
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen");
    assert_eq!(log.latest_epoch(), Some(5));
    let cases = [
        (0, Some((0, 0))),
        (1, Some((1, 5))),
        (2, Some((1, 5))),
        (3, Some((3, 9))),
        (4, Some((3, 9))),
        (5, Some((5, 10))),
        (6, None),
    ];
    for (epoch, want) in cases {
        assert_eq!(log.end_offset_for_epoch(epoch), want, "epoch {epoch}");
    }
    log.truncate_to(9).expect("truncate");
    assert_eq!(log.epoch_entries(), vec![(1, 0), (3, 5)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));
    // Truncating inside epoch 3's only batch removes the epoch.
    log.truncate_to(7).expect("truncate");
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(3), None);
}

#[test]
fn truncate_to_drops_everything_from_an_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(3, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        index_interval_bytes: 0,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
    for i in 0..6 {
        append(&log, plain(3, NOW_MS + i)).expect("append");
    }
    // Segments [0,6) [6,12) [12,18).
    assert_eq!(log.segment_count(), 3);
    log.truncate_to(9).expect("truncate at a boundary");
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(files_with_suffix(dir.path(), ".log").len(), 2);
    assert_eq!(ranges(&read_all(&log)).last(), Some(&(6, 8)));
    log.truncate_to(4).expect("truncate inside a batch");
    assert_eq!(
        log.log_end_offset(),
        3,
        "the batch holding offset 4 goes whole"
    );
    assert_eq!(log.max_timestamp_and_offset(), Some((NOW_MS + 2, 2)));
    let info = append(&log, plain(2, NOW_MS)).expect("append");
    assert_eq!(info.base_offset, 3);
    log.truncate_to(100).expect("past the end is a no-op");
    assert_eq!(log.log_end_offset(), 5);
    drop(log);
    let log = Log::open(dir.path().to_path_buf(), config).expect("reopen");
    assert_eq!(ranges(&read_all(&log)), vec![(0, 2), (3, 4)]);
    log.truncate_to(0).expect("truncate everything");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
}

#[test]
fn log_append_time_rewrites_timestamps_and_keeps_the_crc_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    let info = log
        .append_as_leader(split(&plain(3, 5)), 0, NOW_MS)
        .expect("append");
    assert_eq!(info.log_append_time_ms, NOW_MS);
    let data = log.read(0, 1 << 20, i64::MAX, true).expect("read");
    let header = batch::validate_one(&data).expect("CRC still valid");
    assert_eq!(header.max_timestamp, NOW_MS);
    assert_ne!(header.attributes & ATTR_TIMESTAMP_TYPE, 0);
    assert_eq!(
        log.offset_for_timestamp(NOW_MS).expect("ts"),
        Some((0, NOW_MS))
    );
}

#[test]
fn a_batch_over_max_message_bytes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = plain(50, NOW_MS);
    let config = LogConfig {
        max_message_bytes: big.len() - 1,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    let error = append(&log, big).expect_err("too large");
    assert_eq!(error.error_code(), ErrorCode::MESSAGE_TOO_LARGE);
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn follower_appends_keep_offsets_and_epochs() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let leader = Log::open(leader_dir.path().to_path_buf(), test_config()).expect("open");
    leader
        .append_as_leader(split(&encoded_batch(4, 0, 0, 2, NOW_MS, "p")), 2, NOW_MS)
        .expect("append");
    leader
        .append_as_leader(split(&plain(3, NOW_MS)), 4, NOW_MS)
        .expect("append");
    let follower = Log::open(follower_dir.path().to_path_buf(), test_config()).expect("open");
    let fetched = leader.read(0, 1 << 20, i64::MAX, true).expect("read");
    let info = follower
        .append_as_follower(fetched.clone())
        .expect("append");
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(read_all(&follower), fetched);
    // Batches must not go back below the log end offset (forward gaps,
    // which compaction leaves, are fine: see the cleaner tests).
    let again = leader.read(2, 1 << 20, i64::MAX, true).expect("read");
    let error = follower
        .append_as_follower(again)
        .expect_err("behind the log end");
    assert!(matches!(
        error,
        StorageError::NonContiguousOffsets {
            expected: 5,
            got: 2
        }
    ));
    assert_eq!(follower.epoch_entries(), vec![(2, 0), (4, 2)]);
    // The follower learned the producer's sequences: a retry is a duplicate
    // if it becomes leader.
    let retry = follower
        .append_as_leader(split(&encoded_batch(4, 0, 0, 2, NOW_MS, "p")), 5, NOW_MS)
        .expect("retry");
    assert!(retry.duplicate);
}

#[test]
fn flush_messages_policy_and_stray_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for stray in [
        "00000000000000000000.log.deleted",
        "00000000000000000005.log.swap",
        "x.cleaned",
        "00000000000000000099.index",
    ] {
        fs::write(dir.path().join(stray), b"junk").expect("stray");
    }
    let config = LogConfig {
        flush_messages: 2,
        flush_ms: 10,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config).expect("open");
    assert_eq!(
        files_with_suffix(dir.path(), "").len(),
        3,
        "only segment 0's files remain"
    );
    append(&log, plain(3, NOW_MS)).expect("append");
    log.maybe_flush(NOW_MS).expect("flush");
    log.maybe_flush(NOW_MS + 100).expect("flush");
    log.close().expect("close");
    assert!(dir.path().join(crate::CLEAN_SHUTDOWN_FILE).exists());
    append(&log, plain(1, NOW_MS)).expect("append after close");
    assert!(!dir.path().join(crate::CLEAN_SHUTDOWN_FILE).exists());
}

/// The child side of the crash test: runs only when re-executed with the
/// directory in this environment variable.
const CRASH_DIR_ENV: &str = "KRAFTWERK_STORAGE_CRASH_DIR";
/// Bounds the child in case the parent never kills it.
const CRASH_CHILD_APPENDS_MAX: i64 = 200_000;
const CRASH_ACKS_BEFORE_KILL: usize = 300;

fn crash_batch(n: i64) -> Bytes {
    encoded_batch(77, 0, (n * 2) as i32, 2, NOW_MS + n, &format!("n{n}"))
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let config = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        ..test_config()
    };
    let log = Log::open(PathBuf::from(dir), config).expect("child open");
    let mut n = 0;
    while n < CRASH_CHILD_APPENDS_MAX {
        let info = append(&log, crash_batch(n)).expect("child append");
        println!("ACK {n} {}", info.base_offset);
        n += 1;
    }
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (sender, receiver) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The harness may print its own text on the same line first.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let mut fields = line[at..].split_whitespace().skip(1);
            let parsed = (
                fields.next().and_then(|f| f.parse::<i64>().ok()),
                fields.next().and_then(|f| f.parse::<i64>().ok()),
            );
            if let (Some(n), Some(base)) = parsed {
                if sender.send((n, base)).is_err() {
                    break;
                }
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < CRASH_ACKS_BEFORE_KILL {
        match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(ack) => acked.push(ack),
            Err(_) => break,
        }
    }
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    // Acks already in the pipe were acknowledged too.
    let _ = reader.join();
    acked.extend(receiver.try_iter());
    assert!(
        acked.len() >= CRASH_ACKS_BEFORE_KILL,
        "child acknowledged only {}",
        acked.len()
    );

    let log = Log::open(dir.path().to_path_buf(), test_config()).expect("reopen after kill");
    let data = read_all(&log);
    let stored = split(&data);
    assert!(
        stored.len() >= acked.len(),
        "stored {} < acked {}",
        stored.len(),
        acked.len()
    );
    for (i, (n, base)) in acked.iter().enumerate() {
        assert_eq!(*n, i as i64, "acks are in order");
        let (header, bytes) = &stored[i];
        assert_eq!(header.base_offset, *base);
        let mut expected = BytesMut::from(&crash_batch(*n)[..]);
        batch::set_base_offset(&mut expected, *base);
        batch::set_partition_leader_epoch(&mut expected, 0);
        assert_eq!(&bytes[..], &expected[..], "batch {n}");
    }
    let offsets: Vec<(i64, i64)> = stored
        .iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "offsets contiguous"
    );
    assert_eq!(log.log_end_offset(), offsets.last().map_or(0, |o| o.1 + 1));
    // The producer state was rebuilt: the next sequence continues.
    let next = stored.len() as i64;
    let info = append(&log, crash_batch(next)).expect("continue after crash");
    assert_eq!(info.base_offset, next * 2);
    eprintln!(
        "crash test: acknowledged {}, stored {}, lost 0",
        acked.len(),
        stored.len()
    );
}

#[test]
fn segments_roll_by_time_and_by_index_size() {
    struct Case {
        name: &'static str,
        config: LogConfig,
        append_times_ms: Vec<i64>,
        want_segments: usize,
    }
    let cases = [
        Case {
            name: "segment.ms elapsed",
            config: LogConfig {
                segment_ms: 1000,
                ..test_config()
            },
            append_times_ms: vec![NOW_MS, NOW_MS + 500, NOW_MS + 1500, NOW_MS + 1600],
            want_segments: 2,
        },
        Case {
            name: "segment.ms not elapsed",
            config: LogConfig {
                segment_ms: 10_000,
                ..test_config()
            },
            append_times_ms: vec![NOW_MS, NOW_MS + 500, NOW_MS + 1500],
            want_segments: 1,
        },
        Case {
            name: "offset index full",
            // Room for one 12-byte time entry: the second batch of each
            // segment adds one, so segments hold two batches each.
            config: LogConfig {
                segment_index_bytes: 16,
                index_interval_bytes: 0,
                ..test_config()
            },
            append_times_ms: vec![NOW_MS; 7],
            want_segments: 4,
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path().to_path_buf(), case.config).expect("open");
        for now_ms in &case.append_times_ms {
            log.append_as_leader(split(&plain(1, NOW_MS)), 0, *now_ms)
                .expect("append");
        }
        assert_eq!(log.segment_count(), case.want_segments, "{}", case.name);
        assert_eq!(log.log_end_offset(), case.append_times_ms.len() as i64);
        assert_eq!(ranges(&read_all(&log)).len(), case.append_times_ms.len());
    }
}

#[test]
fn reads_run_concurrently_with_appends() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Log>();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 4096,
        ..test_config()
    };
    let log = std::sync::Arc::new(Log::open(dir.path().to_path_buf(), config).expect("open"));
    let writer = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..500 {
                append(&log, plain(2, NOW_MS + i)).expect("append");
            }
        })
    };
    let mut offset = 0;
    while offset < 1000 {
        let end = log.log_end_offset();
        if offset == end {
            std::thread::yield_now();
            continue;
        }
        let data = log.read(offset, 1 << 16, end, true).expect("read");
        let batches = split(&data);
        assert_eq!(batches.first().map(|(h, _)| h.base_offset), Some(offset));
        offset = batches.last().map_or(offset, |(h, _)| h.last_offset() + 1);
    }
    writer.join().expect("writer");
}

#[test]
fn delete_records_moves_the_log_start_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(5, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        index_interval_bytes: 0,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
    for _ in 0..10 {
        append(&log, one.clone()).expect("append");
    }
    assert_eq!(log.segment_count(), 4);
    // Inside the second segment (bases 0, 15, 30, 45): the first goes.
    assert_eq!(log.advance_log_start_offset(17).expect("advance"), 17);
    assert_eq!(log.log_start_offset(), 17);
    assert_eq!(log.segment_count(), 3);
    assert!(matches!(
        log.read(16, 1 << 20, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // A read at the start returns the whole batch holding it.
    assert_eq!(
        ranges(&log.read(17, 1 << 20, i64::MAX, true).expect("read"))[0],
        (15, 19)
    );
    // Never backwards; never past the log end offset.
    assert_eq!(log.advance_log_start_offset(3).expect("no-op"), 17);
    assert!(matches!(
        log.advance_log_start_offset(51),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    log.close().expect("close");
    drop(log);

    let log = Log::open(dir.path().to_path_buf(), config).expect("reopen");
    assert_eq!(log.log_start_offset(), 17);
    assert_eq!(log.log_end_offset(), 50);
    // Up to the log end: the log is empty, the active segment stays.
    assert_eq!(log.advance_log_start_offset(50).expect("advance"), 50);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(append(&log, one).expect("append").base_offset, 50);
    assert_eq!(log.log_start_offset(), 50);
}

/// A transactional batch of `count` records from `producer_id`.
fn transactional(producer_id: i64, first_sequence: i32, count: i64) -> Bytes {
    let plain = encoded_batch(producer_id, 0, first_sequence, count, NOW_MS, "t");
    let header = BatchHeader::parse(&plain).expect("header");
    let attributes = header.attributes | batch::ATTR_TRANSACTIONAL;
    let records = &plain[batch::HEADER_BYTES..];
    Bytes::from(
        batch::with_records(&plain, attributes, header.record_count, records).expect("batch"),
    )
}

#[test]
fn transactions_survive_a_restart_and_reach_followers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leader_dir = dir.path().join("leader");
    let log = Log::open(leader_dir.clone(), test_config()).expect("open");
    append(&log, transactional(1, 0, 2)).expect("txn 1"); // 0..=1
    append(&log, transactional(2, 0, 3)).expect("txn 2"); // 2..=4
    assert_eq!(log.first_unstable_offset(), Some(0));
    // A plain write from a producer inside a transaction is refused.
    let stray = encoded_batch(1, 0, 2, 1, NOW_MS, "p");
    assert!(matches!(
        append(&log, stray),
        Err(StorageError::InvalidTxnState { .. })
    ));
    // Clients cannot write markers themselves.
    let forged = batch::control_batch(1, 0, true, 0, NOW_MS).expect("marker");
    assert!(matches!(
        append(&log, forged),
        Err(StorageError::InvalidRecord { .. })
    ));
    let commit = log
        .append_marker_as_leader(1, 0, 0, true, 0, NOW_MS)
        .expect("commit");
    assert_eq!(commit.base_offset, 5);
    assert_eq!(log.first_unstable_offset(), Some(2));
    log.append_marker_as_leader(2, 0, 0, false, 0, NOW_MS)
        .expect("abort");
    assert_eq!(log.first_unstable_offset(), None);
    // A marker from an older producer epoch is refused.
    assert!(matches!(
        log.append_marker_as_leader(2, -1, 0, false, 0, NOW_MS),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    append(&log, transactional(1, 2, 1)).expect("txn 3"); // 7, left open
    let want = vec![crate::AbortedTxn {
        producer_id: 2,
        first_offset: 2,
        last_offset: 6,
    }];
    assert_eq!(log.aborted_transactions(0, 8), want);
    let all = log.read(0, 1 << 20, 8, true).expect("read");

    // A follower builds the same state from the replicated batches.
    let follower = Log::open(dir.path().join("follower"), test_config()).expect("open follower");
    follower.append_as_follower(all).expect("follow");
    assert_eq!(follower.first_unstable_offset(), Some(7));
    assert_eq!(follower.aborted_transactions(0, 8), want);

    // So does the leader after a crash (no clean-shutdown marker).
    drop(log);
    let reopened = Log::open(leader_dir, test_config()).expect("reopen");
    assert_eq!(reopened.first_unstable_offset(), Some(7));
    assert_eq!(reopened.aborted_transactions(0, 8), want);
    let producers = reopened.active_producers();
    assert_eq!(
        producers
            .iter()
            .find(|p| p.producer_id == 1)
            .map(|p| p.current_txn_start_offset),
        Some(7)
    );
}

/// Set (to a directory) in the child process of
/// `open_logs_hold_about_one_file_descriptor_each`.
const FD_CHILD_DIR_ENV: &str = "KRAFTWERK_STORAGE_FD_CHILD_DIR";
const FD_CHILD_LOGS: usize = 200;

fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Counts descriptors in a process of its own: other tests running in
/// parallel would open files of their own meanwhile.
#[test]
fn fd_count_child() {
    let Ok(dir) = std::env::var(FD_CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let one = plain(5, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 3) as u64,
        index_interval_bytes: 1,
        ..test_config()
    };
    let before = open_fds();
    let mut logs: Vec<Log> = (0..FD_CHILD_LOGS)
        .map(|i| Log::open(dir.join(format!("t-{i}")), config.clone()).expect("open"))
        .collect();
    for log in &logs {
        for _ in 0..10 {
            append(log, one.clone()).expect("append");
        }
        assert!(log.segment_count() >= 4, "{}", log.segment_count());
        // Reads of closed segments open their files only while reading.
        assert_eq!(read_all(log).len(), one.len() * 10);
        assert_eq!(
            log.offset_for_timestamp(NOW_MS).expect("by timestamp"),
            Some((0, NOW_MS + 4))
        );
        let state = log.state.read();
        let closed = state.segments.len() - 1;
        assert!(state
            .segments
            .values()
            .take(closed)
            .all(|s| !s.holds_files()));
    }
    let after_appends = open_fds();
    for log in &logs {
        log.close().expect("close");
    }
    drop(logs);
    let after_close = open_fds();
    logs = (0..FD_CHILD_LOGS)
        .map(|i| Log::open(dir.join(format!("t-{i}")), config.clone()).expect("reopen"))
        .collect();
    for log in &logs {
        assert_eq!(read_all(log).len(), one.len() * 10);
    }
    let after_reopen = open_fds();
    println!("FDS {before} {after_appends} {after_close} {after_reopen}");
    let allowed = before + FD_CHILD_LOGS + 10;
    assert!(
        after_appends <= allowed,
        "{after_appends} fds open after appends, allowed {allowed}"
    );
    assert!(
        after_close <= before + 10,
        "{after_close} fds open after close"
    );
    assert!(
        after_reopen <= allowed,
        "{after_reopen} fds open after reopen, allowed {allowed}"
    );
}

#[test]
fn open_logs_hold_about_one_file_descriptor_each() {
    if !Path::new("/proc/self/fd").is_dir() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([
            "--exact",
            "tests::fd_count_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FD_CHILD_DIR_ENV, dir.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("FDS "), "child did not count: {stdout}");
}

/// `close_logs` closes many logs as `Log::close` closes one: index entries
/// on disk, every log marked clean, and everything there after a reopen.
#[test]
fn logs_closed_together_are_marked_clean_and_reopen_whole() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 0,
        ..test_config()
    };
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("t-{i}"))).collect();
    let logs: Vec<Log> = dirs
        .iter()
        .map(|d| Log::open(d.clone(), config.clone()).expect("open"))
        .collect();
    for (i, log) in logs.iter().enumerate() {
        for _ in 0..=i {
            append(log, plain(2, NOW_MS)).expect("append");
        }
    }
    let failed = crate::close_logs(&logs, root.path());
    assert!(failed.is_empty(), "{failed:?}");
    for (i, dir) in dirs.iter().enumerate() {
        assert!(
            dir.join(crate::CLEAN_SHUTDOWN_FILE).exists(),
            "{dir:?} marked clean"
        );
        let index = dir.join(format!("{:020}.index", 0));
        let entries = fs::metadata(&index).expect("index").len() / 8;
        // Every batch but the segment's first (at position 0) is indexed.
        assert_eq!(entries, i as u64, "index entries in {index:?}");
    }
    drop(logs);
    for (i, dir) in dirs.iter().enumerate() {
        let log = Log::open(dir.clone(), config.clone()).expect("reopen");
        let end = 2 * (i as i64 + 1);
        assert_eq!(log.log_end_offset(), end);
        let last = log.read(end - 2, 1 << 20, end, true).expect("read");
        assert_eq!(ranges(&last), vec![(end - 2, end - 1)]);
    }
}

#[test]
fn appends_and_reads_that_may_wait_on_the_disk_are_told_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = plain(5, NOW_MS);
    let config = LogConfig {
        segment_bytes: (one.len() * 2) as u64,
        ..test_config()
    };
    let log = Log::open(dir.path().to_path_buf(), config.clone()).expect("open");
    // A page-cache write into the empty active segment.
    assert!(!log.append_may_block(one.len(), 5, NOW_MS));
    append(&log, one.clone()).expect("append");
    assert!(!log.append_may_block(one.len(), 5, NOW_MS));
    append(&log, one.clone()).expect("append");
    // The segment is full: the next append rolls it.
    assert!(log.append_may_block(one.len(), 5, NOW_MS));
    append(&log, one.clone()).expect("append");
    assert_eq!(log.segment_count(), 2);
    // Offsets 0..10 are in the closed segment, 10..15 in the active one.
    assert!(log.read_may_block(0));
    assert!(log.read_may_block(9));
    assert!(!log.read_may_block(10));
    assert!(!log.read_may_block(15));

    // flush.messages: the append that reaches it fsyncs.
    let flushed = tempfile::tempdir().expect("tempdir");
    let log = Log::open(
        flushed.path().to_path_buf(),
        LogConfig {
            flush_messages: 8,
            ..test_config()
        },
    )
    .expect("open");
    assert!(!log.append_may_block(one.len(), 5, NOW_MS));
    append(&log, one.clone()).expect("append");
    assert!(log.append_may_block(one.len(), 5, NOW_MS));

    // The first write after a clean shutdown removes its marker.
    log.close().expect("close");
    assert!(log.append_may_block(one.len(), 1, NOW_MS));
    append(&log, plain(1, NOW_MS)).expect("append");
    assert!(!log.append_may_block(one.len(), 1, NOW_MS));
}
