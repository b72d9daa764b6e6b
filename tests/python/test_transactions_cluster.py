"""Transactions on three nodes (replication factor 3, min.insync.replicas
2): the Java client's exactly-once copy, as Kafka's own transactions test
runs it, while a partition leader and then the transaction coordinator
are killed with SIGKILL. The output must be the input, in order, without
duplicates, and no transaction may end half committed."""

import re
import threading
import time

from cluster_harness import running_cluster
from peers import java_classpath, java_scenario

SESSION_TIMEOUT_MS = 4000
RECORDS = 100_000


def test_exactly_once_copy_survives_leader_and_coordinator_kills():
    java_classpath()  # skips before three nodes start when Java is missing
    extra = {"broker.session.timeout.ms": SESSION_TIMEOUT_MS, "broker.heartbeat.interval.ms": 1000,
             "offsets.topic.replication.factor": 3, "transaction.state.log.replication.factor": 3}
    with running_cluster("kraftwerk-txn-", extra=extra) as cluster:
        proc = java_scenario("TransactionalCopy", cluster.bootstrap, "--records", RECORDS, "--partitions", 6,
                             "--replication", 3, "--min-isr", 2, "--batch", 1000, "--timeout-s", 540)
        lines, kills = [], []

        def read():
            leaders, coordinator = {}, None
            for line in proc.stdout:
                lines.append(line)
                m = re.match(r"LEADERS \{(.*)\}", line)
                if m:
                    leaders = dict(tuple(map(int, kv.split("="))) for kv in m.group(1).split(", "))
                m = re.match(r"COORDINATOR (\d+)", line)
                if m:
                    coordinator = int(m.group(1))
                m = re.match(r"COPIED (\d+)", line)
                if not m:
                    continue
                copied = int(m.group(1))
                if copied >= RECORDS // 5 and not kills and leaders:
                    # A leader of the input topic, preferably not the coordinator.
                    victims = [n for n in leaders.values() if n != coordinator] or list(leaders.values())
                    kills.append(("leader", victims[0]))
                    cluster.kill(victims[0])
                elif copied >= RECORDS // 2 and len(kills) == 1 and coordinator is not None:
                    # Bring the first victim back first: min.insync.replicas=2
                    # needs two of three nodes.
                    cluster.start(kills[0][1])
                    cluster.wait_until(cluster.all_unfenced, 60, "the killed leader back and unfenced")
                    kills.append(("coordinator", coordinator))
                    cluster.kill(coordinator)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(timeout=10)
        out = "".join(lines)
        assert len(kills) == 2, f"the run ended before both kills ({kills}):\n{out[-6000:]}"
        assert proc.returncode == 0, f"TransactionalCopy exited {proc.returncode} after {kills}:\n{out[-8000:]}"
        assert "exactly the input in order" in out, out[-6000:]
        print(f"kills: {kills}")
        print("\n".join(l.rstrip() for l in lines if "copied" in l or "failed" in l)[-3000:])


def test_kafka_streams_exactly_once_word_count_survives_a_broker_kill():
    """Kafka Streams with exactly_once_v2 (a word count through a
    repartition topic and a changelogged store) on three nodes while one
    broker is killed and later restarted: every word's counts are exactly
    1, 2, 3, ... in the output."""
    java_classpath()
    extra = {"broker.session.timeout.ms": SESSION_TIMEOUT_MS, "broker.heartbeat.interval.ms": 1000,
             "offsets.topic.replication.factor": 3, "transaction.state.log.replication.factor": 3}
    with running_cluster("kraftwerk-streams-", extra=extra) as cluster:
        proc = java_scenario("StreamsWordCount", cluster.bootstrap, "--lines", 6000, "--rate", 300,
                             "--partitions", 3, "--replication", 3, "--timeout-s", 540)
        lines, events = [], []
        victim = 2

        def read():
            for line in proc.stdout:
                lines.append(line)
                m = re.match(r"LINES (\d+)", line)
                if not m:
                    continue
                written = int(m.group(1))
                if written >= 2000 and not events:
                    cluster.kill(victim)
                    events.append(("killed", victim, time.time()))
                elif written >= 4000 and len(events) == 1:
                    cluster.start(victim)
                    events.append(("restarted", victim, time.time()))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(timeout=10)
        out = "".join(lines)
        assert len(events) == 2, f"the run ended before the kill and restart ({events}):\n{out[-6000:]}"
        assert proc.returncode == 0, f"StreamsWordCount exited {proc.returncode} after {events}:\n{out[-8000:]}"
        assert "every word counted exactly once" in out, out[-6000:]
