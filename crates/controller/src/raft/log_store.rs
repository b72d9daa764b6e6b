//! The Raft log, the vote and the committed log id in sled.
//!
//! Trees: `log` maps a big-endian log index to a serde_json entry, so sled's
//! key order is log order; `log_meta` holds the vote, the last purged log id
//! and the committed log id under fixed keys (and the store's format
//! version, see [`super::format`]). Every write that openraft must
//! find after a crash (appended entries, vote, purge marker) is flushed
//! before it is acknowledged.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{any_error, Entry, LogId, StorageError, TypeConfig, Vote};

use super::format::{KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG_TREE, META_TREE};

/// The sled-backed Raft log of one controller node. Cheap to clone: clones
/// share the same trees (a clone serves as openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree(LOG_TREE)?,
            meta: db.open_tree(META_TREE)?,
        })
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| StorageIOError::read(any_error(e)))?
        else {
            return Ok(None);
        };
        let value =
            serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read(any_error(e)))?;
        Ok(Some(value))
    }

    fn write_meta<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StorageIOError::write(any_error(e)))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(any_error(e)))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), std::io::Error> {
        self.db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| StorageIOError::read_logs(any_error(e)).into())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        match self
            .log
            .last()
            .map_err(|e| StorageIOError::read_logs(any_error(e)))?
        {
            Some((_, bytes)) => Ok(Some(Self::decode_entry(&bytes)?.log_id)),
            None => Ok(None),
        }
    }

    /// Removes every entry with an index in `range`.
    fn remove_range(&self, from: u64, to_inclusive: Option<u64>) -> Result<(), StorageError> {
        let start = from.to_be_bytes();
        let keys: Vec<sled::IVec> = match to_inclusive {
            Some(to) => self
                .log
                .range(start..=to.to_be_bytes())
                .keys()
                .collect::<Result<_, _>>(),
            None => self.log.range(start..).keys().collect::<Result<_, _>>(),
        }
        .map_err(|e| StorageIOError::write_logs(any_error(e)))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(any_error(e)))?;
        Ok(())
    }
}

/// The first index in `range` and the first index past it (`None`: unbounded).
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.checked_add(1),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    };
    Some((start, end))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_bounds(&range) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (key, bytes) = item.map_err(|e| StorageIOError::read_logs(any_error(e)))?;
            let index = key_to_index(&key)?;
            if end.is_some_and(|end| index >= end) {
                break;
            }
            entries.push(Self::decode_entry(&bytes)?);
        }
        Ok(entries)
    }
}

fn key_to_index(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        StorageIOError::read_logs(any_error(format!("log key of {} bytes, not 8", key.len())))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_vote(any_error(e)))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: a committed id lost in a crash is learned again from
        // the leader; it only lets a restart re-apply without waiting for one.
        match committed {
            Some(c) => self.write_meta(KEY_COMMITTED, &c),
            None => {
                self.meta
                    .remove(KEY_COMMITTED)
                    .map_err(|e| StorageIOError::write(any_error(e)))?;
                Ok(())
            }
        }
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta(KEY_COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, any_error(e)))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(any_error(e)))?;
        let flushed = self.flush().await;
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_range(log_id.index, None)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(any_error(e)))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The marker goes first: a crash between the two steps leaves entries
        // below the marker, which are ignored, never a hole above it.
        self.write_meta(KEY_LAST_PURGED, &log_id)?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write(any_error(e)))?;
        self.remove_range(0, Some(log_id.index))?;
        self.flush()
            .await
            .map_err(|e| StorageIOError::write_logs(any_error(e)))?;
        Ok(())
    }
}
