//! The leader-epoch cache (KIP-101, KIP-279): for each leader epoch, the
//! first offset written in it, persisted in the partition directory as
//! `leader-epoch-checkpoint` in Kafka's text format:
//!
//! ```text
//! 0            <- version
//! 2            <- number of entries
//! 0 0          <- epoch start_offset
//! 3 120
//! ```
//! The file is replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory) so a crash leaves either the old or the new cache.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::StorageError;

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: i64 = 0;

/// One (epoch, start offset) entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    /// Ordered by epoch and by start offset, both strictly increasing.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`; a missing or unreadable one gives an
    /// empty cache (it is rebuilt as batches arrive, like Kafka).
    pub(crate) fn load(dir: &Path) -> LeaderEpochCache {
        let path = dir.join(CHECKPOINT_FILE);
        let entries = match fs::read_to_string(&path) {
            Ok(text) => parse_checkpoint(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "damaged leader-epoch checkpoint ignored");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        LeaderEpochCache { path, entries }
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the
    /// latest known epoch. Returns whether the cache changed (then persisted).
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, StorageError> {
        if epoch < 0 {
            return Ok(false);
        }
        if let Some(latest) = self.entries.last() {
            if epoch <= latest.epoch {
                return Ok(false);
            }
        }
        // Entries at or past the new start offset were truncated away.
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()?;
        Ok(true)
    }

    /// Kafka's OffsetsForLeaderEpoch answer: the largest epoch <= `requested`
    /// and the start offset of the epoch after it (the log end offset when
    /// `requested` is the latest epoch). None stands for Kafka's
    /// UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end_offset));
        }
        let higher = self.entries.iter().find(|e| e.epoch > requested)?;
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            // Older than anything known: the data is gone, point at the
            // first epoch we know so the follower starts there.
            None => Some((requested, higher.start_offset)),
            Some(floor) => Some((floor.epoch, higher.start_offset)),
        }
    }

    /// Drops entries that start at or after `end_offset` (log truncation).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), StorageError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Moves the earliest entries up to a new log start offset: entries that
    /// start before it collapse into the last of them, starting there.
    pub(crate) fn truncate_from_start(
        &mut self,
        log_start_offset: i64,
    ) -> Result<(), StorageError> {
        let below = self
            .entries
            .iter()
            .take_while(|e| e.start_offset < log_start_offset)
            .count();
        if below == 0 {
            return Ok(());
        }
        let mut kept = self.entries[below - 1];
        kept.start_offset = log_start_offset;
        let mut entries = vec![kept];
        entries.extend_from_slice(&self.entries[below..]);
        // An entry already starting exactly at the new start supersedes it.
        if entries.len() > 1 && entries[1].start_offset == log_start_offset {
            entries.remove(0);
        }
        if entries != self.entries {
            self.entries = entries;
            self.persist()?;
        }
        Ok(())
    }

    /// Forgets every entry (the log was emptied and restarts elsewhere).
    pub(crate) fn clear(&mut self) -> Result<(), StorageError> {
        self.entries.clear();
        self.persist()
    }

    fn persist(&self) -> Result<(), StorageError> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomically(&self.path, text.as_bytes()).map_err(|e| StorageError::io(&self.path, e))
    }
}

fn parse_checkpoint(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    let version: i64 = lines.next()?.trim().parse().ok()?;
    if version != CHECKPOINT_VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let mut fields = lines.next()?.split_whitespace();
        let epoch: i32 = fields.next()?.parse().ok()?;
        let start_offset: i64 = fields.next()?.parse().ok()?;
        if let Some(previous) = entries.last() {
            if epoch <= previous.epoch || start_offset < previous.start_offset {
                return None;
            }
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Some(entries)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or new content.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(dir: &Path, entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::load(dir);
        for &(epoch, start_offset) in entries {
            assert!(cache.assign(epoch, start_offset).expect("assign"));
        }
        cache
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Epochs 1 at 0, 3 at 10, 5 at 20; log end offset 30.
        let cache = cache_with(dir.path(), &[(1, 0), (3, 10), (5, 20)]);
        let cases = [
            (-1, None),
            (0, Some((0, 0))),
            (1, Some((1, 10))),
            (2, Some((1, 10))),
            (3, Some((3, 20))),
            (4, Some((3, 20))),
            (5, Some((5, 30))),
            (6, None),
        ];
        for (requested, want) in cases {
            assert_eq!(
                cache.end_offset_for(requested, 30),
                want,
                "epoch {requested}"
            );
        }
        let reloaded = LeaderEpochCache::load(dir.path());
        assert_eq!(reloaded.entries(), cache.entries());
    }

    #[test]
    fn truncation_from_both_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cache = cache_with(dir.path(), &[(1, 0), (3, 10), (5, 20)]);
        cache.truncate_from_start(12).expect("start");
        let got: Vec<(i32, i64)> = cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(got, vec![(3, 12), (5, 20)]);
        cache.truncate_from_end(20).expect("end");
        assert_eq!(cache.latest_epoch(), Some(3));
        assert!(!cache.assign(2, 25).expect("older epoch ignored"));
        let reloaded = LeaderEpochCache::load(dir.path());
        assert_eq!(reloaded.entries(), cache.entries());
    }
}
