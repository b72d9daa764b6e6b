"""Client quotas as an operator sets them with `kafka-configs.sh` and a
client meets them: a producer limited to 1 MB/s is held to it, and the
broker tells it so in `throttle_time_ms`; a consumer limited likewise reads
no faster than its quota."""

import os
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

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


# --- request_percentage (KIP-124) and controller_mutation_rate (KIP-599) ---
#
# These tests run against Apache Kafka too: start it with
# `tests/peers/kafka.sh start --dir /tmp/kq --base-port 34250` and set
# QUOTA_TESTS_BOOTSTRAP=127.0.0.1:34250.

THROTTLING_QUOTA_EXCEEDED = 89
MUTATION_RATE = 2  # partitions per second
# Kafka's token bucket holds quota.window.num x quota.window.size.seconds
# (11 s) of the rate: 22 partitions. A topic is still created while the
# bucket is at zero, so a burst of one-partition topics gets 23 through.
MUTATION_BURST = 11 * MUTATION_RATE


@pytest.fixture
def target(request):
    """The bootstrap of the broker under test: Kraftwerk, or the Kafka
    named by QUOTA_TESTS_BOOTSTRAP."""
    return os.environ.get("QUOTA_TESTS_BOOTSTRAP") or request.getfixturevalue("broker").bootstrap


class Wire:
    """One connection speaking the bare protocol at a version we choose
    (non-flexible versions only), as clients that predate a KIP do."""

    def __init__(self, bootstrap, client_id):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.client_id = client_id.encode()
        self.correlation_id = 0

    def call(self, api_key, version, body):
        self.correlation_id += 1
        header = struct.pack(">hhih", api_key, version, self.correlation_id, len(self.client_id)) + self.client_id
        self.sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        size = struct.unpack(">i", self._read(4))[0]
        frame = self._read(size)
        assert struct.unpack(">i", frame[:4])[0] == self.correlation_id
        return frame[4:]

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    def metadata_throttle_ms(self):
        # Metadata v4: no topics, no auto-creation; throttle_time_ms leads the answer.
        return struct.unpack(">i", self.call(3, 4, struct.pack(">ib", 0, 0))[:4])[0]

    def create_topics_v4(self, names, partitions=1):
        """CreateTopics v4, before KIP-599: (throttle_time_ms, {name: error_code})."""
        body = struct.pack(">i", len(names))
        for n in names:
            body += string(n) + struct.pack(">ihii", partitions, 1, 0, 0)
        body += struct.pack(">ib", 30_000, 0)
        r = self.call(19, 4, body)
        throttle, count = struct.unpack(">ii", r[:8])
        pos, errors = 8, {}
        for _ in range(count):
            name, pos = read_string(r, pos)
            code, msg_len = struct.unpack(">hh", r[pos:pos + 4])
            pos += 4 + max(msg_len, 0)
            errors[name] = code
        return throttle, errors

    def close(self):
        self.sock.close()


def string(s):
    return struct.pack(">h", len(s)) + s.encode()


def read_string(buf, pos):
    n = struct.unpack(">h", buf[pos:pos + 2])[0]
    return buf[pos + 2:pos + 2 + n].decode(), pos + 2 + n


def test_request_percentage_throttles_a_client_flooding_metadata(target):
    require_kafka_tools()
    limited = f"busy-{uuid.uuid4().hex[:6]}"
    # 0.01 % of one thread: about a millisecond of handler time per 11 s.
    set_quota(target, "clients", limited, "request_percentage=0.01")
    described = kafka_tool("kafka-configs", "--bootstrap-server", target, "--describe",
                           "--entity-type", "clients", "--entity-name", limited).stdout
    assert "request_percentage=0.01" in described
    time.sleep(1)  # the quota reaches every broker
    busy = Wire(target, limited)
    sent, throttle = 0, 0
    deadline = time.monotonic() + 30
    while throttle == 0 and sent < 20_000 and time.monotonic() < deadline:
        throttle = busy.metadata_throttle_ms()
        sent += 1
    busy.close()
    print(f"request_percentage: throttled after {sent} metadata requests, {throttle} ms")
    assert throttle > 0, f"{sent} metadata requests and none throttled"
    # A client without a quota sending as many is never throttled.
    free = Wire(target, f"free-{uuid.uuid4().hex[:6]}")
    throttles = [free.metadata_throttle_ms() for _ in range(sent + 50)]
    free.close()
    assert max(throttles) == 0


def test_controller_mutation_rate_refuses_a_burst_then_admits_again(target):
    require_kafka_tools()
    client = f"mutator-{uuid.uuid4().hex[:6]}"
    set_quota(target, "clients", client, f"controller_mutation_rate={MUTATION_RATE}")
    time.sleep(1)
    admin = KafkaAdminClient(bootstrap_servers=target, client_id=client)  # CreateTopics v7: strict
    tag = uuid.uuid4().hex[:6]
    names = [f"mut-{tag}-{i:02}" for i in range(30)]
    r = admin.create_topics({n: {"num_partitions": 1, "replication_factor": 1} for n in names},
                            raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in r["topics"]}
    created = [n for n in names if codes[n] == 0]
    print(f"controller_mutation_rate: {len(created)} of {len(names)} topics created in a burst")
    # Topics are taken in order; once the bucket is below zero the rest are refused.
    assert created == names[:len(created)]
    assert MUTATION_BURST <= len(created) <= MUTATION_BURST + 3, codes
    assert all(codes[n] == THROTTLING_QUOTA_EXCEEDED for n in names[len(created):]), codes
    # The bucket is at most a partition or so below zero: after a couple of
    # seconds the refused topics go through again.
    time.sleep(2)
    r = admin.create_topics({names[-1]: {"num_partitions": 1, "replication_factor": 1}}, raise_errors=False)
    assert r["topics"][0]["error_code"] == 0, r
    admin.close()


def test_controller_mutation_rate_only_throttles_older_versions(target):
    require_kafka_tools()
    client = f"old-mutator-{uuid.uuid4().hex[:6]}"
    set_quota(target, "clients", client, f"controller_mutation_rate={MUTATION_RATE}")
    time.sleep(1)
    tag = uuid.uuid4().hex[:6]
    names = [f"old-{tag}-{i:02}" for i in range(30)]
    wire = Wire(target, client)
    # CreateTopics v4 knows no THROTTLING_QUOTA_EXCEEDED: every topic is
    # created, and the client is told to wait for the 8 partitions over.
    throttle, errors = wire.create_topics_v4(names)
    began = time.monotonic()
    assert errors == {n: 0 for n in names}, errors
    expected_ms = (len(names) - MUTATION_BURST) / MUTATION_RATE * 1000
    assert 0.7 * expected_ms <= throttle <= 1.1 * expected_ms, throttle
    # The connection is held that long: the next answer comes after it.
    wire.metadata_throttle_ms()
    assert time.monotonic() - began >= 0.8 * throttle / 1000
    wire.close()
