"""`GET /metrics` on the HTTP listener (`kraftwerk.http.listener`): the
per-topic byte and record counters rise with what a real client produces
and consumes, and `underreplicatedpartitions` goes to 1 on a leader when
a follower is killed and back to 0 when it rejoins."""

import re
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_harness import running_cluster
from conftest import free_port


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def value(text, name, **labels):
    """The sample `name{labels}` (label order as written), or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def test_topic_counters_rise_with_produced_and_consumed_records(broker_factory):
    http = free_port()
    broker = broker_factory(extra=["--override", f"kraftwerk.http.listener=127.0.0.1:{http}"]).start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("metered", 2, 1)])["metered"].result(30)
    before = scrape(http)
    assert value(before, "kafka_server_brokertopicmetrics_messagesinpersec_total", topic="metered") in (None, 0.0)

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(500):
        producer.produce("metered", value=b"x" * 100, partition=i % 2)
    assert producer.flush(30) == 0
    after = scrape(http)
    assert value(after, "kafka_server_brokertopicmetrics_messagesinpersec_total", topic="metered") == 500
    bytes_in = value(after, "kafka_server_brokertopicmetrics_bytesinpersec_total", topic="metered")
    assert bytes_in is not None and bytes_in > 500 * 100
    assert value(after, "kafka_network_requestmetrics_requestspersec_total", request="Produce") >= 1
    sizes = [value(after, "kafka_log_log_size", topic="metered", partition=str(p)) for p in range(2)]
    assert sum(sizes) == bytes_in

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "metered-reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition("metered", p, 0) for p in range(2)])
    got = 0
    deadline = time.time() + 20
    while got < 500 and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got += 1
    assert got == 500
    consumer.commit(asynchronous=False)
    consumer.close()
    lag = [value(scrape(http), "kafka_consumergroup_lag", consumergroup="metered-reader", topic="metered",
                 partition=str(p)) for p in range(2)]
    assert lag == [0, 0]
    for i in range(30):
        producer.produce("metered", value=b"y", partition=0)
    assert producer.flush(30) == 0
    lag = value(scrape(http), "kafka_consumergroup_lag", consumergroup="metered-reader", topic="metered",
                partition="0")
    assert lag == 30
    out = value(scrape(http), "kafka_server_brokertopicmetrics_bytesoutpersec_total", topic="metered")
    assert out is not None and out >= bytes_in
    assert value(after, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert value(after, "process_resident_memory_bytes") > 0
    # Every series the Grafana dashboard charts is served, under that name.
    served = {line.split("{")[0].split(" ")[0] for line in scrape(http).splitlines()
              if line and not line.startswith("#")}
    assert dashboard_metrics() - served == set()


def dashboard_metrics():
    """The metric names the PromQL of deploy/grafana/kraftwerk-dashboard.json uses."""
    import json
    from conftest import ROOT
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "kraftwerk-dashboard.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b((?:kafka|process)_[a-z_]+)\b", target["expr"]))
    assert len(names) >= 10, names
    return names


def test_under_replicated_partitions_follow_a_follower_kill():
    ports = {}

    def give_http_ports(cluster):
        for n in cluster.broker_ids:
            ports[n] = free_port()
            path = cluster.root / f"node-{n}.properties"
            path.write_text(path.read_text() + f"kraftwerk.http.listener=127.0.0.1:{ports[n]}\n")

    extra = {"broker.session.timeout.ms": 4000, "broker.heartbeat.interval.ms": 1000}
    with running_cluster("kraftwerk-metrics-", prepare=give_http_ports, extra=extra) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("watched", 1, 3)])["watched"].result(30)
        leader = None
        deadline = time.time() + 30
        while leader is None and time.time() < deadline:
            md = admin.list_topics("watched", timeout=10)
            p = md.topics["watched"].partitions.get(0)
            if p is not None and p.leader >= 0 and len(p.isrs) == 3:
                leader = p.leader
            else:
                time.sleep(0.2)
        assert leader is not None
        before = scrape(ports[leader])
        assert value(before, "kafka_server_replicamanager_underreplicatedpartitions") == 0
        shrinks = value(before, "kafka_server_replicamanager_isrshrinkspersec_total")
        expands = value(before, "kafka_server_replicamanager_isrexpandspersec_total")

        follower = next(n for n in cluster.broker_ids if n != leader)
        cluster.kill(follower)
        seen = None
        deadline = time.time() + 30
        while time.time() < deadline:
            seen = value(scrape(ports[leader]), "kafka_server_replicamanager_underreplicatedpartitions")
            if seen and seen >= 1:
                break
            time.sleep(0.3)
        assert seen and seen >= 1, seen
        # The counter moves when the controller's answer reaches the leader,
        # which may come just after the new ISR did.
        deadline = time.time() + 10
        while value(scrape(ports[leader]), "kafka_server_replicamanager_isrshrinkspersec_total") < shrinks + 1:
            assert time.time() < deadline, "no ISR shrink counted on the leader"
            time.sleep(0.2)

        cluster.start(follower)
        deadline = time.time() + 60
        while time.time() < deadline:
            seen = value(scrape(ports[leader]), "kafka_server_replicamanager_underreplicatedpartitions")
            if seen == 0:
                break
            time.sleep(0.3)
        assert seen == 0, seen
        deadline = time.time() + 10
        while value(scrape(ports[leader]), "kafka_server_replicamanager_isrexpandspersec_total") < expands + 1:
            assert time.time() < deadline, "no ISR expansion counted on the leader"
            time.sleep(0.2)
