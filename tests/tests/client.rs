//! The Rust client against a real `kraftwerk server` process: admin,
//! produce with several codecs, consume, offsets, partitions, delete.

use std::time::Duration;

use bytes::Bytes;
use kraftwerk_client::{
    Admin, AutoOffsetReset, ClientConfig, Compression, Consumer, ConsumerConfig, NewTopic,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord,
};

/// Upper bound on the whole smoke test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_consume_admin_round_trip() {
    let broker = kraftwerk_tests::BrokerProcess::start();
    tokio::time::timeout(TEST_TIMEOUT, run(broker.bootstrap()))
        .await
        .expect("smoke test timed out");
}

async fn run(bootstrap: String) {
    let client = ClientConfig {
        bootstrap_servers: vec![bootstrap],
        client_id: "kraftwerk-client-test".into(),
        request_timeout_ms: 30_000,
        max_response_bytes: 100 * 1024 * 1024,
        allow_auto_topic_creation: false,
        security: None,
    };
    let topic = "client-round-trip".to_string();
    let admin = Admin::new(client.clone()).await.expect("admin");
    let cluster = admin.describe_cluster().await.expect("describe cluster");
    assert!(!cluster.brokers.is_empty());

    let created = admin
        .create_topics(vec![NewTopic::new(&topic, 3, 1)], false)
        .await
        .expect("create topics");
    assert!(created[0].error.is_none(), "{:?}", created[0].error);
    assert!(admin
        .list_topics(false)
        .await
        .expect("list")
        .contains(&topic));
    let described = admin
        .describe_topics(std::slice::from_ref(&topic))
        .await
        .expect("describe");
    assert_eq!(described[0].partitions.len(), 3);
    let configs = admin.describe_configs(&topic).await.expect("configs");
    assert!(configs.iter().any(|c| c.name == "cleanup.policy"));

    for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                compression,
                ..ProducerConfig::default()
            },
        )
        .await
        .expect("producer");
        let mut deliveries = Vec::new();
        for i in 0..100 {
            let record = ProducerRecord::new(&topic, format!("value-{i}"))
                .with_key(format!("key-{}", i % 7))
                .with_header("n", Some(Bytes::from(i.to_string())));
            deliveries.push(producer.send(record).await.expect("send"));
        }
        producer.flush().await.expect("flush");
        for delivery in deliveries {
            let metadata = delivery.await.expect("delivered");
            assert!(metadata.offset >= 0);
        }
        producer.close().await.expect("close");
    }

    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .expect("consumer");
    consumer
        .assign((0..3).map(|p| (topic.clone(), p)).collect())
        .await
        .expect("assign");
    let mut seen = 0;
    for _ in 0..50 {
        seen += consumer
            .poll(Duration::from_millis(500))
            .await
            .expect("poll")
            .len();
        if seen >= 300 {
            break;
        }
    }
    assert_eq!(seen, 300);
    let mut end = 0;
    for partition in 0..3 {
        end += admin
            .list_offsets(&topic, partition, OffsetSpec::Latest)
            .await
            .expect("list offsets")
            .0;
    }
    assert_eq!(end, 300);

    admin
        .create_partitions(&topic, 4)
        .await
        .expect("create partitions");
    let deleted = admin
        .delete_topics(vec![topic.clone()])
        .await
        .expect("delete");
    assert!(deleted[0].error.is_none(), "{:?}", deleted[0].error);
}

/// A lone record is sent once `linger.ms` has passed, without a flush and
/// without waiting for its batch to fill (`batch.size` is far larger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_record_goes_out_after_linger_without_a_flush() {
    let broker = kraftwerk_tests::BrokerProcess::start();
    let client = ClientConfig {
        bootstrap_servers: vec![broker.bootstrap()],
        client_id: "kraftwerk-linger-test".into(),
        request_timeout_ms: 30_000,
        max_response_bytes: 100 * 1024 * 1024,
        allow_auto_topic_creation: true,
        security: None,
    };
    for linger_ms in [0, 20] {
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger_ms,
                ..ProducerConfig::default()
            },
        )
        .await
        .expect("producer");
        for i in 0..3 {
            let delivery = producer
                .send(ProducerRecord::new("lingering", format!("r{i}")))
                .await
                .expect("send");
            let acked = tokio::time::timeout(Duration::from_secs(10), delivery)
                .await
                .unwrap_or_else(|_| {
                    panic!("linger.ms={linger_ms}: record {i} not sent within 10 s")
                })
                .expect("delivered");
            assert!(acked.offset >= 0);
        }
        producer.close().await.expect("close");
    }
}

/// A fetch that is still in flight when the consumer seeks answers for the
/// offset it asked for; the consumer must not take that answer as the next
/// records after the new position (fetches outlive a `poll`, so a leader
/// with nothing new does not hold back the records of another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_while_a_fetch_is_in_flight_reads_from_the_new_position() {
    let broker = kraftwerk_tests::BrokerProcess::start();
    tokio::time::timeout(TEST_TIMEOUT, seek_during_fetch(broker.bootstrap()))
        .await
        .expect("test timed out");
}

async fn seek_during_fetch(bootstrap: String) {
    let client = ClientConfig {
        bootstrap_servers: vec![bootstrap],
        client_id: "kraftwerk-client-seek-test".into(),
        request_timeout_ms: 30_000,
        ..ClientConfig::default()
    };
    let topic = "seek-during-fetch".to_string();
    let admin = Admin::new(client.clone()).await.expect("admin");
    let created = admin
        .create_topics(vec![NewTopic::new(&topic, 1, 1)], false)
        .await
        .expect("create topics");
    assert!(created[0].error.is_none(), "{:?}", created[0].error);
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .expect("producer");
    let send = |i: usize| {
        let producer = &producer;
        let topic = &topic;
        async move {
            producer
                .send(ProducerRecord::new(topic, format!("v-{i}")))
                .await
                .expect("send")
                .await
                .expect("delivered")
        }
    };
    for i in 0..10 {
        send(i).await;
    }

    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            // Long enough that the fetch at the end is still held by the
            // broker when the seek happens.
            fetch_max_wait_ms: 5_000,
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    )
    .await
    .expect("consumer");
    consumer
        .assign(vec![(topic.clone(), 0)])
        .await
        .expect("assign");
    consumer.seek(&topic, 0, 10);
    // Sends a fetch at offset 10 that the broker holds: nothing is there yet.
    let none = consumer
        .poll(Duration::from_millis(100))
        .await
        .expect("poll");
    assert!(none.is_empty(), "{none:?}");
    consumer.seek(&topic, 0, 0);
    // Answers the held fetch with offset 10.
    send(10).await;

    let mut offsets = Vec::new();
    while offsets.len() < 11 {
        let records = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert!(!records.is_empty(), "no records after {offsets:?}");
        offsets.extend(records.iter().map(|r| r.offset));
    }
    assert_eq!(offsets, (0..=10).collect::<Vec<i64>>());
    producer.close().await.expect("close");
}
