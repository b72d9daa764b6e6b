//! One segment of a partition log: `<base offset>.log` with its `.index` and
//! `.timeindex`.
//!
//! Design: the `.log` file holds record batches byte for byte, appended with
//! positional `write(2)` calls (`write_all_at`) on a shared `Arc<File>`, so
//! readers can `pread` concurrently with no file cursor to fight over. A
//! batch is acknowledged once it is in the page cache: that survives a
//! process crash (kill -9) without fsync; fsync is the flush policy's job.
//!
//! File descriptors: only the active segment keeps one open, its `.log`.
//! Its index entries live in memory and reach the index files when the
//! segment is flushed or rolled (see `index`); a closed segment holds no
//! file open, and a read of it opens what it needs under the log's lock
//! and closes it when done. A broker with many partitions thus needs about
//! one descriptor per partition, as Kafka does.
//!
//! Recovery scans batch headers front to back. Every segment's headers are
//! scanned on open anyway, because the idempotent-producer state is rebuilt
//! from them, so the same pass also rebuilds the sparse indexes in memory and
//! rewrites an index file only when it differs. Segments that may hold a torn
//! write (the last one after an unclean shutdown) or whose index looks
//! damaged are scanned with full CRC validation; the file is cut at the first
//! batch that fails. A batch whose offsets do not increase is treated as
//! corrupt too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kraftwerk_protocol::batch::{self, BatchHeader, HEADER_BYTES};

use crate::producer_state::BatchKind;

use crate::index::{
    encode_offset_entry, encode_time_entry, IndexFile, IndexKind, IndexView, OFFSET_ENTRY_BYTES,
    TIME_ENTRY_BYTES,
};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
pub(crate) const DELETED_SUFFIX: &str = "deleted";
/// A cleaned segment being written (see the `cleaner` module).
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";
/// A complete cleaned segment waiting to replace the segments it cleaned.
pub(crate) const SWAP_SUFFIX: &str = "swap";

/// Gives every `Segment` value its own id, so a compaction pass can tell
/// whether the segments it read are still the ones in the log.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

fn next_segment_id() -> u64 {
    NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Writes through this much buffer when writing a cleaned segment.
const CLEANED_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// How much a header scan reads at once: many small batches per read.
const SCAN_CHUNK_BYTES: usize = 64 * 1024;

/// The largest offset a log holds. No log gets near it; an offset beyond it
/// read from disk is corrupt, and arithmetic on offsets near `i64::MAX`
/// would overflow.
pub(crate) const OFFSET_MAX: i64 = i64::MAX / 2;

/// The offset after the batch of `header`, if its offsets are ones a log
/// can hold (base offset in `0..=OFFSET_MAX`).
pub(crate) fn offset_after(header: &BatchHeader) -> Option<i64> {
    (0..=OFFSET_MAX)
        .contains(&header.base_offset)
        .then(|| header.base_offset + i64::from(header.last_offset_delta) + 1)
}

/// `<dir>/<20-digit base offset>.<suffix>`, Kafka's segment file name.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// `path` with `.<suffix>` appended (`x.log` -> `x.log.swap`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// The three files of a segment; the log last, so that a crash between
/// renames never leaves a `.log` without its indexes having been handled.
const FILE_SUFFIXES: [&str; 3] = [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX];

/// Reads consecutive batch headers (and, when asked, whole batches) from a
/// file with few large reads.
pub(crate) struct BatchScanner<'a> {
    file: &'a File,
    end: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
    chunk_bytes: usize,
}

impl<'a> BatchScanner<'a> {
    pub(crate) fn new(file: &'a File, end: u64) -> BatchScanner<'a> {
        BatchScanner {
            file,
            end,
            buffer: Vec::new(),
            buffer_start: 0,
            chunk_bytes: SCAN_CHUNK_BYTES,
        }
    }

    /// Reads this much at once instead of the default (a fetch of
    /// `max_bytes` reads its whole range with one pread).
    pub(crate) fn with_chunk_bytes(mut self, chunk_bytes: usize) -> BatchScanner<'a> {
        self.chunk_bytes = chunk_bytes.max(HEADER_BYTES);
        self
    }

    /// `[position, position + len)` if it is already in the buffer.
    pub(crate) fn buffered(&self, position: u64, len: usize) -> Option<&[u8]> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if position >= self.buffer_start && position + len as u64 <= buffer_end {
            Some(self.slice(position, len))
        } else {
            None
        }
    }

    /// Makes `[position, position + len)` available in the buffer; false
    /// when the file ends first.
    fn ensure(&mut self, position: u64, len: usize) -> io::Result<bool> {
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        if position >= self.buffer_start && position + len as u64 <= buffer_end {
            return Ok(true);
        }
        if position + len as u64 > self.end {
            return Ok(false);
        }
        let want = (len.max(self.chunk_bytes) as u64).min(self.end - position) as usize;
        self.buffer.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            let n = self
                .file
                .read_at(&mut self.buffer[filled..], position + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.buffer.truncate(filled);
        self.buffer_start = position;
        Ok(filled >= len)
    }

    fn slice(&self, position: u64, len: usize) -> &[u8] {
        let at = (position - self.buffer_start) as usize;
        &self.buffer[at..at + len]
    }

    /// Whether the batch at `position` (whose header is `header`) is data
    /// or a transaction marker, for producer state.
    pub(crate) fn kind_at(&mut self, position: u64, header: &BatchHeader) -> io::Result<BatchKind> {
        if !header.is_control() {
            return Ok(BatchKind::Data);
        }
        let len = header
            .total_bytes()
            .min(HEADER_BYTES + batch::CONTROL_KEY_BYTES);
        if !self.ensure(position, len)? {
            return Ok(BatchKind::marker(None));
        }
        Ok(BatchKind::marker(batch::control_record(
            self.slice(position, len),
        )))
    }

    /// The batch at `position`: Ok(Some) when whole (and CRC-valid if
    /// `validate_crc`), Ok(None) at a clean end, Err(reason) when torn or
    /// corrupt there.
    pub(crate) fn batch_at(
        &mut self,
        position: u64,
        validate_crc: bool,
    ) -> io::Result<Result<Option<BatchHeader>, String>> {
        if position == self.end {
            return Ok(Ok(None));
        }
        if !self.ensure(position, HEADER_BYTES)? {
            return Ok(Err(format!(
                "{} bytes at the end, less than a batch header",
                self.end - position
            )));
        }
        let header = match BatchHeader::parse(self.slice(position, HEADER_BYTES)) {
            Ok(header) => header,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let total = header.total_bytes();
        if position + total as u64 > self.end {
            return Ok(Err(format!(
                "batch of {total} bytes runs past the end of the file"
            )));
        }
        if validate_crc {
            if !self.ensure(position, total)? {
                return Ok(Err("file shorter than expected".to_string()));
            }
            if let Err(e) = batch::validate_one(self.slice(position, total)) {
                return Ok(Err(e.to_string()));
            }
        }
        Ok(Ok(Some(header)))
    }
}

/// The rule that decides index entries, shared by appends and rebuilds.
#[derive(Debug, Clone, Default)]
struct IndexCursor {
    bytes_since_last_entry: u64,
    max_timestamp: i64,
    last_offset_of_max_timestamp: i64,
    last_time_entry_timestamp: Option<i64>,
}

/// Entries to add to the offset and time indexes for one batch.
#[derive(Debug, Default)]
struct IndexEntries {
    offset: Option<(u32, u32)>,
    time: Option<(i64, u32)>,
}

impl IndexCursor {
    fn new() -> IndexCursor {
        IndexCursor {
            max_timestamp: -1,
            last_offset_of_max_timestamp: -1,
            ..Default::default()
        }
    }

    /// Kafka's rule: once more than `index.interval.bytes` were appended
    /// since the last entry, index this batch (its last offset and its
    /// position), and add a time index entry if the max timestamp grew.
    fn observe(
        &mut self,
        header: &BatchHeader,
        position: u64,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> IndexEntries {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.last_offset_of_max_timestamp = header.last_offset();
        }
        let mut entries = IndexEntries::default();
        if self.bytes_since_last_entry > index_interval_bytes {
            let relative = (header.last_offset() - base_offset) as u32;
            entries.offset = Some((relative, position as u32));
            if self.max_timestamp >= 0
                && self
                    .last_time_entry_timestamp
                    .is_none_or(|t| self.max_timestamp > t)
            {
                let relative = (self.last_offset_of_max_timestamp - base_offset) as u32;
                entries.time = Some((self.max_timestamp, relative));
                self.last_time_entry_timestamp = Some(self.max_timestamp);
            }
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += header.total_bytes() as u64;
        entries
    }
}

/// The result of recovering one segment.
pub(crate) struct Recovered {
    pub(crate) segment: Segment,
    /// Bytes cut from the end because they were torn or corrupt.
    pub(crate) truncated_bytes: u64,
    /// Whether every batch kept had its CRC checked.
    pub(crate) crc_validated: bool,
}

/// Settings a segment needs from the log config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSettings {
    pub(crate) index_interval_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Segment {
    /// Unique per value (never reused), unlike the base offset.
    pub(crate) id: u64,
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    /// Open while the segment is active; a closed segment's readers open
    /// the file themselves.
    log: Option<Arc<File>>,
    size_bytes: u64,
    offset_index: IndexFile,
    time_index: IndexFile,
    /// One past the last offset in this segment (the base offset if empty).
    pub(crate) next_offset: i64,
    cursor: IndexCursor,
    /// Wall clock of the first append, for segment.ms; after a restart the
    /// first batch's timestamp stands in, as in Kafka.
    pub(crate) first_append_ms: Option<i64>,
}

/// Which indexes of a closed segment a view opens (an active segment's are
/// in memory and always come with the view). A view without an index
/// reads the segment from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewIndexes {
    /// Scanning the whole segment.
    None,
    /// Reading by offset.
    Offset,
    /// Looking up by timestamp.
    OffsetAndTime,
}

/// What a reader needs from a segment, taken under the log's lock.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub(crate) base_offset: i64,
    pub(crate) log: Arc<File>,
    pub(crate) size_bytes: u64,
    pub(crate) offset_index: IndexView,
    pub(crate) time_index: IndexView,
}

/// A failed append: whether the partial write was cut back off.
#[derive(Debug)]
pub(crate) struct AppendFailure {
    pub(crate) source: io::Error,
    pub(crate) rolled_back: bool,
}

impl Segment {
    /// Creates an empty segment, replacing files left under its name.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let (offset_index, _) = IndexFile::open_with_entries(
            IndexKind::Offset,
            &segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX),
            &[],
        )?;
        let (time_index, _) = IndexFile::open_with_entries(
            IndexKind::Time,
            &segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            &[],
        )?;
        Ok(Segment {
            id: next_segment_id(),
            base_offset,
            log_path,
            log: Some(Arc::new(log)),
            size_bytes: 0,
            offset_index,
            time_index,
            next_offset: base_offset,
            cursor: IndexCursor::new(),
            first_append_ms: None,
        })
    }

    /// Opens an existing segment, scanning its batch headers (all of each
    /// batch with CRC when `validate_crc`, or when an index looks damaged),
    /// cutting a torn or corrupt tail, and rebuilding the indexes. Every
    /// valid header is passed to `visit` in order.
    pub(crate) fn recover(
        dir: &Path,
        base_offset: i64,
        validate_crc: bool,
        settings: SegmentSettings,
        visit: &mut dyn FnMut(&BatchHeader, BatchKind),
    ) -> io::Result<Recovered> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_bytes = log.metadata()?.len();
        let offset_index_path = segment_path(dir, base_offset, OFFSET_INDEX_SUFFIX);
        let time_index_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        let indexes_sound =
            IndexFile::looks_sound(IndexKind::Offset, &offset_index_path, file_bytes)
                && IndexFile::looks_sound(IndexKind::Time, &time_index_path, file_bytes);
        let validate_crc = validate_crc || !indexes_sound;

        let mut scanner = BatchScanner::new(&log, file_bytes);
        let mut cursor = IndexCursor::new();
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut position = 0u64;
        let mut next_offset = base_offset;
        let mut first_timestamp = None;
        let mut stop_reason = None;
        loop {
            let header = match scanner.batch_at(position, validate_crc)? {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(reason) => {
                    stop_reason = Some(reason);
                    break;
                }
            };
            let follows = offset_after(&header).is_some_and(|after| {
                header.base_offset >= next_offset && after - 1 - base_offset <= i32::MAX as i64
            });
            if !follows || position + header.total_bytes() as u64 > u32::MAX as u64 {
                stop_reason = Some(format!(
                    "batch at offset {} does not follow offset {}",
                    header.base_offset,
                    next_offset - 1
                ));
                break;
            }
            let entries = cursor.observe(
                &header,
                position,
                base_offset,
                settings.index_interval_bytes,
            );
            if let Some((relative, at)) = entries.offset {
                encode_offset_entry(&mut offset_entries, relative, at);
            }
            if let Some((timestamp, relative)) = entries.time {
                encode_time_entry(&mut time_entries, timestamp, relative);
            }
            first_timestamp.get_or_insert(header.max_timestamp);
            next_offset = header.last_offset() + 1;
            position += header.total_bytes() as u64;
            let kind = scanner.kind_at(position - header.total_bytes() as u64, &header)?;
            visit(&header, kind);
        }
        let mut truncated_bytes = 0;
        if let Some(reason) = stop_reason {
            truncated_bytes = file_bytes - position;
            tracing::warn!(
                segment = %log_path.display(),
                position,
                truncated_bytes,
                %reason,
                "cutting a torn or corrupt tail off a segment"
            );
            log.set_len(position)?;
            log.sync_data()?;
        }
        let (offset_index, offset_rewritten) =
            IndexFile::open_with_entries(IndexKind::Offset, &offset_index_path, &offset_entries)?;
        let (time_index, time_rewritten) =
            IndexFile::open_with_entries(IndexKind::Time, &time_index_path, &time_entries)?;
        if offset_rewritten || time_rewritten {
            tracing::info!(segment = %log_path.display(), "rebuilt segment indexes");
        }
        let segment = Segment {
            id: next_segment_id(),
            base_offset,
            log_path,
            log: Some(Arc::new(log)),
            size_bytes: position,
            offset_index,
            time_index,
            next_offset,
            cursor,
            first_append_ms: first_timestamp.filter(|t| *t >= 0),
        };
        Ok(Recovered {
            segment,
            truncated_bytes,
            crc_validated: validate_crc,
        })
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub(crate) fn max_timestamp(&self) -> i64 {
        self.cursor.max_timestamp
    }

    pub(crate) fn last_offset_of_max_timestamp(&self) -> i64 {
        self.cursor.last_offset_of_max_timestamp
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// (offset index, time index) sizes in bytes.
    pub(crate) fn index_sizes(&self) -> (u64, u64) {
        (self.offset_index.size_bytes(), self.time_index.size_bytes())
    }

    /// Whether either index would outgrow `segment.index.bytes` by one more entry.
    pub(crate) fn indexes_full(&self, segment_index_bytes: u64) -> bool {
        self.offset_index.size_bytes() + OFFSET_ENTRY_BYTES > segment_index_bytes
            || self.time_index.size_bytes() + TIME_ENTRY_BYTES > segment_index_bytes
    }

    /// Appends `data` (whole batches, already given their final offsets) in
    /// one write. `batches` are the headers with their positions in `data`.
    /// On failure the partial write is cut off again when possible.
    pub(crate) fn append(
        &mut self,
        data: &[u8],
        batches: &[(BatchHeader, u64)],
        settings: SegmentSettings,
        now_ms: i64,
    ) -> Result<(), AppendFailure> {
        let start = self.size_bytes;
        debug_assert!(start + data.len() as u64 <= u32::MAX as u64);
        let log = match self.writable_log() {
            Ok(log) => log,
            Err(source) => {
                return Err(AppendFailure {
                    source,
                    rolled_back: true,
                })
            }
        };
        if let Err(source) = log.write_all_at(data, start) {
            let rolled_back = log.set_len(start).is_ok();
            return Err(AppendFailure {
                source,
                rolled_back,
            });
        }
        self.size_bytes = start + data.len() as u64;
        for (header, relative_position) in batches {
            debug_assert!(header.base_offset >= self.next_offset);
            let position = start + relative_position;
            let entries = self.cursor.observe(
                header,
                position,
                self.base_offset,
                settings.index_interval_bytes,
            );
            // An index entry that fails to be written is only a missing
            // sparse entry; the next open rebuilds the file anyway.
            if let Some((relative, at)) = entries.offset {
                let mut entry = Vec::with_capacity(OFFSET_ENTRY_BYTES as usize);
                encode_offset_entry(&mut entry, relative, at);
                if let Err(e) = self.offset_index.append(&entry) {
                    tracing::warn!(index = %self.offset_index.path().display(), error = %e, "offset index entry not written");
                }
            }
            if let Some((timestamp, relative)) = entries.time {
                let mut entry = Vec::with_capacity(TIME_ENTRY_BYTES as usize);
                encode_time_entry(&mut entry, timestamp, relative);
                if let Err(e) = self.time_index.append(&entry) {
                    tracing::warn!(index = %self.time_index.path().display(), error = %e, "time index entry not written");
                }
            }
            self.next_offset = header.last_offset() + 1;
        }
        self.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Cuts the segment before the first batch whose last offset is >=
    /// `offset`, then rescans it so its indexes and timestamps are exact.
    pub(crate) fn truncate_to(
        mut self,
        dir: &Path,
        offset: i64,
        settings: SegmentSettings,
    ) -> io::Result<Segment> {
        let view = self.view(ViewIndexes::Offset)?;
        let start = match view.offset_index.floor(offset - self.base_offset)? {
            Some((_, position)) if (position as u64) < self.size_bytes => position as u64,
            _ => 0,
        };
        let log = self.writable_log()?;
        let mut scanner = BatchScanner::new(&log, self.size_bytes);
        let mut position = start;
        while let Ok(Some(header)) = scanner.batch_at(position, false)? {
            if header.last_offset() >= offset {
                break;
            }
            position += header.total_bytes() as u64;
        }
        log.set_len(position)?;
        let base_offset = self.base_offset;
        drop((self, view, log));
        let recovered = Segment::recover(dir, base_offset, false, settings, &mut |_, _| {})?;
        Ok(recovered.segment)
    }

    /// The `.log` file for writing: the one held open while active, or
    /// opened again (and then held) for a segment that was closed.
    fn writable_log(&mut self) -> io::Result<Arc<File>> {
        if let Some(log) = &self.log {
            return Ok(Arc::clone(log));
        }
        let log = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.log_path)?,
        );
        self.log = Some(Arc::clone(&log));
        Ok(log)
    }

    /// Writes the index entries the index files lack and fsyncs all three
    /// files. A closed segment was synced when it was closed.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if let Some(log) = &self.log {
            log.sync_data()?;
        }
        self.offset_index.flush(true)?;
        self.time_index.flush(true)
    }

    /// Writes what the index files lack, without fsync.
    pub(crate) fn write_indexes(&mut self) -> io::Result<()> {
        self.offset_index.flush(false)?;
        self.time_index.flush(false)
    }

    /// Makes this a closed segment: writes what the index files lack,
    /// drops the in-memory index entries and closes the `.log`. On failure
    /// the segment keeps what it holds (and stays readable).
    pub(crate) fn close_files(&mut self) -> io::Result<()> {
        self.offset_index.release_memory()?;
        self.time_index.release_memory()?;
        self.log = None;
        Ok(())
    }

    /// Whether the segment holds a file descriptor or index entries in memory.
    #[cfg(test)]
    pub(crate) fn holds_files(&self) -> bool {
        self.log.is_some() || self.offset_index.in_memory() || self.time_index.in_memory()
    }

    /// A view for reading without the log's lock. Files of a closed
    /// segment are opened here, under the lock, so the view reads this very
    /// segment even if it is deleted or replaced before the read; they are
    /// closed when the last clone of the view is dropped.
    pub(crate) fn view(&self, indexes: ViewIndexes) -> io::Result<SegmentView> {
        let log = match &self.log {
            Some(log) => Arc::clone(log),
            None => Arc::new(File::open(&self.log_path)?),
        };
        Ok(SegmentView {
            base_offset: self.base_offset,
            log,
            size_bytes: self.size_bytes,
            offset_index: self.offset_index.view(indexes != ViewIndexes::None)?,
            time_index: self
                .time_index
                .view(indexes == ViewIndexes::OffsetAndTime)?,
        })
    }

    /// Removes the segment's files without ever leaving a `.log` that looks
    /// live but is partly gone: each file is first renamed to `.deleted`.
    pub(crate) fn delete(self, dir: &Path) -> io::Result<()> {
        let base_offset = self.base_offset;
        drop(self);
        delete_segment_files(dir, base_offset)
    }

    /// (offset index, time index) entry counts.
    #[cfg(test)]
    pub(crate) fn index_entries(&self) -> (u64, u64) {
        (self.offset_index.entries(), self.time_index.entries())
    }
}

pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    mark_deleted(dir, base_offset)?;
    remove_deleted(dir, base_offset)
}

/// Renames a segment's files to `.deleted`. The log goes first: once it is
/// renamed the segment no longer exists for recovery, and stray index
/// files are cleaned on the next open.
pub(crate) fn mark_deleted(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = segment_path(dir, base_offset, suffix);
        rename_if_present(&path, &with_suffix(&path, DELETED_SUFFIX))?;
    }
    Ok(())
}

/// Removes the `.deleted` files `mark_deleted` left.
pub(crate) fn remove_deleted(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = with_suffix(&segment_path(dir, base_offset, suffix), DELETED_SUFFIX);
        remove_if_present(&path)?;
    }
    Ok(())
}

/// Renames `from` to `to`; Ok(false) if `from` does not exist.
pub(crate) fn rename_if_present(from: &Path, to: &Path) -> io::Result<bool> {
    match fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads a whole segment file with CRC checks: the offset after its last
/// batch, or None if it holds anything but whole, valid batches in
/// increasing offset order.
pub(crate) fn scan_whole(path: &Path, base_offset: i64) -> io::Result<Option<i64>> {
    let file = File::open(path)?;
    let end = file.metadata()?.len();
    let mut scanner = BatchScanner::new(&file, end);
    let mut position = 0u64;
    let mut next_offset = base_offset;
    loop {
        match scanner.batch_at(position, true)? {
            Ok(Some(header)) if header.base_offset >= next_offset => {
                let Some(after) = offset_after(&header) else {
                    return Ok(None);
                };
                next_offset = after;
                position += header.total_bytes() as u64;
            }
            Ok(Some(_)) | Err(_) => return Ok(None),
            Ok(None) => return Ok(Some(next_offset)),
        }
    }
}

/// Writes a cleaned segment as `<base>.log.cleaned` with its
/// `.index.cleaned` and `.timeindex.cleaned`, built by the same index rule
/// as appends and recovery (so a later open finds them exact).
pub(crate) struct CleanedSegmentWriter {
    dir: PathBuf,
    base_offset: i64,
    log: io::BufWriter<File>,
    size_bytes: u64,
    cursor: IndexCursor,
    offset_entries: Vec<u8>,
    time_entries: Vec<u8>,
    next_offset: i64,
    first_timestamp: Option<i64>,
    settings: SegmentSettings,
}

/// A cleaned segment written and fsynced under its `.cleaned` names.
#[derive(Debug)]
pub(crate) struct CleanedSegment {
    dir: PathBuf,
    base_offset: i64,
    size_bytes: u64,
    offset_entries: u64,
    time_entries: u64,
    cursor: IndexCursor,
    next_offset: i64,
    first_timestamp: Option<i64>,
}

impl CleanedSegmentWriter {
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        settings: SegmentSettings,
    ) -> io::Result<CleanedSegmentWriter> {
        let path = with_suffix(&segment_path(dir, base_offset, LOG_SUFFIX), CLEANED_SUFFIX);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(CleanedSegmentWriter {
            dir: dir.to_path_buf(),
            base_offset,
            log: io::BufWriter::with_capacity(CLEANED_WRITE_BUFFER_BYTES, log),
            size_bytes: 0,
            cursor: IndexCursor::new(),
            offset_entries: Vec::new(),
            time_entries: Vec::new(),
            next_offset: base_offset,
            first_timestamp: None,
            settings,
        })
    }

    /// Appends one whole batch; `header` is the header of `bytes`.
    pub(crate) fn append(&mut self, header: &BatchHeader, bytes: &[u8]) -> io::Result<()> {
        assert!(
            header.base_offset >= self.next_offset && header.total_bytes() == bytes.len(),
            "cleaned batches are whole and in offset order"
        );
        // Groups are sized by their sources, but a batch recompressed with
        // fewer records can come out larger; positions must still fit the
        // index (recovery would cut the segment there).
        if self.size_bytes + bytes.len() as u64 > u32::MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "cleaned segment would exceed 4 GiB",
            ));
        }
        let entries = self.cursor.observe(
            header,
            self.size_bytes,
            self.base_offset,
            self.settings.index_interval_bytes,
        );
        if let Some((relative, at)) = entries.offset {
            encode_offset_entry(&mut self.offset_entries, relative, at);
        }
        if let Some((timestamp, relative)) = entries.time {
            encode_time_entry(&mut self.time_entries, timestamp, relative);
        }
        self.log.write_all(bytes)?;
        self.size_bytes += bytes.len() as u64;
        self.next_offset = header.last_offset() + 1;
        self.first_timestamp.get_or_insert(header.max_timestamp);
        Ok(())
    }

    /// Writes the indexes and fsyncs all three files.
    pub(crate) fn finish(self) -> io::Result<CleanedSegment> {
        let log = self.log.into_inner().map_err(|e| e.into_error())?;
        log.sync_all()?;
        let index_file = |suffix: &str, entries: &[u8]| -> io::Result<()> {
            let path = with_suffix(
                &segment_path(&self.dir, self.base_offset, suffix),
                CLEANED_SUFFIX,
            );
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            file.write_all_at(entries, 0)?;
            file.sync_all()
        };
        index_file(OFFSET_INDEX_SUFFIX, &self.offset_entries)?;
        index_file(TIME_INDEX_SUFFIX, &self.time_entries)?;
        Ok(CleanedSegment {
            dir: self.dir,
            base_offset: self.base_offset,
            size_bytes: self.size_bytes,
            offset_entries: self.offset_entries.len() as u64 / OFFSET_ENTRY_BYTES,
            time_entries: self.time_entries.len() as u64 / TIME_ENTRY_BYTES,
            cursor: self.cursor,
            next_offset: self.next_offset,
            first_timestamp: self.first_timestamp,
        })
    }

    /// Gives up: removes what was written.
    pub(crate) fn discard(self) {
        let (dir, base_offset) = (self.dir.clone(), self.base_offset);
        drop(self);
        remove_files(&dir, base_offset, CLEANED_SUFFIX);
    }
}

/// Removes `<base>.{log,index,timeindex}.<suffix>`, logging failures (the
/// next open removes leftovers anyway).
fn remove_files(dir: &Path, base_offset: i64, suffix: &str) {
    for file_suffix in FILE_SUFFIXES {
        let path = with_suffix(&segment_path(dir, base_offset, file_suffix), suffix);
        if let Err(e) = remove_if_present(&path) {
            tracing::warn!(file = %path.display(), error = %e, "could not remove a cleaner file");
        }
    }
}

impl CleanedSegment {
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The commit point of a swap: renames the `.cleaned` files to `.swap`,
    /// the log last, and fsyncs the directory. From here on, a crash
    /// completes the swap on the next open.
    pub(crate) fn commit(&self) -> io::Result<()> {
        for suffix in FILE_SUFFIXES {
            let path = segment_path(&self.dir, self.base_offset, suffix);
            fs::rename(
                with_suffix(&path, CLEANED_SUFFIX),
                with_suffix(&path, SWAP_SUFFIX),
            )?;
        }
        crate::leader_epoch::sync_dir(&self.dir)
    }

    /// Renames the `.swap` files to their final names (the segments they
    /// replace must be gone), the log last, and becomes a closed `Segment`
    /// (cleaned segments are never active).
    pub(crate) fn install(self) -> io::Result<Segment> {
        for suffix in FILE_SUFFIXES {
            let path = segment_path(&self.dir, self.base_offset, suffix);
            fs::rename(with_suffix(&path, SWAP_SUFFIX), &path)?;
        }
        let offset_index = IndexFile::from_written(
            IndexKind::Offset,
            &segment_path(&self.dir, self.base_offset, OFFSET_INDEX_SUFFIX),
            self.offset_entries,
        );
        let time_index = IndexFile::from_written(
            IndexKind::Time,
            &segment_path(&self.dir, self.base_offset, TIME_INDEX_SUFFIX),
            self.time_entries,
        );
        Ok(Segment {
            id: next_segment_id(),
            base_offset: self.base_offset,
            log_path: segment_path(&self.dir, self.base_offset, LOG_SUFFIX),
            log: None,
            size_bytes: self.size_bytes,
            offset_index,
            time_index,
            next_offset: self.next_offset,
            cursor: self.cursor,
            first_append_ms: self.first_timestamp.filter(|t| *t >= 0),
        })
    }

    /// Gives up before the commit point: removes the `.cleaned` files.
    pub(crate) fn discard(self) {
        let (dir, base_offset) = (self.dir.clone(), self.base_offset);
        drop(self);
        remove_files(&dir, base_offset, CLEANED_SUFFIX);
    }
}

impl SegmentView {
    /// The position of a batch at or before the one holding `offset`.
    pub(crate) fn position_near(&self, offset: i64) -> io::Result<u64> {
        let relative = (offset - self.base_offset).max(0);
        Ok(match self.offset_index.floor(relative)? {
            Some((_, position)) if (position as u64) < self.size_bytes => position as u64,
            _ => 0,
        })
    }

    /// The position of a batch at or before the first one whose max
    /// timestamp is >= `timestamp`.
    pub(crate) fn position_near_timestamp(&self, timestamp: i64) -> io::Result<u64> {
        match self.time_index.floor(timestamp)? {
            Some((_, relative)) => self.position_near(self.base_offset + relative as i64),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake but well-formed batch header (recovery without CRC reads only
    /// headers, so the body can be zeros).
    fn batch_bytes(base_offset: i64, records: i32, timestamp: i64, total_bytes: usize) -> Vec<u8> {
        let mut b = vec![0u8; total_bytes];
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        b[8..12].copy_from_slice(&((total_bytes - 12) as i32).to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[27..35].copy_from_slice(&timestamp.to_be_bytes());
        b[35..43].copy_from_slice(&timestamp.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn appended_indexes_equal_rebuilt_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = SegmentSettings {
            index_interval_bytes: 250,
        };
        let mut segment = Segment::create(dir.path(), 100).expect("create");
        let mut offset = 100;
        for i in 0..40i64 {
            // Timestamps that sometimes go back in time.
            let timestamp = if i % 7 == 3 { 5 } else { 1000 + i };
            let bytes = batch_bytes(offset, 3, timestamp, 100 + (i as usize % 3) * 10);
            let header = BatchHeader::parse(&bytes).expect("header");
            segment
                .append(&bytes, &[(header, 0)], settings, 0)
                .unwrap_or_else(|f| panic!("append: {}", f.source));
            offset += 3;
        }
        let counts = segment.index_entries();
        assert!(counts.0 > 5 && counts.1 > 5, "{counts:?}");
        // The entries reach the files when the segment is flushed.
        assert_eq!(
            fs::metadata(segment_path(dir.path(), 100, OFFSET_INDEX_SUFFIX))
                .expect("index")
                .len(),
            0
        );
        segment.sync().expect("sync");
        let offset_index =
            fs::read(segment_path(dir.path(), 100, OFFSET_INDEX_SUFFIX)).expect("index");
        let time_index =
            fs::read(segment_path(dir.path(), 100, TIME_INDEX_SUFFIX)).expect("timeindex");
        drop(segment);

        let mut seen = 0;
        let recovered = Segment::recover(dir.path(), 100, false, settings, &mut |_, _| seen += 1)
            .expect("recover");
        assert_eq!(seen, 40);
        assert_eq!(recovered.truncated_bytes, 0);
        assert_eq!(recovered.segment.next_offset, 220);
        assert_eq!(recovered.segment.index_entries(), counts);
        assert_eq!(
            fs::read(segment_path(dir.path(), 100, OFFSET_INDEX_SUFFIX)).expect("index"),
            offset_index
        );
        assert_eq!(
            fs::read(segment_path(dir.path(), 100, TIME_INDEX_SUFFIX)).expect("timeindex"),
            time_index
        );
        let view = recovered
            .segment
            .view(ViewIndexes::OffsetAndTime)
            .expect("view");
        // Offset 150 is in the batch starting at 148, the 17th.
        let position = view.position_near(150).expect("lookup");
        let mut scanner = BatchScanner::new(&view.log, view.size_bytes);
        let mut at = position;
        let mut found = None;
        while let Ok(Some(header)) = scanner.batch_at(at, false).expect("scan") {
            if header.last_offset() >= 150 {
                found = Some(header.base_offset);
                break;
            }
            at += header.total_bytes() as u64;
        }
        assert_eq!(found, Some(148));
    }
}
