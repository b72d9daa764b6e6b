//! The bodies of the fuzz targets over this crate (`tests/fuzz`), as plain
//! functions: cargo-fuzz calls them with generated inputs, and
//! `tests/tests/fuzz_corpora.rs` replays every kept input through them on
//! stable Rust. Not an API: nothing else should call them.
//!
//! A target returns normally for any input; a panic, a hang or an
//! allocation beyond the fuzzer's limit is the finding.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kraftwerk_protocol::batch::{self, BatchHeader, HEADER_BYTES};
use kraftwerk_protocol::fuzzing::fix_crcs;
use kraftwerk_types::config::Ratio;
use kraftwerk_types::{CleanupPolicy, LogConfig};

use crate::records::{self, RecordSpan};
use crate::{
    Log, StorageError, CLEANER_CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, LEADER_EPOCH_CHECKPOINT_FILE,
    LOG_START_OFFSET_FILE,
};

/// Record-batch validation: the produce path's checks (length, magic,
/// CRC32C of every batch, control records) and, as for a compacted topic,
/// the records inside each batch (decompressed and located: the keyed-record
/// check on produce, the cleaner's rebuild of a batch, the timestamp lookup
/// of ListOffsets). Runs the input as it is, then with its CRCs made right.
pub fn record_batches(data: &[u8]) {
    check_batches(&Bytes::copy_from_slice(data));
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    if fixed != data {
        check_batches(&Bytes::from(fixed));
    }
}

fn check_batches(payload: &Bytes) {
    let Ok(batches) = batch::validate_all(payload) else {
        return;
    };
    let covered: usize = batches.iter().map(|(h, _)| h.total_bytes()).sum();
    assert_eq!(covered, payload.len(), "batches cover the payload exactly");
    for (header, bytes) in &batches {
        assert_eq!(bytes.len(), header.total_bytes());
        let _ = (header.last_sequence(), batch::control_record(bytes));
        let Ok(located) = records::batch_records(bytes, header) else {
            continue;
        };
        if located.section.len() > CHEAP_SECTION_BYTES {
            // A few KiB that decompress to up to DECOMPRESSED_BYTES_MAX:
            // reading them once is the point; every check below would
            // decompress (and compress) them again.
            continue;
        }
        let _ = records::check_keys(bytes, header);
        let _ = records::first_offset_with_timestamp(bytes, header, header.max_timestamp);
        // The cleaner keeping every record rebuilds a batch that reads back
        // with the same records.
        let kept: Vec<&RecordSpan> = located.records.iter().collect();
        let Ok(rebuilt) = records::rebuild_batch(bytes, header, &located, &kept) else {
            continue;
        };
        let rebuilt = Bytes::from(rebuilt);
        let rebuilt_header = batch::validate_one(&rebuilt).expect("a rebuilt batch is valid");
        assert_eq!(rebuilt_header.total_bytes(), rebuilt.len());
        let again = records::batch_records(&rebuilt, &rebuilt_header)
            .expect("the records of a rebuilt batch are readable");
        assert_eq!(again.records.len(), located.records.len());
        for (a, b) in again.records.iter().zip(&located.records) {
            assert_eq!(again.key(a), located.key(b));
            assert_eq!(
                (a.offset_delta, a.timestamp_delta, a.value_is_null),
                (b.offset_delta, b.timestamp_delta, b.value_is_null)
            );
        }
    }
}

/// Records sections up to this size get every check; larger ones (only
/// decompression bombs, from inputs of a few KiB) are decompressed once.
const CHEAP_SECTION_BYTES: usize = 1024 * 1024;

/// Splits a [`log_recovery`] input into the files it writes.
pub const FILE_SEPARATOR: &[u8] = b"|KW|";

/// The files of a [`log_recovery`] input, in order after the flags byte,
/// separated by [`FILE_SEPARATOR`]. A missing or empty part writes no file,
/// except the first segment's log, which is written whenever the input has
/// a byte after the flags.
pub const RECOVERY_FILES: [&str; 10] = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    // The second segment's files are named by the base offset in the first
    // 8 bytes of its log (the base offset of its first batch).
    "<base>.log",
    "<base>.index",
    "<base>.timeindex",
    LEADER_EPOCH_CHECKPOINT_FILE,
    LOG_START_OFFSET_FILE,
    CLEANER_CHECKPOINT_FILE,
    // What an interrupted compaction leaves: recovery completes the swap.
    "00000000000000000000.log.swap",
];

/// Flags in the first byte of a [`log_recovery`] input.
pub mod recovery_flags {
    /// The log was closed cleanly: `.kraftwerk_cleanshutdown` is there.
    pub const CLEAN_SHUTDOWN: u8 = 0x01;
    /// The CRCs of the batches in the segment files are made right first.
    pub const FIX_CRCS: u8 = 0x02;
    /// `index.interval.bytes` = 0: every batch gets index entries.
    pub const DENSE_INDEX: u8 = 0x04;
    /// `cleanup.policy=compact`, and one compaction pass after recovery.
    pub const COMPACT: u8 = 0x08;
    /// One batch is appended after recovery.
    pub const APPEND: u8 = 0x10;
    /// The log is closed cleanly before it is opened again.
    pub const CLOSE: u8 = 0x20;
}

/// Segment and index recovery from arbitrary bytes: the input becomes the
/// files of one partition directory (see [`RECOVERY_FILES`] and
/// [`recovery_flags`]), which `Log::open` recovers. The recovered log must
/// then read back batch by batch from its start to its end, answer its
/// lookups, take an append (and a compaction pass, when asked), and open
/// again to the same offsets and leader epochs.
pub fn log_recovery(data: &[u8]) {
    use recovery_flags::*;
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut files: Vec<Vec<u8>> = split(rest, FILE_SEPARATOR)
        .take(RECOVERY_FILES.len())
        .map(<[u8]>::to_vec)
        .collect();
    files.resize(RECOVERY_FILES.len(), Vec::new());
    if flags & FIX_CRCS != 0 {
        for i in [0, 3, 9] {
            fix_crcs(&mut files[i]);
        }
    }
    let Ok(scratch) = Scratch::new() else {
        return;
    };
    let dir = scratch.0.clone();
    let second_base = files[3]
        .get(..8)
        .map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()))
        .filter(|base| *base > 0);
    for (i, content) in files.iter().enumerate() {
        let name = match (i, second_base) {
            (3..=5, None) => continue,
            (3..=5, Some(base)) => RECOVERY_FILES[i].replace("<base>", &format!("{base:020}")),
            _ => RECOVERY_FILES[i].to_string(),
        };
        // The first segment's log is written whenever there is input.
        let wanted = !content.is_empty() || (i == 0 && !rest.is_empty());
        if !wanted {
            continue;
        }
        if fs::write(dir.join(name), content).is_err() {
            return;
        }
    }
    let clean = flags & CLEAN_SHUTDOWN != 0;
    if clean && fs::write(dir.join(CLEAN_SHUTDOWN_FILE), b"").is_err() {
        return;
    }
    let mut config = LogConfig::default();
    if flags & DENSE_INDEX != 0 {
        config.index_interval_bytes = 0;
    }
    if flags & COMPACT != 0 {
        config.cleanup_policy = CleanupPolicy {
            delete: false,
            compact: true,
        };
        if let Some(ratio) = Ratio::new(0.0) {
            config.min_cleanable_dirty_ratio = ratio;
        }
        config.min_compaction_lag_ms = 0;
    }

    let log = match Log::open(dir.clone(), config.clone()) {
        Ok(log) => log,
        Err(StorageError::Io { .. }) => return,
        Err(e) => panic!("recovery fails only with I/O errors, not {e}"),
    };
    check_log(&log, false);
    if flags & COMPACT != 0 {
        let _ = log.compact(NOW_MS, log.log_end_offset());
        check_log(&log, false);
    }
    if flags & APPEND != 0 {
        let end = log.log_end_offset();
        let appended = appendable_batch();
        let header = batch::validate_one(&appended).expect("the appended batch is valid");
        let epoch = log.latest_epoch().unwrap_or(0).max(0);
        if let Ok(info) = log.append_as_leader(vec![(header, appended)], epoch, NOW_MS) {
            assert_eq!(
                info.base_offset, end,
                "an append starts at the log end offset"
            );
            assert_eq!(log.log_end_offset(), info.last_offset + 1);
        }
        check_log(&log, false);
    }
    let recovered = offsets_and_epochs(&log);
    // A log opened after an unclean shutdown validates the CRCs of its last
    // segment; one that claimed a clean shutdown did not, so closing it
    // uncleanly may let the next open cut what this one kept.
    let same_checks = flags & CLOSE != 0 || !clean;
    if flags & CLOSE != 0 {
        let _ = log.close();
    }
    drop(log);
    let Ok(again) = Log::open(dir, config) else {
        return;
    };
    if same_checks {
        let reopened = offsets_and_epochs(&again);
        assert_eq!(reopened, recovered, "a recovered log opens again as it was");
    }
    check_log(&again, true);
}

const NOW_MS: i64 = 1_700_000_000_000;

type OffsetsAndEpochs = (i64, i64, Vec<(i32, i64)>);

/// The log start and end offsets and the leader epochs below the end: an
/// epoch that starts at the log end offset (left when the log start offset
/// moved up to an empty log's end) is dropped by the next open's
/// truncation from the end, as Kafka's is.
fn offsets_and_epochs(log: &Log) -> OffsetsAndEpochs {
    let end = log.log_end_offset();
    let mut epochs = log.epoch_entries();
    epochs.retain(|(_, start_offset)| *start_offset < end);
    (log.log_start_offset(), end, epochs)
}

/// At most this many reads walk a recovered log (inputs are small).
const READS_MAX: usize = 100_000;

/// Reads the log from its start to its end, and with `lookups` asks it
/// what a broker asks (once per input: a timestamp lookup may decompress a
/// batch of up to `DECOMPRESSED_BYTES_MAX`).
fn check_log(log: &Log, lookups: bool) {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    assert!(0 <= start && start <= end, "log start {start}, end {end}");
    let mut offset = start;
    for _ in 0..READS_MAX {
        if offset >= end {
            break;
        }
        let bytes = match log.read(offset, 64 * 1024, i64::MAX, true) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            // A corrupt batch kept in a segment recovery did not validate,
            // or the gap compaction left at the end of a segment.
            Ok(_) | Err(_) => break,
        };
        let mut at = 0;
        let mut next = offset;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).expect("reads return whole batches");
            assert!(
                at + header.total_bytes() <= bytes.len(),
                "reads return whole batches"
            );
            assert!(
                header.last_offset() >= offset,
                "a read starts at the batch holding its offset"
            );
            next = header.last_offset() + 1;
            at += header.total_bytes();
        }
        assert!(next > offset, "a read moves forward");
        offset = next;
    }
    if !lookups {
        return;
    }
    let _ = log.offset_for_timestamp(0);
    let _ = log.offset_for_timestamp(NOW_MS);
    let _ = log.max_timestamp_and_offset();
    let _ = log.first_unstable_offset();
    let _ = log.aborted_transactions(start, end);
    let _ = log.active_producers();
    for (epoch, _) in log.epoch_entries() {
        if let Some((found, end_offset)) = log.end_offset_for_epoch(epoch) {
            assert!(found <= epoch && end_offset <= end);
        }
    }
}

/// One batch with one keyed record, as a producer sends it.
fn appendable_batch() -> Bytes {
    static BATCH: OnceLock<Bytes> = OnceLock::new();
    BATCH
        .get_or_init(|| {
            let record = Record {
                transactional: false,
                control: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: NOW_MS,
                key: Some(Bytes::from_static(b"key")),
                value: Some(Bytes::from_static(b"value")),
                headers: Default::default(),
                delete_horizon: false,
            };
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            RecordBatchEncoder::encode(&mut buf, [record].iter(), &options)
                .expect("one small record encodes");
            debug_assert!(buf.len() > HEADER_BYTES);
            buf.freeze()
        })
        .clone()
}

/// The parts of `data` between separators.
fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(separator.len())
            .position(|w| w == separator)
        {
            Some(at) => {
                rest = Some(&current[at + separator.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// A partition directory of its own, removed when dropped: under
/// `$KRAFTWERK_FUZZ_DIR` if set, else `/dev/shm` (fsync is free on tmpfs,
/// and a fuzzer opens a log hundreds of times a second), else the
/// system's temporary directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("KRAFTWERK_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            });
        let dir = base.join(format!(
            "kraftwerk-fuzz-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A record's key and value, either null.
type KeyValue = (Option<&'static [u8]>, Option<&'static [u8]>);

/// One batch of `records` with the given codec and producer.
fn encode_batch(
    records: &[KeyValue],
    compression: Compression,
    producer_id: i64,
    transactional: bool,
) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            if i == 1 {
                headers.insert(
                    kafka_protocol::protocol::StrBytes::from_static_str("trace"),
                    Some(Bytes::from_static(b"abc")),
                );
            }
            Record {
                transactional,
                control: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if producer_id >= 0 { i as i32 } else { -1 },
                timestamp: NOW_MS + i as i64,
                key: key.map(Bytes::from_static),
                value: value.map(Bytes::from_static),
                headers,
                delete_horizon: false,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    match RecordBatchEncoder::encode(&mut buf, records.iter(), &options) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}

const KEYED: &[KeyValue] = &[
    (Some(b"k0"), Some(b"first value")),
    (
        Some(b"k1"),
        Some(b"second value, a little longer than the first"),
    ),
    (Some(b"k0"), None),
];

/// Valid inputs to start `record_batches` from: batches of every codec,
/// keyless, idempotent, transactional, control and LogAppendTime batches,
/// and two batches back to back.
pub fn record_batch_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        out.push((
            format!("keyed-{name}"),
            encode_batch(KEYED, codec, 7, false).to_vec(),
        ));
    }
    let keyless = encode_batch(&[(None, Some(b"v"))], Compression::None, -1, false);
    out.push(("keyless".into(), keyless.to_vec()));
    out.push((
        "transactional".into(),
        encode_batch(KEYED, Compression::None, 9, true).to_vec(),
    ));
    for commit in [true, false] {
        if let Ok(marker) = batch::control_batch(9, 0, commit, 3, NOW_MS) {
            out.push((format!("marker-commit-{commit}"), marker.to_vec()));
        }
    }
    // Producer 7: one batch (without a producer, each record is one).
    let mut append_time = encode_batch(KEYED, Compression::None, 7, false).to_vec();
    if append_time.len() > HEADER_BYTES {
        batch::set_log_append_time(&mut append_time, NOW_MS);
        out.push(("log-append-time".into(), append_time));
    }
    let two = [
        encode_batch(KEYED, Compression::None, -1, false),
        encode_batch(KEYED, Compression::Gzip, -1, false),
    ]
    .concat();
    out.push(("two-batches".into(), two));
    out
}

/// Valid inputs to start `log_recovery` from: partition directories
/// written by `Log` itself (one and two segments, with indexes, leader
/// epochs, transactions, a compacted topic, checkpoints and a swap file),
/// and a torn one.
pub fn log_recovery_seeds() -> Vec<(String, Vec<u8>)> {
    use recovery_flags::*;
    let mut out = Vec::new();
    let dense = LogConfig {
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let keyed = || encode_batch(KEYED, Compression::None, -1, false);
    // The encoder starts a new batch where sequences do not follow on,
    // so records without a producer id come as one batch each.
    let appended = |log: &Log, records: Bytes, epoch: i32| {
        if let Ok(batches) = batch::validate_all(&records) {
            let _ = log.append_as_leader(batches, epoch, NOW_MS);
        }
    };

    // One segment, three leader epochs, every batch indexed.
    if let Some(files) = written(dense.clone(), |log| {
        for epoch in [0, 0, 1, 2, 2] {
            appended(log, keyed(), epoch);
        }
    }) {
        for flags in [
            CLEAN_SHUTDOWN,
            0,
            DENSE_INDEX | APPEND | CLOSE,
            FIX_CRCS | APPEND,
        ] {
            out.push((format!("one-segment-{flags:02x}"), input(flags, &files)));
        }
        // Torn: the last batch cut in the middle.
        let mut torn = files.clone();
        let cut = torn[0].len().saturating_sub(20);
        torn[0].truncate(cut);
        out.push(("torn-tail".into(), input(0, &torn)));
        // An interrupted compaction's swap file, and checkpoints.
        let mut more = files.clone();
        more[9] = more[0].clone();
        more[7] = b"2\n".to_vec();
        more[8] = b"0\n3\n".to_vec();
        out.push(("swap-and-checkpoints".into(), input(CLEAN_SHUTDOWN, &more)));
    }
    // Two segments.
    let small = LogConfig {
        segment_bytes: 300,
        ..dense.clone()
    };
    if let Some(files) = written(small, |log| {
        for epoch in [0, 1, 1, 2] {
            appended(log, keyed(), epoch);
        }
    }) {
        out.push(("two-segments".into(), input(CLEAN_SHUTDOWN, &files)));
        out.push(("two-segments-unclean".into(), input(APPEND, &files)));
    }
    // Transactions: an idempotent producer, a committed and an open one.
    if let Some(files) = written(dense.clone(), |log| {
        appended(log, encode_batch(KEYED, Compression::None, 7, false), 0);
        appended(log, encode_batch(KEYED, Compression::Gzip, 9, true), 0);
        let _ = log.append_marker_as_leader(9, 0, 3, true, 0, NOW_MS);
        appended(log, encode_batch(KEYED, Compression::Zstd, 11, true), 0);
    }) {
        out.push((
            "transactions".into(),
            input(CLEAN_SHUTDOWN | APPEND, &files),
        ));
        out.push(("transactions-unclean".into(), input(0, &files)));
    }
    // A compacted topic with overwritten keys and a tombstone.
    if let Some(files) = written(dense, |log| {
        for codec in [Compression::None, Compression::Snappy, Compression::Lz4] {
            appended(log, encode_batch(KEYED, codec, -1, false), 0);
        }
    }) {
        out.push((
            "compacted".into(),
            input(COMPACT | APPEND | CLOSE | CLEAN_SHUTDOWN, &files),
        ));
    }
    out
}

/// The files of [`RECOVERY_FILES`] that `Log` writes for `fill`, closed
/// cleanly; `None` if anything fails.
fn written(config: LogConfig, fill: impl FnOnce(&Log)) -> Option<Vec<Vec<u8>>> {
    let scratch = Scratch::new().ok()?;
    let log = Log::open(scratch.0.clone(), config).ok()?;
    fill(&log);
    log.close().ok()?;
    drop(log);
    let mut logs: Vec<String> = fs::read_dir(&scratch.0)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    let second = logs.get(1).map(|n| n.trim_end_matches(".log").to_string());
    let files = RECOVERY_FILES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = match (&second, i) {
                (None, 3..=5) => return Vec::new(),
                (Some(base), 3..=5) => name.replace("<base>", base),
                _ => name.to_string(),
            };
            fs::read(scratch.0.join(name)).unwrap_or_default()
        })
        .collect();
    Some(files)
}

/// A `log_recovery` input: the flags byte, then the files.
fn input(flags: u8, files: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![flags];
    let last = files.iter().rposition(|f| !f.is_empty()).unwrap_or(0);
    for (i, file) in files[..=last].iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(FILE_SEPARATOR);
        }
        out.extend_from_slice(file);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_split_into_files() {
        let parts: Vec<&[u8]> = split(b"a|KW||KW|b", FILE_SEPARATOR).collect();
        assert_eq!(parts, vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split(b"", FILE_SEPARATOR).count(), 1);
    }

    #[test]
    fn the_seeds_run_clean() {
        let batches = record_batch_seeds();
        assert!(batches.len() >= 10);
        for (name, input) in &batches {
            batch::validate_all(&Bytes::from(input.clone()))
                .unwrap_or_else(|e| panic!("seed {name}: {e}"));
            record_batches(input);
        }
        let logs = log_recovery_seeds();
        assert!(logs.len() >= 10, "{} log seeds", logs.len());
        for (name, input) in &logs {
            assert!(input.len() > 100, "seed {name} holds a segment");
            log_recovery(input);
        }
    }

    #[test]
    fn a_valid_segment_recovers_and_reads_back() {
        let batch = appendable_batch();
        let mut second = batch.to_vec();
        batch::set_base_offset(&mut second, 1);
        let mut input = vec![recovery_flags::APPEND | recovery_flags::DENSE_INDEX];
        input.extend_from_slice(&batch);
        input.extend_from_slice(&second);
        log_recovery(&input);
        record_batches(&batch);
    }
}
