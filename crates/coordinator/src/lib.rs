//! Layer 2: coordinators whose state lives in an internal topic.
//!
//! Kafka keeps a coordinator's state (consumer groups in
//! `__consumer_offsets`, transactions in `__transaction_state`) as
//! records in the partitions of an internal topic. The broker that leads
//! a partition coordinates what hashes to it: it loads the partition by
//! replaying it when leadership arrives, unloads it when leadership
//! leaves, and answers a request only once the records it wrote are
//! committed.
//!
//! This crate owns that machinery and the coordinators built on it, and
//! sees the log only through [`CoordinatorLog`], which the broker
//! implements over its partitions. It depends on neither the controller
//! nor replication.
//!
//! * [`log`]: the narrow view of an internal topic's partitions.
//! * [`runtime`]: one shard per partition of an internal topic, loaded by
//!   replay while this broker leads the partition, and wake-ups at the
//!   deadlines state machines ask for; shared by the coordinators.
//! * [`group`]: the consumer-group coordinator (Kafka's classic protocol).
//! * [`txn`]: the transaction coordinator (`__transaction_state`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod group;
pub mod log;
pub mod runtime;
pub mod txn;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kraftwerk_types::ErrorCode;

pub use log::{CoordinatorLog, LogFuture};

/// Encodes (key, value) records as one uncompressed v2 batch; with a
/// producer id and epoch it is a transactional batch of that producer
/// (TxnOffsetCommit's offsets, made visible by the transaction's marker).
pub(crate) fn encode_batch(
    records: Vec<(Bytes, Option<Bytes>)>,
    producer: Option<(i64, i16)>,
) -> Result<Bytes, ErrorCode> {
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let batch: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(key),
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &batch, &options).map_err(|e| {
        tracing::error!(error = %e, "could not encode a coordinator batch");
        ErrorCode::UNKNOWN_SERVER_ERROR
    })?;
    Ok(buf.freeze())
}

/// Kafka's mapping of append errors for its coordinators.
pub(crate) fn append_error(e: ErrorCode) -> ErrorCode {
    match e {
        ErrorCode::NOT_LEADER_OR_FOLLOWER
        | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION
        | ErrorCode::KAFKA_STORAGE_ERROR => ErrorCode::NOT_COORDINATOR,
        ErrorCode::MESSAGE_TOO_LARGE | ErrorCode::RECORD_LIST_TOO_LARGE => {
            ErrorCode::INVALID_COMMIT_OFFSET_SIZE
        }
        _ => ErrorCode::COORDINATOR_NOT_AVAILABLE,
    }
}

/// Kafka's mapping of replication errors for its coordinators, once a
/// record was appended: a record the ISR did not take in time makes the
/// coordinator unavailable (clients find it again and retry), as
/// REQUEST_TIMED_OUT would be fatal to them.
pub(crate) fn commit_error(e: ErrorCode) -> ErrorCode {
    match e {
        ErrorCode::NOT_LEADER_OR_FOLLOWER | ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
            ErrorCode::NOT_COORDINATOR
        }
        ErrorCode::NOT_ENOUGH_REPLICAS
        | ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
        | ErrorCode::REQUEST_TIMED_OUT => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        ErrorCode::KAFKA_STORAGE_ERROR => ErrorCode::NOT_COORDINATOR,
        code => code,
    }
}

/// Wall-clock milliseconds, as Kafka's records carry them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
