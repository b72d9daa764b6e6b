"""Apache Kafka's own command-line tools (4.1.1, from Maven Central, run by
tests/peers/kafka.sh) against real Kraftwerk processes, typed as users type
them; the first commands are the seed notes' own."""

import json
import re
import subprocess
import tempfile
import threading
import time

import pytest

from cluster_harness import running_cluster
from peers import kafka_tool, kafka_tool_popen, require_kafka_tools

SESSION_TIMEOUT_MS = 4000


def bootstrap_args(broker):
    return ["--bootstrap-server", f"localhost:{broker.port}"]


def test_seed_notes_kafka_topics_create_and_describe(broker):
    b = bootstrap_args(broker)
    out = kafka_tool("kafka-topics.sh", "--create", "--topic", "meu-topico", *b, "--partitions", 3,
                     "--replication-factor", 1)
    assert "Created topic meu-topico." in out.stdout
    described = kafka_tool("kafka-topics.sh", "--describe", "--topic", "meu-topico", *b).stdout
    assert re.search(r"Topic: meu-topico\s+TopicId: \S+\s+PartitionCount: 3\s+ReplicationFactor: 1", described)
    for p in range(3):
        assert re.search(rf"Partition: {p}\s+Leader: 1\s+Replicas: 1\s+Isr: 1", described), described
    assert "meu-topico" in kafka_tool("kafka-topics.sh", "--list", *b).stdout.split()
    # Creating it again is refused as Kafka refuses it.
    again = kafka_tool("kafka-topics.sh", "--create", "--topic", "meu-topico", *b, "--partitions", 3,
                       "--replication-factor", 1, check=False)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr
    kafka_tool("kafka-topics.sh", "--alter", "--topic", "meu-topico", *b, "--partitions", 5)
    assert "PartitionCount: 5" in kafka_tool("kafka-topics.sh", "--describe", "--topic", "meu-topico", *b).stdout
    kafka_tool("kafka-topics.sh", "--delete", "--topic", "meu-topico", *b)
    deadline = time.monotonic() + 30
    while "meu-topico" in kafka_tool("kafka-topics.sh", "--list", *b).stdout.split():
        assert time.monotonic() < deadline, "meu-topico still listed 30 s after --delete"
        time.sleep(0.5)


def test_console_producer_and_consumer_groups_with_lag_and_reset(broker):
    b = bootstrap_args(broker)
    kafka_tool("kafka-topics.sh", "--create", "--topic", "console", *b, "--partitions", 2)
    lines = [f"linha-{i}" for i in range(200)]
    kafka_tool("kafka-console-producer.sh", "--topic", "console", *b, input="\n".join(lines) + "\n")
    got = kafka_tool("kafka-console-consumer.sh", "--topic", "console", *b, "--from-beginning",
                     "--max-messages", 200, "--group", "leitores").stdout.split()
    assert sorted(got) == sorted(lines)
    assert "leitores" in kafka_tool("kafka-consumer-groups.sh", *b, "--list").stdout.split()

    def described():
        rows = {}
        for line in kafka_tool("kafka-consumer-groups.sh", *b, "--describe", "--group", "leitores").stdout.splitlines():
            f = line.split()
            if len(f) >= 6 and f[0] == "leitores" and f[1] == "console":
                rows[int(f[2])] = (int(f[3]), int(f[4]), int(f[5]))  # current, log end, lag
        return rows

    rows = described()
    assert set(rows) == {0, 1}
    assert sum(end for _, end, _ in rows.values()) == 200
    assert all(cur == end and lag == 0 for cur, end, lag in rows.values()), rows
    out = kafka_tool("kafka-consumer-groups.sh", *b, "--reset-offsets", "--to-earliest", "--group", "leitores",
                     "--topic", "console", "--execute").stdout
    assert "NEW-OFFSET" in out
    rows = described()
    assert all(cur == 0 and lag == end for cur, end, lag in rows.values()), rows
    assert sum(lag for _, _, lag in rows.values()) == 200
    out = kafka_tool("kafka-consumer-groups.sh", *b, "--delete", "--group", "leitores").stdout
    assert "Deletion of requested consumer groups ('leitores') was successful" in out


def test_kafka_configs_on_topics_and_brokers(broker):
    b = bootstrap_args(broker)
    kafka_tool("kafka-topics.sh", "--create", "--topic", "cfg", *b)
    kafka_tool("kafka-configs.sh", *b, "--alter", "--entity-type", "topics", "--entity-name", "cfg",
               "--add-config", "retention.ms=3600000,cleanup.policy=compact")
    out = kafka_tool("kafka-configs.sh", *b, "--describe", "--entity-type", "topics", "--entity-name", "cfg").stdout
    assert "retention.ms=3600000" in out and "cleanup.policy=compact" in out
    kafka_tool("kafka-configs.sh", *b, "--alter", "--entity-type", "topics", "--entity-name", "cfg",
               "--delete-config", "cleanup.policy")
    out = kafka_tool("kafka-configs.sh", *b, "--describe", "--all", "--entity-type", "topics",
                     "--entity-name", "cfg").stdout
    assert "cleanup.policy=delete" in out and "DEFAULT_CONFIG:log.cleanup.policy=delete" in out
    bad = kafka_tool("kafka-configs.sh", *b, "--alter", "--entity-type", "topics", "--entity-name", "cfg",
                     "--add-config", "retention.ms=soon", check=False)
    assert bad.returncode != 0 and "InvalidConfigurationException" in bad.stdout + bad.stderr
    out = kafka_tool("kafka-configs.sh", *b, "--describe", "--all", "--entity-type", "brokers",
                     "--entity-name", 1).stdout
    assert "num.partitions=1" in out and "log.retention.hours=168" in out


def test_offsets_log_dirs_delete_records_and_cluster_tools(broker):
    b = bootstrap_args(broker)
    kafka_tool("kafka-topics.sh", "--create", "--topic", "ofs", *b, "--partitions", 2)
    kafka_tool("kafka-console-producer.sh", "--topic", "ofs", *b, "--property", "parse.key=true",
               input="".join(f"k\tv{i}\n" for i in range(50)))
    offsets = {}
    for line in kafka_tool("kafka-get-offsets.sh", *b, "--topic", "ofs").stdout.split():
        topic, partition, offset = line.split(":")
        offsets[int(partition)] = int(offset)
    assert sorted(offsets.values()) == [0, 50], offsets  # one key: one partition
    full = max(offsets, key=offsets.get)
    earliest = kafka_tool("kafka-get-offsets.sh", *b, "--topic", "ofs", "--time", "-2").stdout.split()
    assert sorted(earliest) == ["ofs:0:0", "ofs:1:0"]

    spec = json.dumps({"partitions": [{"topic": "ofs", "partition": full, "offset": 20}], "version": 1})
    path = broker.log_path.parent / "delete-records.json"
    path.write_text(spec)
    out = kafka_tool("kafka-delete-records.sh", *b, "--offset-json-file", path).stdout
    assert f"partition: ofs-{full}\tlow_watermark: 20" in out
    earliest = kafka_tool("kafka-get-offsets.sh", *b, "--topic", "ofs", "--time", "-2").stdout.split()
    assert f"ofs:{full}:20" in earliest

    dirs = kafka_tool("kafka-log-dirs.sh", *b, "--describe", "--topic-list", "ofs").stdout.splitlines()
    report = json.loads(dirs[-1])
    parts = {p["partition"]: p for d in report["brokers"][0]["logDirs"] for p in d["partitions"]}
    assert set(parts) == {"ofs-0", "ofs-1"} and parts[f"ofs-{full}"]["size"] > 0

    status = kafka_tool("kafka-metadata-quorum.sh", *b, "describe", "--status").stdout
    assert re.search(r"LeaderId:\s+1", status) and re.search(r"CurrentVoters:\s+\[\{\"id\": 1", status), status
    versions = kafka_tool("kafka-broker-api-versions.sh", *b).stdout
    assert re.search(r"Produce\(0\): \d+ to \d+ \[usable: \d+\]", versions)
    assert "UNSUPPORTED" not in versions.split("Produce(0)")[1].split("Fetch(1)")[0]
    features = kafka_tool("kafka-features.sh", *b, "describe").stdout
    assert re.search(r"Feature: metadata.version\s+SupportedMinVersion: 3.3-IV3\s+SupportedMaxVersion: 4.1-IV1\s+"
                     r"FinalizedVersionLevel: 4.1-IV1", features), features


def test_perf_tools_measure_against_kraftwerk(broker):
    out = kafka_tool("kafka-producer-perf-test.sh", "--topic", "perf", "--num-records", 20000, "--record-size", 100,
                     "--throughput", -1, "--producer-props", f"bootstrap.servers=localhost:{broker.port}",
                     "acks=all").stdout
    assert re.search(r"^20000 records sent, [\d.]+ records/sec", out, re.M), out
    out = kafka_tool("kafka-consumer-perf-test.sh", "--bootstrap-server", f"localhost:{broker.port}", "--topic",
                     "perf", "--messages", 20000).stdout
    fields = out.strip().splitlines()[-1].split(", ")
    assert int(fields[4]) == 20000, out  # data.consumed.in.nMsg
    out = kafka_tool("kafka-e2e-latency.sh", f"localhost:{broker.port}", "e2e", 500, "all", 100).stdout
    assert "Avg latency" in out


def verifiable_run(bootstrap, topic, count, during=None):
    """kafka-verifiable-consumer joins a group on `topic`, then
    kafka-verifiable-producer (acks=all) writes `count` records while
    `during(acked)` may break the cluster; the consumer runs until it has
    read every acknowledged record (or two minutes pass). Returns the
    acknowledged (partition, offset) pairs, the producer's errors, the
    offset ranges the consumer reported per partition and the outcomes of
    its commits."""
    consumer = kafka_tool_popen("kafka-verifiable-consumer.sh", "--bootstrap-server", bootstrap, "--topic", topic,
                                "--group-id", f"{topic}-verifier", stdout=subprocess.PIPE)
    ranges, committed = {}, []
    assigned, done = threading.Event(), threading.Event()
    acked, errors = [], []

    def covered():
        return all(any(lo <= o <= hi for lo, hi in ranges.get(p, [])) for p, o in acked)

    def read_consumer():
        for line in consumer.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("name") == "partitions_assigned" and event["partitions"]:
                assigned.set()
            elif event.get("name") == "records_consumed":
                for p in event["partitions"]:
                    ranges.setdefault(p["partition"], []).append((p["minOffset"], p["maxOffset"]))
                if done.is_set() and covered():
                    consumer.terminate()
            elif event.get("name") == "offsets_committed":
                committed.append(event["success"])

    reader = threading.Thread(target=read_consumer, daemon=True)
    reader.start()
    watchdog = threading.Timer(180, consumer.kill)
    watchdog.start()
    try:
        assert assigned.wait(60), "the verifiable consumer was assigned no partition within 60 s"
        # The tool sets retries=0 unless a producer config says otherwise;
        # a send in flight to a killed leader would then fail instead of
        # being retried. Retries (and idempotence) as a real producer has them.
        config = tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False)
        config.write("retries=2147483647\nenable.idempotence=true\n")
        config.close()
        producer = kafka_tool_popen("kafka-verifiable-producer.sh", "--bootstrap-server", bootstrap, "--topic",
                                    topic, "--max-messages", count, "--acks", -1, "--throughput", 1000,
                                    "--producer.config", config.name, stdout=subprocess.PIPE)
        for line in producer.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("name") == "producer_send_success":
                acked.append((event["partition"], event["offset"]))
                if during:
                    during(len(acked))
            elif event.get("name") == "producer_send_error":
                errors.append(event)
        producer.wait(timeout=120)
        done.set()
        deadline = time.monotonic() + 120
        while consumer.poll() is None and not covered() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        consumer.terminate()
        try:
            consumer.wait(timeout=30)
        except subprocess.TimeoutExpired:
            consumer.kill()
        watchdog.cancel()
        reader.join(timeout=10)
    return acked, errors, ranges, committed


def assert_every_ack_consumed(acked, ranges):
    missing = [(p, o) for p, o in acked if not any(lo <= o <= hi for lo, hi in ranges.get(p, []))]
    assert not missing, f"{len(missing)} acknowledged records were not consumed, first {missing[:5]}"


def test_verifiable_producer_and_consumer_on_one_node(broker):
    require_kafka_tools()
    kafka_tool("kafka-topics.sh", "--create", "--topic", "verified", "--bootstrap-server", broker.bootstrap,
               "--partitions", 3)
    acked, errors, ranges, committed = verifiable_run(broker.bootstrap, "verified", 2000)
    assert len(acked) == 2000 and not errors
    assert_every_ack_consumed(acked, ranges)
    assert committed and all(committed)


@pytest.fixture(scope="module")
def cluster():
    require_kafka_tools()
    with running_cluster("kraftwerk-tools-", extra={"broker.session.timeout.ms": SESSION_TIMEOUT_MS,
                                                   "broker.heartbeat.interval.ms": 1000}) as c:
        yield c


def test_topics_and_leader_election_on_three_nodes(cluster):
    b = ["--bootstrap-server", cluster.bootstrap]
    kafka_tool("kafka-topics.sh", "--create", "--topic", "tres", *b, "--partitions", 3, "--replication-factor", 3,
               "--config", "min.insync.replicas=2")
    described = kafka_tool("kafka-topics.sh", "--describe", "--topic", "tres", *b).stdout
    leaders = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"Partition: (\d+)\s+Leader: (\d+)", described)}
    assert sorted(leaders.values()) == [1, 2, 3], described  # one preferred leader each
    out = kafka_tool("kafka-leader-election.sh", *b, "--election-type", "preferred", "--topic", "tres",
                     "--partition", 0).stdout
    assert "Valid replica already elected for partitions tres-0" in out
    quorum = kafka_tool("kafka-metadata-quorum.sh", *b, "describe", "--status").stdout
    assert re.search(r"CurrentVoters:\s+\[\{\"id\": 1.*\"id\": 2.*\"id\": 3", quorum), quorum


def test_verifiable_producer_and_consumer_survive_a_leader_kill(cluster):
    topic = "sobrevive"
    kafka_tool("kafka-topics.sh", "--create", "--topic", topic, "--bootstrap-server", cluster.bootstrap,
               "--partitions", 3, "--replication-factor", 3, "--config", "min.insync.replicas=2")
    victim = cluster.describe(topic)["partitions"][0]["leader"]
    killed = []

    def kill_at_500(acked):
        if acked >= 500 and not killed:
            cluster.kill(victim)
            killed.append(victim)

    try:
        acked, errors, ranges, committed = verifiable_run(cluster.bootstrap, topic, 3000, during=kill_at_500)
    finally:
        # Back for the tests after this one, whatever happened here.
        if killed:
            cluster.start(victim)
            cluster.wait_until(cluster.all_unfenced, 60, "the killed node back and unfenced")
    assert killed
    # The producer retries through the election: every record is acknowledged.
    assert len(acked) == 3000 and not errors, errors[:3]
    assert_every_ack_consumed(acked, ranges)
    assert committed and all(committed)


def test_reassign_partitions_moves_the_data(cluster, tmp_path):
    """A one-replica partition on broker 1 moves to brokers 2 and 3 with
    generate/execute/verify; broker 1 drops its copy, and the records are
    all there on broker 3 alone after broker 2 is killed."""
    b = ["--bootstrap-server", cluster.bootstrap]
    kafka_tool("kafka-topics.sh", "--create", "--topic", "muda", *b, "--replica-assignment", "1")
    lines = [f"registro-{i}" for i in range(2000)]
    kafka_tool("kafka-console-producer.sh", "--topic", "muda", *b, "--producer-property", "acks=all",
               input="\n".join(lines) + "\n")
    topics = tmp_path / "topics.json"
    topics.write_text(json.dumps({"topics": [{"topic": "muda"}], "version": 1}))
    proposed = kafka_tool("kafka-reassign-partitions.sh", *b, "--topics-to-move-json-file", topics,
                          "--broker-list", "2,3", "--generate").stdout
    plan = json.loads(proposed.split("Proposed partition reassignment configuration")[1].strip())
    # The proposal keeps the replication factor, on the brokers given.
    assert len(plan["partitions"][0]["replicas"]) == 1 and set(plan["partitions"][0]["replicas"]) <= {2, 3}
    # Our own plan grows it to two, broker 3 first: it leads once the move completes.
    plan = {"version": 1, "partitions": [{"topic": "muda", "partition": 0, "replicas": [3, 2]}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    out = kafka_tool("kafka-reassign-partitions.sh", *b, "--reassignment-json-file", path, "--execute").stdout
    assert "Successfully started partition reassignment for muda-0" in out
    deadline = time.monotonic() + 60
    while True:
        out = kafka_tool("kafka-reassign-partitions.sh", *b, "--reassignment-json-file", path, "--verify").stdout
        if "Reassignment of partition muda-0 is completed." in out:
            break
        assert "is still in progress" in out, out
        assert time.monotonic() < deadline, f"reassignment not done after 60 s:\n{out}"
        time.sleep(0.5)
    assert "No partition reassignments found." in kafka_tool("kafka-reassign-partitions.sh", *b, "--list").stdout
    described = cluster.describe("muda")["partitions"][0]
    assert (described["replicas"], sorted(described["isr"]), described["leader"]) == ([3, 2], [2, 3], 3)
    cluster.wait_until(lambda: not (cluster.root / "node-1" / "muda-0").exists(), 30,
                       "broker 1 deleting its copy of muda-0")
    cluster.kill(2)
    try:
        got = kafka_tool("kafka-console-consumer.sh", "--topic", "muda", "--bootstrap-server",
                         cluster.bootstrap_without(2), "--from-beginning", "--max-messages", 2000,
                         "--timeout-ms", 60000).stdout.split()
        assert got == lines
    finally:
        cluster.start(2)
        cluster.wait_until(cluster.all_unfenced, 60, "broker 2 back and unfenced")


def test_reassign_partitions_on_one_node_refuses_unknown_brokers(broker, tmp_path):
    b = bootstrap_args(broker)
    kafka_tool("kafka-topics.sh", "--create", "--topic", "fica", *b)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"version": 1, "partitions": [{"topic": "fica", "partition": 0, "replicas": [2]}]}))
    out = kafka_tool("kafka-reassign-partitions.sh", *b, "--reassignment-json-file", path, "--execute", check=False)
    assert out.returncode != 0
    assert "Unknown broker id 2" in out.stdout + out.stderr or "InvalidReplicaAssignment" in out.stdout + out.stderr


def test_kafka_transactions_describe_producers_shows_the_idempotent_producer(broker):
    b = bootstrap_args(broker)
    kafka_tool("kafka-topics.sh", "--create", "--topic", "produtores", *b)
    # The console producer is idempotent by default: 10 records, sequences 0-9.
    kafka_tool("kafka-console-producer.sh", "--topic", "produtores", *b,
               input="".join(f"{i}\n" for i in range(10)))
    out = kafka_tool("kafka-transactions.sh", *b, "describe-producers", "--topic", "produtores",
                     "--partition", 0).stdout.splitlines()
    assert out[0].split() == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
                              "LastTimestamp", "CurrentTransactionStartOffset"]
    rows = [line.split() for line in out[1:] if line.strip()]
    assert len(rows) == 1 and rows[0][3] == "9" and rows[0][5] == "None", out


def test_group_config_and_perf_tools_after_a_leader_kill(cluster):
    """The admin tools keep working on three nodes once a partition leader
    (and possibly the group's coordinator) is gone."""
    b = ["--bootstrap-server", cluster.bootstrap]
    kafka_tool("kafka-topics.sh", "--create", "--topic", "depois", *b, "--partitions", 3, "--replication-factor", 3,
               "--config", "min.insync.replicas=2")
    kafka_tool("kafka-console-producer.sh", "--topic", "depois", *b, "--producer-property", "acks=all",
               input="".join(f"m{i}\n" for i in range(300)))
    got = kafka_tool("kafka-console-consumer.sh", "--topic", "depois", *b, "--from-beginning", "--max-messages", 300,
                     "--group", "depois-g").stdout.split()
    assert len(got) == 300
    victim = cluster.describe("depois")["partitions"][0]["leader"]
    cluster.kill(victim)
    try:
        others = cluster.bootstrap_without(victim)
        cluster.wait_until(lambda: cluster.describe("depois", bootstrap=others)["partitions"][0]["leader"]
                           not in (victim, -1), 30, "a new leader for depois-0")
        rest = ["--bootstrap-server", others]
        described = kafka_tool("kafka-consumer-groups.sh", *rest, "--describe", "--group", "depois-g").stdout
        rows = [line.split() for line in described.splitlines() if line.startswith("depois-g ")]
        # Partitions the group read from: their log ends add up to 300, no lag.
        assert rows and sum(int(r[4]) for r in rows) == 300 and all(r[5] == "0" for r in rows), described
        kafka_tool("kafka-consumer-groups.sh", *rest, "--reset-offsets", "--to-earliest", "--group", "depois-g",
                   "--topic", "depois", "--execute")
        described = kafka_tool("kafka-consumer-groups.sh", *rest, "--describe", "--group", "depois-g").stdout
        lags = [int(line.split()[5]) for line in described.splitlines() if line.startswith("depois-g ")]
        assert sum(lags) == 300, described
        kafka_tool("kafka-configs.sh", *rest, "--alter", "--entity-type", "topics", "--entity-name", "depois",
                   "--add-config", "retention.ms=7200000")
        out = kafka_tool("kafka-configs.sh", *rest, "--describe", "--entity-type", "topics",
                         "--entity-name", "depois").stdout
        assert "retention.ms=7200000" in out
        out = kafka_tool("kafka-producer-perf-test.sh", "--topic", "depois", "--num-records", 5000, "--record-size",
                         100, "--throughput", -1, "--producer-props", f"bootstrap.servers={others}", "acks=all").stdout
        assert re.search(r"^5000 records sent", out, re.M), out
    finally:
        cluster.start(victim)
        cluster.wait_until(cluster.all_unfenced, 60, "the killed node back and unfenced")
