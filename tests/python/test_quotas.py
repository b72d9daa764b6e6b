"""Client quotas as an operator sets them with `kafka-configs.sh` and a
client meets them: a producer limited to 1 MB/s is held to it, and the
broker tells it so in `throttle_time_ms`; a consumer limited likewise reads
no faster than its quota."""

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from peers import kafka_tool, require_kafka_tools

QUOTA = 1_048_576  # bytes per second
RUN_S = 30
# The rate is measured over 11 one-second windows (Kafka's defaults), so a
# client that was idle may first send about eleven seconds' worth at once;
# the rate is checked after that burst.
WARM_UP_S = 11


def set_quota(bootstrap, entity_type, name, config):
    kafka_tool("kafka-configs", "--bootstrap-server", bootstrap, "--alter", "--add-config", config,
               "--entity-type", entity_type, "--entity-name", name)


def test_producer_is_held_to_its_byte_rate_and_told_the_throttle_time(broker):
    require_kafka_tools()
    bootstrap = broker.bootstrap
    topic = f"quota-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    set_quota(bootstrap, "clients", "limited-producer", f"producer_byte_rate={QUOTA}")
    described = kafka_tool("kafka-configs", "--bootstrap-server", bootstrap, "--describe",
                           "--entity-type", "clients", "--entity-name", "limited-producer").stdout
    assert f"producer_byte_rate={QUOTA}" in described.replace(".0", "")

    throttles = []
    acked = [0]

    def delivered(err, msg):
        if err is None:
            acked[0] += len(msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "client.id": "limited-producer", "linger.ms": 5,
                  "queue.buffering.max.kbytes": 2048,
                  "throttle_cb": lambda event: throttles.append(event.throttle_time)})
    value = b"q" * 10_000
    began = time.monotonic()
    start = None
    while time.monotonic() - began < WARM_UP_S + RUN_S:
        if start is None and time.monotonic() - began >= WARM_UP_S:
            start, acked_at_start = time.monotonic(), acked[0]
        try:
            p.produce(topic, value, callback=delivered)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    p.poll(0)
    elapsed = time.monotonic() - start
    rate = (acked[0] - acked_at_start) / elapsed
    p.purge()
    p.flush(10)
    # Kafka's quota counts the request's record batches, a little more than
    # the values counted here; within 10% of the quota either way.
    print(f"producer held at {rate / QUOTA:.3f} of its quota")
    assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, f"{rate:.0f} B/s against a quota of {QUOTA}"
    assert throttles and max(throttles) > 0, "no response carried a throttle time"

    # Another client id is not limited.
    free = Producer({"bootstrap.servers": bootstrap, "client.id": "free-producer", "linger.ms": 5})
    free_acked = [0]
    start = time.monotonic()
    for _ in range(2000):
        free.produce(topic, value, callback=lambda err, msg: free_acked.__setitem__(0, free_acked[0] + (err is None)))
        free.poll(0)
    free.flush(30)
    free_rate = free_acked[0] * len(value) / (time.monotonic() - start)
    assert free_acked[0] == 2000
    assert free_rate > 2 * QUOTA, f"an unlimited client ran at {free_rate:.0f} B/s"


def test_consumer_is_held_to_its_byte_rate(broker):
    require_kafka_tools()
    bootstrap = broker.bootstrap
    topic = f"quota-read-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    value = b"r" * 10_000
    for _ in range(4000):  # 40 MB
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)
    set_quota(bootstrap, "clients", "limited-consumer", f"consumer_byte_rate={QUOTA}")
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": "limited-consumer", "group.id": "quota-readers",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    read = 0
    began = time.monotonic()
    start = None
    while time.monotonic() - began < WARM_UP_S + 15:
        if start is None and time.monotonic() - began >= WARM_UP_S:
            start, read_at_start = time.monotonic(), read
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            read += len(m.value())
    elapsed = time.monotonic() - start
    c.close()
    rate = (read - read_at_start) / elapsed
    # Without the quota the 40 MB backlog is read in a few seconds.
    print(f"consumer held at {rate / QUOTA:.3f} of its quota")
    assert 0.9 * QUOTA <= rate <= 1.1 * QUOTA, f"{rate:.0f} B/s against a quota of {QUOTA}"
