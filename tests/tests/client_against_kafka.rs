//! Kraftwerk's own client (`kraftwerk bench`, `kraftwerk groups`) against
//! Kraftwerk and against Apache Kafka, the same scenario on both: four
//! group members start on a topic created a moment before (its leaders may
//! not answer yet), records are produced while they wait, and the group's
//! committed offsets must reach every record.
//!
//! The reference broker is the one `tests/peers/kafka.sh start` runs; its
//! address comes from `KRAFTWERK_REFERENCE_BOOTSTRAP`. Without it only the
//! Kraftwerk half runs, and the test says that the Kafka half skipped.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kraftwerk_tests::{kraftwerk_bin, BrokerProcess};

const PARTITIONS: &str = "100";
const RECORDS: u64 = 20_000;
const MEMBERS: usize = 4;

fn cli(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(kraftwerk_bin())
        .args(args)
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .output()
        .expect("run kraftwerk")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn member(bootstrap: &str, topic: &str, group: &str) -> Child {
    Command::new(kraftwerk_bin())
        .args([
            "bench",
            "consume",
            "--topic",
            topic,
            "--group",
            group,
            "--num-records",
            &RECORDS.to_string(),
            "--timeout-ms",
            "10000",
            "--consumer-props",
            "auto.commit.interval.ms=500",
            "--output",
            "json",
            "--bootstrap-server",
            bootstrap,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a group member")
}

/// The group's description as `kraftwerk groups describe --output json`.
fn describe(bootstrap: &str, group: &str) -> serde_json::Value {
    let text = ok(
        cli(
            bootstrap,
            &["groups", "describe", "--group", group, "--output", "json"],
        ),
        "groups describe",
    );
    serde_json::from_str(text.trim()).expect("json")
}

fn members_join_a_new_topic_and_commit_every_record(bootstrap: &str, broker: &str) {
    let run = std::process::id();
    let topic = format!("fresh-{run}");
    let group = format!("members-{run}");
    ok(
        cli(
            bootstrap,
            &[
                "topics",
                "create",
                "--topic",
                &topic,
                "--partitions",
                PARTITIONS,
            ],
        ),
        "topics create",
    );
    // At once: the new partitions' leaders may not answer ListOffsets yet.
    let members: Vec<Child> = (0..MEMBERS)
        .map(|_| member(bootstrap, &topic, &group))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // "does not exist" until the first member joined.
        let out = cli(
            bootstrap,
            &["groups", "describe", "--group", &group, "--output", "json"],
        );
        let d: serde_json::Value = if out.status.success() {
            serde_json::from_slice(&out.stdout).expect("json")
        } else {
            serde_json::Value::Null
        };
        if d["state"] == "Stable" && d["members"].as_array().map_or(0, Vec::len) == MEMBERS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{broker}: the group did not become stable with {MEMBERS} members: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(
        cli(
            bootstrap,
            &[
                "bench",
                "produce",
                "--topic",
                &topic,
                "--num-records",
                &RECORDS.to_string(),
                "--record-size",
                "512",
                "--producer-props",
                "acks=all",
                "linger.ms=1",
            ],
        ),
        "bench produce",
    );
    let mut received = 0;
    for m in members {
        let out = m.wait_with_output().expect("member output");
        let text = ok(out, &format!("{broker}: a group member"));
        let report: serde_json::Value =
            serde_json::from_str(text.trim().lines().last().unwrap_or_default())
                .expect("json report");
        received += report["records"].as_u64().expect("records");
    }
    assert!(
        received >= RECORDS,
        "{broker}: the members read {received} of {RECORDS} records"
    );
    let d = describe(bootstrap, &group);
    let committed: i64 = d["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["committed_offset"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(committed, RECORDS as i64, "{broker}: {d}");
}

#[test]
fn group_members_on_a_new_topic_commit_every_record_on_kraftwerk_and_kafka() {
    let broker = BrokerProcess::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    members_join_a_new_topic_and_commit_every_record(&broker.bootstrap(), "Kraftwerk");
    match std::env::var("KRAFTWERK_REFERENCE_BOOTSTRAP") {
        Ok(reference) => {
            members_join_a_new_topic_and_commit_every_record(&reference, "Apache Kafka")
        }
        Err(_) => eprintln!(
            "skipped the Apache Kafka half: KRAFTWERK_REFERENCE_BOOTSTRAP is not set \
             (scripts/test sets it when tests/peers/kafka.sh could start Apache Kafka)"
        ),
    }
}
