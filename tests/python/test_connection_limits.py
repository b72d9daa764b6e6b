"""`max.connections`: a flood of idle connections cannot take the broker.

A broker started with `max.connections=200` gets 1,000 idle TCP
connections on top of a producer and a consumer that connected first.
The excess is closed at once, the broker's memory stays flat, and the
clients that were there first keep producing and consuming."""

import resource
import select
import socket
import time

import pytest
from confluent_kafka import Consumer, Producer

MAX_CONNECTIONS = 200
FLOOD = 1000
TOPIC = "before-the-flood"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def count_closed_by_peer(socks, settle_s=3.0):
    """How many of `socks` the broker has closed (EOF or reset), waiting
    until no more close for `settle_s`."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = set()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < settle_s:
        for fd, _ in poller.poll(200):
            poller.unregister(fd)
            try:
                data = by_fd[fd].recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b"", "the broker sent bytes to a client that asked nothing"
            closed.add(fd)
            quiet_since = time.monotonic()
    return len(closed)


def produce_and_consume(producer, consumer, start, count):
    for i in range(start, start + count):
        producer.produce(TOPIC, value=f"record-{i}".encode())
    assert producer.flush(30) == 0, "every record was acknowledged"
    want = {f"record-{i}".encode() for i in range(start, start + count)}
    got = set()
    deadline = time.monotonic() + 30
    while want - got and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.add(msg.value())
    assert want <= got, f"{len(want - got)} of {count} records not consumed"


@pytest.fixture
def enough_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FLOOD + 500
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the open-files hard limit is {hard}; this test opens {FLOOD} connections")
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_connection_flood_is_refused_past_max_connections(enough_descriptors, broker_factory):
    broker = broker_factory(extra=["--override", f"max.connections={MAX_CONNECTIONS}",
                                   "--override", "auto.create.topics.enable=true"]).start()
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "flood-watchers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([TOPIC])
    produce_and_consume(producer, consumer, 0, 200)
    rss_before = rss_kib(broker.proc.pid)

    flood = []
    try:
        for _ in range(FLOOD):
            s = socket.socket()
            s.connect(("127.0.0.1", broker.port))
            flood.append(s)
        closed = count_closed_by_peer(flood)
        still_open = FLOOD - closed
        # The clients that came first hold some of the 200 slots.
        assert still_open <= MAX_CONNECTIONS, f"{still_open} flood connections are still open"
        assert closed >= FLOOD - MAX_CONNECTIONS, f"only {closed} of {FLOOD} flood connections were closed"

        produce_and_consume(producer, consumer, 200, 200)
        rss_after = rss_kib(broker.proc.pid)
        # 200 idle connections hold a task each and no read buffer.
        assert rss_after - rss_before < 16 * 1024, (
            f"broker RSS grew from {rss_before} KiB to {rss_after} KiB under {FLOOD} idle connections")
        assert broker.proc.poll() is None, "the broker is still running"
        assert "connection refused: max.connections=200 reached" in broker.log_tail(400)
    finally:
        for s in flood:
            s.close()
        consumer.close()

    # Once the flood is gone, new clients are admitted again.
    late = Producer({"bootstrap.servers": broker.bootstrap})
    deadline = time.monotonic() + 10
    while True:
        late.produce(TOPIC, value=b"after the flood")
        if late.flush(5) == 0:
            break
        assert time.monotonic() < deadline, "a new client is admitted once the flood is closed"
