//! librdkafka (the `rdkafka` crate) against a real `kraftwerk server`
//! process: for each compression codec, 100,000 records with keys, headers
//! and explicit timestamps go through an idempotent producer, then come back
//! through an assigned (group-less) consumer byte for byte, at exactly the
//! partitions, offsets and timestamps the broker acknowledged, and nothing
//! else.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kraftwerk_tests::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, Timestamp, TopicPartitionList};

/// Records produced and consumed per codec.
const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 2;
/// Upper bound on one codec's whole round trip (topic, produce, consume).
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound on any single admin or metadata request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Timestamps are explicit CreateTime values around this instant, not in
/// send order, so batches carry negative timestamp deltas as well.
const BASE_TIMESTAMP: i64 = 1_700_000_000_000;

#[test]
fn round_trip_none() {
    round_trip("none");
}

#[test]
fn round_trip_gzip() {
    round_trip("gzip");
}

#[test]
fn round_trip_snappy() {
    round_trip("snappy");
}

#[test]
fn round_trip_lz4() {
    round_trip("lz4");
}

#[test]
fn round_trip_zstd() {
    round_trip("zstd");
}

/// Runs one codec's round trip against its own broker, on a worker thread
/// so a hang fails the test with a message instead of stalling the suite.
/// The broker stays on this thread and is killed when the test ends either
/// way.
fn round_trip(codec: &'static str) {
    let broker = BrokerProcess::start();
    let bootstrap = broker.bootstrap();
    let started = Instant::now();
    let deadline = started + TEST_TIMEOUT;
    let (done_tx, done_rx) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(format!("rdkafka-{codec}"))
        .spawn(move || {
            run(&bootstrap, codec, deadline);
            let _ = done_tx.send(());
        })
        .expect("spawn round-trip thread");
    match done_rx.recv_timeout(TEST_TIMEOUT) {
        Ok(()) => worker.join().expect("round-trip thread finished"),
        Err(RecvTimeoutError::Disconnected) => {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
            panic!("{codec}: round-trip thread ended without reporting");
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "{codec}: rdkafka round trip of {RECORDS} records did not finish within {TEST_TIMEOUT:?}"
        ),
    }
    eprintln!(
        "{codec}: {RECORDS} records produced and consumed in {:.1?}",
        started.elapsed()
    );
    drop(broker);
}

fn run(bootstrap: &str, codec: &str, deadline: Instant) {
    let topic = format!("rdkafka-{codec}");
    create_topic(bootstrap, &topic);
    let deliveries = produce(bootstrap, &topic, codec, deadline);
    let by_offset = index_by_offset(codec, &deliveries);
    consume(bootstrap, &topic, codec, &deliveries, &by_offset, deadline);
}

// ---------------------------------------------------------------------------
// The records: regenerated from the sequence number on both sides.

/// What record `seq` is: key, value and headers, each possibly null or empty.
struct Spec {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

/// splitmix64: deterministic bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Compressible bytes come from a 16-letter alphabet; the others are
    /// uniformly random, so every codec also meets data it cannot shrink.
    fn bytes(&mut self, len: usize, compressible: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            let word = self.next().to_le_bytes();
            if compressible {
                out.extend(word.iter().map(|b| b'a' + (b & 0x0f)));
            } else {
                out.extend_from_slice(&word);
            }
        }
        out.truncate(len);
        out
    }
}

fn spec(seq: usize) -> Spec {
    let mut rng = Rng(seq as u64);
    let compressible = seq & 1 == 0;
    let key = match seq % 50 {
        7 => None,
        11 => Some(Vec::new()),
        13 => Some(rng.bytes(8, false)),
        _ => Some(format!("key-{}", seq % 1000).into_bytes()),
    };
    let value = match seq % 1000 {
        3 => None,
        n if matches!(n % 100, 0) => Some(Vec::new()),
        n if n % 250 == 1 => {
            let len = 16_384 + rng.below(16_384);
            Some(rng.bytes(len, compressible))
        }
        _ => {
            let len = 1 + rng.below(400);
            Some(rng.bytes(len, compressible))
        }
    };
    let mut headers = vec![("seq".to_string(), Some(seq.to_string().into_bytes()))];
    if matches!(seq % 3, 0) {
        headers.push(("null".to_string(), None));
    }
    if matches!(seq % 5, 0) {
        let len = rng.below(64);
        headers.push(("bin".to_string(), Some(rng.bytes(len, false))));
    }
    if matches!(seq % 7, 0) {
        headers.push((String::new(), Some(Vec::new())));
    }
    if matches!(seq % 4, 0) {
        headers.push(("seq".to_string(), Some(b"duplicate key".to_vec())));
    }
    Spec {
        key,
        value,
        headers,
        timestamp: BASE_TIMESTAMP + ((seq * 7919) % 1_000_000) as i64,
    }
}

// ---------------------------------------------------------------------------
// Clients.

/// Shows librdkafka's warnings and errors in the test output (visible when a
/// test fails), tagged with the client they came from.
struct Logged {
    name: String,
}

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            eprintln!("[{}] librdkafka {level:?} {fac}: {message}", self.name);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is expected here and handled by the poll loop.
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !end_of_partition {
            eprintln!("[{}] librdkafka error {error}: {reason}", self.name);
        }
    }
}

impl ConsumerContext for Logged {}

fn config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        .set("log.connection.close", "false");
    config
}

fn create_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<Logged> = config(bootstrap, "kraftwerk-rdkafka-admin")
        .create_with_context(Logged {
            name: "admin".into(),
        })
        .expect("create rdkafka admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for admin calls");
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &options,
        ))
        .expect("CreateTopics request");
    assert_eq!(results.len(), 1, "one CreateTopics result");
    match &results[0] {
        Ok(name) => assert_eq!(name, topic),
        Err((name, code)) => panic!("create topic {name}: {code}"),
    }
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .expect("topic metadata");
    let described = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("new topic in metadata");
    assert!(
        described.error().is_none(),
        "metadata error {:?}",
        described.error()
    );
    assert_eq!(described.partitions().len(), PARTITIONS as usize);
}

/// Where and when the broker said a record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Delivery {
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
}

type Outcomes = Arc<Mutex<Vec<Option<Result<Delivery, String>>>>>;

/// Producer context: each delivery report filed under its record's
/// sequence number (the delivery opaque).
struct Deliveries {
    log: Logged,
    outcomes: Outcomes,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason)
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(m) => Ok(Delivery {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp(),
            }),
            Err((e, m)) => Err(format!("{e} (partition {})", m.partition())),
        };
        // Runs on the producer's polling thread: record problems, never panic.
        let mut outcomes = self.outcomes.lock().expect("delivery outcomes lock");
        let slot = &mut outcomes[seq];
        *slot = match slot {
            None => Some(outcome),
            Some(first) => Some(Err(format!("delivered twice: {first:?} then {outcome:?}"))),
        };
    }
}

fn produce(bootstrap: &str, topic: &str, codec: &str, deadline: Instant) -> Vec<Delivery> {
    let outcomes: Outcomes = Arc::new(Mutex::new(vec![None; RECORDS]));
    let producer: ThreadedProducer<Deliveries> =
        config(bootstrap, &format!("kraftwerk-rdkafka-producer-{codec}"))
            .set("enable.idempotence", "true")
            .set("compression.type", codec)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create_with_context(Deliveries {
                log: Logged {
                    name: format!("producer {codec}"),
                },
                outcomes: outcomes.clone(),
            })
            .expect("create idempotent rdkafka producer");

    for seq in 0..RECORDS {
        let spec = spec(seq);
        let mut headers = OwnedHeaders::new_with_capacity(spec.headers.len());
        for (key, value) in &spec.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, seq)
            .timestamp(spec.timestamp)
            .headers(headers);
        if let Some(key) = &spec.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &spec.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    assert!(
                        Instant::now() < deadline,
                        "{codec}: producer queue still full at record {seq} of {RECORDS} at the deadline"
                    );
                    record = back;
                    thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("{codec}: send record {seq}: {e}"),
            }
        }
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    producer.flush(remaining).unwrap_or_else(|e| {
        panic!(
            "{codec}: flush with {} records in flight: {e}",
            producer.in_flight_count()
        )
    });
    // Dropping the producer joins its polling thread, so every delivery
    // report has been filed once this returns.
    drop(producer);

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("delivery outcomes lock"));
    outcomes
        .into_iter()
        .enumerate()
        .map(|(seq, outcome)| match outcome {
            Some(Ok(delivery)) => {
                let want = Timestamp::CreateTime(spec(seq).timestamp);
                assert_eq!(
                    delivery.timestamp, want,
                    "{codec}: delivery report timestamp of record {seq}"
                );
                delivery
            }
            Some(Err(e)) => panic!("{codec}: record {seq} not delivered: {e}"),
            None => panic!("{codec}: no delivery report for record {seq}"),
        })
        .collect()
}

/// Per partition, the record sequence number at each offset. An idempotent
/// producer on a fresh topic must get dense offsets from 0 in each partition.
fn index_by_offset(codec: &str, deliveries: &[Delivery]) -> Vec<Vec<usize>> {
    let mut placed: Vec<Vec<(i64, usize)>> = vec![Vec::new(); PARTITIONS as usize];
    for (seq, d) in deliveries.iter().enumerate() {
        assert!(
            (0..PARTITIONS).contains(&d.partition),
            "{codec}: record {seq} delivered to partition {}",
            d.partition
        );
        placed[d.partition as usize].push((d.offset, seq));
    }
    placed
        .into_iter()
        .enumerate()
        .map(|(partition, mut entries)| {
            assert!(
                !entries.is_empty(),
                "{codec}: no records went to partition {partition}"
            );
            entries.sort_unstable();
            for (expected, (offset, seq)) in entries.iter().enumerate() {
                assert_eq!(
                    *offset, expected as i64,
                    "{codec}: partition {partition} offsets are not dense from 0 (record {seq})"
                );
            }
            entries.into_iter().map(|(_, seq)| seq).collect()
        })
        .collect()
}

fn consume(
    bootstrap: &str,
    topic: &str,
    codec: &str,
    deliveries: &[Delivery],
    by_offset: &[Vec<usize>],
    deadline: Instant,
) {
    // The broker serves no group APIs: a group.id is only there because
    // librdkafka's assign() wants one; nothing is subscribed or committed.
    let consumer: BaseConsumer<Logged> =
        config(bootstrap, &format!("kraftwerk-rdkafka-consumer-{codec}"))
            .set("group.id", format!("kraftwerk-rdkafka-{codec}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("check.crcs", "true")
            .create_with_context(Logged {
                name: format!("consumer {codec}"),
            })
            .expect("create rdkafka consumer");

    for (partition, records) in by_offset.iter().enumerate() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
            .expect("ListOffsets watermarks");
        assert_eq!(
            (low, high),
            (0, records.len() as i64),
            "{codec}: watermarks of partition {partition}"
        );
    }

    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(0))
            .expect("assignment entry");
    }
    consumer.assign(&assignment).expect("assign partitions");

    let mut seen: Vec<Vec<bool>> = by_offset.iter().map(|r| vec![false; r.len()]).collect();
    let mut eof = vec![false; PARTITIONS as usize];
    let mut consumed = 0usize;
    while eof.iter().any(|e| !e) {
        assert!(
            Instant::now() < deadline,
            "{codec}: consumed {consumed} of {RECORDS} records by the deadline; EOF per partition {eof:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let p = usize::try_from(partition).expect("EOF partition is not negative");
                let missing = seen[p].iter().filter(|s| !**s).count();
                assert_eq!(
                    missing, 0,
                    "{codec}: EOF on partition {partition} with {missing} records not consumed"
                );
                eof[p] = true;
            }
            Some(Err(e)) => panic!("{codec}: consume after {consumed} records: {e}"),
            Some(Ok(m)) => {
                check(codec, &m, deliveries, by_offset, &mut seen);
                consumed += 1;
            }
        }
    }
    // Nothing after the end: a short drain must stay silent.
    let drain_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_until {
        match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => panic!("{codec}: consume after EOF: {e}"),
            Some(Ok(m)) => panic!(
                "{codec}: extra record after EOF at {}/{}",
                m.partition(),
                m.offset()
            ),
        }
    }
    assert_eq!(consumed, RECORDS, "{codec}: records consumed");
}

/// One consumed record against what was produced and acknowledged there.
fn check(
    codec: &str,
    m: &BorrowedMessage<'_>,
    deliveries: &[Delivery],
    by_offset: &[Vec<usize>],
    seen: &mut [Vec<bool>],
) {
    let (partition, offset) = (m.partition(), m.offset());
    let at = format!("{codec}: record at {partition}/{offset}");
    let p = usize::try_from(partition).expect("partition is not negative");
    let o = usize::try_from(offset).expect("offset is not negative");
    let seq = *by_offset
        .get(p)
        .and_then(|records| records.get(o))
        .unwrap_or_else(|| panic!("{at}: no record was delivered there"));
    assert!(!seen[p][o], "{at}: consumed twice");
    seen[p][o] = true;

    let want = spec(seq);
    let delivered = deliveries[seq];
    assert_eq!(
        (partition, offset),
        (delivered.partition, delivered.offset),
        "{at}: record {seq} placement"
    );
    assert_eq!(
        m.timestamp(),
        delivered.timestamp,
        "{at}: record {seq} timestamp"
    );
    assert_eq!(
        m.timestamp(),
        Timestamp::CreateTime(want.timestamp),
        "{at}: record {seq} timestamp"
    );
    same_bytes(&at, seq, "key", m.key(), want.key.as_deref());
    same_bytes(&at, seq, "value", m.payload(), want.value.as_deref());

    let got: Vec<(String, Option<Vec<u8>>)> = m
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(got, want.headers, "{at}: record {seq} headers");
}

/// Byte-for-byte comparison that reports lengths and the first difference
/// instead of dumping kilobytes.
fn same_bytes(at: &str, seq: usize, what: &str, got: Option<&[u8]>, want: Option<&[u8]>) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) if g == w => {}
        (Some(g), Some(w)) => {
            let first = g
                .iter()
                .zip(w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            panic!(
                "{at}: record {seq} {what}: {} bytes, expected {}; first difference at byte {first}",
                g.len(),
                w.len()
            );
        }
        (g, w) => panic!(
            "{at}: record {seq} {what}: got {:?}, expected {:?}",
            g.map(<[u8]>::len),
            w.map(<[u8]>::len)
        ),
    }
}
