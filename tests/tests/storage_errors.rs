//! A partition whose log cannot be opened at start goes offline on its own:
//! Metadata names no leader and lists the replica as offline, a Produce
//! for it is answered KAFKA_STORAGE_ERROR, and every other partition keeps
//! serving. Once the log can be opened again, a restart brings it back.

use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kraftwerk_tests::wire::Wire;
use kraftwerk_tests::{kraftwerk_bin, record_batch, BrokerProcess};

const TOPIC: &str = "broken-log";
const KAFKA_STORAGE_ERROR: i16 = 56;
const LEADER_NOT_AVAILABLE: i16 = 5;

fn produce(broker: &BrokerProcess, partition: i32, value: &str) -> (i16, i64) {
    let mut wire = Wire::connect(broker.addr).expect("connect");
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(record_batch(&[value.to_string()], None)))])]);
    let response = wire.call(9, &request).expect("produce");
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A partition as Metadata v12 answers it: (error code, leader, offline replicas).
type Described = (i16, i32, Vec<i32>);

/// Every partition of the topic, in order.
fn partitions(broker: &BrokerProcess) -> Vec<Described> {
    let mut wire = Wire::connect(broker.addr).expect("connect");
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))]));
    let response = wire.call(12, &request).expect("metadata");
    let mut out: Vec<(i32, Described)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                (
                    p.error_code,
                    p.leader_id.0,
                    p.offline_replicas.iter().map(|b| b.0).collect(),
                ),
            )
        })
        .collect();
    out.sort_by_key(|(index, _)| *index);
    out.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn a_partition_whose_log_cannot_be_opened_goes_offline_and_the_rest_keep_serving() {
    let mut broker = BrokerProcess::start();
    let created = Command::new(kraftwerk_bin())
        .args(["topics", "create", "--topic", TOPIC, "--partitions", "2"])
        .args(["--bootstrap-server", &broker.bootstrap()])
        .output()
        .expect("kraftwerk topics create");
    assert!(created.status.success(), "{created:?}");
    assert_eq!(produce(&broker, 0, "a").0, 0);
    assert_eq!(produce(&broker, 1, "b").0, 0);
    let node = partitions(&broker)[0].1;
    assert!(node >= 0);

    // The first segment of partition 0 becomes something no log can open.
    broker.kill();
    let segment = broker
        .data_dir
        .path()
        .join(format!("{TOPIC}-0"))
        .join("00000000000000000000.log");
    std::fs::remove_file(&segment).expect("remove the segment");
    std::fs::create_dir(&segment).expect("a directory in its place");
    broker.restart();

    // The broker reports the partition offline right after it starts; a
    // Produce for it in between is refused all the same.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut described = partitions(&broker);
    while described[0].1 != -1 && Instant::now() < deadline {
        assert_eq!(produce(&broker, 0, "early").0, KAFKA_STORAGE_ERROR);
        std::thread::sleep(Duration::from_millis(50));
        described = partitions(&broker);
    }
    assert_eq!(
        described[0],
        (LEADER_NOT_AVAILABLE, -1, vec![node]),
        "partition 0 is offline"
    );
    assert_eq!(
        described[1],
        (0, node, vec![]),
        "partition 1 is led as before"
    );
    assert_eq!(produce(&broker, 0, "c").0, KAFKA_STORAGE_ERROR);
    assert_eq!(
        produce(&broker, 1, "d"),
        (0, 1),
        "partition 1 keeps its records"
    );

    // The damage repaired (here: the segment given up), a restart brings
    // the partition back.
    broker.kill();
    std::fs::remove_dir(&segment).expect("remove the directory");
    broker.restart();
    assert_eq!(partitions(&broker)[0], (0, node, vec![]));
    assert_eq!(produce(&broker, 0, "e").0, 0);
}
