"""A single node's data directory written before single nodes ran a
controller quorum of one voter (its metadata in
`__cluster_metadata/metadata.json`) opens with this version: the topics keep
their ids and configs, the records and the group's committed offsets are
there, and the file is imported once.

The directory under `data/single-node-before-quorum` was written by the
earlier version: topic `orders` (2 partitions, retention.ms=604800000), 20
records `order-0`..`order-19` (even ones in partition 0), group `billing`
with committed offsets 2 and 10, `__consumer_offsets` of one partition."""

import base64
import json
import uuid
import shutil
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

FIXTURE = Path(__file__).parent / "data" / "single-node-before-quorum"


def topic_uuid(described) -> str:
    """A topic id as Kraftwerk writes it (a UUID): librdkafka prints it in
    base64, as Kafka's tools do."""
    return str(uuid.UUID(bytes=base64.b64decode(str(described.topic_id) + "==")))


def consume_all(bootstrap, topic, expected, group=None):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"reader-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < expected and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen.append((m.partition(), m.value().decode()))
    consumer.close()
    return seen


def test_a_data_directory_from_before_the_quorum_opens_with_topics_records_and_offsets(broker_factory):
    b = broker_factory()
    shutil.copytree(FIXTURE, b.data_dir)
    legacy = json.loads((Path(b.data_dir) / "__cluster_metadata" / "metadata.json").read_text())
    orders_id = legacy["image"]["topics"]["orders"]["id"]
    b.start()

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    described = admin.describe_topics(
        TopicCollection(["orders"]))["orders"].result(timeout=15)
    assert topic_uuid(described) == orders_id
    assert len(described.partitions) == 2
    config = admin.describe_configs([ConfigResource("TOPIC", "orders")])
    config = list(config.values())[0].result(timeout=15)
    assert config["retention.ms"].value == "604800000"
    assert config["retention.ms"].source == 1  # DYNAMIC_TOPIC_CONFIG: a topic override

    seen = consume_all(b.bootstrap, "orders", 20)
    assert sorted(v for _, v in seen) == sorted(f"order-{i}" for i in range(20))
    assert all(int(v.split("-")[1]) % 2 == p for p, v in seen)

    group = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing"})
    committed = group.committed([TopicPartition("orders", 0), TopicPartition("orders", 1)], timeout=15)
    group.close()
    assert [(tp.partition, tp.offset) for tp in committed] == [(0, 2), (1, 10)]

    meta = Path(b.data_dir) / "__cluster_metadata"
    assert not (meta / "metadata.json").exists()
    assert (meta / "metadata.json.imported").exists()
    cluster_id = legacy["image"]["cluster_id"]
    assert f"cluster.id={cluster_id}" in (Path(b.data_dir) / "meta.properties").read_text()

    # The node takes new writes (a fresh idempotent producer id too) and
    # keeps everything across a restart, without importing again.
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True})
    for i in range(20, 30):
        p.produce("orders", value=f"order-{i}".encode(), partition=i % 2)
    assert p.flush(15) == 0
    b.stop()
    b.start()
    seen = consume_all(b.bootstrap, "orders", 30)
    assert sorted(v for _, v in seen) == sorted(f"order-{i}" for i in range(30))
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    described = admin.describe_topics(TopicCollection(["orders"]))["orders"].result(timeout=15)
    assert topic_uuid(described) == orders_id
