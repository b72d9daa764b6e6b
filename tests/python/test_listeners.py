"""Two Kafka listeners per broker, as in a Docker Compose deployment: each
client is told the brokers' addresses on the listener it connected to."""

import re
import time

import pytest
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer

from cluster_harness import running_cluster
from conftest import free_port

# Reachable only from "inside": nothing listens on 127.0.0.2 here, so a
# client that is handed these addresses fails, which is what a host client
# would see if it were given a container's service name.
INTERNAL_HOST = "127.0.0.2"


def two_listeners(c):
    """Each broker gets an internal listener (advertised on an unreachable
    host) and a host listener; `c.kafka_ports` become the host ones."""
    c.internal_ports = dict(c.kafka_ports)
    c.kafka_ports = {n: free_port() for n in c.broker_ids}
    for n in c.broker_ids:
        path = c.root / f"node-{n}.properties"
        text = path.read_text()
        internal, external = c.internal_ports[n], c.kafka_ports[n]
        # Replication has its own listener: by default it would be derived
        # from the first Kafka listener, whose advertised host is unreachable.
        replication = free_port()
        text = re.sub(r"^listeners=PLAINTEXT://127.0.0.1:\d+",
                      f"listeners=PLAINTEXT://127.0.0.1:{internal},PLAINTEXT_HOST://127.0.0.1:{external},"
                      f"REPLICATION://127.0.0.1:{replication}",
                      text, flags=re.M)
        text = re.sub(r"^advertised.listeners=.*$",
                      f"advertised.listeners=PLAINTEXT://{INTERNAL_HOST}:{internal},"
                      f"PLAINTEXT_HOST://127.0.0.1:{external}", text, flags=re.M)
        path.write_text(text)


@pytest.fixture
def cluster():
    with running_cluster("kraftwerk-listeners-", prepare=two_listeners,
                         extra={"inter.broker.listener.name": "PLAINTEXT"}) as c:
        yield c


def advertised(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {b.id: (b.host, b.port) for b in md.brokers.values()}


def test_each_listener_advertises_its_own_addresses(cluster):
    external = advertised(cluster.bootstrap)
    assert external == {n: ("127.0.0.1", p) for n, p in cluster.kafka_ports.items()}
    internal = advertised(f"127.0.0.1:{cluster.internal_ports[1]}")
    assert internal == {n: (INTERNAL_HOST, p) for n, p in cluster.internal_ports.items()}


def test_clients_on_the_host_listener_produce_and_consume_in_a_group(cluster):
    cluster.cli("topics", "create", "--topic", "via-host", "--partitions", "3", "--replication-factor", "3")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for i in range(300):
        producer.send("via-host", key=str(i % 7).encode(), value=f"m{i}".encode())
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer("via-host", bootstrap_servers=cluster.bootstrap, group_id="host-group",
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    seen = set()
    deadline = time.monotonic() + 45
    for msg in consumer:
        seen.add(msg.value)
        if len(seen) == 300 or time.monotonic() > deadline:
            break
    consumer.commit()
    consumer.close()
    assert seen == {f"m{i}".encode() for i in range(300)}
