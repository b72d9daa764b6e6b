"""Log compaction seen from a Kafka client: a compacted topic keeps the
latest value of every key, deletes keys whose tombstones are older than
`delete.retention.ms`, and keeps serving producers while it is cleaned."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

KEYS = 20
ROUNDS = 50


def read_everything(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            if out and out[-1][0] >= high - 1:
                break
            continue
        out.append((m.offset(), m.key(), m.value()))
        if m.offset() >= high - 1:
            break
    c.close()
    return out, high


def test_compacted_topic_keeps_the_latest_value_per_key_and_drops_old_tombstones(broker_factory):
    broker = broker_factory(extra=["--override", "log.cleaner.backoff.ms=200"]).start()
    topic = "compacted-prices"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0"})])[topic].result(timeout=10)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for r in range(ROUNDS):
        for k in range(KEYS):
            p.produce(topic, key=f"k{k:02d}".encode(), value=f"r{r:03d}-{'x' * 40}".encode())
        p.flush(10)
    # Tombstones for the first five keys, then fill a few segments so the
    # tombstones leave the active segment.
    for k in range(5):
        p.produce(topic, key=f"k{k:02d}".encode(), value=None)
    p.flush(10)
    for r in range(20):
        p.produce(topic, key=f"filler{r % 3}".encode(), value=b"f" * 300)
        p.flush(10)
    produced = ROUNDS * KEYS + 5 + 20

    deadline = time.monotonic() + 30
    while True:
        records, high = read_everything(broker.bootstrap, topic)
        latest = {}
        for _, key, value in records:
            latest[key] = value
        deleted = all(f"k{k:02d}".encode() not in latest for k in range(5))
        if len(records) < produced / 4 and deleted:
            break
        assert time.monotonic() < deadline, f"not compacted: {len(records)} of {produced} records remain: {[(o, k, v[:8] if v else v) for o, k, v in records]}"
        time.sleep(0.5)

    assert high == produced, "compaction keeps offsets: the log end is unchanged"
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    for k in range(5, KEYS):
        assert latest[f"k{k:02d}".encode()].startswith(f"r{ROUNDS - 1:03d}-".encode()), k
    # Producing goes on as before.
    p.produce(topic, key=b"k10", value=b"after")
    assert p.flush(10) == 0
    records, _ = read_everything(broker.bootstrap, topic)
    assert records[-1][1:] == (b"k10", b"after")
