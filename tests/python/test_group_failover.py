"""Consumer-group coordinator failover in a three-node cluster: the broker
leading the group's `__consumer_offsets` partition is `kill -9`ed, a new
coordinator loads the partition, and a consumer resumes from the committed
offsets with nothing skipped and nothing read twice."""

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from cluster_harness import running_cluster

SESSION_TIMEOUT_MS = 4000
TOPIC = "failover-orders"
GROUP = "failover-group"
TOTAL = 400


@pytest.fixture
def cluster():
    with running_cluster("kraftwerk-groups-", extra={
        "broker.session.timeout.ms": SESSION_TIMEOUT_MS,
        "broker.heartbeat.interval.ms": 1000,
        "offsets.topic.num.partitions": 6,
        "group.initial.rebalance.delay.ms": 0,
    }) as c:
        yield c


RETRIABLE = {KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
             KafkaError.NOT_COORDINATOR, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}


def coordinator(bootstrap):
    """The group's coordinator, or -1 while the new one is still loading or
    not yet known (retriable errors, which a client retries). A request
    that librdkafka sent to a coordinator that died and left the metadata
    within milliseconds waits for that broker until its request timeout
    (then `_TIMED_OUT`), so the timeout is short and the caller asks again
    with a new client."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        return admin.describe_consumer_groups([GROUP], request_timeout=5)[GROUP].result(timeout=15).coordinator.id
    except KafkaException as e:
        if e.args and e.args[0].code() in RETRIABLE:
            return -1
        raise


def consume(bootstrap, want, timeout_s=60):
    consumer = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=GROUP, auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000, consumer_timeout_ms=2000)
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for msg in consumer:
            got.append(msg.value)
            if len(got) == want:
                break
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition(TOPIC, p)) for p in range(4)}
    consumer.close(autocommit=False)
    return got, committed


def test_committed_offsets_survive_a_kill_of_the_coordinators_broker(cluster):
    cluster.cli("topics", "create", "--topic", TOPIC, "--partitions", "4", "--replication-factor", "3")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for i in range(TOTAL):
        producer.send(TOPIC, key=str(i % 11).encode(), value=f"order-{i}".encode())
    producer.flush(30)
    producer.close()

    first, committed = consume(cluster.bootstrap, TOTAL // 2)
    assert len(first) == TOTAL // 2
    assert sum(o for o in committed.values() if o) == TOTAL // 2

    victim = coordinator(cluster.bootstrap)
    cluster.kill(victim)
    survivors = cluster.bootstrap_without(victim)
    cluster.wait_until(lambda: coordinator(survivors) not in (victim, -1), SESSION_TIMEOUT_MS / 1000 + 15,
                       "a new coordinator")

    rest, committed_after = consume(survivors, TOTAL - len(first))
    assert not set(first) & set(rest), "nothing is read twice"
    assert set(first) | set(rest) == {f"order-{i}".encode() for i in range(TOTAL)}, "nothing is skipped"
    assert sum(committed_after.values()) == TOTAL
