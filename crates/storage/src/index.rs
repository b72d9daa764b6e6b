//! The sparse offset index (`.index`) and time index (`.timeindex`) of a segment.
//!
//! Both are plain append-only files of fixed-size big-endian entries, as in
//! Kafka: the offset index maps a relative offset (u32, the last offset of a
//! batch minus the segment's base offset) to the file position (u32) of that
//! batch; the time index maps a timestamp (i64) to the relative offset (u32)
//! of the batch that first reached it. No index file stays open (see
//! `IndexFile`): lookups binary-search the active segment's entries in
//! memory, or a closed segment's file with positional reads, so readers only
//! need an `IndexView` and an entry count taken under the log's lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

pub(crate) const OFFSET_ENTRY_BYTES: u64 = 8;
pub(crate) const TIME_ENTRY_BYTES: u64 = 12;

/// Index files larger than this are not read into memory at recovery: they
/// are treated as damaged and rebuilt from the log.
const INDEX_LOAD_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Which of the two index kinds a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Offset,
    Time,
}

impl IndexKind {
    pub(crate) fn entry_bytes(self) -> u64 {
        match self {
            IndexKind::Offset => OFFSET_ENTRY_BYTES,
            IndexKind::Time => TIME_ENTRY_BYTES,
        }
    }

    /// The search key of an encoded entry: relative offset or timestamp.
    fn key(self, entry: &[u8]) -> i64 {
        match self {
            IndexKind::Offset => be_u32(entry, 0) as i64,
            IndexKind::Time => be_i64(entry, 0),
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

pub(crate) fn encode_offset_entry(out: &mut Vec<u8>, relative_offset: u32, position: u32) {
    out.extend_from_slice(&relative_offset.to_be_bytes());
    out.extend_from_slice(&position.to_be_bytes());
}

pub(crate) fn encode_time_entry(out: &mut Vec<u8>, timestamp: i64, relative_offset: u32) {
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&relative_offset.to_be_bytes());
}

/// One index of a segment. No file stays open: while the segment is active
/// its entries are kept in memory (shared with readers) and written to the
/// file with positional writes when the segment is flushed or rolled; once
/// the segment is closed the file is complete and readers open it for the
/// duration of a read.
#[derive(Debug)]
pub(crate) struct IndexFile {
    kind: IndexKind,
    path: PathBuf,
    entries: u64,
    /// All entries, while the segment is active. Only ever grows: a
    /// segment that is cut gets a new `IndexFile`.
    memory: Option<Arc<RwLock<Vec<u8>>>>,
    /// How many bytes of the index the file holds.
    written_bytes: u64,
    /// Whether the file was fsynced since it was last written.
    synced: bool,
}

/// Where an `IndexView` reads its entries.
#[derive(Debug, Clone)]
enum IndexSource {
    /// The index was not wanted by the reader, or has no entries.
    Empty,
    Memory(Arc<RwLock<Vec<u8>>>),
    File(Arc<File>),
}

/// What a reader needs to search an index without the log's lock.
#[derive(Debug, Clone)]
pub(crate) struct IndexView {
    kind: IndexKind,
    source: IndexSource,
    entries: u64,
}

impl IndexFile {
    /// Makes the file at `path` (created if needed) hold exactly
    /// `expected` (encoded entries rebuilt from the log), and keeps the
    /// entries in memory. Returns the index and whether the file had to be
    /// rewritten. The file is closed again.
    pub(crate) fn open_with_entries(
        kind: IndexKind,
        path: &Path,
        expected: &[u8],
    ) -> io::Result<(IndexFile, bool)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut same = len == expected.len() as u64 && len <= INDEX_LOAD_BYTES_MAX;
        if same {
            let mut current = vec![0u8; len as usize];
            file.read_exact_at(&mut current, 0)?;
            same = current == expected;
        }
        if !same {
            file.set_len(0)?;
            file.write_all_at(expected, 0)?;
        }
        let entries = expected.len() as u64 / kind.entry_bytes();
        Ok((
            IndexFile {
                kind,
                path: path.to_path_buf(),
                entries,
                memory: Some(Arc::new(RwLock::new(expected.to_vec()))),
                written_bytes: expected.len() as u64,
                synced: false,
            },
            !same,
        ))
    }

    /// An index file already written in full and fsynced with `entries`
    /// entries (a cleaned segment's), now known under `path`.
    pub(crate) fn from_written(kind: IndexKind, path: &Path, entries: u64) -> IndexFile {
        IndexFile {
            kind,
            path: path.to_path_buf(),
            entries,
            memory: None,
            written_bytes: entries * kind.entry_bytes(),
            synced: true,
        }
    }

    /// Whether the file on disk looks like a well-formed index for a log of
    /// `log_size_bytes`: whole entries, keys and positions increasing. A file
    /// that fails this is damaged and its segment is fully revalidated.
    pub(crate) fn looks_sound(kind: IndexKind, path: &Path, log_size_bytes: u64) -> bool {
        let Ok(bytes) = read_bounded(path) else {
            return false;
        };
        let entry_bytes = kind.entry_bytes() as usize;
        if bytes.len() % entry_bytes != 0 {
            return false;
        }
        let mut previous: Option<(i64, i64)> = None;
        for entry in bytes.chunks_exact(entry_bytes) {
            let (key, second) = match kind {
                IndexKind::Offset => (be_u32(entry, 0) as i64, be_u32(entry, 4) as i64),
                IndexKind::Time => (be_i64(entry, 0), be_u32(entry, 8) as i64),
            };
            if kind == IndexKind::Offset && second as u64 >= log_size_bytes {
                return false;
            }
            if let Some((previous_key, previous_second)) = previous {
                let increasing = match kind {
                    IndexKind::Offset => key > previous_key && second > previous_second,
                    IndexKind::Time => key > previous_key && second >= previous_second,
                };
                if !increasing {
                    return false;
                }
            }
            previous = Some((key, second));
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.entries * self.kind.entry_bytes()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the entries are held in memory (the segment is active).
    #[cfg(test)]
    pub(crate) fn in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Appends one encoded entry in memory; the file gets it at the next
    /// `flush`. An index no longer in memory is read back first. On
    /// failure the entry count is not advanced, so lookups keep using only
    /// the entries known to be whole (a sparse index with a missing entry
    /// is still correct).
    pub(crate) fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        debug_assert_eq!(entry.len() as u64, self.kind.entry_bytes());
        let memory = match &self.memory {
            Some(memory) => Arc::clone(memory),
            None => {
                let memory = Arc::new(RwLock::new(self.read_file()?));
                self.memory = Some(Arc::clone(&memory));
                memory
            }
        };
        memory.write().extend_from_slice(entry);
        self.entries += 1;
        Ok(())
    }

    /// The first `size_bytes` of the file.
    fn read_file(&self) -> io::Result<Vec<u8>> {
        let size = self.size_bytes();
        if size > INDEX_LOAD_BYTES_MAX {
            return Err(io::Error::other("index file too large"));
        }
        let file = File::open(&self.path)?;
        let mut bytes = vec![0u8; size as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Writes the entries the file lacks, with one positional write, and
    /// fsyncs it when `sync`. Opens the file only if there is work to do.
    pub(crate) fn flush(&mut self, sync: bool) -> io::Result<()> {
        let size = self.size_bytes();
        let pending = self.written_bytes != size;
        if !pending && (self.synced || !sync) {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        if pending {
            let Some(memory) = &self.memory else {
                return Err(io::Error::other("index entries missing from memory"));
            };
            let bytes = memory.read();
            let Some(all) = bytes.get(..size as usize) else {
                return Err(io::Error::other("index entries missing from memory"));
            };
            // A file that does not hold what was written (replaced or cut
            // behind the broker's back) is written whole.
            let from = if file.metadata()?.len() == self.written_bytes {
                self.written_bytes
            } else {
                file.set_len(0)?;
                0
            };
            file.write_all_at(&all[from as usize..], from)?;
            self.written_bytes = size;
            self.synced = false;
        }
        if sync {
            file.sync_data()?;
            self.synced = true;
        }
        Ok(())
    }

    /// Writes what the file lacks (without fsync) and drops the in-memory
    /// entries: from here on readers open the file. On failure the entries
    /// stay in memory.
    pub(crate) fn release_memory(&mut self) -> io::Result<()> {
        self.flush(false)?;
        self.memory = None;
        Ok(())
    }

    /// A view for readers. An index not in memory is opened here, under
    /// the log's lock, so the view reads the file of this very segment even
    /// if the segment is replaced or deleted before the read. With `open`
    /// false a file-backed index gives an empty view instead (lookups then
    /// start at the beginning of the segment).
    pub(crate) fn view(&self, open: bool) -> io::Result<IndexView> {
        let source = match &self.memory {
            _ if self.entries == 0 => IndexSource::Empty,
            Some(memory) => IndexSource::Memory(Arc::clone(memory)),
            None if open => IndexSource::File(Arc::new(File::open(&self.path)?)),
            None => IndexSource::Empty,
        };
        let entries = match source {
            IndexSource::Empty => 0,
            _ => self.entries,
        };
        Ok(IndexView {
            kind: self.kind,
            source,
            entries,
        })
    }
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > INDEX_LOAD_BYTES_MAX {
        return Err(io::Error::other("index file too large"));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

impl IndexView {
    /// The entry with the largest key <= `target`, as raw fields
    /// (key, value): (relative offset, position) or (timestamp, relative offset).
    pub(crate) fn floor(&self, target: i64) -> io::Result<Option<(i64, u32)>> {
        match &self.source {
            IndexSource::Empty => Ok(None),
            IndexSource::Memory(memory) => {
                let bytes = memory.read();
                self.search(target, |at, entry| match bytes.get(at..at + entry.len()) {
                    Some(found) => {
                        entry.copy_from_slice(found);
                        Ok(())
                    }
                    None => Err(io::Error::other("index entry beyond the index")),
                })
            }
            IndexSource::File(file) => {
                self.search(target, |at, entry| file.read_exact_at(entry, at as u64))
            }
        }
    }

    /// Binary search over the first `entries` entries, each read into a
    /// buffer by `read(byte position, buffer)`.
    fn search(
        &self,
        target: i64,
        read: impl Fn(usize, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<Option<(i64, u32)>> {
        let entry_bytes = self.kind.entry_bytes();
        let mut entry = vec![0u8; entry_bytes as usize];
        let read_entry = |n: u64, entry: &mut [u8]| -> io::Result<(i64, u32)> {
            read((n * entry_bytes) as usize, entry)?;
            let value_at = entry_bytes as usize - 4;
            Ok((self.kind.key(entry), be_u32(entry, value_at)))
        };
        if self.entries == 0 {
            return Ok(None);
        }
        // Followers and consumers at the tail look past the last entry: one read.
        let last = read_entry(self.entries - 1, &mut entry)?;
        if last.0 <= target {
            return Ok(Some(last));
        }
        // Invariant: entries [0, low) have key <= target, [high, n) > target.
        let (mut low, mut high) = (0u64, self.entries - 1);
        let mut found = None;
        while low < high {
            let middle = low + (high - low) / 2;
            let (key, value) = read_entry(middle, &mut entry)?;
            if key <= target {
                found = Some((key, value));
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_finds_the_largest_entry_not_above_the_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let mut expected = Vec::new();
        for (relative_offset, position) in [(3u32, 0u32), (10, 4100), (25, 8300)] {
            encode_offset_entry(&mut expected, relative_offset, position);
        }
        let (index, rewritten) =
            IndexFile::open_with_entries(IndexKind::Offset, &path, &expected).expect("open");
        assert!(rewritten);
        let view = index.view(true).expect("view");
        let cases = [
            (0, None),
            (3, Some((3, 0))),
            (9, Some((3, 0))),
            (10, Some((10, 4100))),
            (100, Some((25, 8300))),
        ];
        for (target, want) in cases {
            assert_eq!(view.floor(target).expect("floor"), want, "target {target}");
        }
        let (mut index, _) =
            IndexFile::open_with_entries(IndexKind::Offset, &path, &expected).expect("reopen");
        let mut entry = Vec::new();
        encode_offset_entry(&mut entry, 40, 12000);
        index.append(&entry).expect("append");
        let in_memory = index.view(true).expect("view");
        assert_eq!(in_memory.floor(45).expect("floor"), Some((40, 12000)));
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 24);
        index.release_memory().expect("release");
        assert!(!index.in_memory());
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 32);
        assert!(index
            .view(false)
            .expect("view")
            .floor(45)
            .expect("floor")
            .is_none());
        let from_file = index.view(true).expect("view");
        // Below the appended entry, the file answers as memory did.
        for (target, want) in cases.into_iter().take(4) {
            assert_eq!(
                from_file.floor(target).expect("floor"),
                want,
                "target {target}"
            );
        }
        assert_eq!(from_file.floor(45).expect("floor"), Some((40, 12000)));
        // Appending to a released index reads it back first.
        encode_offset_entry(&mut expected, 40, 12000);
        entry.clear();
        encode_offset_entry(&mut entry, 50, 16000);
        index.append(&entry).expect("append");
        encode_offset_entry(&mut expected, 50, 16000);
        index.flush(true).expect("flush");
        assert_eq!(std::fs::read(&path).expect("read"), expected);
        let (_, rewritten) =
            IndexFile::open_with_entries(IndexKind::Offset, &path, &expected).expect("reopen");
        assert!(!rewritten, "an intact index is not rewritten");
        assert!(IndexFile::looks_sound(IndexKind::Offset, &path, 20000));
        assert!(!IndexFile::looks_sound(IndexKind::Offset, &path, 16000));
    }
}
