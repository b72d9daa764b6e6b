"""The kafka-python snippets of the seed notes, run unchanged against Kraftwerk.

The snippets (tests/python/snippets.py, verbatim from the notes) connect to
localhost:9092, so this test runs a broker on 127.0.0.1:9092.
"""

import json
import socket
import time

import pytest

from snippets import EXPECTED, SEED_CONSUMER, SEED_PRODUCER, Proc, received, run_snippet


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for_lines(proc, count, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(received(proc.snapshot())) < count:
        time.sleep(0.1)
    return received(proc.snapshot())


def test_seed_producer_and_group_consumer_run_unchanged(broker_factory):
    if not port_free(9092):
        pytest.fail("port 9092 is taken; the seed snippets need it for kraftwerk")
    broker = broker_factory(port=9092).start()

    produced = run_snippet(SEED_PRODUCER)
    assert produced.returncode == 0, produced.stderr + broker.log_tail()
    assert produced.stdout.count("Mensagem enviada") == 10

    # The seed consumer (group 'meu-grupo') reads until it is stopped.
    consumer = Proc(SEED_CONSUMER)
    try:
        seen = wait_for_lines(consumer, 10, 60)
        time.sleep(1)
        seen = received(consumer.snapshot())
    finally:
        consumer.kill()
    # One partition (auto-created), so the order is the producer's.
    assert seen == EXPECTED, broker.log_tail()


def test_kafka_python_reports_offsets_and_reads_by_partition(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)])
    assert "orders" in admin.list_topics()
    admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v).encode())
    metas = [producer.send("orders", key=f"k{i % 7}", value={"i": i}).get(timeout=10) for i in range(60)]
    producer.close()
    by_partition = {}
    for m in metas:
        by_partition.setdefault(m.partition, []).append(m.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, value_deserializer=lambda b: json.loads(b))
    consumer.assign([TopicPartition("orders", p) for p in range(3)])
    seen = sorted(m.value["i"] for m in consumer)
    consumer.close()
    assert seen == list(range(60))
