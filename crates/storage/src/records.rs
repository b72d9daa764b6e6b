//! The records inside a v2 batch, for the two places that must look at
//! them: compaction (keys, offsets, null values) and the produce check that
//! compacted topics get keyed records only.
//!
//! Records are located, not decoded: a record's bytes are copied verbatim
//! into a cleaned batch. That is possible because a cleaned batch keeps its
//! base offset and base timestamp, so every record's offset and timestamp
//! deltas stay valid; only the batch header's length, record count and CRC
//! are rewritten. The
//! `kafka-protocol` crate supplies the compression codecs; its record
//! decoder is not used because its `Record` keeps header keys in a map
//! (duplicates collapse) and requires them to be UTF-8, and its encoder
//! derives the batch header from the records, which would lose the original
//! base offset, last offset and base sequence.

use std::io::Read;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kraftwerk_protocol::batch::{self, BatchHeader, ATTR_COMPRESSION_MASK, HEADER_BYTES};

/// Where one record sits in a batch's (decompressed) records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordSpan {
    /// The whole record, length prefix included.
    pub(crate) bytes: Range<usize>,
    pub(crate) offset_delta: i32,
    pub(crate) timestamp_delta: i64,
    /// None for a record without a key.
    pub(crate) key: Option<Range<usize>>,
    /// A null value: a tombstone.
    pub(crate) value_is_null: bool,
}

/// A batch's records section, decompressed, with its records located.
#[derive(Debug)]
pub(crate) struct BatchRecords {
    pub(crate) section: Bytes,
    pub(crate) records: Vec<RecordSpan>,
}

impl BatchRecords {
    pub(crate) fn key(&self, record: &RecordSpan) -> Option<&[u8]> {
        record.key.clone().map(|r| &self.section[r])
    }
}

/// Reads a zig-zag varint (up to 64 bits) at `*at`.
fn varint(data: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// A varint length field: -1 (null) or a length that fits before `end`.
fn length(data: &[u8], at: &mut usize, what: &str) -> Result<Option<usize>, String> {
    let len = varint(data, at).ok_or_else(|| format!("{what} length is cut off"))?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("{what} length {len} is negative"))?;
    if *at + len > data.len() {
        return Err(format!("{what} of {len} bytes runs past its record"));
    }
    Ok(Some(len))
}

/// Locates `count` records in `section`, which must hold exactly them.
fn locate(section: &[u8], count: i32) -> Result<Vec<RecordSpan>, String> {
    let count = usize::try_from(count).map_err(|_| format!("record count {count}"))?;
    // Every record takes at least 7 bytes: no allocation beyond the data.
    let mut records = Vec::with_capacity(count.min(section.len() / 7));
    let mut at = 0usize;
    for _ in 0..count {
        let start = at;
        let body_len =
            length(section, &mut at, "record")?.ok_or_else(|| "record length is -1".to_string())?;
        let end = at + body_len;
        let body = &section[..end];
        // attributes (int8), timestampDelta (varlong), offsetDelta (varint)
        at += 1;
        let timestamp_delta = varint(body, &mut at).ok_or("timestamp delta is cut off")?;
        let offset_delta = varint(body, &mut at).ok_or("offset delta is cut off")?;
        let offset_delta = i32::try_from(offset_delta)
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| format!("offset delta {offset_delta} is out of range"))?;
        let key = length(body, &mut at, "key")?.map(|len| {
            let key = at..at + len;
            at += len;
            key
        });
        let value_is_null = length(body, &mut at, "value")?.is_none();
        records.push(RecordSpan {
            bytes: start..end,
            offset_delta,
            timestamp_delta,
            key,
            value_is_null,
        });
        at = end;
    }
    if at != section.len() {
        return Err(format!(
            "{} bytes after the last of {count} records",
            section.len() - at
        ));
    }
    Ok(records)
}

/// The most a batch's records section may decompress to. Kafka streams
/// records out of a compressed batch; here the section is decompressed
/// whole, so its size is bounded, whatever the compressed bytes claim or
/// expand to (a few KiB of zstd can expand to gigabytes). A batch beyond it
/// is unreadable: refused as corrupt on a compacted topic's produce path,
/// kept as it is by the cleaner. Producers' batches are far smaller
/// (`batch.size` is 16 KiB, `max.message.bytes` 1 MiB compressed).
#[cfg(not(fuzzing))]
pub(crate) const DECOMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Under cargo-fuzz, the same paths with a smaller bound: a fuzzer makes
/// decompression bombs all the time, and each one at the real bound costs
/// a quarter of a second (see `docs/reliability.md`, "Fuzzing").
#[cfg(fuzzing)]
pub(crate) const DECOMPRESSED_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What xerial's snappy-java writes first, and Kafka's producers with it.
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The records section of a batch compressed with `codec`, decompressed,
/// in the formats `kafka-protocol`'s codecs read (which compress).
fn decompress(codec: i16, data: Bytes) -> Result<Bytes, String> {
    let section = match codec {
        0 => return Ok(data),
        1 => read_bounded(flate2::read::MultiGzDecoder::new(&data[..])),
        2 => snappy_decompress(&data),
        3 => lz4::Decoder::new(&data[..])
            .map_err(|e| e.to_string())
            .and_then(read_bounded),
        4 => zstd::stream::read::Decoder::with_buffer(&data[..])
            .map_err(|e| e.to_string())
            .and_then(read_bounded),
        other => return Err(format!("unknown compression codec {other}")),
    };
    section
        .map(Bytes::from)
        .map_err(|e| format!("cannot decompress records: {e}"))
}

/// Everything `reader` decompresses, up to [`DECOMPRESSED_BYTES_MAX`]; the
/// buffer grows by doubling but never past the bound.
fn read_bounded(mut reader: impl Read) -> Result<Vec<u8>, String> {
    const CHUNK_BYTES: usize = 16 * 1024;
    let mut out = Vec::new();
    let mut chunk = [0u8; CHUNK_BYTES];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        if n > DECOMPRESSED_BYTES_MAX - out.len() {
            return Err(format!(
                "records decompress to more than {DECOMPRESSED_BYTES_MAX} bytes"
            ));
        }
        if out.capacity() - out.len() < n {
            let capacity = (out.capacity() * 2).clamp(4 * CHUNK_BYTES, DECOMPRESSED_BYTES_MAX);
            out.reserve_exact(capacity - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Snappy as Kafka writes it (xerial blocks: a 4-byte length, then a raw
/// snappy block), or one raw snappy block as some clients write it. Each
/// block states its decompressed length first; the total is checked
/// against [`DECOMPRESSED_BYTES_MAX`] before room is made for a block.
fn snappy_decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut out = Vec::new();
    let mut block = |out: &mut Vec<u8>, compressed: &[u8]| -> Result<(), String> {
        let len = snap::raw::decompress_len(compressed).map_err(|e| e.to_string())?;
        let start = out.len();
        if len > DECOMPRESSED_BYTES_MAX - start {
            return Err(format!(
                "records decompress to more than {DECOMPRESSED_BYTES_MAX} bytes"
            ));
        }
        out.resize(start + len, 0);
        let written = decoder
            .decompress(compressed, &mut out[start..])
            .map_err(|e| e.to_string())?;
        out.truncate(start + written);
        Ok(())
    };
    let Some(mut rest) = data.strip_prefix(&SNAPPY_XERIAL_HEADER[..]) else {
        block(&mut out, data)?;
        return Ok(out);
    };
    while !rest.is_empty() {
        let (size, after) = rest
            .split_first_chunk::<4>()
            .ok_or("snappy block length is cut off")?;
        let size = u32::from_be_bytes(*size) as usize;
        if after.len() < size {
            return Err(format!("snappy block of {size} bytes is cut off"));
        }
        let (compressed, after) = after.split_at(size);
        block(&mut out, compressed)?;
        rest = after;
    }
    Ok(out)
}

fn compress(codec: i16, raw: &[u8]) -> Result<BytesMut, String> {
    let mut out = BytesMut::with_capacity(raw.len() / 2 + 64);
    let write = |b: &mut BytesMut| {
        b.extend_from_slice(raw);
        Ok(())
    };
    let result = match codec {
        0 => {
            out.extend_from_slice(raw);
            Ok(())
        }
        1 => Gzip::compress(&mut out, write),
        2 => Snappy::compress(&mut out, write),
        3 => Lz4::compress(&mut out, write),
        4 => Zstd::compress(&mut out, write),
        other => return Err(format!("unknown compression codec {other}")),
    };
    result.map_err(|e| format!("cannot compress records: {e:#}"))?;
    Ok(out)
}

/// The records of one whole batch (`batch` is the batch's bytes,
/// `header` its parsed header).
pub(crate) fn batch_records(batch: &Bytes, header: &BatchHeader) -> Result<BatchRecords, String> {
    let total = header.total_bytes();
    if batch.len() < total || total < HEADER_BYTES {
        return Err(format!(
            "batch has {} bytes, header says {total}",
            batch.len()
        ));
    }
    let section = decompress(header.compression(), batch.slice(HEADER_BYTES..total))?;
    let records = locate(&section, header.record_count)?;
    Ok(BatchRecords { section, records })
}

/// The offset of the first record of a batch whose timestamp is
/// `timestamp` (ListOffsets' max-timestamp lookup), or None.
pub(crate) fn first_offset_with_timestamp(
    batch: &Bytes,
    header: &BatchHeader,
    timestamp: i64,
) -> Result<Option<i64>, String> {
    if header.attributes & batch::ATTR_TIMESTAMP_TYPE != 0 {
        // LogAppendTime: every record carries the batch's max timestamp.
        return Ok((header.max_timestamp == timestamp).then_some(header.base_offset));
    }
    let records = batch_records(batch, header)?;
    Ok(records
        .records
        .iter()
        .find(|r| header.base_timestamp.wrapping_add(r.timestamp_delta) == timestamp)
        .map(|r| header.base_offset + i64::from(r.offset_delta)))
}

/// A copy of `header`'s batch holding only `kept` (records of `records`, in
/// order), compressed with the same codec. The header keeps everything
/// (base and last offset, timestamps, producer id, epoch, base sequence,
/// attributes) except what must follow the records: length, record count
/// and CRC, as Kafka's cleaner does; so a cleaned batch covers the same
/// offsets on every replica, and sequence numbers still match offsets. A
/// batch with no records left has no codec.
pub(crate) fn rebuild_batch(
    original: &[u8],
    header: &BatchHeader,
    records: &BatchRecords,
    kept: &[&RecordSpan],
) -> Result<Vec<u8>, String> {
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.bytes.len()).sum());
    for record in kept {
        raw.extend_from_slice(&records.section[record.bytes.clone()]);
    }
    let mut attributes = header.attributes;
    let section = if kept.is_empty() {
        attributes &= !ATTR_COMPRESSION_MASK;
        BytesMut::new()
    } else {
        compress(header.compression(), &raw)?
    };
    let count = i32::try_from(kept.len()).map_err(|_| "too many records".to_string())?;
    batch::with_records(original, attributes, count, &section)
        .map_err(|e| format!("cleaned batch: {e}"))
}

/// Whether every record of a produced batch has a key (Kafka refuses
/// keyless records on compacted topics). Control batches are not checked.
pub(crate) fn check_keys(batch: &Bytes, header: &BatchHeader) -> Result<(), KeyCheck> {
    if header.is_control() {
        return Ok(());
    }
    let records = batch_records(batch, header).map_err(KeyCheck::Unreadable)?;
    match records.records.iter().position(|r| r.key.is_none()) {
        None => Ok(()),
        Some(index) => Err(KeyCheck::Keyless { index }),
    }
}

/// Why `check_keys` refused a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    Unreadable(String),
    /// The position of the first record without a key.
    Keyless {
        index: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use kraftwerk_protocol::batch;

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert("h".into(), Some(Bytes::from(format!("h{offset}"))));
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: 5,
            producer_epoch: 1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: 10 + offset as i32,
            timestamp: 1000 + offset * 3,
            key: key.map(|k| Bytes::from(k.to_string())),
            value: value.map(|v| Bytes::from(v.to_string())),
            headers,
            delete_horizon: false,
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
        buf.freeze()
    }

    #[test]
    fn varints_follow_kafka_zigzag() {
        let cases: [(&[u8], Option<i64>); 6] = [
            (&[0x00], Some(0)),
            (&[0x01], Some(-1)),
            (&[0x02], Some(1)),
            (&[0xAC, 0x02], Some(150)),
            (&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F], Some(i32::MIN as i64)),
            (&[0x80], None),
        ];
        for (bytes, want) in cases {
            let mut at = 0;
            assert_eq!(varint(bytes, &mut at), want, "{bytes:?}");
        }
    }

    #[test]
    fn dropping_records_keeps_the_header_and_every_kept_record() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let original = [
                record(0, Some("a"), Some("1")),
                record(1, Some("b"), None),
                record(2, None, Some("3")),
                record(3, Some("a"), Some("4")),
            ];
            let bytes = encode(&original, compression);
            let header = batch::validate_one(&bytes).expect("valid");
            let records = batch_records(&bytes, &header).expect("records");
            assert_eq!(records.records.len(), 4);
            assert_eq!(records.key(&records.records[0]), Some(&b"a"[..]));
            assert!(records.records[1].value_is_null);
            assert_eq!(records.key(&records.records[2]), None);
            assert_eq!(records.records[3].offset_delta, 3);

            {
                let kept: Vec<&RecordSpan> = vec![&records.records[1], &records.records[2]];
                let rebuilt = rebuild_batch(&bytes, &header, &records, &kept).expect("rebuild");
                let new_header = batch::validate_one(&rebuilt).expect("CRC valid");
                assert_eq!(new_header.record_count, 2);
                assert_eq!(new_header.base_offset, header.base_offset);
                assert_eq!(new_header.base_sequence, header.base_sequence);
                assert_eq!(new_header.base_timestamp, header.base_timestamp);
                assert_eq!(new_header.max_timestamp, header.max_timestamp);
                assert_eq!(new_header.producer_id, header.producer_id);
                assert_eq!(new_header.attributes, header.attributes);
                assert_eq!(new_header.last_offset_delta, 3, "the last offset stays");
                let mut buf = Bytes::from(rebuilt);
                let decoded = RecordBatchDecoder::decode(&mut buf).expect("decode");
                assert_eq!(decoded.compression, compression);
                assert_eq!(decoded.records.len(), 2);
                assert_eq!(decoded.records[0], original[1], "{compression:?}");
                assert_eq!(decoded.records[1], original[2], "{compression:?}");
            }

            let empty = rebuild_batch(&bytes, &header, &records, &[]).expect("rebuild empty");
            let empty_header = batch::validate_one(&empty).expect("valid");
            assert_eq!(empty_header.record_count, 0);
            assert_eq!(empty_header.last_offset_delta, 3);
            assert_eq!(empty_header.compression(), 0);
            assert_eq!(empty.len(), HEADER_BYTES);
        }
    }

    #[test]
    fn what_a_batch_decompresses_to_is_bounded() {
        let too_much = |codec: i16, data: Vec<u8>| {
            let err = decompress(codec, Bytes::from(data)).expect_err("refused");
            assert!(err.contains("more than"), "codec {codec}: {err}");
        };
        // Raw snappy whose header claims 4 GiB: refused before any room is
        // made for it (kafka-protocol 0.18 allocated it).
        too_much(2, vec![0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut xerial = SNAPPY_XERIAL_HEADER.to_vec();
        xerial.extend_from_slice(&5u32.to_be_bytes());
        xerial.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        too_much(2, xerial);
        // zstd: 1,100 RLE blocks of 128 KiB, 4 KiB that expand to 141 MiB.
        let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3];
        for i in 0..1100 {
            let last = u32::from(i == 1099);
            let block_header = (128 * 1024) << 3 | 1 << 1 | last;
            zstd.extend_from_slice(&block_header.to_le_bytes()[..3]);
            zstd.push(b'a');
        }
        too_much(4, zstd);
        // The bound leaves what producers send alone.
        let big = record(0, Some("k"), Some(&"v".repeat(1 << 20)));
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = encode(std::slice::from_ref(&big), compression);
            let header = batch::validate_one(&bytes).expect("valid");
            let records = batch_records(&bytes, &header).expect("readable");
            assert_eq!(records.records.len(), 1);
        }
    }

    #[test]
    fn keyless_records_and_garbage_are_told_apart() {
        let keyed = encode(&[record(0, Some("k"), Some("v"))], Compression::Lz4);
        let header = batch::validate_one(&keyed).expect("valid");
        assert_eq!(check_keys(&keyed, &header), Ok(()));
        let keyless = encode(
            &[record(0, Some("k"), Some("v")), record(1, None, Some("v"))],
            Compression::None,
        );
        let header = batch::validate_one(&keyless).expect("valid");
        assert_eq!(
            check_keys(&keyless, &header),
            Err(KeyCheck::Keyless { index: 1 })
        );
        // A header that promises more records than the batch holds.
        let mut wrong = header;
        wrong.record_count = 3;
        assert!(matches!(
            check_keys(&keyless, &wrong),
            Err(KeyCheck::Unreadable(_))
        ));
    }
}
