//! The sparse offset index (`.index`) and time index (`.timeindex`) of a segment.
//!
//! Both are plain append-only files of fixed-size big-endian entries, as in
//! Kafka: the offset index maps a relative offset (u32, the last offset of a
//! batch minus the segment's base offset) to the file position (u32) of that
//! batch; the time index maps a timestamp (i64) to the relative offset (u32)
//! of the batch that first reached it. Lookups binary-search the file with
//! positional reads, so readers only need an `Arc<File>` and an entry count
//! taken under the log's lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// One index file, open for appending and positional reads.
#[derive(Debug)]
pub(crate) struct IndexFile {
    kind: IndexKind,
    path: PathBuf,
    file: Arc<File>,
    entries: u64,
}

/// What a reader needs to search an index without the log's lock.
#[derive(Debug, Clone)]
pub(crate) struct IndexView {
    kind: IndexKind,
    file: Arc<File>,
    entries: u64,
}

impl IndexFile {
    /// Opens (creating if needed) the index at `path` and makes its content
    /// exactly `expected` (encoded entries rebuilt from the log). Returns the
    /// index and whether the file had to be rewritten.
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
                file: Arc::new(file),
                entries,
            },
            !same,
        ))
    }

    /// An index file already written in full with `entries` entries (a
    /// cleaned segment's), now known under `path`.
    pub(crate) fn from_written(
        kind: IndexKind,
        path: &Path,
        file: File,
        entries: u64,
    ) -> IndexFile {
        IndexFile {
            kind,
            path: path.to_path_buf(),
            file: Arc::new(file),
            entries,
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

    /// Appends one encoded entry. On failure the in-memory count is not
    /// advanced, so lookups keep using only the entries known to be whole
    /// (a sparse index with a missing entry is still correct).
    pub(crate) fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        debug_assert_eq!(entry.len() as u64, self.kind.entry_bytes());
        self.file.write_all_at(entry, self.size_bytes())?;
        self.entries += 1;
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub(crate) fn view(&self) -> IndexView {
        IndexView {
            kind: self.kind,
            file: Arc::clone(&self.file),
            entries: self.entries,
        }
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
        let entry_bytes = self.kind.entry_bytes();
        let mut entry = vec![0u8; entry_bytes as usize];
        let read_entry = |n: u64, entry: &mut Vec<u8>| -> io::Result<(i64, u32)> {
            self.file.read_exact_at(entry, n * entry_bytes)?;
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
        let view = index.view();
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
        let (_, rewritten) =
            IndexFile::open_with_entries(IndexKind::Offset, &path, &expected).expect("reopen");
        assert!(!rewritten, "an intact index is not rewritten");
        assert!(IndexFile::looks_sound(IndexKind::Offset, &path, 9000));
        assert!(!IndexFile::looks_sound(IndexKind::Offset, &path, 8000));
    }
}
