"""A three-node cluster with a Raft metadata quorum, real processes, real clients."""

import tempfile
from pathlib import Path
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer

from cluster_harness import running_cluster

SESSION_TIMEOUT_MS = 4000


@pytest.fixture
def cluster():
    with running_cluster("kraftwerk-cluster-", extra={"broker.session.timeout.ms": SESSION_TIMEOUT_MS,
                                                     "broker.heartbeat.interval.ms": 1000}) as c:
        yield c


def test_six_partitions_rf3_give_each_broker_two_preferred_leaders(cluster):
    cluster.cli("topics", "create", "--topic", "spread", "--partitions", "6", "--replication-factor", "3")
    t = cluster.describe("spread")
    assert t["replication_factor"] == 3
    preferred = Counter(p["replicas"][0] for p in t["partitions"])
    leaders = Counter(p["leader"] for p in t["partitions"])
    assert preferred == {1: 2, 2: 2, 3: 2}
    assert leaders == {1: 2, 2: 2, 3: 2}
    for p in t["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2, 3]


def metadata_controller_ids(bootstrap, times):
    """The controller id Metadata names, asked `times` times."""
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return [admin.list_topics(timeout=10).controller_id for _ in range(times)]


def test_killing_the_active_controller_elects_another(cluster):
    active = cluster.cluster_info()["active_controller"]
    # As Kafka's KRaft brokers: Metadata names a random live broker as the
    # controller (admin requests sent there are forwarded), so clients do
    # not all keep a dead node once the active controller dies.
    named = metadata_controller_ids(cluster.bootstrap, 30)
    assert set(named) <= {1, 2, 3} and len(set(named)) > 1, named
    cluster.kill(active)
    others = cluster.bootstrap_without(active)
    started = time.monotonic()
    while True:
        out = cluster.cli("topics", "create", "--topic", "after-failover", "--partitions", "3", "--replication-factor", "2",
                          bootstrap=others, check=False)
        if out.returncode == 0:
            break
        assert time.monotonic() - started < 15, f"CreateTopics kept failing: {out.stderr}"
        time.sleep(0.5)
    assert time.monotonic() - started < 15
    info = cluster.cluster_info(bootstrap=others)
    assert info["active_controller"] not in (-1, active)
    cluster.wait_until(lambda: active not in metadata_controller_ids(others, 10), 15,
                       "Metadata to stop naming the killed node")
    assert active not in metadata_controller_ids(others, 20)
    # The killed node restarts and rejoins: registered, unfenced, caught up.
    cluster.start(active)
    cluster.wait_until(cluster.all_unfenced, 30, "the restarted node is unfenced")
    quorum = __import__("json").loads(cluster.cli("cluster", "quorum", "--output", "json").stdout)
    cluster.wait_until(
        lambda: all(v["lag"] == 0 for v in __import__("json").loads(cluster.cli("cluster", "quorum", "--output", "json").stdout)["voters"]),
        30, "every voter caught up")
    assert len(quorum["voters"]) == 3


def test_killing_a_broker_moves_its_leaders_within_the_session_timeout(cluster):
    cluster.cli("topics", "create", "--topic", "moving", "--partitions", "6", "--replication-factor", "3")
    active = cluster.cluster_info()["active_controller"]
    victim = next(n for n in (1, 2, 3) if n != active)
    led = [p["partition"] for p in cluster.describe("moving")["partitions"] if p["leader"] == victim]
    assert led
    errors, acked = [], []
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": cluster.bootstrap_without(victim), "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 30000})
        i = 0
        while not stop.is_set():
            p.produce("moving", value=str(i).encode(),
                      on_delivery=lambda err, msg: errors.append(err) if err else acked.append(msg.partition()))
            p.poll(0.01)
            i += 1
        p.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1)
    cluster.kill(victim)
    killed_at = time.monotonic()
    others = cluster.bootstrap_without(victim)
    cluster.wait_until(
        lambda: all(p["leader"] not in (victim, -1) for p in cluster.describe("moving", bootstrap=others)["partitions"]),
        SESSION_TIMEOUT_MS / 1000 + 5, "new leaders for the killed broker's partitions")
    moved_after = time.monotonic() - killed_at
    time.sleep(2)
    stop.set()
    t.join(60)
    assert moved_after <= SESSION_TIMEOUT_MS / 1000 + 1, f"leaders moved after {moved_after:.1f}s"
    assert errors == [], errors[:3]
    # Records went on reaching the partitions that changed leader.
    assert set(led) & set(acked[-200:]), "no record reached a partition after its leader moved"


def test_kafka_python_keeps_producing_across_a_broker_kill(cluster):
    from kafka import KafkaProducer
    cluster.cli("topics", "create", "--topic", "kp", "--partitions", "3", "--replication-factor", "3")
    victim = next(n for n in (1, 2, 3) if n != cluster.cluster_info()["active_controller"])
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_without(victim).split(","), acks="all", retries=50,
                             request_timeout_ms=5000, retry_backoff_ms=200)
    for i in range(30):
        producer.send("kp", str(i).encode()).get(timeout=30)
    cluster.kill(victim)
    deadline = time.monotonic() + 60
    sent = 0
    while sent < 60:
        producer.send("kp", f"after-{sent}".encode()).get(timeout=30)
        sent += 1
        assert time.monotonic() < deadline
    producer.close()


def test_sigterm_moves_leadership_before_exit_so_produces_do_not_fail(cluster):
    cluster.cli("topics", "create", "--topic", "rolling", "--partitions", "6", "--replication-factor", "3")
    errors, acked = [], []
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5,
                      "retries": 1, "retry.backoff.ms": 200, "message.timeout.ms": 10000})
        while not stop.is_set():
            p.produce("rolling", value=b"x", on_delivery=lambda err, msg: errors.append(err) if err else acked.append(1))
            p.poll(0.005)
        p.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    time.sleep(1)
    victim = next(n for n in (1, 2, 3) if n != cluster.cluster_info()["active_controller"])
    cluster.terminate(victim)
    time.sleep(2)
    stop.set()
    t.join(60)
    assert errors == [], errors[:3]
    assert len(acked) > 100
    leaders = {p["leader"] for p in cluster.describe("rolling", bootstrap=cluster.bootstrap_without(victim))["partitions"]}
    assert victim not in leaders


def test_metadata_survives_a_full_cluster_restart(cluster):
    cluster.cli("topics", "create", "--topic", "keep", "--partitions", "4", "--replication-factor", "2", "--config", "retention.ms=123456")
    before = cluster.describe("keep")
    for n in (1, 2, 3):
        cluster.kill(n)
    cluster.start_all()
    # A restarted quorum first serves the image it had stored, then the
    # committed entries after it; the topic must be back shortly.
    cluster.wait_until(lambda: cluster.cli("topics", "describe", "--topic", "keep", check=False).returncode == 0, 30,
                       "topic keep is described again")
    after = cluster.describe("keep")
    assert after["topic_id"] == before["topic_id"]
    assert [p["replicas"] for p in after["partitions"]] == [p["replicas"] for p in before["partitions"]]
    assert "retention.ms=123456" in after["configs"]


def test_dedicated_controllers_and_brokers():
    with running_cluster("kraftwerk-dedicated-", nodes=2, controllers=3,
                         extra={"broker.session.timeout.ms": SESSION_TIMEOUT_MS,
                                "broker.heartbeat.interval.ms": 1000}) as c:
        info = c.cluster_info()
        assert sorted(b["id"] for b in info["brokers"]) == [4, 5]
        assert info["active_controller"] in (1, 2, 3)
        c.cli("topics", "create", "--topic", "dedicated", "--partitions", "4", "--replication-factor", "2")
        assert {p["leader"] for p in c.describe("dedicated")["partitions"]} == {4, 5}
        # Losing one controller of three keeps the quorum writable.
        c.kill(info["active_controller"])
        deadline = time.monotonic() + 15
        while c.cli("topics", "create", "--topic", "after", "--partitions", "1", "--replication-factor", "2", check=False).returncode != 0:
            assert time.monotonic() < deadline, "no controller took over"
            time.sleep(0.5)


def test_dev_command_runs_a_local_cluster_and_stops_it():
    import subprocess
    from conftest import free_port_run, kraftwerk_bin, wait_for_dev_cluster

    kafka_base = free_port_run([0, 1, 2, 100, 101, 102])
    controller_base = kafka_base + 100
    tmp = tempfile.TemporaryDirectory(prefix="kraftwerk-dev-")
    dev = subprocess.Popen([kraftwerk_bin(), "dev", "--brokers", "3", "--data-dir", tmp.name,
                            "--base-port", str(kafka_base), "--controller-base-port", str(controller_base)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        bootstrap = f"127.0.0.1:{kafka_base}"
        wait_for_dev_cluster(bootstrap, 3, 40)
        for n in (1, 2, 3):
            assert (Path(tmp.name) / f"node-{n}.properties").exists()
    finally:
        dev.send_signal(__import__("signal").SIGINT)
        output, _ = dev.communicate(timeout=60)
        tmp.cleanup()
    assert dev.returncode == 0, output
    assert "bootstrap servers" in output and "stopped" in output


def describe_cluster_v1(port):
    """A bare DescribeCluster v1 request (what kafka-clients 3.x's
    describeCluster sends); returns the broker ids of the answer, or raises
    when the broker closes the connection instead of answering."""
    import socket
    import struct
    client_id = b"kraftwerk-test"
    header = struct.pack(">hhih", 60, 1, 7, len(client_id)) + client_id + b"\x00"
    body = b"\x00" + b"\x01" + b"\x00"  # no authorized operations, broker endpoints, no tags
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        frame = header + body
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = s.recv(4, socket.MSG_WAITALL)
        assert len(size) == 4, "the broker closed the connection instead of answering DescribeCluster v1"
        (n,) = struct.unpack(">i", size)
        data = s.recv(n, socket.MSG_WAITALL)
    # correlation id, header tags, throttle, error code, error message (compact nullable), endpoint type
    pos = 4 + 1 + 4
    (error_code,) = struct.unpack_from(">h", data, pos)
    assert error_code == 0
    return data


def test_describe_cluster_v1_answers_while_a_broker_is_fenced(cluster):
    """v0-v1 cannot carry a fenced flag: a fenced broker is left out (as
    Kafka does) instead of the answer failing to encode."""
    victim = next(n for n in (1, 2, 3) if n != cluster.cluster_info()["active_controller"])
    cluster.kill(victim)
    others = cluster.bootstrap_without(victim)
    cluster.wait_until(lambda: any(b["fenced"] for b in cluster.cluster_info(bootstrap=others)["brokers"])
                       or len(cluster.cluster_info(bootstrap=others)["brokers"]) < 3, 30, "the killed broker fenced")
    port = next(p for n, p in cluster.kafka_ports.items() if n != victim)
    describe_cluster_v1(port)


def test_a_replica_whose_log_cannot_be_opened_goes_offline_and_leadership_moves(cluster):
    """A node restarts with one partition's log damaged beyond opening: it
    reports the replica offline, another in-sync replica leads, acks=all
    produce and consume go on, and once the log can be opened again a
    restart brings the replica back into the ISR."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = "offline-log"
    cluster.cli("topics", "create", "--topic", topic, "--partitions", "1", "--replication-factor", "3",
                "--config", "min.insync.replicas=2")
    cluster.wait_until(lambda: len(cluster.describe(topic)["partitions"][0]["isr"]) == 3, 30, "full ISR")

    def send(values):
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", retries=10,
                                 request_timeout_ms=10000)
        for v in values:
            producer.send(topic, v.encode(), partition=0).get(timeout=30)
        producer.close()

    send([f"before-{i}" for i in range(20)])
    leader = cluster.describe(topic)["partitions"][0]["leader"]
    cluster.terminate(leader)
    segment = cluster.root / f"node-{leader}" / f"{topic}-0" / "00000000000000000000.log"
    segment.unlink()
    segment.mkdir()
    cluster.start(leader)

    def offline_elsewhere():
        p = cluster.describe(topic)["partitions"][0]
        return p["offline"] == [leader] and p["leader"] not in (-1, leader) and leader not in p["isr"]
    cluster.wait_until(offline_elsewhere, 30, f"node {leader}'s replica reported offline, another leader")
    send([f"after-{i}" for i in range(20)])

    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10000)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    read = []
    for message in consumer:
        read.append(message.value.decode())
        if len(read) == 40:
            break
    consumer.close()
    assert read == [f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(20)]

    # Repaired (the damaged segment given up): the replica fetches from the
    # leader again and rejoins the ISR.
    cluster.terminate(leader)
    segment.rmdir()
    cluster.start(leader)
    cluster.wait_until(lambda: cluster.describe(topic)["partitions"][0]["offline"] == []
                       and len(cluster.describe(topic)["partitions"][0]["isr"]) == 3, 60,
                       "the replica back in the ISR")
