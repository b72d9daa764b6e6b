//! Layer 1: partition logs on disk. Owns segments, their offset and time
//! indexes, crash recovery, retention, idempotent-producer state and the
//! leader-epoch cache. Depends only on `kraftwerk-types` and
//! `kraftwerk-protocol` (for record batch headers); no async runtime.
//!
//! # Design
//!
//! A [`Log`] is one partition directory (`<topic>-<partition>`) holding
//! segments named by their 20-digit base offset, exactly like Kafka:
//! `00000000000000000000.log`, `.index`, `.timeindex`, plus
//! `leader-epoch-checkpoint`. Record batches are stored byte for byte; the
//! leader path rewrites only `baseOffset` and `partitionLeaderEpoch` (outside
//! the CRC) and, for LogAppendTime topics, the timestamp (recomputing the
//! CRC). Records are decoded only for compacted topics: to refuse keyless
//! records on produce, and by the cleaner.
//!
//! * **Writes** take the log's write lock, check everything first (size,
//!   producer sequences), then issue one positional write of all batches,
//!   so an append is all-or-nothing; a failed write is cut back off, and if
//!   even that fails the log goes offline (KAFKA_STORAGE_ERROR).
//! * **Reads** take the read lock only to pick the segment and clone its
//!   `Arc<File>`s, then search the index and `pread` without the lock.
//! * **Durability**: an acknowledged batch is in the page cache, which
//!   survives a process crash; `flush.messages` / `flush.ms` add fsyncs, and
//!   a segment is fsynced when it is rolled.
//! * **Recovery** scans every segment's batch headers (this rebuilds the
//!   producer state and the indexes), validating CRCs for the active segment
//!   after an unclean shutdown and for any segment with a damaged index, and
//!   cuts the file at the first torn or corrupt batch (see the `segment` module).
//! * **Retention** deletes whole segments, oldest first, never the active
//!   one, via rename to `.deleted` then unlink; leftovers are removed on open.
//! * **Compaction** (`cleanup.policy=compact`) rewrites closed segments
//!   keeping the latest record per key, without holding the write lock
//!   except to swap files; the swap is crash-safe (see the `cleaner` module).

mod cleaner;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod leader_epoch;
mod log;
mod producer_state;
mod records;
mod segment;

pub use cleaner::{CompactOutcome, CompactStats, CLEANER_CHECKPOINT_FILE};
pub use error::StorageError;
pub use leader_epoch::CHECKPOINT_FILE as LEADER_EPOCH_CHECKPOINT_FILE;
pub use log::{close_logs, AppendInfo, Log, CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_FILE};
pub use producer_state::{AbortedTxn, ActiveProducer};

#[cfg(test)]
mod cleaner_tests;
#[cfg(test)]
mod tests;
