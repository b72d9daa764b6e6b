//! The one error type of the storage crate and its mapping to Kafka error codes.

use std::io;
use std::path::PathBuf;

use kraftwerk_types::ErrorCode;

/// What went wrong in a partition log. Each variant says what the caller
/// should do: retry with other offsets, refuse the producer, or take the log
/// directory offline.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk refused a read or write (full disk, I/O error). The log was
    /// left consistent when that was possible; otherwise it is offline.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A write failed and could not be rolled back; the log refuses further
    /// writes until it is reopened (Kafka takes the log directory offline).
    #[error("log in {dir} is offline after an unrecoverable write failure")]
    LogDirOffline { dir: PathBuf },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error(
        "out of order sequence for producer {producer_id} epoch {producer_epoch}: \
         expected {expected_sequence}, batch starts at {first_sequence}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        expected_sequence: i32,
        first_sequence: i32,
    },
    #[error("producer {producer_id} has a transaction open; a non-transactional batch cannot be written")]
    InvalidTxnState { producer_id: i64 },
    #[error("marker for producer {producer_id} from coordinator epoch {marker_epoch}, older than {known_epoch}")]
    CoordinatorFenced {
        producer_id: i64,
        known_epoch: i32,
        marker_epoch: i32,
    },
    #[error("producer {producer_id} epoch {batch_epoch} is fenced by epoch {known_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        known_epoch: i16,
        batch_epoch: i16,
    },
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// Follower path: the batches do not continue the log where it ends.
    #[error("non-contiguous offsets: expected a batch at {expected}, got {got}")]
    NonContiguousOffsets { expected: i64, got: i64 },
    /// Bytes that are not a valid v2 record batch (from the network or disk).
    #[error("corrupt record batch: {reason}")]
    Corrupt { reason: String },
    /// A well-formed record the log refuses, such as a record without a key
    /// on a compacted topic; the producer must not retry it.
    #[error("invalid record: {reason}")]
    InvalidRecord { reason: String },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    /// The Kafka error code a client sees for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            StorageError::Io { .. } | StorageError::LogDirOffline { .. } => {
                ErrorCode::KAFKA_STORAGE_ERROR
            }
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            StorageError::OutOfOrderSequence { .. } => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            StorageError::InvalidProducerEpoch { .. } => ErrorCode::INVALID_PRODUCER_EPOCH,
            StorageError::InvalidTxnState { .. } => ErrorCode::INVALID_TXN_STATE,
            StorageError::CoordinatorFenced { .. } => ErrorCode::TRANSACTION_COORDINATOR_FENCED,
            StorageError::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            StorageError::Corrupt { .. } => ErrorCode::CORRUPT_MESSAGE,
            StorageError::InvalidRecord { .. } => ErrorCode::INVALID_RECORD,
            StorageError::NonContiguousOffsets { .. } => ErrorCode::UNKNOWN_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_kafka_code() {
        let cases: Vec<(StorageError, ErrorCode)> = vec![
            (
                StorageError::io("/x", io::Error::other("disk full")),
                ErrorCode::KAFKA_STORAGE_ERROR,
            ),
            (
                StorageError::OffsetOutOfRange {
                    offset: 9,
                    log_start_offset: 0,
                    log_end_offset: 3,
                },
                ErrorCode::OFFSET_OUT_OF_RANGE,
            ),
            (
                StorageError::OutOfOrderSequence {
                    producer_id: 1,
                    producer_epoch: 0,
                    expected_sequence: 3,
                    first_sequence: 5,
                },
                ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            ),
            (
                StorageError::InvalidProducerEpoch {
                    producer_id: 1,
                    known_epoch: 2,
                    batch_epoch: 1,
                },
                ErrorCode::INVALID_PRODUCER_EPOCH,
            ),
            (
                StorageError::MessageTooLarge { size: 10, max: 5 },
                ErrorCode::MESSAGE_TOO_LARGE,
            ),
            (
                StorageError::Corrupt {
                    reason: "crc".into(),
                },
                ErrorCode::CORRUPT_MESSAGE,
            ),
            (
                StorageError::InvalidRecord {
                    reason: "no key".into(),
                },
                ErrorCode::INVALID_RECORD,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.error_code(), code, "{error}");
        }
    }
}
