//! Hostile input against a real broker: each bad connection gets the right
//! error or is closed, and the broker keeps serving everyone else.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kraftwerk_tests::{record_batch, BrokerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(b: &BrokerProcess) -> TcpStream {
    TcpStream::connect(b.addr).await.expect("connect")
}

fn frame<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame; None when the broker closed the connection.
async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut len))
        .await
        .expect("response or close in time")
    {
        Ok(_) => {}
        Err(_) => return None,
    }
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut body))
        .await
        .expect("body in time")
        .ok()?;
    Some(Bytes::from(body))
}

async fn api_versions(s: &mut TcpStream, version: i16) -> Option<ApiVersionsResponse> {
    s.write_all(&frame(
        ApiKey::ApiVersions,
        version,
        7,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("hostile-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0")),
    ))
    .await
    .ok()?;
    let mut body = read_frame(s).await?;
    let header = ResponseHeader::decode(&mut body, 0).expect("header");
    assert_eq!(header.correlation_id, 7);
    Some(ApiVersionsResponse::decode(&mut body, version.min(4)).expect("api versions body"))
}

/// The broker still answers a well-behaved client.
async fn assert_still_serving(b: &BrokerProcess) {
    let mut s = connect(b).await;
    let r = api_versions(&mut s, 3)
        .await
        .expect("a healthy client is served");
    assert_eq!(r.error_code, 0);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
}

async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut buf))
        .await
        .expect("broker reacts in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the broker should close this connection");
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: kraftwerk\r\n\r\n")
        .await
        .expect("write");
    assert_closed(&mut s).await;
    assert_still_serving(&b).await;
}

#[tokio::test]
async fn a_two_gib_frame_length_is_refused_before_allocation() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 0])
        .await
        .expect("write");
    assert_closed(&mut s).await;
    let mut neg = connect(&b).await;
    neg.write_all(&[0xff, 0xff, 0xff, 0xfe])
        .await
        .expect("write");
    assert_closed(&mut neg).await;
    assert_still_serving(&b).await;
}

#[tokio::test]
async fn a_truncated_frame_does_not_block_other_clients() {
    let b = BrokerProcess::start();
    let mut stuck = connect(&b).await;
    // Announces 100 bytes, sends 10, then waits.
    stuck
        .write_all(&[0, 0, 0, 100, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0])
        .await
        .expect("write");
    assert_still_serving(&b).await;
    // Half-closing with a partial frame ends that connection.
    stuck.shutdown().await.expect("shutdown");
    assert_closed(&mut stuck).await;
    assert_still_serving(&b).await;
}

/// An array that claims more elements than its frame has bytes (what the
/// `request_frames` fuzz target in `tests/fuzz` guards against):
/// kafka-protocol 0.18.0 reserved room for all of them first, 154 GB for
/// the 16 bytes of the first frame, and the broker aborted; the patched
/// decoder refuses the count (crates/vendor/kafka-protocol/PATCHED.md).
#[tokio::test]
async fn an_array_count_beyond_its_frame_closes_only_that_connection() {
    let b = BrokerProcess::start();
    for (version, count) in [
        (0i16, &i32::MAX.to_be_bytes()[..]),
        (12, &[0xff, 0xff, 0xff, 0xff, 0x0f][..]),
    ] {
        let mut s = connect(&b).await;
        // Metadata: key, version, correlation id, null client id (and the
        // empty tagged fields of a flexible header), then the topic count.
        let mut body = Vec::new();
        body.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        if version >= 9 {
            body.push(0);
        }
        body.extend_from_slice(count);
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        s.write_all(&f).await.expect("write");
        assert_closed(&mut s).await;
        assert_still_serving(&b).await;
    }
}

#[tokio::test]
async fn an_unknown_api_key_closes_the_connection() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    let mut body = vec![0u8; 0];
    body.extend_from_slice(&999i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    s.write_all(&f).await.expect("write");
    assert_closed(&mut s).await;
    assert_still_serving(&b).await;
}

#[tokio::test]
async fn api_versions_too_new_gets_a_v0_answer_with_our_ranges() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    // v127 uses the flexible header like v3+; the answer is v0.
    let header = RequestHeader::default()
        .with_request_api_key(18)
        .with_request_api_version(127)
        .with_correlation_id(7);
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 2).expect("header");
    buf.extend_from_slice(&[0]); // empty tagged fields for the body
    let mut f = (buf.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&buf);
    s.write_all(&f).await.expect("write");
    let mut body = read_frame(&mut s).await.expect("a v0 answer");
    let header = ResponseHeader::decode(&mut body, 0).expect("header");
    assert_eq!(header.correlation_id, 7);
    let r = ApiVersionsResponse::decode(&mut body, 0).expect("v0 body");
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    let av = r
        .api_keys
        .iter()
        .find(|k| k.api_key == 18)
        .expect("ApiVersions listed");
    assert_eq!((av.min_version, av.max_version), (0, 4));
    // The same connection then works with a served version.
    assert_eq!(api_versions(&mut s, 3).await.expect("served").error_code, 0);
}

#[tokio::test]
async fn an_unserved_produce_version_closes_the_connection() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    let mut f = Vec::new();
    let body: [u8; 10] = [0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff];
    f.extend_from_slice(&(body.len() as i32).to_be_bytes());
    f.extend_from_slice(&body);
    s.write_all(&f).await.expect("write");
    assert_closed(&mut s).await;
    assert_still_serving(&b).await;
}

fn batch(values: &[&str]) -> BytesMut {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    BytesMut::from(&record_batch(&values, None)[..])
}

async fn produce(
    s: &mut TcpStream,
    topic: &str,
    records: Bytes,
    correlation_id: i32,
) -> ProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    s.write_all(&frame(ApiKey::Produce, 9, correlation_id, &req))
        .await
        .expect("write");
    let mut body = read_frame(s).await.expect("produce response");
    let header = ResponseHeader::decode(&mut body, 1).expect("header");
    assert_eq!(header.correlation_id, correlation_id);
    ProduceResponse::decode(&mut body, 9).expect("produce body")
}

#[tokio::test]
async fn a_bad_crc_is_refused_with_corrupt_message_and_nothing_is_stored() {
    let b = BrokerProcess::start();
    let mut s = connect(&b).await;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("crc")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    s.write_all(&frame(ApiKey::CreateTopics, 5, 1, &create))
        .await
        .expect("write");
    read_frame(&mut s).await.expect("create topics response");

    let good = batch(&["a", "b"]);
    let mut bad = batch(&["c", "d"]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    // A good batch followed by a bad one in the same payload: all or nothing.
    let mut both = good.clone();
    both.extend_from_slice(&bad);
    let r = produce(&mut s, "crc", both.freeze(), 2).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 2, "CORRUPT_MESSAGE");

    let r = produce(&mut s, "crc", good.freeze(), 3).await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert_eq!(p.base_offset, 0, "the refused payload left nothing behind");
    assert_still_serving(&b).await;
}
