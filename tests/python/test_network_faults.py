"""Real network faults between Kraftwerk nodes, without Docker: each node on
a test host of its own (a network namespace, tests/python/netns_harness.py)
and the faults made on the links between them.

Every scenario runs under load: the idempotent acks=all confluent-kafka
producer of chaos_checker (acknowledged values recorded by its delivery
callbacks) and a consumer group reading, both on the client test host.
Each prints and records its figures (`$KRAFTWERK_RELIABILITY_OUT`, default
/tmp/kraftwerk-reliability.json; docs/reliability.md, "Network faults
(test hosts)"):

- acknowledged, lost (acknowledged but not read back at the end),
  duplicated, reordered (within a partition), as chaos_checker.check;
- leaderless_s: for the partitions the victim led, the seconds in which
  the freshest metadata (highest leader epoch any node reports) named no
  leader, or named a leader that was cut off from the majority;
- acks_paused_s: the longest pause between two acknowledgements of those
  partitions, from one second before the fault until the end;
- first_ack_after_heal_s, isr_restored_s: recovery after healing;
- group: records the consumer group read, and acknowledged values it never
  read (must be none).

Scenarios (a)-(d) and (f) need root and `ip` (and (b), and (d) without
netem, `iptables`); they skip with the reason otherwise. (e) runs on
loopback. (f) is about metadata, not records: the active controller cut
off while topics are created and deleted (`TopicChurn`).

    python3 -m pytest tests/python/test_network_faults.py -x -q -s
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError

import chaos_checker
import netns_harness
from chaos_checker import AckRecorder, check, read_all
from cluster_harness import running_cluster

SESSION_TIMEOUT_MS = 4000
EXTRA = {
    "broker.session.timeout.ms": SESSION_TIMEOUT_MS,
    "broker.heartbeat.interval.ms": 1000,
    "replica.lag.time.max.ms": 5000,
    "group.initial.rebalance.delay.ms": 0,
}
PARTITIONS = 3
FAULT_S = 10
# Generous bounds: failover timings depend on settings other work may change.
RECOVERY_BOUND_S = 60
ISR_BOUND_S = 90
FIGURES_OUT = os.environ.get("KRAFTWERK_RELIABILITY_OUT", "/tmp/kraftwerk-reliability.json")


def record_figures(name, figures):
    chaos_checker.record_figures(FIGURES_OUT, name, figures)


@pytest.fixture(scope="module")
def cluster():
    reason = netns_harness.skip_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    with netns_harness.netns_cluster("kraftwerk-netfault-", extra=EXTRA) as c:
        yield c


class GroupReader:
    """A confluent-kafka consumer group member reading `topic` in a thread."""

    def __init__(self, bootstrap, topic):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"netfault-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        self.consumer.subscribe([topic])
        self.seen = set()
        self.count = 0
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    self.errors += 1
                continue
            with self._lock:
                self.seen.add(msg.value().decode())
                self.count += 1

    def start(self):
        self._thread.start()
        return self

    def missing(self, payloads):
        with self._lock:
            return [p for p in payloads if p not in self.seen]

    def stop(self):
        self._stop.set()
        self._thread.join(15)
        self.consumer.close()


class LeaderMonitor:
    """Samples, every 0.25 s, each partition's leader in the freshest
    metadata any node gives, and which nodes are cut off at that moment."""

    def __init__(self, cluster, topic):
        self.cluster, self.topic = cluster, topic
        self.samples = []  # (time, {partition: leader}, cut_off nodes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        netns_harness.setns(self.cluster.client_ns)
        while not self._stop.is_set():
            started = time.monotonic()
            cut = self.cluster.cut_off()
            best = {}
            for n in self.cluster.ids:
                try:
                    view = netns_harness.metadata(self.cluster.bootstrap_of(n), [self.topic], timeout_s=0.4)
                except Exception:
                    continue
                for (_, p), s in view["partitions"].items():
                    key = (s["epoch"], n not in cut)
                    if p not in best or key > best[p][0]:
                        best[p] = (key, s["leader"])
            self.samples.append((started, {p: v[1] for p, v in best.items()}, cut))
            self._stop.wait(max(0.0, 0.25 - (time.monotonic() - started)))

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def leaderless_seconds(self, partition, since):
        total = 0.0
        for (t, leaders, cut), (t_next, _, _) in zip(self.samples, self.samples[1:]):
            if t < since:
                continue
            leader = leaders.get(partition, -1)
            if leader < 0 or leader in cut:
                total += t_next - t
        return round(total, 2)


def converged(cluster, topic, size=3):
    """Every node answers, and each shows every partition with a leader and
    an ISR of `size`, all agreeing on the leaders."""
    views = cluster.views([topic])
    if len(views) != len(cluster.ids):
        return False
    leaders = set()
    for view in views.values():
        parts = [s for (t, _), s in view["partitions"].items() if t == topic]
        if len(parts) != PARTITIONS or any(s["leader"] < 0 or len(s["isr"]) < size for s in parts):
            return False
        leaders.add(tuple(sorted((p, s["leader"]) for (_, p), s in view["partitions"].items())))
    return len(leaders) == 1


def create_topic(cluster, topic):
    deadline = time.monotonic() + 30
    while True:
        out = cluster.cli("topics", "create", "--topic", topic, "--partitions", str(PARTITIONS),
                          "--replication-factor", "3", "--config", "min.insync.replicas=2", check=False)
        if out.returncode == 0 or "already exists" in out.stderr:
            break
        assert time.monotonic() < deadline, out.stderr
        time.sleep(0.5)
    cluster.wait_until(lambda: converged(cluster, topic), 30, f"{topic}: leaders and full ISRs on every node")


def leaders_of(cluster, topic):
    view = max(cluster.views([topic]).values(),
               key=lambda v: sum(s["epoch"] for s in v["partitions"].values()))
    return {p: s["leader"] for (_, p), s in view["partitions"].items()}


def longest_pause(times):
    times = sorted(times)
    return round(max((b - a for a, b in zip(times, times[1:])), default=0.0), 2)


def run_scenario(cluster, name, fault, heal, during=None):
    """Load, then `fault(victim)` on the leader of partition 0, `FAULT_S`
    seconds (`during(victim, topic)` runs meanwhile), `heal()`, recovery,
    the read-back. Returns the figures (with the read-back under
    "read_back", which `judge` takes out)."""
    cluster.heal_all()  # whatever an earlier, failed scenario left
    for n in cluster.ids:
        assert cluster.procs[n].poll() is None, f"node {n} exited:\n{cluster.log_tail(n)}"
    cluster.wait_until(cluster.all_unfenced, 60, "every broker unfenced before the scenario")
    topic = f"netfault-{uuid.uuid4().hex[:6]}"
    create_topic(cluster, topic)
    with cluster.client_side():
        rec = AckRecorder(cluster.bootstrap, topic).start()
        group = GroupReader(cluster.bootstrap, topic).start()
        monitor = LeaderMonitor(cluster, topic).start()
        try:
            cluster.wait_until(lambda: len(rec.acked) > 500 and group.count > 0, 60,
                               "acknowledgements and a consumer group reading")
            victim = leaders_of(cluster, topic)[0]
            led = [p for p, leader in leaders_of(cluster, topic).items() if leader == victim]
            fault_at = time.monotonic()
            how = fault(victim)
            extra = during(victim, topic) if during else {}
            time.sleep(max(0.0, FAULT_S - (time.monotonic() - fault_at)))
            heal()
            healed_at = time.monotonic()

            def acked_after_heal():
                return {p: min((a[3] for a in rec.acks_for(p) if a[3] > healed_at), default=None)
                        for p in range(PARTITIONS)}
            cluster.wait_until(lambda: all(acked_after_heal().values()), RECOVERY_BOUND_S,
                               "acknowledgements on every partition after healing")
            first_ack = max(t - healed_at for t in acked_after_heal().values())
            cluster.wait_until(lambda: converged(cluster, topic), ISR_BOUND_S, "full ISRs on every node")
            isr_restored = time.monotonic() - healed_at
            time.sleep(1)
        finally:
            cluster.heal_all()
            monitor.stop()
            remaining = rec.stop()
        try:
            read, _ = read_all(cluster.bootstrap, topic, PARTITIONS)
            figures = check(rec.acked, read, rec.run)
            payloads = [a[2] for a in rec.acked]
            cluster.wait_until(lambda: not group.missing(payloads), 60, "the consumer group read every ack")
        finally:
            group.stop()
    gaps = [longest_pause([a[3] for a in rec.acks_for(p) if a[3] >= fault_at - 1]) for p in led]
    figures.update({
        "victim": victim,
        "victim_led_partitions": led,
        "leaderless_s": max(monitor.leaderless_seconds(p, fault_at - 1) for p in led),
        "acks_paused_s": max(gaps),
        "first_ack_after_heal_s": round(first_ack, 2),
        "isr_restored_s": round(isr_restored, 2),
        "group_read": group.count,
        "group_missing": len(group.missing([a[2] for a in rec.acked])),
        "delivery_errors": len(rec.errors),
        "not_acknowledged_at_end": remaining,
    })
    if how:
        figures["fault_made_with"] = how
    figures.update(extra or {})
    figures["read_back"] = read
    return figures


def judge(name, figures):
    read = figures.pop("read_back")
    if not figures["lost"]:
        figures.pop("lost_examples", None)
    record_figures(name, figures)
    assert figures["acknowledged"] > 0
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["reordered"] == 0, figures
    assert figures["group_missing"] == 0, figures
    assert figures["not_acknowledged_at_end"] == 0, figures
    return read


def test_a_symmetric_partition_of_the_leader(cluster):
    figures = run_scenario(cluster, "a", cluster.cut, cluster.heal_all)
    judge("netns (a) leader's link down ~10 s, then up", figures)


PROBE = r'''
import json, sys
from confluent_kafka import Producer
bootstrap, topic, run = sys.argv[1:4]
out = {"acked": 0, "errors": []}
def report(err, msg):
    if err is None:
        out["acked"] += 1
    else:
        out["errors"].append(err.name())
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False, "retries": 2,
              "linger.ms": 0, "request.timeout.ms": 3000, "message.timeout.ms": 7000})
for i in range(5):
    p.produce(topic, value=f"{run}-probe-{i}".encode(), partition=0, on_delivery=report)
p.flush(15)
print(json.dumps(out))
'''


def test_b_asymmetric_isolation_of_the_leader(cluster):
    reason = netns_harness.iptables_reason()
    if reason:
        pytest.skip(reason)
    probe_run = uuid.uuid4().hex[:8]

    def during(victim, topic):
        """From inside the victim's own test host, which now reaches only
        itself, a plain acks=all producer writes 5 records to partition 0,
        which the victim still believes it leads: none may be acknowledged."""
        time.sleep(1)
        out = subprocess.run(["ip", "netns", "exec", cluster.ns[victim], sys.executable, "-c", PROBE,
                              cluster.bootstrap_of(victim), topic, probe_run],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        return {"isolated_leader_probe": {"sent": 5, "acked": result["acked"],
                                          "errors": sorted(set(result["errors"]))}}

    figures = run_scenario(cluster, "b", cluster.isolate_from_peers, cluster.heal_all, during)
    probe = figures["isolated_leader_probe"]
    probe["kept_in_log"] = sum(1 for records in figures["read_back"].values() for _, v in records
                               if v.startswith(f"{probe_run}-probe-"))
    judge("netns (b) leader cut from the other nodes ~10 s, clients still reach it", figures)
    assert probe["acked"] == 0, f"the isolated leader acknowledged acks=all writes: {probe}"
    assert probe["kept_in_log"] == 0, f"records only the isolated leader had were not truncated: {probe}"


def test_c_flapping_link_of_the_leader(cluster):
    flapper = []

    def fault(victim):
        flapper.append(cluster.flap(victim, down_s=1.0, up_s=1.0, duration_s=FAULT_S))

    def heal():
        flapper[0].join(FAULT_S + 10)
        cluster.heal_all()

    figures = run_scenario(cluster, "c", fault, heal)
    judge("netns (c) leader's link flapping 1 s down / 1 s up for 10 s", figures)


def test_d_packet_loss_and_delay_on_the_leader(cluster):
    if not netns_harness.netem_available() and netns_harness.iptables_reason():
        pytest.skip(f"no netem qdisc in this kernel, and {netns_harness.iptables_reason()}")
    figures = run_scenario(cluster, "d", lambda victim: cluster.degrade(victim, loss_pct=20, delay_ms=100),
                           cluster.heal_all)
    judge("netns (d) 20% loss + 100 ms delay both ways on the leader's link ~10 s", figures)


def partition_state(c, topic, nodes):
    """Partition 0 as the freshest answering node among `nodes` sees it (loopback cluster)."""
    best = None
    for n in nodes:
        if c.procs.get(n) is None or c.procs[n].poll() is not None:
            continue
        try:
            state = c.describe(topic, bootstrap=f"127.0.0.1:{c.kafka_ports[n]}")["partitions"][0]
        except Exception:
            continue
        if best is None or state.get("leader_epoch", 0) > best.get("leader_epoch", 0):
            best = state
    return best


def test_e_last_replica_standing():
    """KIP-966's case: both followers stopped cleanly one after the other,
    then the leader killed, then the two followers restarted. The first
    follower to stop lacks records acknowledged after it left; it must never
    lead. Every acknowledged record must be readable once a leader is back
    (the second follower, if the cluster elects it, or the old leader)."""
    with running_cluster("kraftwerk-netfault-e-", extra=EXTRA) as c:
        topic = "last-replica-standing"
        deadline = time.monotonic() + 30
        while True:
            out = c.cli("topics", "create", "--topic", topic, "--partitions", "1", "--replication-factor", "3",
                        "--config", "min.insync.replicas=2", check=False)
            if out.returncode == 0 or "already exists" in out.stderr:
                break
            assert time.monotonic() < deadline, out.stderr
            time.sleep(0.5)
        c.wait_until(lambda: len((partition_state(c, topic, c.kafka_ports) or {}).get("isr", [])) == 3, 30,
                     "full ISR")
        rec = AckRecorder(c.bootstrap, topic).start()
        c.wait_until(lambda: len(rec.acked) > 300, 30, "acknowledgements")
        state = partition_state(c, topic, c.kafka_ports)
        leader = state["leader"]
        first, second = [r for r in state["replicas"] if r != leader]
        c.terminate(first)
        first_stopped = time.monotonic()
        time.sleep(3)
        acked_after_first = sum(1 for a in rec.acked if a[3] > first_stopped + 1)
        c.terminate(second)
        second_stopped = time.monotonic()
        time.sleep(3)
        c.kill(leader)
        leader_killed = time.monotonic()
        acked_with_leader_alone = sum(1 for a in rec.acked if second_stopped + 1 < a[3] <= leader_killed)
        c.start(first)
        c.start(second)
        # Watch who leads while the old leader is away.
        # Watch who the restarted followers name as leader while the old one
        # is away: the old (dead) leader until it is fenced, then nobody,
        # or a replica holding every acknowledged record.
        named = set()
        elected_after = None
        watch_until = time.monotonic() + 12
        while time.monotonic() < watch_until:
            s = partition_state(c, topic, [first, second])
            if s is not None:
                named.add(s["leader"])
                if s["leader"] not in (-1, leader) and elected_after is None:
                    elected_after = time.monotonic() - leader_killed
            time.sleep(0.5)
        elected_without_old_leader = sorted(x for x in named if x not in (-1, leader))
        c.start(leader)
        restarted = time.monotonic()
        c.wait_until(lambda: len((partition_state(c, topic, c.kafka_ports) or {}).get("isr", [])) == 3, ISR_BOUND_S,
                     "full ISR after the old leader's restart")
        c.wait_until(lambda: any(a[3] > restarted for a in rec.acked), RECOVERY_BOUND_S, "acks again")
        first_ack = min(a[3] for a in rec.acked if a[3] > restarted) - restarted
        time.sleep(1)
        remaining = rec.stop()
        read, _ = read_all(c.bootstrap, topic, 1)
        figures = check(rec.acked, read, rec.run)
        figures.update({
            "acked_after_first_follower_stopped": acked_after_first,
            "acked_with_only_the_leader_in_sync": acked_with_leader_alone,
            "stopped_first": first,
            "stopped_second": second,
            "killed_leader": leader,
            "leaders_named_while_old_leader_down": sorted(named),
            "elected_while_old_leader_down": elected_without_old_leader,
            "elected_after_kill_s": round(elected_after, 2) if elected_after is not None else None,
            "first_ack_after_old_leader_restart_s": round(first_ack, 2),
            "not_acknowledged_at_end": remaining,
            "delivery_errors": len(rec.errors),
        })
        if not figures["lost"]:
            figures.pop("lost_examples", None)
        record_figures("(e) last replica standing: followers stopped, leader killed, followers restarted", figures)
        assert acked_after_first > 0, "acks=all stopped with one follower still in sync"
        assert acked_with_leader_alone == 0, "acks=all acknowledged with only the leader in sync"
        assert first not in elected_without_old_leader, \
            f"node {first}, which lacks acknowledged records, was elected leader"
        assert figures["lost"] == 0, figures
        assert figures["duplicated"] == 0, figures
        assert figures["reordered"] == 0, figures
        assert remaining == 0, figures


class TopicChurn:
    """Creates topics (1 partition, replication factor 2) one after another
    and deletes every other one soon after, from the client test host,
    recording which operations were acknowledged. A failed or timed-out
    operation is ambiguous (it may have been applied) and its topic is
    left out of the checks; TOPIC_ALREADY_EXISTS answering a create, or
    UNKNOWN_TOPIC_OR_PART answering a delete, says an earlier attempt went
    through."""

    def __init__(self, cluster, run):
        self.cluster, self.run = cluster, run
        self.created, self.deleted = {}, {}  # name -> time acknowledged
        self.ambiguous = set()
        self.failures = {"create": 0, "delete": 0}
        self.ok_times = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic
        netns_harness.setns(self.cluster.client_ns)
        admin = AdminClient({"bootstrap.servers": self.cluster.bootstrap, "socket.timeout.ms": 5000,
                             "topic.metadata.refresh.interval.ms": 1000})

        def outcome(future):
            try:
                future.result(timeout=20)
                return "ok"
            except KafkaException as e:
                return e.args[0].name()
            except Exception as e:  # a future that timed out here
                return type(e).__name__

        i = 0
        while not self._stop.is_set():
            name = f"churn-{self.run}-{i}"
            i += 1
            result = outcome(admin.create_topics([NewTopic(name, 1, 2)], request_timeout=10)[name])
            if result in ("ok", "TOPIC_ALREADY_EXISTS"):
                self.created[name] = time.monotonic()
                self.ok_times.append(time.monotonic())
            else:
                self.failures["create"] += 1
                self.ambiguous.add(name)
            if i % 2 == 0:
                live = [t for t in self.created if t not in self.deleted and t not in self.ambiguous]
                if live:
                    victim = live[0]
                    result = outcome(admin.delete_topics([victim], request_timeout=10)[victim])
                    if result in ("ok", "UNKNOWN_TOPIC_OR_PART"):
                        self.deleted[victim] = time.monotonic()
                        self.ok_times.append(time.monotonic())
                    else:
                        self.failures["delete"] += 1
                        self.ambiguous.add(victim)
            self._stop.wait(0.05)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(60)

    def expected(self):
        """Topics that must exist, and topics that must not, in the end."""
        present = {t for t in self.created if t not in self.deleted and t not in self.ambiguous}
        absent = {t for t in self.deleted if t not in self.ambiguous}
        return present, absent


def test_f_active_controller_cut_off_during_topic_churn(cluster):
    """The active controller's link goes down while topics are created and
    deleted through the other nodes: a new controller takes over, every
    acknowledged creation and deletion holds on every node once the link
    is back (the cut-off node included), and the nodes agree."""
    cluster.heal_all()
    cluster.wait_until(cluster.all_unfenced, 60, "every broker unfenced before the scenario")
    run = uuid.uuid4().hex[:6]
    prefix = f"churn-{run}-"
    victim = cluster.cluster_info(cluster.ids[0])["active_controller"]
    assert victim in cluster.ids, victim
    others = [n for n in cluster.ids if n != victim]
    churn = TopicChurn(cluster, run).start()
    try:
        cluster.wait_until(lambda: len(churn.created) >= 5, 60, "topics created before the fault")
        fault_at = time.monotonic()
        cluster.cut(victim)
        new_controller, controller_after = None, None
        while time.monotonic() - fault_at < FAULT_S:
            if new_controller is None:
                try:
                    named = cluster.cluster_info(others[0])["active_controller"]
                except Exception:
                    named = -1
                if named in others:
                    new_controller, controller_after = named, round(time.monotonic() - fault_at, 2)
            time.sleep(0.25)
        cluster.heal_all()
        healed_at = time.monotonic()
        cluster.wait_until(lambda: any(t > healed_at for t in churn.ok_times), RECOVERY_BOUND_S,
                           "an acknowledged topic operation after healing")
        time.sleep(3)
    finally:
        cluster.heal_all()
        churn.stop()
    present, absent = churn.expected()

    def churn_topics(view):
        return {t for (t, _) in view["partitions"] if t.startswith(prefix)}

    def agreed():
        views = cluster.views(None)
        if len(views) != len(cluster.ids):
            return None
        sets = [churn_topics(v) for v in views.values()]
        leaders_known = all(s["leader"] >= 0 for v in views.values()
                            for (t, _), s in v["partitions"].items() if t.startswith(prefix))
        return sets[0] if leaders_known and all(s == sets[0] for s in sets) else None

    cluster.wait_until(lambda: agreed() is not None, ISR_BOUND_S, "every node lists the same topics, with leaders")
    final = agreed()
    ops = sorted(t for t in churn.ok_times if t >= fault_at - 1)
    figures = {
        "victim": victim,
        "new_controller": new_controller,
        "new_controller_named_after_s": controller_after,
        "creates_acknowledged": len(churn.created),
        "deletes_acknowledged": len(churn.deleted),
        "failed_or_timed_out": churn.failures,
        "ambiguous_topics": len(churn.ambiguous),
        "admin_paused_s": longest_pause([fault_at] + ops),
        "topics_in_the_end": len(final),
        "acknowledged_creations_missing": sorted(present - final),
        "acknowledged_deletions_back": sorted(absent & final),
    }
    record_figures("netns (f) active controller's link down ~10 s during topic creation and deletion", figures)
    assert new_controller is not None, f"no other node named a new active controller within {FAULT_S} s: {figures}"
    assert not figures["acknowledged_creations_missing"], figures
    assert not figures["acknowledged_deletions_back"], figures
    assert final <= set(churn.created) | churn.ambiguous, "a topic nobody created"
    assert len(churn.created) > 10 and len(churn.deleted) > 3, figures
