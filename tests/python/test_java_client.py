"""The Java client (kafka-clients 4.1.1, from Maven Central) against real
Kraftwerk processes: the scenarios in tests/java, on one node and on three
nodes with a partition leader killed while the producer writes."""

import re
import threading
import time

import pytest

from cluster_harness import running_cluster
from peers import java_classpath, java_scenario, run_java_scenario

SESSION_TIMEOUT_MS = 4000


def test_idempotent_producer_and_group_consumer_on_one_node(broker):
    run_java_scenario("ProduceConsume", broker.bootstrap, "--records", 10000)


@pytest.mark.parametrize("assignor", ["cooperative-sticky", "range"])
def test_group_rebalances_on_one_node(broker, assignor):
    run_java_scenario("GroupRebalance", broker.bootstrap, "--assignor", assignor, "--group-protocol", "classic")


def test_admin_client_on_one_node(broker):
    out = run_java_scenario("AdminScenario", broker.bootstrap)
    assert "STEP" in out and " FAIL" not in out


@pytest.fixture(scope="module")
def cluster():
    java_classpath()  # skips before three nodes start when Java is missing
    with running_cluster("kraftwerk-java-", extra={"broker.session.timeout.ms": SESSION_TIMEOUT_MS,
                                                  "broker.heartbeat.interval.ms": 1000}) as c:
        yield c


def test_admin_client_on_three_nodes(cluster):
    out = run_java_scenario("AdminScenario", cluster.bootstrap, "--brokers", 3, "--replication", 3)
    assert " FAIL" not in out


def test_group_rebalances_on_three_nodes(cluster):
    run_java_scenario("GroupRebalance", cluster.bootstrap, "--replication", 3, "--group-protocol", "classic")


def test_producer_and_consumer_survive_a_leader_kill(cluster):
    """acks=all with min.insync.replicas=2: the leader of partition 0 is
    killed after 2,000 acknowledgements; every acknowledged record must
    still be consumed exactly where it was acknowledged."""
    proc = java_scenario("ProduceConsume", cluster.bootstrap, "--records", 8000, "--partitions", 6,
                         "--replication", 3, "--min-isr", 2, "--rate", 1000, "--timeout-s", 300)
    lines, killed = [], []

    def read():
        leaders = {}
        for line in proc.stdout:
            lines.append(line)
            m = re.match(r"LEADERS \{(.*)\}", line)
            if m:
                leaders = dict(tuple(map(int, kv.split("="))) for kv in m.group(1).split(", "))
            m = re.match(r"ACKED (\d+)", line)
            if m and int(m.group(1)) >= 2000 and not killed and leaders:
                victim = leaders[0]
                cluster.kill(victim)
                killed.append(victim)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=360)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
    out = "".join(lines)
    assert killed, f"the run never reached 2,000 acknowledgements:\n{out[-6000:]}"
    assert proc.returncode == 0, f"ProduceConsume exited {proc.returncode} after node {killed[0]} was killed:\n{out[-6000:]}"
    assert any(line.startswith("OK ") for line in lines), out[-6000:]
    # The node comes back for the tests after this one.
    cluster.start(killed[0])
    cluster.wait_until(cluster.all_unfenced, 60, "the killed node back and unfenced")
