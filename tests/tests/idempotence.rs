//! Idempotent produce against a real broker: a retried batch is answered
//! with its original offset and stored once; a sequence gap is refused with
//! OUT_OF_ORDER_SEQUENCE_NUMBER; an old epoch is fenced.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kraftwerk_tests::{record_batch, BrokerProcess, ProducerStamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("idempotence-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("body");
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame).await.expect("write");
        let mut len = [0u8; 4];
        tokio::time::timeout(IO_TIMEOUT, self.stream.read_exact(&mut len))
            .await
            .expect("in time")
            .expect("read");
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.expect("read body");
        let mut body = Bytes::from(body);
        let h = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .expect("response header");
        assert_eq!(h.correlation_id, self.correlation_id);
        Resp::decode(&mut body, version).expect("response body")
    }
}

fn batch(producer_id: i64, epoch: i16, base_sequence: i32, count: i32) -> Bytes {
    let values: Vec<String> = (0..count)
        .map(|i| format!("seq-{}", base_sequence + i))
        .collect();
    let stamp = ProducerStamp {
        producer_id,
        producer_epoch: epoch,
        base_sequence,
    };
    record_batch(&values, Some(stamp))
}

async fn produce(c: &mut Conn, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("idem")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn log_end_offset(c: &mut Conn) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("idem")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await;
    r.topics[0].partitions[0].offset
}

#[tokio::test]
async fn retries_are_deduplicated_and_gaps_refused() {
    let b = BrokerProcess::start();
    let mut c = Conn {
        stream: TcpStream::connect(b.addr).await.expect("connect"),
        correlation_id: 0,
    };
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("idem")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let _: kafka_protocol::messages::CreateTopicsResponse =
        c.call(ApiKey::CreateTopics, 5, &create).await;

    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000),
        )
        .await;
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    let second: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60000),
        )
        .await;
    assert_ne!(second.producer_id.0, pid, "every producer gets its own id");

    assert_eq!(produce(&mut c, batch(pid, epoch, 0, 3)).await, (0, 0));
    assert_eq!(produce(&mut c, batch(pid, epoch, 3, 2)).await, (0, 3));
    // The retry of the first batch: success with its original offset, stored nowhere twice.
    assert_eq!(produce(&mut c, batch(pid, epoch, 0, 3)).await, (0, 0));
    assert_eq!(log_end_offset(&mut c).await, 5);
    // A gap (sequence 10 after 4).
    assert_eq!(
        produce(&mut c, batch(pid, epoch, 10, 1)).await.0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // A bumped epoch starts again at sequence 0; the old epoch is then fenced.
    assert_eq!(produce(&mut c, batch(pid, epoch + 1, 0, 1)).await, (0, 5));
    assert_eq!(
        produce(&mut c, batch(pid, epoch, 5, 1)).await.0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(log_end_offset(&mut c).await, 6);
}
