//! One partition replica stored on this broker, and the one door through
//! which requests write and read it.
//!
//! Produce, Fetch, transaction markers and the coordinators
//! (`coordinator_log`) all append and read here: a leader append is
//! checked once ([`Partition::check_append`]: leadership,
//! `min.insync.replicas` for acks=all, batch framing and CRC32C,
//! `max.message.bytes`), appended ([`Partition::append`]), which moves the
//! high watermark and wakes the partition's waiters, and acknowledged once
//! committed when acks=all asks for it ([`Partition::wait_committed`]).
//!
//! Disk work that may wait on the device leaves the async workers: an
//! append that rolls a segment, reaches `flush.messages` or is the first
//! write after an open, and a read of a closed segment (data written
//! earlier, maybe no longer in the page cache), run on tokio's blocking
//! pool. A page-cache write at the tail and a read of the active segment
//! run in place: handing them to another thread would cost more than they
//! take.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kraftwerk_coordinator::now_ms;
use kraftwerk_coordinator::txn::Marker;
use kraftwerk_protocol::batch::{validate_all, BatchError, BatchHeader};
use kraftwerk_replication::{CommitWaitError, LocalReplica, PartitionReplication};
use kraftwerk_storage::{AppendInfo, Log, StorageError};
use kraftwerk_types::{ErrorCode, TopicId, TopicPartition};

/// One partition replica stored on this broker.
pub struct Partition {
    pub topic_partition: TopicPartition,
    pub topic_id: TopicId,
    pub log: Log,
    pub dir: PathBuf,
    pub replication: PartitionReplication,
}

/// How many replicas must hold a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0 or acks=1: the leader's own append.
    Leader,
    /// acks=all: the ISR. Refused before the append while the ISR is
    /// smaller than `min.insync.replicas`.
    All,
}

/// Why a write or a read was refused: the Kafka error code and what the
/// client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

impl Refused {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refused {
        Refused {
            code,
            message: message.into(),
        }
    }
}

impl From<StorageError> for Refused {
    fn from(e: StorageError) -> Refused {
        Refused::new(e.error_code(), e.to_string())
    }
}

/// Record batches that passed [`Partition::check_append`], ready to append.
pub struct CheckedAppend {
    batches: Vec<(BatchHeader, Bytes)>,
    bytes: usize,
    records: i64,
}

impl CheckedAppend {
    /// The producer (id, epoch) of the first transactional batch, if any.
    pub fn transactional_producer(&self) -> Option<(i64, i16)> {
        self.batches
            .iter()
            .find(|(h, _)| h.is_transactional())
            .map(|(h, _)| (h.producer_id, h.producer_epoch))
    }

    /// The number of records in the batches.
    pub fn records(&self) -> u64 {
        self.records as u64
    }

    /// The size of the batches in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a leader append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses `LogAppendTime`.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The leader epoch of the append: acks=all waits for commitment in
    /// this epoch only.
    pub leader_epoch: i32,
    /// A retried idempotent batch, answered with its original offsets.
    pub duplicate: bool,
}

impl Appended {
    fn new(info: AppendInfo, leader_epoch: i32) -> Appended {
        Appended {
            base_offset: info.base_offset,
            last_offset: info.last_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset,
            leader_epoch,
            duplicate: info.duplicate,
        }
    }
}

impl Partition {
    pub fn leader_epoch(&self) -> i32 {
        self.replication.leader_epoch()
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.replication.high_watermark()
    }

    /// Whether the high watermark this leader knows is still below its
    /// epoch's start offset (it took over and its followers have not
    /// fetched yet): then offsets committed by the previous leader may lie
    /// above it, and "latest" cannot be answered yet.
    pub fn high_watermark_unknown(&self) -> bool {
        self.replication
            .leader_epoch_start_offset()
            .is_some_and(|start| start > self.high_watermark())
    }

    /// The last stable offset: the high watermark, or the first offset of
    /// the earliest transaction still open below it.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.high_watermark();
        self.log
            .first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Checks a leader append before anything is written: this broker
    /// leads the partition, acks=all finds enough replicas in the ISR, and
    /// `records` is one or more whole v2 batches with valid CRC32C, none
    /// over `max.message.bytes`. Records inside are not decoded.
    pub fn check_append(&self, records: &Bytes, acks: Acks) -> Result<CheckedAppend, Refused> {
        if !self.replication.is_leader() {
            return Err(Refused::new(
                ErrorCode::NOT_LEADER_OR_FOLLOWER,
                format!("this broker does not lead {}", self.topic_partition),
            ));
        }
        let config = self.log.config();
        if acks == Acks::All {
            let isr = self.replication.isr_len();
            if (isr as i32) < config.min_insync_replicas {
                return Err(Refused::new(
                    ErrorCode::NOT_ENOUGH_REPLICAS,
                    format!(
                        "ISR has {isr} replicas, min.insync.replicas is {}",
                        config.min_insync_replicas
                    ),
                ));
            }
        }
        if records.is_empty() {
            return Err(Refused::new(
                ErrorCode::INVALID_RECORD,
                "produce request carries no record batch",
            ));
        }
        let batches = validate_all(records).map_err(|e| match e {
            BatchError::UnsupportedMagic(_) => {
                Refused::new(ErrorCode::UNSUPPORTED_FOR_MESSAGE_FORMAT, e.to_string())
            }
            _ => Refused::new(ErrorCode::CORRUPT_MESSAGE, e.to_string()),
        })?;
        if let Some((h, _)) = batches
            .iter()
            .find(|(h, _)| h.total_bytes() > config.max_message_bytes)
        {
            return Err(Refused::new(
                ErrorCode::MESSAGE_TOO_LARGE,
                format!(
                    "batch of {} bytes exceeds max.message.bytes {}",
                    h.total_bytes(),
                    config.max_message_bytes
                ),
            ));
        }
        let records_in = batches.iter().map(|(h, _)| h.record_count as i64).sum();
        Ok(CheckedAppend {
            batches,
            bytes: records.len(),
            records: records_in,
        })
    }

    /// Appends checked batches as leader at the current leader epoch and
    /// moves the high watermark (at once when this broker is the whole
    /// ISR). Off the async workers when the append may wait on the disk.
    pub async fn append(self: &Arc<Self>, checked: CheckedAppend) -> Result<Appended, Refused> {
        if !self
            .log
            .append_may_block(checked.bytes, checked.records, now_ms())
        {
            return self.append_here(checked);
        }
        let partition = self.clone();
        tokio::task::spawn_blocking(move || partition.append_here(checked))
            .await
            .unwrap_or_else(|e| Err(self.task_failed("append", e)))
    }

    /// [`Partition::append`] on the calling thread. The coordinators use
    /// it: their batches are small, and each appends while it holds its
    /// shard's state, so that records are written in the order of the
    /// changes they record.
    pub fn append_here(&self, checked: CheckedAppend) -> Result<Appended, Refused> {
        let leader_epoch = self.leader_epoch();
        let info = self
            .log
            .append_as_leader(checked.batches, leader_epoch, now_ms())?;
        self.replication.on_leader_append(self.log.log_end_offset());
        Ok(Appended::new(info, leader_epoch))
    }

    /// Writes a transaction marker (a COMMIT or ABORT control batch) as
    /// leader at the current leader epoch.
    pub fn append_marker(&self, marker: Marker) -> Result<Appended, Refused> {
        if !self.replication.is_leader() {
            return Err(Refused::new(
                ErrorCode::NOT_LEADER_OR_FOLLOWER,
                format!("this broker does not lead {}", self.topic_partition),
            ));
        }
        let leader_epoch = self.leader_epoch();
        let info = self.log.append_marker_as_leader(
            marker.producer_id,
            marker.producer_epoch,
            marker.coordinator_epoch,
            marker.commit,
            leader_epoch,
            now_ms(),
        )?;
        self.replication.on_leader_append(self.log.log_end_offset());
        Ok(Appended::new(info, leader_epoch))
    }

    /// Whole batches from the one holding `from`, at most `max_bytes` (one
    /// whole batch regardless when `min_one_batch`), all below
    /// `max_offset`. Off the async workers when the read is of a closed
    /// segment.
    pub async fn read(
        self: &Arc<Self>,
        from: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        if !self.log.read_may_block(from) {
            return self.log.read(from, max_bytes, max_offset, min_one_batch);
        }
        let partition = self.clone();
        tokio::task::spawn_blocking(move || {
            partition
                .log
                .read(from, max_bytes, max_offset, min_one_batch)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(partition = %self.topic_partition, error = %e, "a read task failed");
            Err(StorageError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the read task failed"),
            })
        })
    }

    /// Waits until `last_offset`, appended as leader in `leader_epoch`, is
    /// committed, as acks=all needs; NOT_LEADER_OR_FOLLOWER once this
    /// broker no longer leads in that epoch.
    pub async fn wait_committed(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), ErrorCode> {
        self.replication
            .wait_committed(last_offset, leader_epoch, deadline)
            .await
            .map_err(|e| match e {
                CommitWaitError::NotLeader => ErrorCode::NOT_LEADER_OR_FOLLOWER,
                CommitWaitError::NotEnoughReplicasAfterAppend => {
                    ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
                }
                CommitWaitError::Timeout => ErrorCode::REQUEST_TIMED_OUT,
            })
    }

    /// A blocking task that panicked: the log state it held is unknown, so
    /// the request gets KAFKA_STORAGE_ERROR.
    fn task_failed(&self, what: &str, e: tokio::task::JoinError) -> Refused {
        tracing::error!(partition = %self.topic_partition, error = %e, "the {what} task failed");
        Refused::new(
            ErrorCode::KAFKA_STORAGE_ERROR,
            format!("the {what} of {} failed", self.topic_partition),
        )
    }
}

impl LocalReplica for Partition {
    fn log(&self) -> &Log {
        &self.log
    }
    fn replication(&self) -> &PartitionReplication {
        &self.replication
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use kraftwerk_replication::PartitionView;
    use kraftwerk_types::LogConfig;

    const NODE: i32 = 1;

    fn batch(values: &[&str]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(v.to_string())),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buffer = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode");
        buffer.freeze()
    }

    fn partition(dir: &std::path::Path, config: LogConfig, view: PartitionView) -> Arc<Partition> {
        let log = Log::open(dir.to_path_buf(), config).expect("open");
        Arc::new(Partition {
            topic_partition: TopicPartition::new("t", 0),
            topic_id: TopicId(uuid::Uuid::new_v4()),
            log,
            dir: dir.to_path_buf(),
            replication: PartitionReplication::new(NODE, view, 0),
        })
    }

    fn config() -> LogConfig {
        LogConfig {
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            ..LogConfig::default()
        }
    }

    fn code(r: Result<CheckedAppend, Refused>) -> ErrorCode {
        match r {
            Ok(_) => ErrorCode::NONE,
            Err(refused) => refused.code,
        }
    }

    #[test]
    fn a_leader_append_is_refused_with_kafkas_error_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(
            dir.path(),
            LogConfig {
                min_insync_replicas: 2,
                max_message_bytes: 200,
                ..config()
            },
            PartitionView {
                replicas: vec![NODE, 2],
                isr: vec![NODE],
                ..PartitionView::single(NODE)
            },
        );
        let one = batch(&["a"]);
        // acks=all with the ISR below min.insync.replicas; acks=1 passes.
        assert_eq!(
            code(p.check_append(&one, Acks::All)),
            ErrorCode::NOT_ENOUGH_REPLICAS
        );
        assert_eq!(code(p.check_append(&one, Acks::Leader)), ErrorCode::NONE);
        assert_eq!(
            code(p.check_append(&Bytes::new(), Acks::Leader)),
            ErrorCode::INVALID_RECORD
        );
        let mut flipped = BytesMut::from(&one[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            code(p.check_append(&flipped.freeze(), Acks::Leader)),
            ErrorCode::CORRUPT_MESSAGE
        );
        let big = batch(&[&"x".repeat(300)]);
        assert_eq!(
            code(p.check_append(&big, Acks::Leader)),
            ErrorCode::MESSAGE_TOO_LARGE
        );
        assert_eq!(p.log.log_end_offset(), 0, "nothing was written");

        let follower = tempfile::tempdir().expect("tempdir");
        let p = partition(
            follower.path(),
            config(),
            PartitionView {
                leader: 2,
                replicas: vec![NODE, 2],
                isr: vec![NODE, 2],
                ..PartitionView::single(NODE)
            },
        );
        assert_eq!(
            code(p.check_append(&one, Acks::Leader)),
            ErrorCode::NOT_LEADER_OR_FOLLOWER
        );
    }

    #[tokio::test]
    async fn appends_that_fsync_and_reads_of_closed_segments_run_on_the_blocking_pool_with_the_same_answers(
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = batch(&["a", "b", "c"]);
        // Every append fsyncs (flush.messages=1), and a segment holds two
        // batches: appends roll and reads reach closed segments.
        let p = partition(
            dir.path(),
            LogConfig {
                flush_messages: 1,
                segment_bytes: (one.len() * 2) as u64,
                ..config()
            },
            PartitionView::single(NODE),
        );
        for round in 0..4i64 {
            let checked = p.check_append(&one, Acks::All).expect("checked");
            assert_eq!(checked.records(), 3);
            let appended = p.append(checked).await.expect("appended");
            assert_eq!(appended.base_offset, round * 3);
            assert_eq!(appended.last_offset, round * 3 + 2);
            assert!(!appended.duplicate);
            // The only replica: committed at once.
            assert_eq!(p.high_watermark(), round * 3 + 3);
            p.wait_committed(
                appended.last_offset,
                appended.leader_epoch,
                tokio::time::Instant::now(),
            )
            .await
            .expect("committed");
        }
        assert_eq!(p.log.segment_count(), 2);
        // The closed segment (offsets 0..6) and the active one (6..12).
        assert!(p.log.read_may_block(0));
        assert!(!p.log.read_may_block(6));
        for (from, first) in [(0, 0), (3, 3), (6, 6), (9, 9)] {
            let read = p.read(from, 1 << 20, i64::MAX, true).await.expect("read");
            let batches = validate_all(&read).expect("valid batches");
            assert_eq!(batches.first().map(|(h, _)| h.base_offset), Some(first));
        }
    }
}
