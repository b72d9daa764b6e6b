//! Log compaction, after Kafka's log cleaner: keep the latest record of
//! every key, drop older ones, and drop tombstones once they are old enough.
//!
//! # A pass ([`Log::compact`])
//!
//! 1. **Plan**, under the read lock: the *cleanable range* is the closed
//!    segments from the log start up to the first one that reaches
//!    `clean_below` (the caller's bound, the high watermark) or holds a
//!    record younger than `min.compaction.lag.ms`. The *dirty* part of it
//!    starts at the first segment past `cleaner-offset-checkpoint` (the end
//!    of the last completed pass). The pass goes on only when dirty bytes
//!    are at least `min.cleanable.dirty.ratio` of the range, or when the
//!    oldest dirty batch is older than `max.compaction.lag.ms`.
//! 2. **Offset map**, no lock: key -> latest offset over the dirty part
//!    (bounded by [`OFFSET_MAP_BYTES_MAX`]; when full, the range ends after
//!    the last segment mapped).
//! 3. **Rewrite**, no lock, group by group in offset order (a group is
//!    adjacent segments whose sizes add up to at most `segment.bytes`): a
//!    record stays unless the map has a later offset for its key, or it is
//!    a tombstone whose segment's largest timestamp is more than
//!    `delete.retention.ms` old. Keyless records stay; control and
//!    transactional batches stay untouched. A cleaned batch keeps its
//!    header (base and last offset, timestamps, producer id and epoch, base
//!    sequence, attributes), as in Kafka: it covers the same offsets on
//!    every replica (a follower truncating inside it drops it whole), and
//!    sequence numbers still match offsets. Readers must therefore advance
//!    by a batch's last offset, not by its last record. A batch left
//!    without records is dropped, unless the producer state still
//!    remembers it: then it stays as an empty batch, so the state rebuilt
//!    on the next open still detects retried sequences.
//! 4. **Swap**, under the write lock, only long enough to rename files: the
//!    sources must still be the segments in the log (retention or a
//!    truncation may have removed them; then the work is discarded).
//!
//! Why the latest value of a key is never lost: the latest record of a key
//! in the range is either in the dirty part (then it is the map's entry and
//! stays) or before it (then the key is not in the map and the record
//! stays). Why a dropped tombstone resurrects nothing: everything before
//! the checkpoint already went through a pass, which left at most one
//! record per key there; and groups are swapped oldest first, so a crash
//! between groups can leave a tombstone whose older values are gone, never
//! the reverse.
//!
//! # Swap protocol (crash safety)
//!
//! 1. Write `<base>.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned`
//!    and fsync them. A crash leaves `.cleaned` files, removed on open.
//! 2. Rename them to `.swap`, the log last, and fsync the directory. The
//!    `.log.swap` is the commit point.
//! 3. Rename the replaced segments' files to `.deleted`; fsync the directory.
//! 4. Rename the `.swap` files to their final names, the log last.
//! 5. Remove the `.deleted` files; fsync the directory.
//!
//! On open, a `.log.swap` that holds whole, CRC-valid batches means "finish
//! the swap": every segment whose base offset is in `[base, offset after
//! the swap's last batch)` is deleted and the `.swap` files are renamed into
//! place, before anything else is looked at. (A replaced segment whose
//! batches were all removed may lie past that range and survive: it holds
//! only superseded records, which the next pass removes again.) A
//! `.log.swap` that is not whole never completed step 1, so it is removed.
//! The `.log` of a cleaned segment never exists next to one of the segments
//! it replaces, so the "overlapping segment" rule of recovery never fires.
//!
//! Readers that picked an old segment keep reading its open file after the
//! rename and unlink, so a read racing a swap sees the old or the new data.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;
use kraftwerk_protocol::batch::BatchHeader;
use kraftwerk_types::LogConfig;

use crate::leader_epoch::{sync_dir, write_atomically};
use crate::log::{parse_base_offset, settings, Log};
use crate::records::{batch_records, rebuild_batch, RecordSpan};
use crate::segment::{
    delete_segment_files, mark_deleted, remove_deleted, remove_if_present, rename_if_present,
    scan_whole, segment_path, with_suffix, BatchScanner, CleanedSegment, CleanedSegmentWriter,
    Segment, SegmentView, ViewIndexes, CLEANED_SUFFIX, LOG_SUFFIX, OFFSET_INDEX_SUFFIX,
    SWAP_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::StorageError;

/// Where a partition directory records the end of the last completed pass
/// (Kafka keeps one such file per log directory).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CHECKPOINT_VERSION: i64 = 0;

/// The key -> offset map of one pass holds about this much at most (keys
/// plus [`OFFSET_MAP_ENTRY_OVERHEAD_BYTES`] each); it is checked between
/// segments, and always covers at least one dirty segment.
pub(crate) const OFFSET_MAP_BYTES_MAX: usize = 64 * 1024 * 1024;
const OFFSET_MAP_ENTRY_OVERHEAD_BYTES: usize = 64;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CompactOutcome {
    /// The policy has no `compact`, or the log is offline.
    #[default]
    NotCompacted,
    /// No closed segment below the bound holds records never cleaned.
    NothingToClean,
    /// Too little never-cleaned data for `min.cleanable.dirty.ratio`.
    BelowDirtyRatio,
    /// The pass ran to the end.
    Cleaned,
    /// Retention or a truncation changed the segments under the pass; what
    /// was swapped in before stays, the rest was discarded.
    Aborted,
}

/// Figures of one compaction pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    pub outcome: CompactOutcome,
    /// Segments replaced by cleaned ones.
    pub segments_replaced: usize,
    /// Cleaned segments swapped in.
    pub segments_written: usize,
    pub records_removed: u64,
    /// Of `records_removed`, tombstones removed for being older than
    /// `delete.retention.ms` (superseded tombstones are not counted here).
    pub tombstones_removed: u64,
    pub batches_removed: u64,
    /// Sizes of the replaced segments and of their replacements.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl CompactStats {
    pub fn removed_anything(&self) -> bool {
        self.records_removed > 0 || self.batches_removed > 0
    }
}

/// A step of the swap, for tests that stop a pass there as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanerStep {
    /// A group's `.cleaned` files are written and synced (no lock held).
    CleanedWritten,
    /// The `.swap` files exist (write lock held).
    SwapCommitted,
    /// The replaced segments are `.deleted` (write lock held).
    SourcesDeleted,
    /// The cleaned segment has its final name (write lock held).
    SwapInstalled,
}

/// Called at each step; returning false stops the pass right there,
/// leaving the files as they are, like a kill -9. Must not touch the log
/// (the write lock may be held).
#[cfg(test)]
pub(crate) type CleanerHook = Box<dyn Fn(CleanerStep) -> bool + Send>;

/// A segment of the cleanable range as the plan saw it.
struct SourceSegment {
    id: u64,
    base_offset: i64,
    next_offset: i64,
    size_bytes: u64,
    max_timestamp: i64,
    index_bytes: (u64, u64),
    view: SegmentView,
}

impl SourceSegment {
    fn of(segment: &Segment) -> Result<SourceSegment, StorageError> {
        Ok(SourceSegment {
            id: segment.id,
            base_offset: segment.base_offset,
            next_offset: segment.next_offset,
            size_bytes: segment.size_bytes(),
            max_timestamp: segment.max_timestamp(),
            index_bytes: segment.index_sizes(),
            view: segment
                .view(ViewIndexes::None)
                .map_err(|e| StorageError::io(segment.log_path(), e))?,
        })
    }
}

/// Everything a pass needs, taken under the read lock.
struct Plan {
    config: LogConfig,
    segments: Vec<SourceSegment>,
    first_dirty_offset: i64,
    truncations: u64,
    /// (producer id, last offset) of batches the producer state remembers.
    remembered: HashSet<(i64, i64)>,
}

/// The latest offset of every key seen.
#[derive(Default)]
struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn insert(&mut self, key: &[u8], offset: i64) {
        match self.latest.get_mut(key) {
            Some(latest) => *latest = (*latest).max(offset),
            None => {
                self.bytes += key.len() + OFFSET_MAP_ENTRY_OVERHEAD_BYTES;
                self.latest.insert(key.into(), offset);
            }
        }
    }

    fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// What became of one batch.
enum Filtered {
    Same,
    Changed(Vec<u8>),
    Dropped,
}

/// Counts of one group, added to the pass's once the group is swapped in.
#[derive(Default)]
struct GroupCounts {
    records_removed: u64,
    tombstones_removed: u64,
    batches_removed: u64,
}

/// Control and transactional batches are never touched.
fn untouchable(header: &BatchHeader) -> bool {
    header.is_control() || header.is_transactional()
}

fn filter_batch(
    header: &BatchHeader,
    bytes: &Bytes,
    map: &OffsetMap,
    drop_tombstones: bool,
    remembered: &HashSet<(i64, i64)>,
    counts: &mut GroupCounts,
) -> Filtered {
    if untouchable(header) {
        return Filtered::Same;
    }
    let records = match batch_records(bytes, header) {
        Ok(records) => records,
        Err(reason) => {
            // A batch with a valid CRC whose records cannot be read is kept
            // whole (its keys are not in the map either, which is safe).
            tracing::warn!(base_offset = header.base_offset, %reason, "cleaner keeps an unreadable batch as it is");
            return Filtered::Same;
        }
    };
    let mut kept: Vec<&RecordSpan> = Vec::with_capacity(records.records.len());
    for record in &records.records {
        let offset = header.base_offset + record.offset_delta as i64;
        let superseded = records
            .key(record)
            .and_then(|key| map.latest(key))
            .is_some_and(|latest| latest > offset);
        let expired_tombstone = record.key.is_some() && record.value_is_null && drop_tombstones;
        if superseded {
            counts.records_removed += 1;
        } else if expired_tombstone {
            counts.records_removed += 1;
            counts.tombstones_removed += 1;
        } else {
            kept.push(record);
        }
    }
    let remembered = header.has_producer_id()
        && remembered.contains(&(header.producer_id, header.last_offset()));
    if kept.is_empty() && !remembered {
        counts.batches_removed += 1;
        return Filtered::Dropped;
    }
    if kept.len() == records.records.len() {
        return Filtered::Same;
    }
    match rebuild_batch(bytes, header, &records, &kept) {
        Ok(rebuilt) => Filtered::Changed(rebuilt),
        Err(reason) => {
            tracing::warn!(base_offset = header.base_offset, %reason, "cleaner keeps a batch it could not rewrite");
            counts.records_removed -= (records.records.len() - kept.len()) as u64;
            Filtered::Same
        }
    }
}

/// Calls `visit` with every batch of `source` (CRC-checked), in order.
fn for_each_batch(
    dir: &Path,
    source: &SourceSegment,
    mut visit: impl FnMut(BatchHeader, Bytes) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let view = &source.view;
    let path = || segment_path(dir, source.base_offset, LOG_SUFFIX);
    let mut scanner = BatchScanner::new(&view.log, view.size_bytes);
    let mut position = 0u64;
    loop {
        let header = match scanner
            .batch_at(position, true)
            .map_err(|e| StorageError::io(path(), e))?
        {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(()),
            Err(reason) => {
                return Err(StorageError::Corrupt {
                    reason: format!("{} at byte {position}: {reason}", path().display()),
                })
            }
        };
        let total = header.total_bytes();
        let Some(bytes) = scanner.buffered(position, total) else {
            return Err(StorageError::Corrupt {
                reason: format!(
                    "{} at byte {position}: batch not read whole",
                    path().display()
                ),
            });
        };
        visit(header, Bytes::copy_from_slice(bytes))?;
        position += total as u64;
    }
}

/// Adjacent segments that become one cleaned segment: at most
/// `segment.bytes` and `segment.index.bytes` together (the output is never
/// larger), offsets within an `i32` of the first base offset.
fn groups(segments: &[SourceSegment], config: &LogConfig) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let first = &segments[start];
        let (mut bytes, mut offset_index, mut time_index) =
            (first.size_bytes, first.index_bytes.0, first.index_bytes.1);
        let mut end = start + 1;
        while let Some(next) = segments.get(end) {
            let fits = bytes + next.size_bytes <= config.segment_bytes
                && offset_index + next.index_bytes.0 <= config.segment_index_bytes
                && time_index + next.index_bytes.1 <= config.segment_index_bytes
                && next.next_offset - 1 - first.base_offset <= i32::MAX as i64;
            if !fits {
                break;
            }
            bytes += next.size_bytes;
            offset_index += next.index_bytes.0;
            time_index += next.index_bytes.1;
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

impl Log {
    /// One compaction pass (see the module documentation) over the closed
    /// segments below `clean_below` (the caller passes the high watermark;
    /// the active segment is never cleaned). Appends and reads go on while
    /// it runs; the write lock is taken only to swap files. Offsets are
    /// preserved: removed records leave gaps.
    pub fn compact(&self, now_ms: i64, clean_below: i64) -> Result<CompactStats, StorageError> {
        let _pass = self.cleaner_pass.lock();
        let mut stats = CompactStats::default();
        let Some(mut plan) = self.plan(now_ms, clean_below, &mut stats)? else {
            return Ok(stats);
        };
        self.run(now_ms, &mut plan, &mut stats)?;
        Ok(stats)
    }

    /// An error met while reading or writing `sources` (segments not yet
    /// swapped): if retention or a truncation changed them meanwhile, the
    /// pass is abandoned quietly; otherwise the error stands.
    fn abandon_or_fail(
        &self,
        error: StorageError,
        sources: &[SourceSegment],
        stats: &mut CompactStats,
    ) -> Result<(), StorageError> {
        if is_simulated_crash(&error) || self.still_current(sources) {
            return Err(error);
        }
        tracing::debug!(dir = %self.dir.display(), %error, "compaction pass abandoned: the log changed under it");
        stats.outcome = CompactOutcome::Aborted;
        Ok(())
    }

    /// The offset below which the last completed pass cleaned (the log
    /// start offset if none did since).
    pub fn first_dirty_offset(&self) -> i64 {
        let state = self.state.read();
        state.first_dirty_offset.max(state.log_start_offset())
    }

    fn plan(
        &self,
        now_ms: i64,
        clean_below: i64,
        stats: &mut CompactStats,
    ) -> Result<Option<Plan>, StorageError> {
        let plan = {
            let state = self.state.read();
            if !state.config.cleanup_policy.compact || state.offline {
                return Ok(None);
            }
            let config = state.config.clone();
            let closed = state.segments.len().saturating_sub(1);
            let segments = state
                .segments
                .values()
                .take(closed)
                .take_while(|s| {
                    s.next_offset <= clean_below
                        && now_ms.saturating_sub(s.max_timestamp()) >= config.min_compaction_lag_ms
                })
                .map(SourceSegment::of)
                .collect::<Result<Vec<_>, _>>()?;
            Plan {
                first_dirty_offset: state.first_dirty_offset.max(state.log_start_offset()),
                truncations: state.truncations,
                remembered: state.producers.remembered_batches().collect(),
                config,
                segments,
            }
        };
        let Some(dirty_start) = plan
            .segments
            .iter()
            .position(|s| s.next_offset > plan.first_dirty_offset)
        else {
            stats.outcome = CompactOutcome::NothingToClean;
            return Ok(None);
        };
        let total_bytes: u64 = plan.segments.iter().map(|s| s.size_bytes).sum();
        let dirty_bytes: u64 = plan.segments[dirty_start..]
            .iter()
            .map(|s| s.size_bytes)
            .sum();
        if dirty_bytes == 0 {
            stats.outcome = CompactOutcome::NothingToClean;
            return Ok(None);
        }
        let oldest_dirty_ms = {
            let view = &plan.segments[dirty_start].view;
            let mut scanner = BatchScanner::new(&view.log, view.size_bytes);
            match scanner.batch_at(0, false) {
                Ok(Ok(Some(header))) => header.max_timestamp,
                _ => -1,
            }
        };
        let overdue = oldest_dirty_ms >= 0
            && now_ms.saturating_sub(oldest_dirty_ms) > plan.config.max_compaction_lag_ms;
        let dirty_ratio = dirty_bytes as f64 / total_bytes as f64;
        if dirty_ratio < plan.config.min_cleanable_dirty_ratio.get() && !overdue {
            stats.outcome = CompactOutcome::BelowDirtyRatio;
            return Ok(None);
        }
        tracing::debug!(
            dir = %self.dir.display(),
            dirty_ratio,
            overdue,
            segments = plan.segments.len(),
            "compaction pass starts"
        );
        Ok(Some(plan))
    }

    fn run(
        &self,
        now_ms: i64,
        plan: &mut Plan,
        stats: &mut CompactStats,
    ) -> Result<(), StorageError> {
        let first_dirty = plan.first_dirty_offset;
        let mut map = OffsetMap::default();
        let mut end = plan.segments.len();
        for (i, source) in plan.segments.iter().enumerate() {
            if source.next_offset <= first_dirty {
                continue;
            }
            let mapped = for_each_batch(&self.dir, source, |header, bytes| {
                if untouchable(&header) {
                    return Ok(());
                }
                match batch_records(&bytes, &header) {
                    Ok(records) => {
                        for record in &records.records {
                            if let Some(key) = records.key(record) {
                                map.insert(key, header.base_offset + record.offset_delta as i64);
                            }
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(base_offset = header.base_offset, %reason, "cleaner cannot read a batch's records; its keys stay");
                    }
                }
                Ok(())
            });
            if let Err(e) = mapped {
                return self.abandon_or_fail(e, &plan.segments, stats);
            }
            if map.bytes > OFFSET_MAP_BYTES_MAX {
                end = i + 1;
                break;
            }
        }
        plan.segments.truncate(end);
        let range_end = plan.segments.last().map_or(first_dirty, |s| s.next_offset);

        for group in groups(&plan.segments, &plan.config) {
            let not_swapped = &plan.segments[group.start..];
            let sources = &plan.segments[group];
            let mut counts = GroupCounts::default();
            let cleaned = match self.clean_group(now_ms, plan, sources, &map, &mut counts) {
                Ok(Some(cleaned)) => cleaned,
                Ok(None) => continue,
                Err(e) => return self.abandon_or_fail(e, not_swapped, stats),
            };
            let after = cleaned.size_bytes();
            if !self.hook_allows(CleanerStep::CleanedWritten) {
                return Err(simulated_crash());
            }
            if !self.swap(sources, plan.truncations, cleaned)? {
                stats.outcome = CompactOutcome::Aborted;
                return Ok(());
            }
            stats.segments_replaced += sources.len();
            stats.segments_written += 1;
            stats.records_removed += counts.records_removed;
            stats.tombstones_removed += counts.tombstones_removed;
            stats.batches_removed += counts.batches_removed;
            stats.bytes_before += sources.iter().map(|s| s.size_bytes).sum::<u64>();
            stats.bytes_after += after;
        }

        let mut state = self.state.write();
        if state.truncations == plan.truncations {
            let first_dirty = range_end.min(state.log_end_offset());
            if first_dirty > state.first_dirty_offset {
                state.first_dirty_offset = first_dirty;
                write_checkpoint(&self.dir, first_dirty)?;
            }
        }
        drop(state);
        stats.outcome = CompactOutcome::Cleaned;
        if stats.removed_anything() {
            tracing::debug!(dir = %self.dir.display(), ?stats, "compaction pass done");
        }
        Ok(())
    }

    /// Writes the cleaned segment of one group, or None when the group is
    /// one segment that would not change.
    fn clean_group(
        &self,
        now_ms: i64,
        plan: &Plan,
        sources: &[SourceSegment],
        map: &OffsetMap,
        counts: &mut GroupCounts,
    ) -> Result<Option<CleanedSegment>, StorageError> {
        let io_error = |e| StorageError::io(self.dir.clone(), e);
        let Some(first) = sources.first() else {
            return Ok(None);
        };
        let mut writer =
            CleanedSegmentWriter::create(&self.dir, first.base_offset, settings(&plan.config))
                .map_err(io_error)?;
        let mut changed = sources.len() > 1;
        let mut written = Ok(());
        for source in sources {
            let drop_tombstones =
                now_ms.saturating_sub(source.max_timestamp) > plan.config.delete_retention_ms;
            written = for_each_batch(&self.dir, source, |header, bytes| {
                let result = match filter_batch(
                    &header,
                    &bytes,
                    map,
                    drop_tombstones,
                    &plan.remembered,
                    counts,
                ) {
                    Filtered::Same => writer.append(&header, &bytes),
                    Filtered::Changed(rebuilt) => {
                        changed = true;
                        let new_header =
                            BatchHeader::parse(&rebuilt).map_err(|e| StorageError::Corrupt {
                                reason: format!("cleaned batch: {e}"),
                            })?;
                        writer.append(&new_header, &rebuilt)
                    }
                    Filtered::Dropped => {
                        changed = true;
                        Ok(())
                    }
                };
                result.map_err(io_error)
            });
            if written.is_err() {
                break;
            }
        }
        if let Err(e) = written {
            writer.discard();
            return Err(e);
        }
        if !changed {
            writer.discard();
            return Ok(None);
        }
        let dir = self.dir.clone();
        writer.finish().map(Some).map_err(|e| {
            remove_cleaner_files(&dir, first.base_offset);
            StorageError::io(dir.clone(), e)
        })
    }

    /// Whether the segments a pass read are all still in the log.
    fn still_current(&self, sources: &[SourceSegment]) -> bool {
        let state = self.state.read();
        sources.iter().all(|s| {
            state
                .segments
                .get(&s.base_offset)
                .is_some_and(|segment| segment.id == s.id)
        })
    }

    /// Replaces `sources` by `cleaned` (steps 2 to 5 of the protocol).
    /// Ok(false) when the log was truncated or the sources changed since
    /// the plan (`truncations` is the count it saw), and the work was
    /// discarded. A failure after the commit point takes the log offline:
    /// the next open completes the swap.
    fn swap(
        &self,
        sources: &[SourceSegment],
        truncations: u64,
        cleaned: CleanedSegment,
    ) -> Result<bool, StorageError> {
        let dir = self.dir.as_path();
        let io_error = |e| StorageError::io(dir, e);
        let mut state = self.state.write();
        let active_base = state.segments.keys().next_back().copied();
        // A truncation may also have changed which batches the producer
        // state remembers, which decided what this pass kept.
        let current = !state.offline
            && state.truncations == truncations
            && sources.iter().all(|s| {
                Some(s.base_offset) != active_base
                    && state
                        .segments
                        .get(&s.base_offset)
                        .is_some_and(|segment| segment.id == s.id)
            });
        if !current {
            drop(state);
            tracing::debug!(dir = %dir.display(), "segments changed under the cleaner; cleaned segment discarded");
            cleaned.discard();
            return Ok(false);
        }
        let base_offset = cleaned.base_offset();
        if let Err(e) = cleaned.commit() {
            let swap_log = with_suffix(&segment_path(dir, base_offset, LOG_SUFFIX), SWAP_SUFFIX);
            if swap_log.exists() {
                tracing::error!(dir = %dir.display(), error = %e, "compaction swap failed after its commit point; log offline until reopened");
                state.offline = true;
            } else {
                remove_cleaner_files(dir, base_offset);
            }
            return Err(io_error(e));
        }
        if !self.hook_allows(CleanerStep::SwapCommitted) {
            return Err(simulated_crash());
        }
        let installed = (|| -> Result<Segment, StorageError> {
            for source in sources {
                mark_deleted(dir, source.base_offset).map_err(io_error)?;
            }
            sync_dir(dir).map_err(io_error)?;
            if !self.hook_allows(CleanerStep::SourcesDeleted) {
                return Err(simulated_crash());
            }
            let segment = cleaned.install().map_err(io_error)?;
            if !self.hook_allows(CleanerStep::SwapInstalled) {
                return Err(simulated_crash());
            }
            for source in sources {
                remove_deleted(dir, source.base_offset).map_err(io_error)?;
            }
            Ok(segment)
        })();
        let segment = match installed {
            Ok(segment) => segment,
            Err(e) => {
                if !is_simulated_crash(&e) {
                    tracing::error!(dir = %dir.display(), error = %e, "compaction swap failed after its commit point; log offline until reopened");
                    state.offline = true;
                }
                return Err(e);
            }
        };
        for source in sources {
            state.segments.remove(&source.base_offset);
        }
        state.segments.insert(segment.base_offset, segment);
        drop(state);
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "directory not synced after a compaction swap");
        }
        Ok(true)
    }

    #[cfg(test)]
    fn hook_allows(&self, step: CleanerStep) -> bool {
        let hook = self.cleaner_hook.lock();
        hook.as_ref().is_none_or(|hook| hook(step))
    }

    #[cfg(not(test))]
    fn hook_allows(&self, _step: CleanerStep) -> bool {
        true
    }

    /// Test hook: `hook` sees every swap step and may stop the pass there.
    #[cfg(test)]
    pub(crate) fn set_cleaner_hook(&self, hook: Option<CleanerHook>) {
        *self.cleaner_hook.lock() = hook;
    }
}

const SIMULATED_CRASH: &str = "simulated crash (test hook)";

fn simulated_crash() -> StorageError {
    StorageError::Corrupt {
        reason: SIMULATED_CRASH.to_string(),
    }
}

fn is_simulated_crash(e: &StorageError) -> bool {
    matches!(e, StorageError::Corrupt { reason } if reason == SIMULATED_CRASH)
}

/// Removes a group's `.cleaned` and `.swap` files (best effort).
fn remove_cleaner_files(dir: &Path, base_offset: i64) {
    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        for stage in [CLEANED_SUFFIX, SWAP_SUFFIX] {
            let path = with_suffix(&segment_path(dir, base_offset, suffix), stage);
            if let Err(e) = remove_if_present(&path) {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a cleaner file");
            }
        }
    }
}

/// Step 0 of `Log::open`: finishes every committed swap (a whole
/// `.log.swap`) and removes uncommitted ones.
pub(crate) fn complete_interrupted_swaps(dir: &Path) -> Result<(), StorageError> {
    let io_error = |e| StorageError::io(dir, e);
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(stem) = name.strip_suffix(&format!(".{SWAP_SUFFIX}")) {
            if let Some(base) = parse_base_offset(stem, LOG_SUFFIX) {
                swaps.push(base);
            }
        } else if let Some(base) = parse_base_offset(&name, LOG_SUFFIX) {
            logs.push(base);
        }
    }
    if swaps.is_empty() {
        return Ok(());
    }
    swaps.sort_unstable();
    for base in swaps {
        let log_path = segment_path(dir, base, LOG_SUFFIX);
        let swap_path = with_suffix(&log_path, SWAP_SUFFIX);
        let Some(next_offset) = scan_whole(&swap_path, base).map_err(io_error)? else {
            tracing::warn!(file = %swap_path.display(), "removing a swap file that is not whole");
            remove_if_present(&swap_path).map_err(io_error)?;
            continue;
        };
        let replaced = base..next_offset.max(base + 1);
        for old in logs.iter().filter(|b| replaced.contains(b)) {
            delete_segment_files(dir, *old).map_err(io_error)?;
        }
        for suffix in [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment_path(dir, base, suffix);
            if !rename_if_present(&with_suffix(&path, SWAP_SUFFIX), &path).map_err(io_error)? {
                // Recovery rebuilds a missing index.
                remove_if_present(&path).map_err(io_error)?;
            }
        }
        fs::rename(&swap_path, &log_path).map_err(io_error)?;
        tracing::info!(segment = %log_path.display(), replaced_up_to = replaced.end, "completed an interrupted compaction swap");
    }
    sync_dir(dir).map_err(io_error)
}

/// The first dirty offset in the partition's checkpoint, if it is readable.
pub(crate) fn load_checkpoint(dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(dir.join(CLEANER_CHECKPOINT_FILE)).ok()?;
    let mut lines = text.lines();
    let version: i64 = lines.next()?.trim().parse().ok()?;
    if version != CHECKPOINT_VERSION {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

pub(crate) fn write_checkpoint(dir: &Path, first_dirty_offset: i64) -> Result<(), StorageError> {
    let path = dir.join(CLEANER_CHECKPOINT_FILE);
    let text = format!("{CHECKPOINT_VERSION}\n{first_dirty_offset}\n");
    write_atomically(&path, text.as_bytes()).map_err(|e| StorageError::io(path, e))
}
