//! Consumer groups against a real broker: the Rust consumer's membership,
//! rebalances and commits, the admin calls, and `kraftwerk groups` /
//! `kraftwerk consume --group` the way a person uses them.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kraftwerk_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, GroupConfig, NewTopic,
    Producer, ProducerConfig, ProducerRecord, RebalanceListener,
};
use kraftwerk_tests::{kraftwerk_bin, BrokerProcess};

/// Upper bound on each test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Polls allowed while waiting for a rebalance to settle.
const SETTLE_POLLS_MAX: usize = 200;

fn start_broker() -> BrokerProcess {
    BrokerProcess::start_with(&[
        "--override",
        "group.initial.rebalance.delay.ms=0",
        "--override",
        "offsets.topic.replication.factor=1",
    ])
}

fn client(broker: &BrokerProcess, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new([broker.bootstrap()]);
    config.client_id = client_id.to_string();
    config.request_timeout_ms = 20_000;
    config
}

fn group_config(group_id: &str) -> GroupConfig {
    GroupConfig {
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 20_000,
        heartbeat_interval_ms: 200,
        ..GroupConfig::new(group_id)
    }
}

fn earliest() -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..ConsumerConfig::default()
    }
}

async fn create_topic(broker: &BrokerProcess, topic: &str, partitions: i32) {
    let admin = Admin::new(client(broker, "groups-test-admin"))
        .await
        .expect("admin");
    let created = admin
        .create_topics(vec![NewTopic::new(topic, partitions, 1)], false)
        .await
        .expect("create topic");
    assert!(created[0].error.is_none(), "{:?}", created[0].error);
    admin
        .cluster()
        .topic_with_leaders(topic)
        .await
        .expect("leaders");
}

async fn produce(broker: &BrokerProcess, topic: &str, partition: i32, count: usize) {
    let producer = Producer::new(
        client(broker, "groups-test-producer"),
        ProducerConfig::default(),
    )
    .await
    .expect("producer");
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let mut record = ProducerRecord::new(topic.to_string(), Bytes::from(format!("m{i}")));
        record.partition = Some(partition);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await.expect("close producer");
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Revoked(usize),
    Assigned(Vec<(String, i32)>),
}

struct Recorder(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.0
            .lock()
            .expect("events")
            .push(Event::Revoked(partitions.len()));
    }
    fn on_partitions_assigned(&mut self, partitions: &[(String, i32)]) {
        self.0
            .lock()
            .expect("events")
            .push(Event::Assigned(partitions.to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumers_split_a_topic_and_hear_about_it() {
    let broker = start_broker();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let topic = "split";
        create_topic(&broker, topic, 4).await;
        let events_a = Arc::new(Mutex::new(Vec::new()));
        let events_b = Arc::new(Mutex::new(Vec::new()));
        let mut a = Consumer::new(client(&broker, "member-a"), earliest())
            .await
            .expect("consumer a");
        a.subscribe(
            vec![topic.to_string()],
            group_config("split-group"),
            Some(Box::new(Recorder(events_a.clone()))),
        )
        .await
        .expect("a subscribes");
        assert_eq!(a.assignment().len(), 4);

        let b_client = client(&broker, "member-b");
        let b_events = events_b.clone();
        let b_task = tokio::spawn(async move {
            let mut b = Consumer::new(b_client, earliest())
                .await
                .expect("consumer b");
            b.subscribe(
                vec![topic.to_string()],
                group_config("split-group"),
                Some(Box::new(Recorder(b_events))),
            )
            .await
            .expect("b subscribes");
            b
        });
        // A rejoins from poll once its heartbeat hears of the rebalance.
        let mut polls = 0;
        while !b_task.is_finished() {
            a.poll(Duration::from_millis(100)).await.expect("a polls");
            polls += 1;
            assert!(polls < SETTLE_POLLS_MAX, "b never joined");
        }
        let mut b = b_task.await.expect("b task");
        assert_eq!(a.assignment().len(), 2, "a: {:?}", a.assignment());
        assert_eq!(b.assignment().len(), 2, "b: {:?}", b.assignment());
        let mut all = a.assignment();
        all.extend(b.assignment());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 4);

        let a_events = events_a.lock().expect("events").clone();
        assert_eq!(a_events.len(), 3, "{a_events:?}");
        assert!(matches!(&a_events[0], Event::Assigned(p) if p.len() == 4));
        assert_eq!(a_events[1], Event::Revoked(4));
        assert_eq!(a_events[2], Event::Assigned(a.assignment()));
        assert_eq!(
            *events_b.lock().expect("events"),
            vec![Event::Assigned(b.assignment())]
        );

        let admin = Admin::new(client(&broker, "groups-test-admin"))
            .await
            .expect("admin");
        let described = admin.describe_group("split-group").await.expect("describe");
        assert_eq!(described.state, "Stable");
        assert_eq!(described.protocol, "range");
        assert_eq!(described.members.len(), 2);
        let mut clients: Vec<String> = described
            .members
            .iter()
            .map(|m| m.client_id.clone())
            .collect();
        clients.sort();
        assert_eq!(
            clients,
            vec!["member-a".to_string(), "member-b".to_string()]
        );
        assert!(described.members.iter().all(|m| m.assignment.len() == 2));
        let listed = admin.list_groups().await.expect("list groups");
        assert!(listed
            .iter()
            .any(|g| g.group_id == "split-group" && g.protocol_type == "consumer"));

        b.close().await.expect("b closes");
        // B left; A takes everything on its next rejoin.
        let mut polls = 0;
        while a.assignment().len() != 4 {
            a.poll(Duration::from_millis(100)).await.expect("a polls");
            polls += 1;
            assert!(polls < SETTLE_POLLS_MAX, "a never took b's partitions");
        }
        a.close().await.expect("a closes");
        let described = admin.describe_group("split-group").await.expect("describe");
        assert_eq!(described.state, "Empty");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_offsets_are_resumed_after_close() {
    let broker = start_broker();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let topic = "resume";
        create_topic(&broker, topic, 1).await;
        produce(&broker, topic, 0, 10).await;
        let manual = GroupConfig {
            enable_auto_commit: false,
            ..group_config("resume-group")
        };
        let mut first = Consumer::new(client(&broker, "first"), earliest())
            .await
            .expect("consumer");
        first
            .subscribe(vec![topic.to_string()], manual.clone(), None)
            .await
            .expect("subscribe");
        let mut seen = Vec::new();
        while seen.len() < 10 {
            let records = first.poll(Duration::from_millis(500)).await.expect("poll");
            seen.extend(records.into_iter().map(|r| r.offset));
        }
        assert_eq!(seen, (0..10).collect::<Vec<i64>>());
        let key = (topic.to_string(), 0);
        first
            .commit_offsets(vec![(key.clone(), 6)])
            .await
            .expect("commit 6");
        assert_eq!(
            first
                .committed(std::slice::from_ref(&key))
                .await
                .expect("committed"),
            vec![(key.clone(), Some(6))]
        );
        first.close().await.expect("close");

        let mut second = Consumer::new(client(&broker, "second"), earliest())
            .await
            .expect("consumer");
        second
            .subscribe(vec![topic.to_string()], manual, None)
            .await
            .expect("subscribe");
        assert_eq!(second.position(topic, 0), Some(6));
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let records = second.poll(Duration::from_millis(500)).await.expect("poll");
            seen.extend(records.into_iter().map(|r| r.offset));
        }
        assert_eq!(seen, vec![6, 7, 8, 9]);
        second.commit_sync().await.expect("commit_sync");
        second.close().await.expect("close");

        let admin = Admin::new(client(&broker, "groups-test-admin"))
            .await
            .expect("admin");
        assert_eq!(
            admin
                .list_group_offsets("resume-group")
                .await
                .expect("offsets"),
            vec![(key.clone(), 10)]
        );
        // The group is Empty now, so an admin may move its offsets.
        admin
            .alter_group_offsets("resume-group", vec![(key.clone(), 3)])
            .await
            .expect("alter offsets");
        assert_eq!(
            admin
                .list_group_offsets("resume-group")
                .await
                .expect("offsets"),
            vec![(key, 3)]
        );
    })
    .await
    .expect("test timed out");
}

fn kraftwerk(broker: &BrokerProcess, args: &[&str]) -> Output {
    Command::new(kraftwerk_bin())
        .args(args)
        .arg("--bootstrap-server")
        .arg(broker.bootstrap())
        .stdin(Stdio::null())
        .output()
        .expect("run kraftwerk")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kraftwerk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The raw value of `"key":` in flat JSON text (`null`, a number, a quoted string).
fn field(json: &str, key: &str) -> String {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pattern.len();
    let rest = &json[start..];
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The innermost `{...}` objects of JSON text.
fn flat_objects(json: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut open = None;
    for (i, c) in json.char_indices() {
        match c {
            '{' => open = Some(i),
            '}' => {
                if let Some(start) = open.take() {
                    out.push(&json[start..=i]);
                }
            }
            _ => {}
        }
    }
    out
}

/// `(committed, log end, lag, total lag)` of one partition from
/// `groups describe --output json`.
fn describe_partition(
    broker: &BrokerProcess,
    group: &str,
    topic: &str,
    partition: i32,
) -> (String, String, String, String) {
    let out = ok(&kraftwerk(
        broker,
        &["groups", "describe", "--group", group, "--output", "json"],
    ));
    let partitions = &out[out.find("\"partitions\":").expect("partitions")..];
    let row = flat_objects(partitions)
        .into_iter()
        .find(|o| {
            o.contains(&format!("\"topic\":\"{topic}\""))
                && field(o, "partition") == partition.to_string()
        })
        .unwrap_or_else(|| panic!("no row for {topic}-{partition} in {out}"));
    (
        field(row, "committed_offset"),
        field(row, "log_end_offset"),
        field(row, "lag"),
        field(&out, "total_lag"),
    )
}

fn strings(values: [&str; 3]) -> (String, String, String) {
    (values[0].into(), values[1].into(), values[2].into())
}

fn consumed_offsets(out: &str) -> Vec<(i64, i64)> {
    out.lines()
        .map(|l| {
            (
                field(l, "partition").parse().expect("partition"),
                field(l, "offset").parse().expect("offset"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_cli_shows_lag_resets_and_deletes() {
    let broker = start_broker();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let topic = "lag";
        create_topic(&broker, topic, 2).await;
        produce(&broker, topic, 0, 100).await;

        // The console consumer commits what it printed ...
        let first = ok(&kraftwerk(
            &broker,
            &[
                "consume",
                "--topic",
                topic,
                "--group",
                "lag-group",
                "--from-beginning",
                "--max-messages",
                "40",
                "--output",
                "json",
            ],
        ));
        let offsets = consumed_offsets(&first);
        assert_eq!(offsets, (0..40).map(|o| (0, o)).collect::<Vec<_>>());
        let (committed, log_end, lag, total) = describe_partition(&broker, "lag-group", topic, 0);
        assert_eq!((committed, log_end, lag), strings(["40", "100", "60"]));
        assert_eq!(total, "60");

        // ... so a second run continues where the first stopped.
        let second = ok(&kraftwerk(
            &broker,
            &[
                "consume",
                "--topic",
                topic,
                "--group",
                "lag-group",
                "--max-messages",
                "10",
                "--output",
                "json",
            ],
        ));
        assert_eq!(
            consumed_offsets(&second),
            (40..50).map(|o| (0, o)).collect::<Vec<_>>()
        );
        let (committed, _, lag, _) = describe_partition(&broker, "lag-group", topic, 0);
        assert_eq!((committed.as_str(), lag.as_str()), ("50", "50"));

        // Human output names the columns Kafka names.
        let human = ok(&kraftwerk(
            &broker,
            &["groups", "describe", "--group", "lag-group"],
        ));
        assert!(human.contains("LOG-END-OFFSET"), "{human}");
        assert!(human.contains("TOTAL LAG: 50"), "{human}");

        // A dry run prints the new offsets and changes nothing.
        let dry = ok(&kraftwerk(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "lag-group",
                "--topic",
                topic,
                "--to-earliest",
                "--output",
                "json",
            ],
        ));
        assert_eq!(field(&dry, "executed"), "false", "{dry}");
        let new_offsets: Vec<String> = flat_objects(&dry)
            .into_iter()
            .map(|o| field(o, "new_offset"))
            .collect();
        assert_eq!(new_offsets, vec!["0", "0"], "{dry}");
        let (committed, _, _, _) = describe_partition(&broker, "lag-group", topic, 0);
        assert_eq!(committed, "50");

        // --execute applies them.
        ok(&kraftwerk(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "lag-group",
                "--topic",
                topic,
                "--to-earliest",
                "--execute",
            ],
        ));
        let (committed, _, lag, _) = describe_partition(&broker, "lag-group", topic, 0);
        assert_eq!((committed.as_str(), lag.as_str()), ("0", "100"));
        ok(&kraftwerk(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "lag-group",
                "--topic",
                &format!("{topic}:0"),
                "--shift-by",
                "25",
                "--execute",
            ],
        ));
        let (committed, _, _, _) = describe_partition(&broker, "lag-group", topic, 0);
        assert_eq!(committed, "25");

        // With a member in the group, resets are refused and describe shows it.
        let mut member = Consumer::new(client(&broker, "cli-member"), earliest())
            .await
            .expect("consumer");
        member
            .subscribe(vec![topic.to_string()], group_config("lag-group"), None)
            .await
            .expect("subscribe");
        let refused = kraftwerk(
            &broker,
            &[
                "groups",
                "reset-offsets",
                "--group",
                "lag-group",
                "--topic",
                topic,
                "--to-latest",
                "--execute",
            ],
        );
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("inactive"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let described = ok(&kraftwerk(
            &broker,
            &[
                "groups",
                "describe",
                "--group",
                "lag-group",
                "--output",
                "json",
            ],
        ));
        assert_eq!(field(&described, "state"), "\"Stable\"", "{described}");
        assert!(
            described.contains("\"client_id\":\"cli-member\""),
            "{described}"
        );
        let members = &described[described.find("\"members\":").expect("members")..];
        let members = &members[..members.find("\"partitions\":").unwrap_or(members.len())];
        assert_eq!(
            flat_objects(members).len(),
            2,
            "two assigned partitions: {described}"
        );
        let busy = kraftwerk(&broker, &["groups", "delete", "--group", "lag-group"]);
        assert!(!busy.status.success());
        member.close().await.expect("close");

        // list, then delete the now Empty group.
        let listed = ok(&kraftwerk(&broker, &["groups", "list"]));
        assert!(listed.lines().any(|l| l == "lag-group"), "{listed}");
        ok(&kraftwerk(
            &broker,
            &["groups", "delete", "--group", "lag-group"],
        ));
        let listed = ok(&kraftwerk(&broker, &["groups", "list", "--output", "json"]));
        assert!(!listed.contains("lag-group"), "{listed}");
        let gone = kraftwerk(&broker, &["groups", "describe", "--group", "lag-group"]);
        assert!(!gone.status.success());
        assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
    })
    .await
    .expect("test timed out");
}
