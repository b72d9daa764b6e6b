//! The metadata state machine: the image, the last applied log id and the
//! last membership, in memory; its latest snapshot in sled.
//!
//! Every applied batch publishes the new image on a watch channel, so the
//! rest of the process sees each committed image in log order.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kraftwerk_metadata::MetadataImage;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use super::{
    any_error, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::commands::{self, CommandResult};

use super::format::{KEY_SNAPSHOT as KEY_CURRENT, SNAPSHOT_TREE};
use super::recent::RecentCommands;

/// What a snapshot's bytes hold: the whole state machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StateMachineData {
    pub(crate) image: MetadataImage,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: StoredMembership,
}

/// A snapshot as kept in sled.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

/// The state machine of one controller node. Cheap to clone: clones share
/// the state (a clone serves as openraft's snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    state: Arc<Mutex<StateMachineData>>,
    snapshots: sled::Tree,
    db: sled::Db,
    image_tx: Arc<watch::Sender<Arc<MetadataImage>>>,
    recent: Arc<RecentCommands>,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring it from the latest stored
    /// snapshot, and publishes its image on `image_tx`.
    pub fn open(
        db: &sled::Db,
        image_tx: watch::Sender<Arc<MetadataImage>>,
    ) -> Result<Self, StorageError> {
        let snapshots = db
            .open_tree(SNAPSHOT_TREE)
            .map_err(|e| StorageIOError::read_snapshot(None, any_error(e)))?;
        let mut data = StateMachineData::default();
        if let Some(stored) = read_stored(&snapshots)? {
            data = decode_data(&stored.data, &stored.meta)?;
        }
        image_tx.send_replace(Arc::new(data.image.clone()));
        let recent = RecentCommands::default();
        recent.reset(data.last_applied.map_or(0, |l| l.index));
        Ok(StateMachineStore {
            state: Arc::new(Mutex::new(data)),
            snapshots,
            db: db.clone(),
            image_tx: Arc::new(image_tx),
            recent: Arc::new(recent),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The commands applied most recently, for metadata deltas.
    pub fn recent(&self) -> Arc<RecentCommands> {
        self.recent.clone()
    }

    /// A new receiver of the committed images.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image_tx.subscribe()
    }

    async fn store_snapshot(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let signature = Some(stored.meta.signature());
        let bytes = serde_json::to_vec(stored)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), any_error(e)))?;
        self.snapshots
            .insert(KEY_CURRENT, bytes)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), any_error(e)))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageIOError::write_snapshot(signature, any_error(e)))?;
        Ok(())
    }
}

fn read_stored(snapshots: &sled::Tree) -> Result<Option<StoredSnapshot>, StorageError> {
    let Some(bytes) = snapshots
        .get(KEY_CURRENT)
        .map_err(|e| StorageIOError::read_snapshot(None, any_error(e)))?
    else {
        return Ok(None);
    };
    decode_stored(&bytes).map(Some)
}

/// A snapshot as kept in sled, from its bytes.
pub(crate) fn decode_stored(bytes: &[u8]) -> Result<StoredSnapshot, StorageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageIOError::read_snapshot(None, any_error(e)).into())
}

pub(crate) fn decode_data(
    bytes: &[u8],
    meta: &SnapshotMeta,
) -> Result<StateMachineData, StorageError> {
    let mut data: StateMachineData = serde_json::from_slice(bytes)
        .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), any_error(e)))?;
    // The image's lookup tables are not serialized.
    data.image.reindex();
    Ok(data)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (bytes, last_applied, last_membership) = {
            let state = self.state.lock().await;
            let bytes = serde_json::to_vec(&*state)
                .map_err(|e| StorageIOError::write_snapshot(None, any_error(e)))?;
            (bytes, state.last_applied, state.last_membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        };
        self.store_snapshot(&stored).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.lock().await;
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.lock().await;
        let mut results = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Ok,
                EntryPayload::Normal(command) => {
                    let result = commands::apply(&mut state.image, &command, entry.log_id.index);
                    self.recent.push(entry.log_id.index, Arc::new(command));
                    result
                }
                EntryPayload::Membership(membership) => {
                    state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::Ok
                }
            };
            results.push(result);
        }
        self.image_tx.send_replace(Arc::new(state.image.clone()));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let mut data = decode_data(&bytes, meta)?;
        // The meta is authoritative for what the snapshot covers.
        data.last_applied = meta.last_log_id;
        data.last_membership = meta.last_membership.clone();
        self.store_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        })
        .await?;
        let mut state = self.state.lock().await;
        *state = data;
        self.recent.reset(state.last_applied.map_or(0, |l| l.index));
        self.image_tx.send_replace(Arc::new(state.image.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(read_stored(&self.snapshots)?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
