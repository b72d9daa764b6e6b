//! The key and value layouts of `__transaction_state` records: Kafka's
//! `TransactionLogKey` (version 0: the transactional id) and
//! `TransactionLogValue` (version 0, the non-flexible one, which Kafka
//! also reads). A null value is a tombstone: the id was forgotten.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};
use crate::group::records::RecordError;

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn need(buf: &impl Buf, n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        return Err(RecordError::Truncated);
    }
    Ok(())
}

fn get_string(buf: &mut Bytes) -> Result<String, RecordError> {
    need(buf, 2)?;
    let len = buf.get_i16();
    let len = usize::try_from(len).map_err(|_| RecordError::Truncated)?;
    need(buf, len)?;
    let raw = buf.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| RecordError::NotUtf8)
}

pub fn key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn decode_key(bytes: &[u8]) -> Result<String, RecordError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    need(&buf, 2)?;
    let version = buf.get_i16();
    if version != KEY_VERSION {
        return Err(RecordError::UnknownVersion {
            what: "transaction log key",
            version,
        });
    }
    get_string(&mut buf)
}

pub fn value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.id());
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &m.partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    buf.put_i32(by_topic.len() as i32);
    for (topic, partitions) in by_topic {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

pub fn decode_value(bytes: &[u8]) -> Result<TxnMetadata, RecordError> {
    let mut buf = Bytes::copy_from_slice(bytes);
    need(&buf, 2)?;
    let version = buf.get_i16();
    if version != VALUE_VERSION {
        return Err(RecordError::UnknownVersion {
            what: "transaction log value",
            version,
        });
    }
    need(&buf, 8 + 2 + 4 + 1 + 4)?;
    let producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let state_id = buf.get_i8();
    let state = TxnState::from_id(state_id).ok_or(RecordError::UnknownVersion {
        what: "transaction state",
        version: state_id as i16,
    })?;
    let topics = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut buf)?;
        need(&buf, 4)?;
        let n = buf.get_i32();
        for _ in 0..n.max(0) {
            need(&buf, 4)?;
            partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    need(&buf, 16)?;
    let last_update_ms = buf.get_i64();
    let start_ms = buf.get_i64();
    Ok(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let m = TxnMetadata {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: BTreeSet::from([("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]),
            start_ms: 10,
            last_update_ms: 20,
        };
        assert_eq!(decode_value(&value(&m)), Ok(m));
        assert_eq!(decode_key(&key("my-app")), Ok("my-app".to_string()));
        assert_eq!(decode_value(&value_prefix()), Err(RecordError::Truncated));
    }

    fn value_prefix() -> Vec<u8> {
        vec![0, 0, 0, 0]
    }
}
