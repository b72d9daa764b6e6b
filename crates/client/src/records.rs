//! Building record batches for Produce and reading them out of Fetch, both
//! through `kafka_protocol::records`.

use bytes::{Buf, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::{codec, ClientError, Result};

/// Bytes of a v2 batch header before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Upper estimate of one record's framing (length, attributes, deltas, key
/// and value lengths, header count) on top of its key, value and headers.
pub const RECORD_OVERHEAD_BYTES: usize = 21;
const BATCH_LENGTH_OFFSET: usize = 8;
const MAGIC_OFFSET: usize = 16;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Base offset (8) and batch length (4) precede the counted batch bytes.
const BATCH_LOG_OVERHEAD: usize = 12;

/// One record as the producer hands it to the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

impl OutgoingRecord {
    /// An upper estimate of this record's encoded size, for batch limits.
    pub fn estimated_size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 10)
            .sum();
        RECORD_OVERHEAD_BYTES
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + headers
    }
}

/// Producer id, epoch and first sequence of a batch; all -1 when the
/// producer is not idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchIdentity {
    /// The identity of a non-idempotent batch.
    pub const NONE: BatchIdentity = BatchIdentity {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// The sequence after `count` records starting at `sequence`; wraps to 0
/// after `i32::MAX` as Kafka's `DefaultRecordBatch.incrementSequence` does.
pub fn increment_sequence(sequence: i32, count: i32) -> i32 {
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

/// Encodes records as one v2 record batch (offsets relative to 0).
pub fn encode_batch(
    records: &[OutgoingRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes> {
    let converted: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let index = index as i32;
            let mut headers = IndexMap::with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers.insert(StrBytes::from_string(key.clone()), value.clone());
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(index),
                // The encoder keeps records in one batch while
                // offset - sequence is constant; only the base is written.
                sequence: identity.base_sequence.wrapping_add(index),
                timestamp: record.timestamp_ms,
                key: record.key.clone(),
                value: record.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::with_capacity(
        BATCH_HEADER_BYTES
            + records
                .iter()
                .map(OutgoingRecord::estimated_size)
                .sum::<usize>(),
    );
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, converted.iter(), &options).map_err(codec)?;
    Ok(buf.freeze())
}

/// One decoded batch from a Fetch response.
#[derive(Debug, Clone)]
pub struct FetchedBatch {
    pub base_offset: i64,
    /// Offset of the batch's last record (also for compacted-away records).
    pub last_offset: i64,
    pub control: bool,
    pub transactional: bool,
    pub producer_id: i64,
    pub records: Vec<Record>,
}

/// Decodes every complete batch in a partition's fetched bytes. A trailing
/// partial batch (the broker cuts at the size limit) is ignored.
pub fn decode_fetched(mut data: Bytes) -> Result<Vec<FetchedBatch>> {
    let mut batches = Vec::new();
    while data.len() >= BATCH_LOG_OVERHEAD {
        let length = i32::from_be_bytes([
            data[BATCH_LENGTH_OFFSET],
            data[BATCH_LENGTH_OFFSET + 1],
            data[BATCH_LENGTH_OFFSET + 2],
            data[BATCH_LENGTH_OFFSET + 3],
        ]);
        let total = usize::try_from(length)
            .map_err(|_| ClientError::Protocol(format!("negative batch length {length}")))?
            + BATCH_LOG_OVERHEAD;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        if total < BATCH_HEADER_BYTES {
            return Err(ClientError::Protocol(format!(
                "batch of {total} bytes is too short"
            )));
        }
        let magic = batch[MAGIC_OFFSET];
        if magic != 2 {
            return Err(ClientError::Protocol(format!(
                "record format v{magic} is not supported"
            )));
        }
        let base_offset = (&batch[0..8]).get_i64();
        let last_offset_delta =
            (&batch[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]).get_i32();
        let header_copy = batch.clone();
        let set = RecordBatchDecoder::decode(&mut batch).map_err(codec)?;
        let (control, transactional, producer_id) = match set.records.first() {
            Some(first) => (first.control, first.transactional, first.producer_id),
            None => {
                let mut header = header_copy;
                let info = RecordBatchDecoder::decode_batch_info(&mut header).map_err(codec)?;
                info.first()
                    .map(|i| (i.control, i.transactional, i.producer_id))
                    .unwrap_or((false, false, -1))
            }
        };
        batches.push(FetchedBatch {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            control,
            transactional,
            producer_id,
            records: set.records,
        });
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<OutgoingRecord> {
        (0..n)
            .map(|i| OutgoingRecord {
                key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 5 != 4).then(|| Bytes::from(vec![b'v'; i * 7])),
                headers: vec![
                    ("trace".to_string(), Some(Bytes::from(format!("t{i}")))),
                    ("empty".to_string(), None),
                ],
                timestamp_ms: 1_700_000_000_000 + i as i64,
            })
            .collect()
    }

    #[test]
    fn round_trip_with_every_codec() {
        let records = sample(40);
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for identity in [
                BatchIdentity::NONE,
                BatchIdentity {
                    producer_id: 42,
                    producer_epoch: 3,
                    base_sequence: 100,
                },
            ] {
                let encoded = encode_batch(&records, identity, compression).expect("encode");
                let mut concatenated = BytesMut::new();
                concatenated.extend_from_slice(&encoded);
                concatenated.extend_from_slice(&encoded[..encoded.len() / 2]);
                let batches = decode_fetched(concatenated.freeze()).expect("decode");
                assert_eq!(batches.len(), 1, "{compression:?}: partial batch ignored");
                let batch = &batches[0];
                assert_eq!(batch.base_offset, 0);
                assert_eq!(batch.last_offset, records.len() as i64 - 1);
                assert_eq!(batch.producer_id, identity.producer_id);
                assert!(!batch.control);
                assert_eq!(batch.records.len(), records.len());
                for (i, (got, want)) in batch.records.iter().zip(&records).enumerate() {
                    assert_eq!(got.offset, i as i64);
                    assert_eq!(got.key, want.key);
                    assert_eq!(got.value, want.value);
                    assert_eq!(got.timestamp, want.timestamp_ms);
                    assert_eq!(got.producer_epoch, identity.producer_epoch);
                    assert_eq!(
                        got.sequence,
                        identity.base_sequence.wrapping_add(i as i32),
                        "{compression:?}"
                    );
                    let headers: Vec<(String, Option<Bytes>)> = got
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    assert_eq!(headers, want.headers);
                }
            }
        }
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(increment_sequence(0, 5), 5);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn short_and_old_batches_are_rejected() {
        assert!(decode_fetched(Bytes::from_static(&[0u8; 5]))
            .expect("short")
            .is_empty());
        let mut old = vec![0u8; 70];
        old[8..12].copy_from_slice(&58i32.to_be_bytes());
        old[16] = 1;
        assert!(decode_fetched(Bytes::from(old)).is_err());
    }
}
