//! openraft wired to Kraftwerk: the type configuration, the sled log store,
//! the metadata state machine, and Raft RPCs over gRPC.
//!
//! Layout on disk: one sled database per controller node under
//! `<data_dir>/raft`, shared by the log store (log entries, vote, purged and
//! committed log ids) and the state machine (its latest snapshot). The state
//! machine itself lives in memory; after a restart it is rebuilt from the
//! latest snapshot plus the committed log entries after it, which openraft
//! re-applies because the log store persists the committed log id.
//!
//! Leader ids are standard Raft's (openraft's `single-term-leader`): one
//! leader per term, the term is KRaft's leader epoch. A store written
//! before that is converted when it is opened ([`format`]).

// openraft's trait signatures fix the error type (`StorageError`, about 200
// bytes); the helpers that produce it return it as the traits do.
#![allow(clippy::result_large_err)]

use std::io::Cursor;

use crate::commands::{CommandResult, MetadataCommand};

pub mod format;
pub mod log_store;
pub mod network;
pub mod recent;
pub mod service;
pub mod split_vote;
pub mod state_machine;

pub use log_store::LogStore;
pub use network::{NetworkFactory, PeerNetwork};
pub use service::{LeaderContact, RaftService};
pub use state_machine::StateMachineStore;

openraft::declare_raft_types!(
    /// The openraft types of the metadata quorum.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A controller node's id, the same number as its `node.id`.
pub type NodeId = u64;
/// The Raft handle of the metadata quorum.
pub type MetadataRaft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Why the node's sled database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the controller store at {}: {source}", path.display())]
    Sled {
        path: std::path::PathBuf,
        source: sled::Error,
    },
    /// The store is in a format this version does not run with; the
    /// message says what to do.
    #[error(transparent)]
    Format(#[from] format::FormatError),
}

/// Opens (or creates) the node's sled database under `<data_dir>/raft`,
/// converted to the current store format ([`format::upgrade`]).
///
/// sled locks its directory; a database handle of a node that has just shut
/// down may still be dropping on another task, so the lock is retried for a
/// bounded time before giving up.
pub async fn open_db(data_dir: &std::path::Path) -> Result<sled::Db, OpenError> {
    const OPEN_ATTEMPTS_MAX: u32 = 50;
    const OPEN_RETRY_MS: u64 = 100;
    let path = data_dir.join("raft");
    let sled_error = |source: sled::Error| OpenError::Sled {
        path: path.clone(),
        source,
    };
    let mut attempt = 0;
    let db = loop {
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || sled::Config::new().path(p).open())
            .await
            .map_err(|e| sled_error(sled::Error::Io(std::io::Error::other(e))))?;
        match opened {
            Ok(db) => break db,
            Err(sled::Error::Io(e)) if attempt + 1 < OPEN_ATTEMPTS_MAX && is_lock_error(&e) => {
                attempt += 1;
                tracing::debug!(
                    attempt,
                    "sled database at {} is still locked: {e}",
                    path.display()
                );
                tokio::time::sleep(std::time::Duration::from_millis(OPEN_RETRY_MS)).await;
            }
            Err(e) => return Err(sled_error(e)),
        }
    };
    let p = path.clone();
    let upgraded = tokio::task::spawn_blocking(move || format::upgrade(&db, &p).map(|u| (db, u)))
        .await
        .map_err(|e| sled_error(sled::Error::Io(std::io::Error::other(e))))?;
    let (db, upgrade) = upgraded?;
    if let format::Upgrade::Converted {
        stride,
        entries,
        values,
    } = upgrade
    {
        tracing::warn!(
            "converted the controller store at {} to format {}: leader ids (term, node) \
             are now terms term * {stride} + node; {entries} log entries and {values} \
             other values rewritten",
            path.display(),
            format::FORMAT_VERSION
        );
    }
    Ok(db)
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock")
}

/// Wraps a sled, serde or I/O error for openraft's storage errors.
pub(crate) fn any_error(e: impl std::fmt::Display) -> openraft::AnyError {
    openraft::AnyError::error(e)
}
