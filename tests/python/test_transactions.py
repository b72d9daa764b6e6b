"""Transactions with real clients: librdkafka (confluent-kafka) and
kafka-python write atomically across partitions; read_committed consumers
see exactly the committed records, read_uncommitted ones see everything,
neither sees a marker; offsets sent to a transaction are committed with
it; a second producer with the same transactional.id fences the first; a
producer stopped inside a transaction holds read_committed readers back
until the coordinator aborts it at its timeout; all of it survives a
broker restart."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = 3
PARTITIONS = 6
COMMITTED_PER_PARTITION = 20


def create_topics(bootstrap, names, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    for n in names:
        futures[n].result(timeout=30)


def read_all(bootstrap, topics, partitions, isolation, expect=None, timeout_s=20):
    """Every record of the topics from the start: {(topic, partition): [values]}."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
    got = {}
    count = 0
    deadline = time.time() + timeout_s
    idle_until = None
    while time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            if expect is not None and count >= expect:
                # Nothing more comes: a second of silence after the count.
                idle_until = idle_until or time.time() + 1
                if time.time() > idle_until:
                    break
            continue
        if msg.error():
            raise KafkaException(msg.error())
        idle_until = None
        got.setdefault((msg.topic(), msg.partition()), []).append(msg.value())
        count += 1
    consumer.close()
    return got


def test_librdkafka_commits_across_topics_and_aborts_atomically(broker):
    topics = [f"txn-out-{i}" for i in range(TOPICS)]
    create_topics(broker.bootstrap, topics, PARTITIONS)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "librdkafka-atomic"})
    producer.init_transactions(30)

    committed = {}
    producer.begin_transaction()
    for t in topics:
        for p in range(PARTITIONS):
            for i in range(COMMITTED_PER_PARTITION):
                value = f"{t}/{p}/committed-{i}".encode()
                producer.produce(t, value=value, partition=p)
                committed.setdefault((t, p), []).append(value)
    producer.commit_transaction(30)

    producer.begin_transaction()
    aborted = {}
    for t in topics:
        for p in range(PARTITIONS):
            value = f"{t}/{p}/aborted".encode()
            producer.produce(t, value=value, partition=p)
            aborted[(t, p)] = value
    # Everything reaches the partitions before the abort (an abort would
    # otherwise drop what is still queued in the client).
    assert producer.flush(30) == 0
    producer.abort_transaction(30)

    producer.begin_transaction()
    for t in topics:
        value = f"{t}/0/after".encode()
        producer.produce(t, value=value, partition=0)
        committed[(t, 0)].append(value)
    producer.commit_transaction(30)

    total_committed = sum(len(v) for v in committed.values())
    seen_committed = read_all(broker.bootstrap, topics, PARTITIONS, "read_committed", expect=total_committed)
    assert seen_committed == committed

    seen_all = read_all(broker.bootstrap, topics, PARTITIONS, "read_uncommitted",
                        expect=total_committed + len(aborted))
    for key, values in committed.items():
        want = list(values)
        # The aborted record sits between the first transaction and the last.
        want.insert(COMMITTED_PER_PARTITION, aborted[key])
        assert seen_all[key] == want, key


def test_kafka_python_transactions_and_read_committed(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTopicPartition

    topics = [f"txn-kafka-python-{i}" for i in range(TOPICS)]
    create_topics(broker.bootstrap, topics, PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="kafka-python-txn")
    producer.init_transactions()
    committed, aborted = {}, {}
    producer.begin_transaction()
    for t in topics:
        for p in range(PARTITIONS):
            for i in range(5):
                value = f"{t}/{p}/ok-{i}"
                producer.send(t, value=value.encode(), partition=p)
                committed.setdefault((t, p), []).append(value)
    producer.commit_transaction()
    producer.begin_transaction()
    for t in topics:
        for p in range(PARTITIONS):
            value = f"{t}/{p}/no"
            producer.send(t, value=value.encode(), partition=p)
            aborted[(t, p)] = value
    producer.flush()
    producer.abort_transaction()
    producer.close()

    def consume(isolation, want):
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                                 enable_auto_commit=False, consumer_timeout_ms=3000)
        consumer.assign([KTopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got, count = {}, 0
        deadline = time.time() + 30
        while count < want and time.time() < deadline:
            for msg in consumer:
                got.setdefault((msg.topic, msg.partition), []).append(msg.value.decode())
                count += 1
        consumer.close()
        return got

    total = sum(len(v) for v in committed.values())
    assert consume("read_committed", total) == committed
    everything = consume("read_uncommitted", total + len(aborted))
    assert everything == {k: v + [aborted[k]] for k, v in committed.items()}


def test_consume_transform_produce_commits_offsets_with_the_output(broker):
    source, sink, group = "ctp-in", "ctp-out", "ctp-group"
    create_topics(broker.bootstrap, [source, sink], 3)
    records = 300
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(records):
        plain.produce(source, value=str(i).encode(), partition=i % 3)
    assert plain.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "ctp-app"})
    producer.init_transactions(30)
    copied = 0
    transactions = 0
    deadline = time.time() + 60
    while copied < records and time.time() < deadline:
        batch = consumer.consume(num_messages=50, timeout=1)
        batch = [m for m in batch if not m.error()]
        if not batch:
            continue
        producer.begin_transaction()
        for m in batch:
            producer.produce(sink, value=b"x" + m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        copied += len(batch)
        transactions += 1
    assert copied == records
    assert transactions >= 2
    consumer.close()

    # The group's committed offsets are the end of the input, and the
    # output is the input, transformed, partition by partition.
    checker = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = checker.committed([TopicPartition(source, p) for p in range(3)], timeout=10)
    assert sorted(tp.offset for tp in committed) == [100, 100, 100]
    checker.close()
    out = read_all(broker.bootstrap, [sink], 3, "read_committed", expect=records)
    for p in range(3):
        assert out[(sink, p)] == [b"x" + str(i).encode() for i in range(p, records, 3)]


def test_a_second_producer_with_the_same_id_fences_the_first(broker):
    topic = "txn-zombie"
    create_topics(broker.bootstrap, [topic], 1)
    config = {"bootstrap.servers": broker.bootstrap, "transactional.id": "zombie"}
    old = Producer(config)
    old.init_transactions(30)
    old.begin_transaction()
    old.produce(topic, value=b"from-the-zombie")
    assert old.flush(30) == 0

    new = Producer(config)
    # Ends the zombie's open transaction (aborted) and bumps the epoch.
    new.init_transactions(30)
    new.begin_transaction()
    new.produce(topic, value=b"from-the-new-one")
    new.commit_transaction(30)

    with pytest.raises(KafkaException) as failure:
        old.commit_transaction(30)
    error = failure.value.args[0]
    assert error.fatal() or "fenced" in error.str().lower(), error

    assert read_all(broker.bootstrap, [topic], 1, "read_committed", expect=1) == {(topic, 0): [b"from-the-new-one"]}


STALLED_PRODUCER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Producer
    bootstrap, topic = sys.argv[1], sys.argv[2]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "stalled",
                  "transaction.timeout.ms": 4000})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"left-open", partition=0)
    assert p.flush(30) == 0
    print("open", flush=True)
    time.sleep(600)
""")


def test_a_stopped_producer_holds_readers_until_its_transaction_times_out(broker_factory):
    broker = broker_factory(extra=[
        "--override", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    ]).start()
    topic = "txn-stalled"
    create_topics(broker.bootstrap, [topic], 1)
    stalled = subprocess.Popen([sys.executable, "-c", STALLED_PRODUCER, broker.bootstrap, topic],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert stalled.stdout.readline().strip() == "open"
        stalled.send_signal(signal.SIGSTOP)
        stopped_at = time.time()

        later = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "later"})
        later.init_transactions(30)
        later.begin_transaction()
        later.produce(topic, value=b"committed-after", partition=0)
        later.commit_transaction(30)

        consumer = Consumer({
            "bootstrap.servers": broker.bootstrap,
            "group.id": "stalled-reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        })
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = []
        first_seen_at = None
        deadline = time.time() + 30
        while not seen and time.time() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                seen.append(msg.value())
                first_seen_at = time.time()
        consumer.close()
        # Held back by the open transaction, then released by its abort.
        assert seen == [b"committed-after"]
        waited = first_seen_at - stopped_at
        assert 3.0 <= waited <= 15.0, waited
    finally:
        stalled.send_signal(signal.SIGKILL)
        stalled.wait(timeout=10)


def test_an_idle_transactional_id_expires(broker_factory):
    import json

    from conftest import kraftwerk_bin

    broker = broker_factory(extra=[
        "--override", "transactional.id.expiration.ms=6000",
        "--override", "transaction.remove.expired.transaction.cleanup.interval.ms=500",
    ]).start()
    create_topics(broker.bootstrap, ["txn-expiry"], 1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "short-lived"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("txn-expiry", value=b"v")
    producer.commit_transaction(30)

    def listed():
        out = subprocess.run([kraftwerk_bin(), "transactions", "list", "--bootstrap-server", broker.bootstrap,
                              "--output", "json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [t["transactional_id"] for t in json.loads(out.stdout)]

    assert "short-lived" in listed()
    deadline = time.time() + 30
    while "short-lived" in listed() and time.time() < deadline:
        time.sleep(0.5)
    assert "short-lived" not in listed()


def test_transaction_outcomes_survive_a_broker_restart(broker):
    topic = "txn-restart"
    create_topics(broker.bootstrap, [topic], 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "restart"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for p in range(2):
        producer.produce(topic, value=b"kept", partition=p)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for p in range(2):
        producer.produce(topic, value=b"dropped", partition=p)
    assert producer.flush(30) == 0
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"open", partition=1)
    assert producer.flush(30) == 0

    broker.kill()
    broker.start()

    # The abort is still known, and the open transaction still holds
    # partition 1's stable offset after the restart.
    got = read_all(broker.bootstrap, [topic], 2, "read_committed", expect=2, timeout_s=15)
    assert got == {(topic, 0): [b"kept"], (topic, 1): [b"kept"]}
    everything = read_all(broker.bootstrap, [topic], 2, "read_uncommitted", expect=5, timeout_s=15)
    assert everything == {(topic, 0): [b"kept", b"dropped"], (topic, 1): [b"kept", b"dropped", b"open"]}

    # The restarted coordinator knows the id: a new producer aborts the
    # open transaction and carries on.
    again = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "restart"})
    again.init_transactions(60)
    again.begin_transaction()
    again.produce(topic, value=b"after-restart", partition=1)
    again.commit_transaction(30)
    got = read_all(broker.bootstrap, [topic], 2, "read_committed", expect=3, timeout_s=15)
    assert got == {(topic, 0): [b"kept"], (topic, 1): [b"kept", b"after-restart"]}


def test_java_client_commits_across_topics_and_aborts_atomically(broker):
    from peers import run_java_scenario

    out = run_java_scenario("TransactionalFanout", broker.bootstrap, "--topics", TOPICS, "--partitions", PARTITIONS,
                            "--records", COMMITTED_PER_PARTITION)
    assert "read_committed: exactly the expected" in out and "read_uncommitted: exactly the expected" in out


def test_java_client_exactly_once_copy_on_one_node(broker):
    from peers import run_java_scenario

    out = run_java_scenario("TransactionalCopy", broker.bootstrap, "--records", 5000, "--partitions", 4)
    assert "exactly the input in order" in out


def test_kafka_transactions_tool_lists_describes_and_finds_a_hanging_transaction(broker):
    from peers import kafka_tool, require_kafka_tools

    require_kafka_tools()
    topic = "txn-tool"
    create_topics(broker.bootstrap, [topic], 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tool-app"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"pending", partition=1)
    assert producer.flush(30) == 0
    b = ["--bootstrap-server", broker.bootstrap]

    listed = kafka_tool("kafka-transactions.sh", *b, "list").stdout
    assert "tool-app" in listed and "Ongoing" in listed, listed
    described = kafka_tool("kafka-transactions.sh", *b, "describe", "--transactional-id", "tool-app").stdout
    assert "Ongoing" in described and f"{topic}-1" in described, described
    producers = kafka_tool("kafka-transactions.sh", *b, "describe-producers", "--topic", topic,
                           "--partition", "1").stdout
    # The producer's open transaction starts at offset 0 of partition 1.
    rows = [line.split() for line in producers.splitlines()[1:] if line.strip()]
    assert rows and rows[0][-1] == "0", producers

    # Not hanging: the coordinator knows the transaction (and it is young).
    hanging = kafka_tool("kafka-transactions.sh", *b, "find-hanging", "--broker-id", "1").stdout
    assert hanging.splitlines()[0].startswith("Topic") and not hanging.splitlines()[1:], hanging

    # Abort it on the partition by hand, as an operator ends a hanging
    # transaction: the record is dropped for read_committed readers and the
    # partition's stable offset moves on.
    kafka_tool("kafka-transactions.sh", *b, "abort", "--topic", topic, "--partition", "1", "--start-offset", "0")
    producers = kafka_tool("kafka-transactions.sh", *b, "describe-producers", "--topic", topic,
                           "--partition", "1").stdout
    rows = [line.split() for line in producers.splitlines()[1:] if line.strip()]
    assert rows and rows[0][-1] == "None", producers
    later = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tool-later"})
    later.init_transactions(30)
    later.begin_transaction()
    later.produce(topic, value=b"after", partition=1)
    later.commit_transaction(30)
    assert read_all(broker.bootstrap, [topic], 2, "read_committed", expect=1) == {(topic, 1): [b"after"]}

    # The coordinator still ends the transaction it knows.
    producer.commit_transaction(30)
    deadline = time.time() + 20
    while time.time() < deadline:
        described = kafka_tool("kafka-transactions.sh", *b, "describe", "--transactional-id", "tool-app").stdout
        if "CompleteCommit" in described:
            break
        time.sleep(0.5)
    assert "CompleteCommit" in described, described


def test_kafka_streams_exactly_once_word_count_on_one_node(broker):
    from peers import run_java_scenario

    out = run_java_scenario("StreamsWordCount", broker.bootstrap, "--lines", 2000, "--rate", 1000)
    assert "every word counted exactly once" in out


def test_kraftwerk_transactions_cli(broker):
    import json

    from conftest import kraftwerk_bin

    def cli(*args):
        out = subprocess.run([kraftwerk_bin(), "transactions", *args, "--bootstrap-server", broker.bootstrap,
                              "--output", "json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    topic = "txn-cli"
    create_topics(broker.bootstrap, [topic], 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "cli-app"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"a", partition=0)
    producer.produce(topic, value=b"b", partition=1)
    assert producer.flush(30) == 0

    listed = {t["transactional_id"]: t for t in cli("list")}
    assert listed["cli-app"]["state"] == "Ongoing"
    described = cli("describe", "--transactional-id", "cli-app")
    assert described["state"] == "Ongoing"
    assert described["partitions"] == [f"{topic}-0", f"{topic}-1"]
    producers = cli("describe-producers", "--topic", topic, "--partition", "1")
    assert [p["current_transaction_start_offset"] for p in producers] == [0]
    # Known to its coordinator, so not hanging even past a zero timeout.
    assert cli("find-hanging", "--max-transaction-timeout", "0") == []

    # Abort on partition 1 by hand; partition 0 stays in the transaction.
    cli("abort", "--topic", topic, "--partition", "1", "--start-offset", "0")
    producers = cli("describe-producers", "--topic", topic, "--partition", "1")
    assert [p["current_transaction_start_offset"] for p in producers] == [None]
    producer.commit_transaction(30)
    got = read_all(broker.bootstrap, [topic], 2, "read_committed", expect=1)
    assert got == {(topic, 0): [b"a"]}
