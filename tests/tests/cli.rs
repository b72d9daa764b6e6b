//! The `kraftwerk` CLI against a real broker, the way a person uses it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kraftwerk_tests::{kraftwerk_bin, BrokerProcess};

fn kraftwerk(b: &BrokerProcess, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(kraftwerk_bin())
        .args(args)
        .arg("--bootstrap-server")
        .arg(b.bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kraftwerk");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("kraftwerk output")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kraftwerk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn topics_produce_and_consume_from_the_command_line() {
    let b = BrokerProcess::start();
    ok(&kraftwerk(
        &b,
        &[
            "topics",
            "create",
            "--topic",
            "cli",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    ));

    let again = kraftwerk(
        &b,
        &["topics", "create", "--topic", "cli", "--partitions", "2"],
        None,
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    ok(&kraftwerk(
        &b,
        &["topics", "create", "--topic", "cli", "--if-not-exists"],
        None,
    ));

    let bad = kraftwerk(
        &b,
        &[
            "topics",
            "create",
            "--topic",
            "bad",
            "--config",
            "retention.ms=soon",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retention.ms"));

    assert_eq!(
        ok(&kraftwerk(&b, &["topics", "list"], None))
            .lines()
            .collect::<Vec<_>>(),
        vec!["cli"]
    );

    let described: String = ok(&kraftwerk(
        &b,
        &["topics", "describe", "--topic", "cli", "--output", "json"],
        None,
    ));
    assert!(described.contains("\"partition_count\":2"), "{described}");
    assert!(described.contains("retention.ms=3600000"), "{described}");

    ok(&kraftwerk(
        &b,
        &[
            "produce",
            "--topic",
            "cli",
            "--key-separator",
            ":",
            "--partition",
            "1",
        ],
        Some("k1:v1\nk2:v2\nk3:v3\n"),
    ));
    let consumed = ok(&kraftwerk(
        &b,
        &[
            "consume",
            "--topic",
            "cli",
            "--partition",
            "1",
            "--offset",
            "1",
            "--max-messages",
            "2",
            "--timeout-ms",
            "10000",
            "--output",
            "json",
        ],
        None,
    ));
    let lines: Vec<&str> = consumed.lines().collect();
    assert_eq!(lines.len(), 2, "{consumed}");
    assert!(
        lines[0].contains("\"offset\":1")
            && lines[0].contains("\"key\":\"k2\"")
            && lines[0].contains("\"value\":\"v2\""),
        "{consumed}"
    );
    assert!(
        lines[1].contains("\"offset\":2") && lines[1].contains("\"value\":\"v3\""),
        "{consumed}"
    );

    let human = ok(&kraftwerk(
        &b,
        &[
            "consume",
            "--topic",
            "cli",
            "--from-beginning",
            "--print-key",
            "--max-messages",
            "3",
            "--timeout-ms",
            "10000",
        ],
        None,
    ));
    assert_eq!(
        human.lines().collect::<Vec<_>>(),
        vec!["k1\tv1", "k2\tv2", "k3\tv3"]
    );

    ok(&kraftwerk(
        &b,
        &[
            "topics",
            "alter",
            "--topic",
            "cli",
            "--partitions",
            "3",
            "--config",
            "segment.bytes=1048576",
        ],
        None,
    ));
    let described = ok(&kraftwerk(
        &b,
        &["topics", "describe", "--topic", "cli"],
        None,
    ));
    assert!(
        described.contains("PartitionCount: 3") && described.contains("segment.bytes=1048576"),
        "{described}"
    );

    ok(&kraftwerk(
        &b,
        &["topics", "delete", "--topic", "cli"],
        None,
    ));
    assert_eq!(ok(&kraftwerk(&b, &["topics", "list"], None)).trim(), "");
}

#[test]
fn topics_survive_a_restart() {
    let mut b = BrokerProcess::start();
    ok(&kraftwerk(
        &b,
        &[
            "topics",
            "create",
            "--topic",
            "durable",
            "--partitions",
            "4",
        ],
        None,
    ));
    ok(&kraftwerk(
        &b,
        &["produce", "--topic", "durable", "--partition", "3"],
        Some("x\ny\n"),
    ));
    b.kill();
    b.restart();
    let described = ok(&kraftwerk(
        &b,
        &["topics", "describe", "--topic", "durable"],
        None,
    ));
    assert!(described.contains("PartitionCount: 4"), "{described}");
    let out = ok(&kraftwerk(
        &b,
        &[
            "consume",
            "--topic",
            "durable",
            "--partition",
            "3",
            "--offset",
            "earliest",
            "--max-messages",
            "2",
            "--timeout-ms",
            "10000",
        ],
        None,
    ));
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["x", "y"]);
}

/// `kraftwerk bench e2e` as bench/compare.py runs it: every round trip's
/// record is read back (the run fails otherwise), and the records are in
/// the partition afterwards.
#[test]
fn bench_e2e_reads_every_record_back_and_reports_latencies() {
    let broker = BrokerProcess::start();
    ok(&kraftwerk(
        &broker,
        &[
            "topics",
            "create",
            "--topic",
            "e2e-cli",
            "--partitions",
            "1",
        ],
        None,
    ));
    let out = ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "e2e",
            "--topic",
            "e2e-cli",
            "--num-records",
            "200",
            "--record-size",
            "1024",
            "--output",
            "json",
        ],
        None,
    ));
    let report: serde_json::Value =
        serde_json::from_str(out.trim().lines().last().unwrap_or_default()).expect("json report");
    assert_eq!(report["records"], 200, "{out}");
    let p50 = report["latency_p50_ms"].as_f64().expect("p50");
    let p99 = report["latency_p99_ms"].as_f64().expect("p99");
    let max = report["latency_max_ms"].as_f64().expect("max");
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{out}");
    let consumed = ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "consume",
            "--topic",
            "e2e-cli",
            "--num-records",
            "200",
        ],
        None,
    ));
    assert!(
        consumed.starts_with("200 records received, "),
        "unexpected report: {consumed}"
    );
}

/// `kraftwerk topics list | head -1` style pipelines: when the reader
/// closes the pipe before the listing is written, the command ends without
/// a panic (Unix tools end on SIGPIPE).
#[test]
fn a_listing_whose_reader_went_away_ends_without_a_panic() {
    let broker = BrokerProcess::start();
    ok(&kraftwerk(
        &broker,
        &["topics", "create", "--topic", "piped", "--partitions", "1"],
        None,
    ));
    let mut child = Command::new(kraftwerk_bin())
        .args(["topics", "list", "--bootstrap-server"])
        .arg(broker.bootstrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kraftwerk topics list");
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `kraftwerk consume --group g | head -3`: once the reader has gone the
/// console consumer stops as Kafka 4.1.1's does ("Unable to write to
/// standard out, closing consumer.", then a normal exit, status 0),
/// without a panic, and the group's committed offsets cover exactly the
/// records it printed.
#[test]
fn a_consumer_whose_reader_went_away_commits_only_what_it_printed() {
    let broker = BrokerProcess::start();
    ok(&kraftwerk(
        &broker,
        &[
            "topics",
            "create",
            "--topic",
            "piped-c",
            "--partitions",
            "1",
        ],
        None,
    ));
    // 2,000 records of 1 KiB: far more than a pipe's buffer holds.
    ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "produce",
            "--topic",
            "piped-c",
            "--num-records",
            "2000",
            "--record-size",
            "1024",
        ],
        None,
    ));
    let mut child = Command::new(kraftwerk_bin())
        .args([
            "consume",
            "--topic",
            "piped-c",
            "--group",
            "piped-readers",
            "--from-beginning",
            "--bootstrap-server",
        ])
        .arg(broker.bootstrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kraftwerk consume");
    let stdout = child.stdout.take().expect("stdout");
    let read: Vec<String> = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .take(3)
        .map(|l| l.expect("a line"))
        .collect();
    assert_eq!(read.len(), 3);
    // `head` has what it wanted and goes; the pipe closes.
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Unable to write to standard out, closing consumer."),
        "{stderr}"
    );
    let printed: i64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Processed a total of "))
        .and_then(|l| l.strip_suffix(" messages"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stderr}"));
    assert!((3..2000).contains(&printed), "printed {printed}");
    let described = ok(&kraftwerk(
        &broker,
        &[
            "groups",
            "describe",
            "--group",
            "piped-readers",
            "--output",
            "json",
        ],
        None,
    ));
    let group: serde_json::Value = serde_json::from_str(described.trim()).expect("json");
    let committed = group["partitions"][0]["committed_offset"].as_i64();
    assert_eq!(committed, Some(printed), "{described}");
}

/// `kraftwerk bench consume --group`, as bench/compare.py's OpenMessaging
/// run starts it: two members of one group share a topic's partitions,
/// every record is read, and the group's committed offsets reach the end
/// of every partition.
#[test]
fn bench_consume_in_a_group_shares_the_partitions_and_commits_everything() {
    let broker = BrokerProcess::start();
    ok(&kraftwerk(
        &broker,
        &[
            "topics",
            "create",
            "--topic",
            "bench-group",
            "--partitions",
            "4",
        ],
        None,
    ));
    ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "produce",
            "--topic",
            "bench-group",
            "--num-records",
            "4000",
            "--record-size",
            "100",
        ],
        None,
    ));
    let member = || {
        Command::new(kraftwerk_bin())
            .args([
                "bench",
                "consume",
                "--topic",
                "bench-group",
                "--group",
                "bench-members",
                "--num-records",
                "4000",
                "--timeout-ms",
                "4000",
                "--consumer-props",
                "auto.commit.interval.ms=200",
                "partition.assignment.strategy=roundrobin",
                "--output",
                "json",
                "--bootstrap-server",
            ])
            .arg(broker.bootstrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kraftwerk bench consume")
    };
    let members = [member(), member()];
    let mut received = 0;
    for m in members {
        let out = m.wait_with_output().expect("member output");
        let text = ok(&out);
        let report: serde_json::Value =
            serde_json::from_str(text.trim().lines().last().unwrap_or_default())
                .expect("json report");
        received += report["records"].as_u64().expect("records");
    }
    // At least once: a rebalance may hand a partition over before its
    // last records' offsets were committed.
    assert!(received >= 4000, "the two members read {received} records");
    let described = ok(&kraftwerk(
        &broker,
        &[
            "groups",
            "describe",
            "--group",
            "bench-members",
            "--output",
            "json",
        ],
        None,
    ));
    let group: serde_json::Value = serde_json::from_str(described.trim()).expect("json");
    assert_eq!(group["total_lag"], 0, "{described}");
    let partitions = group["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 4, "{described}");
    let committed: i64 = partitions
        .iter()
        .map(|p| p["committed_offset"].as_i64().expect("committed offset"))
        .sum();
    assert_eq!(committed, 4000, "{described}");
}

/// `kraftwerk bench` as docs/performance.md runs it, `--throughput -1`
/// (no limit) included, then reads the records back.
#[test]
fn bench_produces_and_consumes_with_no_throughput_limit() {
    let broker = BrokerProcess::start();
    let produced = ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "produce",
            "--topic",
            "bench-cli",
            "--num-records",
            "5000",
            "--record-size",
            "100",
            "--throughput",
            "-1",
            "--producer-props",
            "acks=all",
            "linger.ms=0",
        ],
        None,
    ));
    assert!(
        produced.starts_with("5000 records sent, "),
        "unexpected report: {produced}"
    );
    let consumed = ok(&kraftwerk(
        &broker,
        &[
            "bench",
            "consume",
            "--topic",
            "bench-cli",
            "--num-records",
            "5000",
        ],
        None,
    ));
    assert!(
        consumed.starts_with("5000 records received, "),
        "unexpected report: {consumed}"
    );
}
