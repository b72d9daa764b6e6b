//! The header of a v2 record batch (magic 2), read without touching records.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset int64        36 maxTimestamp int64
//! 8  batchLength int32       44 producerId int64
//! 12 partitionLeaderEpoch    52 producerEpoch int16
//! 16 magic int8              53 baseSequence int32
//! 17 crc uint32              57 recordCount int32
//! 21 attributes int16        61 records...
//! 23 lastOffsetDelta int32
//! 27 baseTimestamp int64
//! ```
//! The CRC32C covers everything from `attributes` to the end of the batch.

use bytes::Bytes;

pub const HEADER_BYTES: usize = 61;
/// `baseOffset` + `batchLength`: the part not counted in `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC32C's coverage starts (`attributes`).
pub(crate) const CRC_START: usize = 21;

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch is truncated: {have} bytes, needs {need}")]
    Truncated { have: usize, need: usize },
    #[error("batch length {0} is invalid")]
    BadLength(i32),
    #[error("unsupported record batch magic {0}; only v2 batches are accepted")]
    UnsupportedMagic(i8),
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {0} is invalid")]
    BadRecordCount(i32),
}

/// The fixed fields of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Reads the header at the front of `bytes` (no CRC check).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            // The magic byte sits at 16; report it first so that v0/v1
            // message sets get the clearer error.
            if bytes.len() > 16 && bytes[16] as i8 != 2 {
                return Err(BatchError::UnsupportedMagic(bytes[16] as i8));
            }
            return Err(BatchError::Truncated {
                have: bytes.len(),
                need: HEADER_BYTES,
            });
        }
        let magic = bytes[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let batch_length = be_i32(bytes, 8);
        if batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let header = BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length,
            partition_leader_epoch: be_i32(bytes, 12),
            magic,
            crc: be_i32(bytes, 17) as u32,
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            record_count: be_i32(bytes, 57),
        };
        if header.record_count < 0 || header.last_offset_delta < 0 {
            return Err(BatchError::BadRecordCount(header.record_count));
        }
        Ok(header)
    }

    /// Bytes of the whole batch, header included.
    pub fn total_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The sequence of the last record, wrapping at `i32::MAX` like Kafka.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// Checks the CRC32C of one whole batch.
pub fn verify_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(&batch[CRC_START..header.total_bytes()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Reads and checks one batch at the front of `bytes`: length, magic, CRC32C.
pub fn validate_one(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let total = header.total_bytes();
    if bytes.len() < total {
        return Err(BatchError::Truncated {
            have: bytes.len(),
            need: total,
        });
    }
    verify_crc(bytes, &header)?;
    Ok(header)
}

/// Splits a produce payload into its batches, checking each one.
/// Any error rejects the whole payload, so nothing partial is stored.
pub fn validate_all(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let header = validate_one(&records[at..])?;
        let end = at + header.total_bytes();
        out.push((header, records.slice(at..end)));
        at = end;
    }
    Ok(out)
}

/// The number of offsets whole batches at the front of `records` span,
/// from their headers only (no CRC check, records not decoded); 0 when
/// the first header does not parse. An estimate for deciding how to write
/// them; the write itself validates.
pub fn offset_span(records: &[u8]) -> i64 {
    let Ok(first) = BatchHeader::parse(records) else {
        return 0;
    };
    let mut last = first;
    let mut at = first.total_bytes();
    while at < records.len() {
        match BatchHeader::parse(&records[at..]) {
            Ok(header) => {
                at += header.total_bytes();
                last = header;
            }
            Err(_) => break,
        }
    }
    (last.last_offset() - first.base_offset + 1).max(0)
}

/// Rewrites `baseOffset` in place (it is outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites `partitionLeaderEpoch` in place (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Recomputes the CRC of one whole batch after a change inside it.
fn write_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// Sets LogAppendTime: the timestamp-type bit and `maxTimestamp`, then
/// recomputes the CRC, as Kafka does for `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, 21) | ATTR_TIMESTAMP_TYPE;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    write_crc(batch);
}

/// A batch with the header of `original` (at least [`HEADER_BYTES`] long)
/// and `records` as its records section: `batchLength`, `attributes`,
/// `recordCount` and the CRC are set; offsets, timestamps, producer id,
/// epoch and base sequence stay as they were (what Kafka's log cleaner
/// keeps of a batch it filters).
pub fn with_records(
    original: &[u8],
    attributes: i16,
    record_count: i32,
    records: &[u8],
) -> Result<Vec<u8>, BatchError> {
    if original.len() < HEADER_BYTES {
        return Err(BatchError::Truncated {
            have: original.len(),
            need: HEADER_BYTES,
        });
    }
    let total = HEADER_BYTES + records.len();
    let batch_length =
        i32::try_from(total - LOG_OVERHEAD).map_err(|_| BatchError::BadLength(-1))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&original[..HEADER_BYTES]);
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&record_count.to_be_bytes());
    out.extend_from_slice(records);
    write_crc(&mut out);
    Ok(out)
}

/// The control record type of a COMMIT transaction marker (Kafka's
/// `ControlRecordType.COMMIT`); ABORT is 0.
pub const CONTROL_COMMIT: i16 = 1;
pub const CONTROL_ABORT: i16 = 0;

/// A zigzag varint at the front of `bytes`: (value, bytes read).
fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        raw |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// What a control batch's record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord {
    /// `CONTROL_ABORT`, `CONTROL_COMMIT`, or another control type.
    pub kind: i16,
    /// The transaction coordinator's epoch for markers, -1 when absent.
    pub coordinator_epoch: i32,
}

/// The type in the key of a control batch's record, and the coordinator
/// epoch in its value, read from the first record without decoding
/// anything else; `None` for a batch that is not an uncompressed control
/// batch with a readable key. `batch` needs the header and the start of
/// the records ([`CONTROL_KEY_BYTES`]), not the whole batch.
pub fn control_record(batch: &[u8]) -> Option<ControlRecord> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != 0 || header.record_count < 1 {
        return None;
    }
    let mut at = HEADER_BYTES;
    let (_length, n) = read_varint(batch.get(at..)?)?;
    at += n + 1; // the record's attributes byte
    let (_timestamp_delta, n) = read_varint(batch.get(at..)?)?;
    at += n;
    let (_offset_delta, n) = read_varint(batch.get(at..)?)?;
    at += n;
    let (key_length, n) = read_varint(batch.get(at..)?)?;
    at += n;
    if key_length < 4 {
        return None;
    }
    let key = batch.get(at..at + 4)?;
    let kind = be_i16(key, 2);
    at += key_length as usize;
    let coordinator_epoch = batch
        .get(at..)
        .and_then(read_varint)
        .filter(|(length, _)| *length >= 6)
        .and_then(|(_, n)| batch.get(at + n + 2..at + n + 6))
        .map_or(-1, |v| be_i32(v, 0));
    Some(ControlRecord {
        kind,
        coordinator_epoch,
    })
}

/// The most bytes [`control_record`] reads past the header.
pub const CONTROL_KEY_BYTES: usize = 40;

/// A transaction marker: one control batch with one record whose key is
/// (version 0, `CONTROL_COMMIT` or `CONTROL_ABORT`) and whose value is
/// (version 0, coordinator epoch), as Kafka's `EndTransactionMarker`.
/// Offsets and the leader epoch are set when the log appends it.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<Bytes, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let kind = if commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [record].iter(), &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn encoded(n: i64) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1000 + i,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &opts).expect("encode");
        buf.freeze()
    }

    #[test]
    fn header_fields_match_what_was_encoded() {
        let b = encoded(3);
        let h = validate_one(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.base_sequence, 0);
        assert_eq!(h.last_sequence(), 2);
        assert_eq!(h.total_bytes(), b.len());
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_and_offset_rewrites_do_not() {
        let b = encoded(2);
        let mut m = BytesMut::from(&b[..]);
        set_base_offset(&mut m, 42);
        assert_eq!(validate_one(&m).unwrap().base_offset, 42);
        let last = m.len() - 1;
        m[last] ^= 1;
        assert!(matches!(
            validate_one(&m),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn offset_span_covers_every_whole_batch_from_headers() {
        let mut two = BytesMut::from(&encoded(3)[..]);
        let mut second = BytesMut::from(&encoded(4)[..]);
        set_base_offset(&mut two, 10);
        set_base_offset(&mut second, 13);
        two.extend_from_slice(&second);
        assert_eq!(offset_span(&two), 7);
        // A batch cut short counts by its header; a cut header ends the walk.
        assert_eq!(offset_span(&two[..two.len() - 10]), 7);
        let torn = &two[..encoded(3).len() + 20];
        assert_eq!(offset_span(torn), 3);
        assert_eq!(offset_span(b"garbage"), 0);
        assert_eq!(offset_span(&[]), 0);
    }

    #[test]
    fn log_append_time_keeps_the_batch_valid() {
        let mut m = BytesMut::from(&encoded(2)[..]);
        set_log_append_time(&mut m, 99);
        let h = validate_one(&m).unwrap();
        assert_eq!(h.max_timestamp, 99);
        assert_ne!(h.attributes & ATTR_TIMESTAMP_TYPE, 0);
    }

    #[test]
    fn markers_are_control_batches_whose_type_reads_back() {
        for commit in [true, false] {
            let b = control_batch(42, 3, commit, 7, 1000).unwrap();
            let h = validate_one(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.record_count),
                (42, 3, 1)
            );
            let want = if commit {
                CONTROL_COMMIT
            } else {
                CONTROL_ABORT
            };
            let read = ControlRecord {
                kind: want,
                coordinator_epoch: 7,
            };
            assert_eq!(control_record(&b), Some(read));
            let start = &b[..(HEADER_BYTES + CONTROL_KEY_BYTES).min(b.len())];
            assert_eq!(control_record(start), Some(read));
        }
        assert_eq!(control_record(&encoded(1)), None);
    }

    #[test]
    fn truncated_and_old_magic_are_refused() {
        let b = encoded(2);
        assert!(matches!(
            validate_one(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut m = BytesMut::from(&b[..]);
        m[16] = 1;
        assert_eq!(validate_one(&m), Err(BatchError::UnsupportedMagic(1)));
        let two = Bytes::from([b.clone(), b.clone()].concat());
        assert_eq!(validate_all(&two).unwrap().len(), 2);
    }
}
