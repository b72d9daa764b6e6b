//! The bodies of the fuzz targets over this crate (`tests/fuzz`), as plain
//! functions: cargo-fuzz calls them with generated inputs, and
//! `tests/tests/fuzz_corpora.rs` replays every kept input through them on
//! stable Rust. Not an API: nothing else should call them.
//!
//! A target returns normally for any input; a panic, a hang or an
//! allocation beyond the fuzzer's limit is the finding.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::batch::{self, BatchHeader, CRC_START, HEADER_BYTES};
use crate::{frame, versions};

/// The frame limit the fuzzed connection applies. Smaller than the broker's
/// `socket.request.max.bytes` (100 MiB): fuzz inputs are a few KiB, and a
/// larger limit only makes `take_frame` reserve more for a frame the input
/// cannot complete.
const FRAME_BYTES_MAX: usize = 1024 * 1024;

/// Request framing and decoding as a broker connection does it: frames are
/// taken off the front of the input, and each one goes through the checks of
/// `kraftwerk_broker::handlers::handle_frame` (header prefix, served API key
/// and version), the request header decoder and the body decoder of its API,
/// then the record-batch checks of a Produce request. Stops at the first
/// frame that is incomplete or over the limit, as the connection would.
pub fn request_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frame::take_frame(&mut buf, FRAME_BYTES_MAX) {
        assert!(frame.len() <= FRAME_BYTES_MAX);
        // Each frame stands alone: a bad one closes the connection, but
        // fuzzing goes on with the next so that one input covers several.
        let _ = decode_request(frame.freeze());
    }
}

/// One request frame, decoded as the broker decodes it.
fn decode_request(frame: Bytes) -> Result<RequestKind, String> {
    if frame.len() < 8 {
        return Err(format!(
            "{} bytes: shorter than a request header",
            frame.len()
        ));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let served = versions::served(api_key).ok_or("API key not served")?;
    if version < served.min || version > served.max {
        return Err("version not served".into());
    }
    let key = served.key;
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, key.request_header_version(version))
        .map_err(|e| format!("malformed request header: {e}"))?;
    assert_eq!(
        (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id
        ),
        (api_key, version, correlation_id),
        "the header decoder reads the prefix the broker routed on"
    );
    let request = RequestKind::decode(key, &mut body, version)
        .map_err(|e| format!("malformed request body: {e:#}"))?;
    if let RequestKind::Produce(produce) = &request {
        // The produce handler's check of every partition's records.
        for topic in &produce.topic_data {
            for partition in &topic.partition_data {
                if let Some(records) = &partition.records {
                    if let Ok(batches) = batch::validate_all(records) {
                        let total: usize = batches.iter().map(|(h, _)| h.total_bytes()).sum();
                        assert_eq!(total, records.len(), "batches cover the records exactly");
                    }
                }
            }
        }
    }
    Ok(request)
}

/// Rewrites, in place, the CRC32C of every batch that `data` holds back to
/// back from its start, as far as their headers parse and their lengths fit.
/// Fuzz targets run a mutated input once as it is (the checksum paths) and
/// once with its checksums made right, which is what gets a mutation past
/// the checksum into the code that trusts a checked batch.
pub fn fix_crcs(data: &mut [u8]) {
    let mut at = 0;
    while data.len() - at >= HEADER_BYTES {
        let Ok(header) = BatchHeader::parse(&data[at..]) else {
            return;
        };
        let Some(end) = at
            .checked_add(header.total_bytes())
            .filter(|end| *end <= data.len())
        else {
            return;
        };
        let crc = crc32c::crc32c(&data[at + CRC_START..end]);
        data[at + 17..at + CRC_START].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}

/// Valid inputs to start `request_frames` from: a request of every served
/// API at every served version (empty bodies, and filled ones for the APIs
/// clients use most), and three of them back to back in one input.
pub fn request_seeds() -> Vec<(String, Vec<u8>)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, Request, StrBytes};

    fn framed<T: Request>(body: &T, version: i16) -> Option<Vec<u8>> {
        let key = ApiKey::try_from(T::KEY).ok()?;
        let header = RequestHeader::default()
            .with_request_api_key(T::KEY)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .ok()?;
        body.encode(&mut buf, version).ok()?;
        let mut frame = i32::try_from(buf.len()).ok()?.to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        Some(frame)
    }
    fn every_version<T: Request>(out: &mut Vec<(String, Vec<u8>)>, name: &str, body: &T) {
        let Some(served) = versions::served(T::KEY) else {
            return;
        };
        for version in served.min..=served.max {
            if let Some(frame) = framed(body, version) {
                out.push((format!("{name}-v{version}"), frame));
            }
        }
    }
    macro_rules! defaults {
        ($out:expr, $($ty:ident),* $(,)?) => {
            $(every_version($out, stringify!($ty), &$ty::default());)*
        };
    }

    let mut out = Vec::new();
    defaults!(
        &mut out,
        ProduceRequest,
        FetchRequest,
        ListOffsetsRequest,
        MetadataRequest,
        OffsetCommitRequest,
        OffsetFetchRequest,
        FindCoordinatorRequest,
        JoinGroupRequest,
        HeartbeatRequest,
        LeaveGroupRequest,
        SyncGroupRequest,
        DescribeGroupsRequest,
        ListGroupsRequest,
        SaslHandshakeRequest,
        ApiVersionsRequest,
        CreateTopicsRequest,
        DeleteTopicsRequest,
        DeleteRecordsRequest,
        InitProducerIdRequest,
        OffsetForLeaderEpochRequest,
        AddPartitionsToTxnRequest,
        AddOffsetsToTxnRequest,
        EndTxnRequest,
        WriteTxnMarkersRequest,
        TxnOffsetCommitRequest,
        DescribeAclsRequest,
        CreateAclsRequest,
        DeleteAclsRequest,
        DescribeConfigsRequest,
        AlterConfigsRequest,
        DescribeLogDirsRequest,
        SaslAuthenticateRequest,
        CreatePartitionsRequest,
        DeleteGroupsRequest,
        ElectLeadersRequest,
        IncrementalAlterConfigsRequest,
        AlterPartitionReassignmentsRequest,
        ListPartitionReassignmentsRequest,
        OffsetDeleteRequest,
        DescribeClientQuotasRequest,
        AlterClientQuotasRequest,
        DescribeUserScramCredentialsRequest,
        AlterUserScramCredentialsRequest,
        DescribeQuorumRequest,
        DescribeClusterRequest,
        DescribeProducersRequest,
        DescribeTransactionsRequest,
        ListTransactionsRequest,
    );

    let topic = || TopicName(StrBytes::from_static_str("orders"));
    let records = batch::control_batch(42, 1, true, 3, 1_700_000_000_000).unwrap_or_default();
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    every_version(&mut out, "ProduceRequest-filled", &produce);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
    ]));
    every_version(&mut out, "MetadataRequest-filled", &metadata);
    let fetch = FetchRequest::default()
        .with_replica_id(kraftwerk_no_broker())
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(10)
                .with_partition_max_bytes(1 << 20)])]);
    every_version(&mut out, "FetchRequest-filled", &fetch);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(topic())
            .with_num_partitions(3)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact"))),
            ])]);
    every_version(&mut out, "CreateTopicsRequest-filled", &create);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("group")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"\0\x03\0\0\0\x01\0\x06orders"))]);
    every_version(&mut out, "JoinGroupRequest-filled", &join);

    // Frames back to back, as a connection reads them.
    let several: Vec<u8> = [
        "ApiVersionsRequest-v4",
        "MetadataRequest-filled-v13",
        "ProduceRequest-filled-v12",
    ]
    .iter()
    .filter_map(|name| out.iter().find(|(n, _)| n == name))
    .flat_map(|(_, frame)| frame.clone())
    .collect();
    out.push(("three-frames".to_string(), several));
    out
}

/// Kafka's replica id of a consumer's fetch.
fn kraftwerk_no_broker() -> kafka_protocol::messages::BrokerId {
    kafka_protocol::messages::BrokerId(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_crcs_validate() {
        let batch = batch::control_batch(1, 0, true, 0, 0).unwrap();
        let mut two = [&batch[..], &batch[..]].concat();
        let last = two.len() - 1;
        two[last] ^= 0xff;
        assert!(batch::validate_all(&Bytes::from(two.clone())).is_err());
        fix_crcs(&mut two);
        assert_eq!(batch::validate_all(&Bytes::from(two)).unwrap().len(), 2);
    }

    #[test]
    fn the_seeds_cover_every_served_api_and_decode() {
        let seeds = request_seeds();
        for served in versions::SERVED_APIS {
            for version in served.min..=served.max {
                let frame = seeds
                    .iter()
                    .map(|(_, frame)| frame)
                    .find(|f| {
                        f[4..8]
                            == [(served.key as i16).to_be_bytes(), version.to_be_bytes()].concat()
                    })
                    .unwrap_or_else(|| panic!("no seed for {:?} v{version}", served.key));
                decode_request(Bytes::copy_from_slice(&frame[4..])).unwrap();
            }
        }
        for (_, input) in &seeds {
            request_frames(input);
        }
    }

    #[test]
    fn an_array_count_beyond_the_frame_is_refused_without_allocating_it() {
        // Metadata v0 (header v1: key, version, correlation id, client id),
        // whose topic array claims 2^31 - 1 entries: with the published
        // kafka-protocol 0.18.0 this asked for 154 GB and aborted.
        let mut frame = Vec::new();
        for field in [
            &3i16.to_be_bytes()[..],
            &0i16.to_be_bytes(),
            &7i32.to_be_bytes(),
        ] {
            frame.extend_from_slice(field);
        }
        frame.extend_from_slice(&(-1i16).to_be_bytes());
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        let err = decode_request(Bytes::from(frame)).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
