//! `Log`: one partition's segmented, append-only log.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kraftwerk_protocol::batch::{self, BatchHeader, ATTR_TIMESTAMP_TYPE, HEADER_BYTES};
use kraftwerk_types::{LogConfig, TimestampType};
use parking_lot::{Mutex, RwLock};

use crate::cleaner;
use crate::leader_epoch::{sync_dir, LeaderEpochCache};
use crate::producer_state::{
    AbortedTxn, ActiveProducer, BatchKind, ProducerEntry, ProducerStateManager, SequenceCheck,
};
use crate::records::{self, KeyCheck};
use crate::segment::{
    delete_segment_files, mark_deleted, remove_deleted, BatchScanner, Segment, SegmentSettings,
    SegmentView, ViewIndexes, CLEANED_SUFFIX, DELETED_SUFFIX, LOG_SUFFIX, OFFSET_INDEX_SUFFIX,
    OFFSET_MAX, SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::StorageError;

/// Written by `close` after a final flush, removed on open and before the
/// next write: its presence means no write can have been torn.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kraftwerk_cleanshutdown";

/// Leftovers of interrupted deletions, compactions and checkpoint writes,
/// removed on open (after committed compaction swaps were completed).
const STRAY_SUFFIXES: [&str; 4] = [DELETED_SUFFIX, CLEANED_SUFFIX, SWAP_SUFFIX, "tmp"];

/// A read looks for the batch holding its start offset in chunks of this
/// size: about `index.interval.bytes`, the distance from the index entry it
/// starts at.
const LOCATE_CHUNK_BYTES: usize = 8 * 1024;

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's time stamped into the batches, or -1 unless the topic
    /// uses `message.timestamp.type=LogAppendTime`.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// A retried idempotent batch: nothing was written, the offsets are
    /// those of the original.
    pub duplicate: bool,
}

/// One partition's log. All methods take `&self`; a reader-writer lock
/// guards the segment list, and reads copy file data after releasing it.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) state: RwLock<LogState>,
    /// Held for the whole of a compaction pass: one pass at a time. Never
    /// taken while `state` is held.
    pub(crate) cleaner_pass: Mutex<()>,
    #[cfg(test)]
    pub(crate) cleaner_hook: Mutex<Option<cleaner::CleanerHook>>,
}

pub(crate) struct LogState {
    pub(crate) config: LogConfig,
    /// By base offset; never empty: the last one is the active segment.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) producers: ProducerStateManager,
    epochs: LeaderEpochCache,
    unflushed_messages: i64,
    last_flush_ms: Option<i64>,
    /// Set when a failed write could not be rolled back.
    pub(crate) offline: bool,
    clean_shutdown_marker: bool,
    /// Offsets below this were covered by a completed compaction pass (as
    /// in `cleaner-offset-checkpoint`); may lag behind the log start offset.
    pub(crate) first_dirty_offset: i64,
    /// Counts truncations, so a compaction pass can tell whether the log
    /// was cut (and maybe rewritten) while it ran.
    pub(crate) truncations: u64,
    /// A log start offset inside the first segment, set by DeleteRecords
    /// (or, on a follower, by the leader's log start offset) and kept in
    /// [`LOG_START_OFFSET_FILE`]; offsets below it are gone for readers.
    log_start_floor: i64,
}

/// Where a log start offset set inside a segment survives restarts.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";

fn load_log_start_floor(dir: &Path) -> Option<i64> {
    fs::read_to_string(dir.join(LOG_START_OFFSET_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|offset| (0..=OFFSET_MAX).contains(offset))
}

fn write_log_start_floor(dir: &Path, offset: i64) -> Result<(), StorageError> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    crate::leader_epoch::write_atomically(&path, format!("{offset}\n").as_bytes())
        .map_err(|e| StorageError::io(path, e))
}

pub(crate) fn settings(config: &LogConfig) -> SegmentSettings {
    SegmentSettings {
        index_interval_bytes: config.index_interval_bytes,
    }
}

/// The base offset in a segment file name, if it is one.
pub(crate) fn parse_base_offset(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl Log {
    /// Opens (creating if missing) the log in `dir` and recovers it.
    pub fn open(dir: PathBuf, config: LogConfig) -> Result<Log, StorageError> {
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if clean {
            fs::remove_file(&marker).map_err(|e| StorageError::io(&marker, e))?;
            sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }

        // Before any leftover is removed: a committed swap is completed.
        cleaner::complete_interrupted_swaps(&dir)?;

        let mut log_bases = Vec::new();
        let mut index_files = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = entry.path();
            if STRAY_SUFFIXES
                .iter()
                .any(|s| name.ends_with(&format!(".{s}")))
            {
                tracing::info!(file = %path.display(), "removing leftover file");
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            } else if let Some(base) = parse_base_offset(&name, LOG_SUFFIX) {
                log_bases.push(base);
            } else if let Some(base) = parse_base_offset(&name, OFFSET_INDEX_SUFFIX)
                .or_else(|| parse_base_offset(&name, TIME_INDEX_SUFFIX))
            {
                index_files.push((base, path));
            }
        }
        log_bases.sort_unstable();
        for (base, path) in index_files {
            if log_bases.binary_search(&base).is_err() {
                fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            }
        }

        let segment_settings = settings(&config);
        let mut producers = ProducerStateManager::default();
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut next_offset: Option<i64> = None;
        let mut producers_stale = false;
        // Whether the segment last kept had every batch CRC-checked.
        let mut last_kept_validated = true;
        for (i, &base) in log_bases.iter().enumerate() {
            let last = i + 1 == log_bases.len();
            let overlaps = next_offset.is_some_and(|n| base < n);
            let damaged_before = segments.len() < i;
            if overlaps || damaged_before || base > OFFSET_MAX {
                // Everything after a cut or an overlap is unreachable by
                // offset; Kafka drops it the same way.
                tracing::warn!(dir = %dir.display(), base, "dropping segment after a damaged one");
                delete_segment_files(&dir, base).map_err(|e| StorageError::io(&dir, e))?;
                continue;
            }
            let segment_error =
                |e| StorageError::io(crate::segment::segment_path(&dir, base, LOG_SUFFIX), e);
            let mut recovered = Segment::recover(
                &dir,
                base,
                last && !clean,
                segment_settings,
                &mut |h, kind| producers.update(h, kind),
            )
            .map_err(segment_error)?;
            if recovered.truncated_bytes > 0 && !recovered.crc_validated {
                // A damaged segment becomes the last one (those after it
                // are dropped) and will be appended to: what it keeps must
                // be whole, as Kafka checks every batch of a segment it
                // recovers. Without this a corrupt batch before the damage
                // stayed, and the next unclean open cut it off together
                // with everything appended since. The producer state seen
                // so far may hold batches this pass cuts: it is rebuilt.
                drop(recovered);
                recovered = Segment::recover(&dir, base, true, segment_settings, &mut |_, _| {})
                    .map_err(segment_error)?;
                producers_stale = true;
            }
            next_offset = Some(recovered.segment.next_offset);
            last_kept_validated = recovered.crc_validated;
            let cut = recovered.truncated_bytes > 0;
            // Only the last segment stays active (holding its `.log` open
            // and its index entries in memory).
            if let Some((previous_base, previous)) = segments.iter_mut().next_back() {
                previous.close_files().map_err(|e| {
                    StorageError::io(
                        crate::segment::segment_path(&dir, *previous_base, LOG_SUFFIX),
                        e,
                    )
                })?;
            }
            segments.insert(base, recovered.segment);
            if cut && !last {
                // Make the following segments count as damaged.
                next_offset = Some(i64::MAX);
            }
        }
        if !clean && !last_kept_validated {
            // The segments after this one were all dropped (beyond the
            // offset range, overlapping, after a cut), so it is the last
            // one now and will be appended to; it was scanned by headers
            // only. As for the last segment of any unclean shutdown, every
            // batch it keeps must pass its CRC: otherwise the next unclean
            // open would cut a corrupt batch here, and everything appended
            // after it, that this open kept and reported.
            if let Some((&base, _)) = segments.iter().next_back() {
                segments.remove(&base);
                let recovered =
                    Segment::recover(&dir, base, true, segment_settings, &mut |_, _| {}).map_err(
                        |e| {
                            StorageError::io(
                                crate::segment::segment_path(&dir, base, LOG_SUFFIX),
                                e,
                            )
                        },
                    )?;
                producers_stale = true;
                segments.insert(base, recovered.segment);
            }
        }
        if segments.is_empty() {
            let segment = Segment::create(&dir, 0).map_err(|e| StorageError::io(&dir, e))?;
            segments.insert(0, segment);
        }

        let mut epochs = LeaderEpochCache::load(&dir);
        let mut log_end_offset = segments.values().next_back().map_or(0, |s| s.next_offset);
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_start_floor = load_log_start_floor(&dir).unwrap_or(first_base);
        if log_start_floor > log_end_offset {
            // Recovery cut the log below its log start offset (or segments
            // were lost): all that is left is below the start. As Kafka's
            // log loader does, the log starts again, empty, at its log
            // start offset; otherwise the next appends would land below it,
            // acknowledged but never readable.
            tracing::warn!(
                dir = %dir.display(),
                log_start_offset = log_start_floor,
                log_end_offset,
                "log ends below its log start offset; starting it empty there"
            );
            for base in std::mem::take(&mut segments).into_keys() {
                delete_segment_files(&dir, base).map_err(|e| StorageError::io(&dir, e))?;
            }
            let segment =
                Segment::create(&dir, log_start_floor).map_err(|e| StorageError::io(&dir, e))?;
            segments.insert(log_start_floor, segment);
            producers = ProducerStateManager::default();
            producers_stale = false;
            epochs.clear()?;
            log_end_offset = log_start_floor;
        }
        let log_start_offset = log_start_floor.max(first_base).min(log_end_offset);
        epochs.truncate_from_end(log_end_offset)?;
        epochs.truncate_from_start(log_start_offset)?;
        let mut first_dirty_offset = cleaner::load_checkpoint(&dir).unwrap_or(log_start_offset);
        if first_dirty_offset > log_end_offset {
            // The log was cut after the checkpoint was written: what gets
            // appended from here on has never been cleaned.
            first_dirty_offset = log_end_offset;
            cleaner::write_checkpoint(&dir, first_dirty_offset)?;
        }

        tracing::debug!(
            dir = %dir.display(),
            segments = segments.len(),
            log_start_offset,
            log_end_offset,
            clean,
            "opened log"
        );
        let mut state = LogState {
            config,
            segments,
            producers,
            epochs,
            unflushed_messages: 0,
            last_flush_ms: None,
            offline: false,
            clean_shutdown_marker: false,
            first_dirty_offset,
            truncations: 0,
            log_start_floor,
        };
        if producers_stale {
            state
                .rebuild_producers()
                .map_err(|e| StorageError::io(&dir, e))?;
        }
        Ok(Log {
            dir,
            state: RwLock::new(state),
            cleaner_pass: Mutex::new(()),
            #[cfg(test)]
            cleaner_hook: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leader path: assigns offsets, stamps the leader epoch (and the
    /// append time for LogAppendTime topics), checks idempotent-producer
    /// sequences, and writes all batches in one write, or none.
    pub fn append_as_leader(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        // Decompressing happens before the write lock is taken.
        let compacted = self.state.read().config.cleanup_policy.compact;
        if compacted {
            for (header, bytes) in &batches {
                match records::check_keys(bytes, header) {
                    Ok(()) => {}
                    Err(KeyCheck::Unreadable(reason)) => {
                        return Err(StorageError::Corrupt { reason })
                    }
                    Err(KeyCheck::Keyless { index }) => {
                        return Err(StorageError::InvalidRecord {
                            reason: format!(
                                "compacted topic cannot accept a record without a key \
                                 (record {index} of the batch)"
                            ),
                        })
                    }
                }
            }
        }
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        let log_end_offset = state.log_end_offset();
        let log_start_offset = state.log_start_offset();
        let max_message_bytes = state.config.max_message_bytes;
        let log_append_time = state.config.timestamp_type == TimestampType::LogAppendTime;

        let total_bytes: usize = batches.iter().map(|(_, b)| b.len()).sum();
        let mut data = Vec::with_capacity(total_bytes);
        let mut placed: Vec<(BatchHeader, u64)> = Vec::with_capacity(batches.len());
        let mut staged: HashMap<i64, Option<ProducerEntry>> = HashMap::new();
        let mut next_offset = log_end_offset;
        let mut records = 0i64;
        for (given, bytes) in &batches {
            if bytes.len() > max_message_bytes {
                return Err(StorageError::MessageTooLarge {
                    size: bytes.len(),
                    max: max_message_bytes,
                });
            }
            if given.total_bytes() != bytes.len() {
                return Err(StorageError::Corrupt {
                    reason: format!(
                        "batch header says {} bytes, payload has {}",
                        given.total_bytes(),
                        bytes.len()
                    ),
                });
            }
            let mut header = *given;
            header.base_offset = next_offset;
            header.partition_leader_epoch = leader_epoch;
            if log_append_time {
                header.max_timestamp = now_ms;
                header.attributes |= ATTR_TIMESTAMP_TYPE;
            }
            if header.is_control() {
                return Err(StorageError::InvalidRecord {
                    reason: "clients may not write control batches".into(),
                });
            }
            if header.has_producer_id() {
                let entry = staged
                    .entry(header.producer_id)
                    .or_insert_with(|| state.producers.entry(header.producer_id).cloned());
                if !header.is_transactional()
                    && entry.as_ref().is_some_and(|e| e.txn_first_offset.is_some())
                {
                    return Err(StorageError::InvalidTxnState {
                        producer_id: header.producer_id,
                    });
                }
                match ProducerStateManager::check(entry.as_ref(), &header)? {
                    SequenceCheck::Duplicate(original) => {
                        tracing::debug!(
                            producer_id = header.producer_id,
                            base_offset = original.base_offset,
                            "duplicate idempotent batch"
                        );
                        return Ok(AppendInfo {
                            base_offset: original.base_offset,
                            last_offset: original.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset,
                            duplicate: true,
                        });
                    }
                    SequenceCheck::Append => {
                        // Data batches end no transaction: nothing to keep.
                        ProducerStateManager::apply(entry, &header, BatchKind::Data);
                    }
                }
            }
            let position = data.len();
            data.extend_from_slice(bytes);
            let copy = &mut data[position..];
            batch::set_base_offset(copy, next_offset);
            batch::set_partition_leader_epoch(copy, leader_epoch);
            if log_append_time {
                batch::set_log_append_time(copy, now_ms);
            }
            placed.push((header, position as u64));
            next_offset = header.last_offset() + 1;
            records += header.last_offset_delta as i64 + 1;
        }
        if placed.is_empty() {
            return Ok(AppendInfo {
                base_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                log_append_time_ms: -1,
                log_start_offset,
                duplicate: false,
            });
        }

        state.write_batches(&self.dir, &data, &placed, now_ms)?;
        state.producers.commit(
            staged
                .into_iter()
                .filter_map(|(id, e)| e.map(|e| (id, e)))
                .collect(),
        );
        let newer_epoch = state.epochs.latest_epoch().is_none_or(|e| leader_epoch > e);
        if newer_epoch {
            if let Err(e) = state.epochs.assign(leader_epoch, log_end_offset) {
                tracing::warn!(error = %e, "leader-epoch checkpoint not written");
            }
        }
        state.after_write(records, now_ms)?;
        Ok(AppendInfo {
            base_offset: log_end_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset,
            duplicate: false,
        })
    }

    /// Follower path: stores batches with the offsets and leader epochs
    /// they carry; they must continue the log at its end, or after a gap
    /// that compaction left on the leader (offsets only ever increase).
    pub fn append_as_follower(&self, records: Bytes) -> Result<AppendInfo, StorageError> {
        let batches = batch::validate_all(&records).map_err(|e| StorageError::Corrupt {
            reason: e.to_string(),
        })?;
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        let log_end_offset = state.log_end_offset();
        let log_start_offset = state.log_start_offset();
        let mut expected = log_end_offset;
        let mut placed = Vec::with_capacity(batches.len());
        let mut position = 0u64;
        let mut records_count = 0i64;
        for (header, bytes) in &batches {
            if header.base_offset < expected {
                return Err(StorageError::NonContiguousOffsets {
                    expected,
                    got: header.base_offset,
                });
            }
            placed.push((*header, position));
            position += bytes.len() as u64;
            expected = header.last_offset() + 1;
            records_count += header.last_offset_delta as i64 + 1;
        }
        if placed.is_empty() {
            return Ok(AppendInfo {
                base_offset: log_end_offset,
                last_offset: log_end_offset - 1,
                log_append_time_ms: -1,
                log_start_offset,
                duplicate: false,
            });
        }
        let now_ms = wall_clock_ms();
        state.write_batches(&self.dir, &records, &placed, now_ms)?;
        for ((header, _), (_, bytes)) in placed.iter().zip(&batches) {
            let kind = if header.is_control() {
                BatchKind::marker(batch::control_record(bytes))
            } else {
                BatchKind::Data
            };
            state.producers.update(header, kind);
            let newer = state
                .epochs
                .latest_epoch()
                .is_none_or(|e| header.partition_leader_epoch > e);
            if newer && header.partition_leader_epoch >= 0 {
                if let Err(e) = state
                    .epochs
                    .assign(header.partition_leader_epoch, header.base_offset)
                {
                    tracing::warn!(error = %e, "leader-epoch checkpoint not written");
                }
            }
        }
        state.after_write(records_count, now_ms)?;
        Ok(AppendInfo {
            base_offset: log_end_offset,
            last_offset: expected - 1,
            log_append_time_ms: -1,
            log_start_offset,
            duplicate: false,
        })
    }

    /// Leader path for a transaction marker (WriteTxnMarkers): appends a
    /// COMMIT or ABORT control batch for `producer_id`, which ends its open
    /// transaction here. A marker from an older producer epoch or an older
    /// coordinator epoch than the last one is refused. Returns the offset
    /// of the marker.
    pub fn append_marker_as_leader(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let bytes = batch::control_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        )
        .map_err(|reason| StorageError::Corrupt { reason })?;
        let mut header = BatchHeader::parse(&bytes).map_err(|e| StorageError::Corrupt {
            reason: e.to_string(),
        })?;
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        let log_end_offset = state.log_end_offset();
        let log_start_offset = state.log_start_offset();
        let mut entry = state.producers.entry(producer_id).cloned();
        if let Some(e) = &entry {
            if producer_epoch < e.producer_epoch {
                return Err(StorageError::InvalidProducerEpoch {
                    producer_id,
                    known_epoch: e.producer_epoch,
                    batch_epoch: producer_epoch,
                });
            }
            if coordinator_epoch < e.coordinator_epoch {
                return Err(StorageError::CoordinatorFenced {
                    producer_id,
                    known_epoch: e.coordinator_epoch,
                    marker_epoch: coordinator_epoch,
                });
            }
        }
        header.base_offset = log_end_offset;
        header.partition_leader_epoch = leader_epoch;
        let mut data = bytes.to_vec();
        batch::set_base_offset(&mut data, log_end_offset);
        batch::set_partition_leader_epoch(&mut data, leader_epoch);
        state.write_batches(&self.dir, &data, &[(header, 0)], now_ms)?;
        let aborted = ProducerStateManager::apply(
            &mut entry,
            &header,
            BatchKind::Marker {
                commit,
                coordinator_epoch,
            },
        );
        if let Some(e) = entry {
            state.producers.commit(HashMap::from([(producer_id, e)]));
        }
        if let Some(a) = aborted {
            state.producers.record_aborted(a);
        }
        let newer_epoch = state.epochs.latest_epoch().is_none_or(|e| leader_epoch > e);
        if newer_epoch {
            if let Err(e) = state.epochs.assign(leader_epoch, log_end_offset) {
                tracing::warn!(error = %e, "leader-epoch checkpoint not written");
            }
        }
        state.after_write(1, now_ms)?;
        Ok(AppendInfo {
            base_offset: log_end_offset,
            last_offset: log_end_offset,
            log_append_time_ms: -1,
            log_start_offset,
            duplicate: false,
        })
    }

    /// The first offset of the earliest transaction still open in this
    /// log, if any: the last stable offset cannot pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.state.read().producers.first_unstable_offset()
    }

    /// Whether `producer_id` has a transaction open in this log.
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.state
            .read()
            .producers
            .entry(producer_id)
            .is_some_and(|e| e.txn_first_offset.is_some())
    }

    /// Aborted transactions whose data overlaps `[from, upper)`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.state.read().producers.aborted_between(from, upper)
    }

    /// Whether an append of `bytes` holding `records` records may wait on
    /// the disk rather than copy into the page cache: it would roll a
    /// segment (an fsync of the old one, new files), reach
    /// `flush.messages` (an fsync), or is the first write since the log
    /// was opened (the clean-shutdown marker is removed). Callers run such
    /// appends off the async workers; a page-cache write runs in place.
    pub fn append_may_block(&self, bytes: usize, records: i64, now_ms: i64) -> bool {
        let state = self.state.read();
        state.clean_shutdown_marker
            || state.unflushed_messages.saturating_add(records) >= state.config.flush_messages
            || state.should_roll(
                bytes as u64,
                state.log_end_offset().saturating_add(records.max(1) - 1),
                now_ms,
            )
    }

    /// Whether a read from `start_offset` reads a closed segment: data
    /// written earlier, which may have left the page cache, so a reader
    /// runs it off the async workers. Reads of the active segment (the
    /// tail, just written) run in place.
    pub fn read_may_block(&self, start_offset: i64) -> bool {
        let state = self.state.read();
        state
            .segments
            .keys()
            .next_back()
            .is_some_and(|active_base| start_offset < *active_base)
    }

    /// Whole batches from the one holding `start_offset`, at most
    /// `max_bytes` (but one whole batch when `min_one_batch`), all below
    /// `max_offset`. Reads from one segment per call, as Kafka does.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        let view = {
            let state = self.state.read();
            let log_start_offset = state.log_start_offset();
            let log_end_offset = state.log_end_offset();
            if start_offset < log_start_offset || start_offset > log_end_offset {
                return Err(StorageError::OffsetOutOfRange {
                    offset: start_offset,
                    log_start_offset,
                    log_end_offset,
                });
            }
            if start_offset == log_end_offset || start_offset >= max_offset {
                return Ok(Bytes::new());
            }
            let floor = state
                .segments
                .range(..=start_offset)
                .next_back()
                .map_or(log_start_offset, |(base, _)| *base);
            // A segment compaction emptied ends at its base offset; a
            // non-empty one holds a batch ending at or past `start_offset`.
            match state
                .segments
                .range(floor..)
                .map(|(_, s)| s)
                .find(|s| s.next_offset > start_offset && !s.is_empty())
            {
                Some(segment) => segment
                    .view(ViewIndexes::Offset)
                    .map_err(|e| StorageError::io(segment.log_path(), e))?,
                None => return Ok(Bytes::new()),
            }
        };
        read_from_segment(&view, start_offset, max_bytes, max_offset, min_one_batch)
            .map_err(|e| StorageError::io(self.dir.clone(), e))?
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.read().log_start_offset()
    }

    /// The idempotent producers with data in this log.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.state.read().producers.active()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.read().log_end_offset()
    }

    pub fn size_bytes(&self) -> u64 {
        self.state
            .read()
            .segments
            .values()
            .map(Segment::size_bytes)
            .sum()
    }

    /// The number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.state.read().segments.len()
    }

    /// (offset, timestamp) of the first batch whose max timestamp is >= `ts`:
    /// the batch's base offset and its max timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let view = {
            let state = self.state.read();
            match state.segments.values().find(|s| s.max_timestamp() >= ts) {
                Some(segment) => segment
                    .view(ViewIndexes::OffsetAndTime)
                    .map_err(|e| StorageError::io(segment.log_path(), e))?,
                None => return Ok(None),
            }
        };
        let found =
            find_by_timestamp(&view, ts).map_err(|e| StorageError::io(self.dir.clone(), e))?;
        Ok(found)
    }

    /// (timestamp, offset) of the batch with the largest max timestamp: its
    /// last offset, the earliest such batch on ties.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        let (timestamp, segment_base, batch_last_offset) = {
            let state = self.state.read();
            let mut best: Option<(i64, i64, i64)> = None;
            for segment in state.segments.values() {
                let timestamp = segment.max_timestamp();
                if timestamp >= 0 && best.is_none_or(|(t, _, _)| timestamp > t) {
                    best = Some((
                        timestamp,
                        segment.base_offset,
                        segment.last_offset_of_max_timestamp(),
                    ));
                }
            }
            best?
        };
        // Kafka answers the first record carrying the max timestamp, not
        // the end of its batch: look inside the batches of that segment.
        let exact = self.first_offset_with_timestamp(
            segment_base.max(self.log_start_offset()),
            batch_last_offset,
            timestamp,
        );
        Some((timestamp, exact.unwrap_or(batch_last_offset)))
    }

    /// The first record at or after `from` and at or before `until` whose
    /// timestamp is `timestamp`; None when the batches cannot be read.
    fn first_offset_with_timestamp(&self, from: i64, until: i64, timestamp: i64) -> Option<i64> {
        let mut offset = from;
        while offset <= until {
            let chunk = self.read(offset, 1 << 20, i64::MAX, true).ok()?;
            let batches = batch::validate_all(&chunk).ok()?;
            let (last, _) = batches.last()?;
            let next = last.last_offset() + 1;
            for (header, bytes) in &batches {
                if header.max_timestamp != timestamp {
                    continue;
                }
                match crate::records::first_offset_with_timestamp(bytes, header, timestamp) {
                    Ok(Some(found)) => return Some(found.max(from)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(dir = %self.dir.display(), error = %e, "batch records unreadable");
                        return None;
                    }
                }
            }
            offset = next;
        }
        None
    }

    /// Fsyncs the active segment and its indexes (older segments were
    /// synced when they were rolled).
    pub fn flush(&self) -> Result<(), StorageError> {
        let mut state = self.state.write();
        state.flush()
    }

    /// Applies `flush.ms`; `flush.messages` is applied by the appends.
    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), StorageError> {
        let mut state = self.state.write();
        let last = *state.last_flush_ms.get_or_insert(now_ms);
        if state.unflushed_messages > 0 && now_ms.saturating_sub(last) >= state.config.flush_ms {
            state.flush()?;
            state.last_flush_ms = Some(now_ms);
        } else if state.unflushed_messages == 0 {
            state.last_flush_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Deletes whole segments past `retention.ms` (by their largest
    /// timestamp) or beyond `retention.bytes`, oldest first, never the
    /// active one. Returns how many were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let mut state = self.state.write();
        if !state.config.cleanup_policy.delete {
            return Ok(0);
        }
        let retention_ms = state.config.retention_ms;
        let retention_bytes = state.config.retention_bytes;
        let mut excess_bytes = if retention_bytes >= 0 {
            state
                .segments
                .values()
                .map(Segment::size_bytes)
                .sum::<u64>() as i64
                - retention_bytes
        } else {
            0
        };
        let mut doomed = Vec::new();
        let candidates = state.segments.len().saturating_sub(1);
        for segment in state.segments.values().take(candidates) {
            let expired =
                retention_ms >= 0 && now_ms.saturating_sub(segment.max_timestamp()) > retention_ms;
            let over_size = retention_bytes >= 0 && excess_bytes - segment.size_bytes() as i64 >= 0;
            if !expired && !over_size {
                break;
            }
            excess_bytes -= segment.size_bytes() as i64;
            doomed.push(segment.base_offset);
        }
        for base in &doomed {
            if let Some(segment) = state.segments.remove(base) {
                let path = segment.log_path().to_path_buf();
                tracing::info!(segment = %path.display(), "deleting segment by retention");
                segment
                    .delete(&self.dir)
                    .map_err(|e| StorageError::io(path, e))?;
            }
        }
        if !doomed.is_empty() {
            let log_start_offset = state.log_start_offset();
            state.producers.remove_before(log_start_offset);
            state.epochs.truncate_from_start(log_start_offset)?;
        }
        Ok(doomed.len())
    }

    /// Kafka's `maybeIncrementLogStartOffset`: moves the log start offset
    /// forward to `offset` (DeleteRecords on a leader, the leader's log
    /// start on a follower), deletes the segments wholly below it, and
    /// returns the log start offset after the call. Never moves backwards;
    /// an `offset` past the log end offset is out of range.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<i64, StorageError> {
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        let log_end_offset = state.log_end_offset();
        if offset > log_end_offset || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset(),
                log_end_offset,
            });
        }
        if offset <= state.log_start_offset() {
            return Ok(state.log_start_offset());
        }
        // Persist first: a crash after it leaves whole segments below the
        // new start, which the next call or retention pass removes.
        write_log_start_floor(&self.dir, offset)?;
        state.log_start_floor = offset;
        let doomed: Vec<i64> = state
            .segments
            .values()
            .take(state.segments.len().saturating_sub(1))
            .take_while(|s| s.next_offset <= offset)
            .map(|s| s.base_offset)
            .collect();
        for base in &doomed {
            if let Some(segment) = state.segments.remove(base) {
                let path = segment.log_path().to_path_buf();
                tracing::info!(segment = %path.display(), "deleting segment below the log start offset");
                segment
                    .delete(&self.dir)
                    .map_err(|e| StorageError::io(path, e))?;
            }
        }
        state.producers.remove_before(offset);
        state.epochs.truncate_from_start(offset)?;
        Ok(state.log_start_offset())
    }

    /// Removes every batch at or past `offset` (a batch holding `offset`
    /// goes whole). Below the log start offset, the log is emptied and
    /// restarts at `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        if offset >= state.log_end_offset() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let io_error = |e| StorageError::io(dir.clone(), e);
        state.remove_clean_shutdown_marker(&self.dir)?;
        let doomed: Vec<i64> = if offset <= state.log_start_offset() {
            state.segments.keys().copied().collect()
        } else {
            state.segments.range(offset..).map(|(b, _)| *b).collect()
        };
        for base in doomed.iter().rev() {
            if let Some(segment) = state.segments.remove(base) {
                segment.delete(&self.dir).map_err(io_error)?;
            }
        }
        let segment_settings = settings(&state.config);
        match state.segments.pop_last() {
            None => {
                let segment = Segment::create(&self.dir, offset.max(0)).map_err(io_error)?;
                state.segments.insert(segment.base_offset, segment);
            }
            Some((base, segment)) => {
                let segment = segment
                    .truncate_to(&self.dir, offset, segment_settings)
                    .map_err(io_error)?;
                state.segments.insert(base, segment);
            }
        }
        state.rebuild_producers().map_err(io_error)?;
        let log_end_offset = state.log_end_offset();
        state.epochs.truncate_from_end(log_end_offset)?;
        state.truncations += 1;
        if state.first_dirty_offset > log_end_offset {
            state.first_dirty_offset = log_end_offset;
            cleaner::write_checkpoint(&self.dir, log_end_offset)?;
        }
        Ok(())
    }

    /// Kafka's `truncateFullyAndStartAt`: deletes every segment and starts
    /// an empty log whose log start and log end offsets are `offset`, with
    /// no producer state and an empty leader-epoch cache. A follower does
    /// this when its log ends below the leader's log start offset. The new
    /// (empty) active segment is named by `offset`, so a reopen finds it.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        let mut state = self.state.write();
        state.check_writable(&self.dir)?;
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset(),
                log_end_offset: state.log_end_offset(),
            });
        }
        let dir = self.dir.clone();
        let io_error = |e| StorageError::io(dir.clone(), e);
        state.remove_clean_shutdown_marker(&self.dir)?;
        // Rename the old files away first, so the new segment's name is
        // free even when `offset` is an old base offset; the old segments
        // stay in the map (still readable through their open files) until
        // the new one exists, and a crash in between leaves only
        // `.deleted` files, which the next open removes.
        let doomed: Vec<i64> = state.segments.keys().rev().copied().collect();
        let created = doomed
            .iter()
            .try_for_each(|base| mark_deleted(&self.dir, *base))
            .and_then(|()| Segment::create(&self.dir, offset))
            .and_then(|segment| sync_dir(&self.dir).map(|()| segment));
        let segment = match created {
            Ok(segment) => segment,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "truncating fully failed; log offline");
                state.offline = true;
                return Err(io_error(e));
            }
        };
        let old = std::mem::take(&mut state.segments);
        state.segments.insert(offset, segment);
        drop(old);
        for base in &doomed {
            if let Err(e) = remove_deleted(&self.dir, *base) {
                // The next open removes what is left.
                tracing::warn!(dir = %self.dir.display(), base, error = %e, "could not remove a deleted segment");
            }
        }
        state.producers.clear();
        state.epochs.clear()?;
        state.unflushed_messages = 0;
        state.truncations += 1;
        state.first_dirty_offset = offset;
        cleaner::write_checkpoint(&self.dir, offset)?;
        state.log_start_floor = offset;
        write_log_start_floor(&self.dir, offset)?;
        tracing::info!(dir = %self.dir.display(), offset, "log emptied; it restarts at the new offset");
        Ok(())
    }

    pub fn update_config(&self, config: LogConfig) {
        self.state.write().config = config;
    }

    pub fn config(&self) -> LogConfig {
        self.state.read().config.clone()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.read().epochs.latest_epoch()
    }

    /// Kafka's OffsetsForLeaderEpoch: the largest epoch <= `epoch` and the
    /// start offset of the next one (the log end offset for the latest).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.state.read();
        state.epochs.end_offset_for(epoch, state.log_end_offset())
    }

    /// The leader-epoch cache as (epoch, start offset) pairs.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        let state = self.state.read();
        state
            .epochs
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Flushes everything and marks the shutdown clean, so the next open
    /// skips the CRC scan of the active segment.
    pub fn close(&self) -> Result<(), StorageError> {
        let mut state = self.state.write();
        if state.offline {
            return Ok(());
        }
        state.flush()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::File::create(&marker).map_err(|e| StorageError::io(&marker, e))?;
        sync_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        state.clean_shutdown_marker = true;
        Ok(())
    }

    /// The first step of [`close_logs`]: writes what only memory holds
    /// (the active segment's index entries), without fsync. Returns false
    /// for a log that is offline and so is not closed cleanly.
    fn write_for_close(&self) -> Result<bool, StorageError> {
        let mut state = self.state.write();
        if state.offline {
            return Ok(false);
        }
        let active = state.active();
        let path = active.log_path().to_path_buf();
        active
            .write_indexes()
            .map_err(|e| StorageError::io(path, e))?;
        Ok(true)
    }

    /// The second step of [`close_logs`], once everything the log holds is
    /// durable: the clean-shutdown marker (made durable by the caller).
    fn mark_clean(&self) -> Result<(), StorageError> {
        let mut state = self.state.write();
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::File::create(&marker).map_err(|e| StorageError::io(&marker, e))?;
        state.unflushed_messages = 0;
        state.clean_shutdown_marker = true;
        Ok(())
    }
}

/// Closes many logs whose directories are all under `root` (one
/// filesystem) as [`Log::close`] closes one, with two `syncfs` calls for all
/// of them instead of four fsyncs each: index entries are written, one
/// `syncfs` makes every log durable, the clean-shutdown markers are
/// created, and a second `syncfs` makes them durable. A broker with
/// thousands of partitions otherwise spends seconds of its shutdown in
/// fsync. Returns the logs not marked clean, with why; the next open
/// recovers those by scanning, as after a crash.
pub fn close_logs<'a>(
    logs: impl IntoIterator<Item = &'a Log>,
    root: &Path,
) -> Vec<(PathBuf, StorageError)> {
    let mut failed = Vec::new();
    let mut written = Vec::new();
    for log in logs {
        match log.write_for_close() {
            Ok(true) => written.push(log),
            Ok(false) => {}
            Err(e) => failed.push((log.dir.clone(), e)),
        }
    }
    let sync = || -> io::Result<()> {
        let dir = fs::File::open(root)?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)
    };
    let failure = |e: &io::Error| StorageError::io(root, io::Error::new(e.kind(), e.to_string()));
    if let Err(e) = sync() {
        // Nothing is known to be durable: no log may claim a clean shutdown.
        failed.extend(written.iter().map(|log| (log.dir.clone(), failure(&e))));
        return failed;
    }
    let mut marked = Vec::with_capacity(written.len());
    for log in written {
        match log.mark_clean() {
            Ok(()) => marked.push(log),
            Err(e) => failed.push((log.dir.clone(), e)),
        }
    }
    if let Err(e) = sync() {
        // A marker that may not be durable is harmless (its absence means
        // a scan), but one that is durable must be true, and it is: the
        // data was synced first.
        failed.extend(marked.iter().map(|log| (log.dir.clone(), failure(&e))));
    }
    failed
}

impl LogState {
    pub(crate) fn log_start_offset(&self) -> i64 {
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        self.log_start_floor
            .max(first_base)
            .min(self.log_end_offset())
    }

    pub(crate) fn log_end_offset(&self) -> i64 {
        self.segments
            .values()
            .next_back()
            .map_or(0, |s| s.next_offset)
    }

    fn check_writable(&self, dir: &Path) -> Result<(), StorageError> {
        if self.offline {
            return Err(StorageError::LogDirOffline {
                dir: dir.to_path_buf(),
            });
        }
        Ok(())
    }

    fn remove_clean_shutdown_marker(&mut self, dir: &Path) -> Result<(), StorageError> {
        if self.clean_shutdown_marker {
            let marker = dir.join(CLEAN_SHUTDOWN_FILE);
            match fs::remove_file(&marker) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(marker, e)),
            }
            self.clean_shutdown_marker = false;
        }
        Ok(())
    }

    fn active(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(segment) => segment,
            None => unreachable!("a log always has an active segment"),
        }
    }

    /// Kafka's roll rules, checked before an append of `append_bytes`
    /// ending at `last_offset`.
    fn should_roll(&self, append_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let Some(active) = self.segments.values().next_back() else {
            return false;
        };
        if active.is_empty() {
            return false;
        }
        let config = &self.config;
        // A compacted log rolls in time for max.compaction.lag.ms, as in
        // Kafka: only closed segments are cleaned.
        let segment_ms = if config.cleanup_policy.compact {
            config.segment_ms.min(config.max_compaction_lag_ms)
        } else {
            config.segment_ms
        };
        active.size_bytes() + append_bytes > config.segment_bytes
            || active
                .first_append_ms
                .is_some_and(|t| now_ms.saturating_sub(t) > segment_ms)
            || active.indexes_full(config.segment_index_bytes)
            || last_offset - active.base_offset > i32::MAX as i64
            || active.size_bytes() + append_bytes > u32::MAX as u64
    }

    fn roll(&mut self, dir: &Path, now_ms: i64) -> Result<(), StorageError> {
        let base_offset = self.log_end_offset();
        // Kafka flushes a segment once it stops being active.
        self.flush()?;
        self.last_flush_ms = Some(now_ms);
        let segment = Segment::create(dir, base_offset).map_err(|e| StorageError::io(dir, e))?;
        sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        tracing::debug!(dir = %dir.display(), base_offset, "rolled a new segment");
        // The old active segment closes its files; flushed above, this only
        // drops them. Should it fail, the segment keeps them and stays
        // readable.
        let old = self.active();
        if let Err(e) = old.close_files() {
            tracing::warn!(segment = %old.log_path().display(), error = %e, "closed segment keeps its files open");
        }
        self.segments.insert(base_offset, segment);
        Ok(())
    }

    /// Rolls if needed, then writes `data` in one write to the active segment.
    fn write_batches(
        &mut self,
        dir: &Path,
        data: &[u8],
        placed: &[(BatchHeader, u64)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.remove_clean_shutdown_marker(dir)?;
        let last_offset = placed.last().map_or(-1, |(h, _)| h.last_offset());
        if self.should_roll(data.len() as u64, last_offset, now_ms) {
            self.roll(dir, now_ms)?;
        }
        let segment_settings = settings(&self.config);
        let active = self.active();
        let path = active.log_path().to_path_buf();
        if let Err(failure) = active.append(data, placed, segment_settings, now_ms) {
            if failure.rolled_back {
                tracing::warn!(segment = %path.display(), error = %failure.source, "append failed and was rolled back");
            } else {
                tracing::error!(segment = %path.display(), error = %failure.source, "append failed and could not be rolled back; log offline");
                self.offline = true;
            }
            return Err(StorageError::io(path, failure.source));
        }
        Ok(())
    }

    fn after_write(&mut self, records: i64, now_ms: i64) -> Result<(), StorageError> {
        self.last_flush_ms.get_or_insert(now_ms);
        self.unflushed_messages += records;
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
            self.last_flush_ms = Some(now_ms);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StorageError> {
        let active = self.active();
        let path = active.log_path().to_path_buf();
        active.sync().map_err(|e| StorageError::io(path, e))?;
        self.unflushed_messages = 0;
        Ok(())
    }

    fn rebuild_producers(&mut self) -> io::Result<()> {
        self.producers.clear();
        for segment in self.segments.values() {
            let view = segment.view(ViewIndexes::None)?;
            let mut scanner = BatchScanner::new(&view.log, view.size_bytes);
            let mut position = 0u64;
            while let Ok(Some(header)) = scanner.batch_at(position, false)? {
                let kind = scanner.kind_at(position, &header)?;
                self.producers.update(&header, kind);
                position += header.total_bytes() as u64;
            }
        }
        Ok(())
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The read itself, with no lock held. Finds the batch holding
/// `start_offset` from the nearest index entry by reading batch headers
/// only, then reads the range once, `max_bytes` (or the first batch when
/// `min_one_batch` and it is larger) straight into the buffer it returns,
/// and keeps the whole batches in it below `max_offset`.
fn read_from_segment(
    view: &SegmentView,
    start_offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> io::Result<Result<Bytes, StorageError>> {
    let mut position = view.position_near(start_offset)?;
    let mut scanner =
        BatchScanner::new(&view.log, view.size_bytes).with_chunk_bytes(LOCATE_CHUNK_BYTES);
    let first = loop {
        match scanner.batch_at(position, false)? {
            Ok(Some(header)) if header.last_offset() < start_offset => {
                position += header.total_bytes() as u64;
            }
            Ok(Some(header)) => break header,
            Ok(None) => return Ok(Ok(Bytes::new())),
            Err(reason) => return Ok(Err(StorageError::Corrupt { reason })),
        }
    };
    let first_bytes = first.total_bytes();
    if first.last_offset() >= max_offset || (first_bytes > max_bytes && !min_one_batch) {
        return Ok(Ok(Bytes::new()));
    }
    let start = position;
    let want = max_bytes
        .max(first_bytes)
        .min((view.size_bytes - start) as usize);
    let mut data = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        // The file can only shrink under a read if it was truncated or
        // swapped meanwhile: return what was there.
        match view
            .log
            .read_at(&mut data[filled..], start + filled as u64)?
        {
            0 => break,
            n => filled += n,
        }
    }
    let mut end = 0;
    while end + HEADER_BYTES <= filled {
        let header = match BatchHeader::parse(&data[end..end + HEADER_BYTES]) {
            Ok(header) => header,
            Err(e) if end == 0 => {
                return Ok(Err(StorageError::Corrupt {
                    reason: e.to_string(),
                }))
            }
            Err(_) => break,
        };
        let total = header.total_bytes();
        if header.last_offset() >= max_offset || end + total > filled {
            break;
        }
        end += total;
    }
    data.truncate(end);
    if end < want / 2 {
        // Do not hold a large buffer for a small answer.
        data.shrink_to_fit();
    }
    Ok(Ok(Bytes::from(data)))
}

fn find_by_timestamp(view: &SegmentView, ts: i64) -> io::Result<Option<(i64, i64)>> {
    let mut position = view.position_near_timestamp(ts)?;
    let mut scanner = BatchScanner::new(&view.log, view.size_bytes);
    while let Ok(Some(header)) = scanner.batch_at(position, false)? {
        if header.max_timestamp >= ts {
            return Ok(Some((header.base_offset, header.max_timestamp)));
        }
        position += header.total_bytes() as u64;
    }
    Ok(None)
}
