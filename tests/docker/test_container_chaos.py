"""Container chaos suite: the three-node cluster of deploy/docker-compose.yml
under docker kill, docker pause, a network partition (docker network
disconnect), a rolling restart and the active controller killed while
topics are created.

Throughout each scenario an idempotent acks=all producer
(tests/python/chaos_checker.py) writes to a topic with replication factor 3
and min.insync.replicas=2, and a consumer group of two members reads it.
Afterwards the checker reads everything back. Each scenario prints records
acknowledged, lost, duplicated and reordered; per failover the seconds until
every partition had a new leader (as the surviving nodes' metadata shows
it) and the longest pause between acknowledgements; and the group's
rebalance figures. The figures also go to `$KRAFTWERK_CONTAINER_CHAOS_OUT`
(default /tmp/kraftwerk-container-chaos.json), from which the "Container
chaos suite" section of docs/reliability.md is written.

KRAFTWERK_CHAOS_SHORT=1 runs the short suite (leader kill, partition) that
scripts/test (and so CI) uses. The image is `$KRAFTWERK_IMAGE` (default kraftwerk:local,
built by deploy/build-image.sh when missing). Without a Docker engine the
suite is skipped.

    python3 -m pytest tests/docker -v
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from container_cluster import (BOOTSTRAP, HOST_PORTS, ComposeCluster, GroupWatch, run, skip_reason,  # noqa: E402
                               summarize, wait_until)

if skip_reason():
    print(skip_reason())
    pytest.skip(skip_reason(), allow_module_level=True)

import chaos_checker  # noqa: E402
from chaos_checker import AckRecorder, check, read_all, unavailable_seconds  # noqa: E402

SHORT = os.environ.get("KRAFTWERK_CHAOS_SHORT", "") not in ("", "0")
SESSION_TIMEOUT_MS = 4000
SETTINGS = {
    # Interpolated into deploy/docker-compose.yml's ${...} values.
    "KRAFTWERK_BROKER_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
    "KRAFTWERK_BROKER_HEARTBEAT_INTERVAL_MS": 1000,
    "KRAFTWERK_REPLICA_LAG_TIME_MAX_MS": 5000,
    # Preferred leaders come back soon, so a healed node leads again and
    # its log is what consumers read.
    "KRAFTWERK_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS": 10,
}
TOPIC = "chaos"
PARTITIONS = 6
FIGURES_OUT = os.environ.get("KRAFTWERK_CONTAINER_CHAOS_OUT", "/tmp/kraftwerk-container-chaos.json")
# Where the containers' whole logs go when a scenario fails.
LOGS_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "kraftwerk-container-chaos-logs"

full_only = pytest.mark.skipif(SHORT, reason="full suite only (KRAFTWERK_CHAOS_SHORT is set)")


def record_figures(name, figures):
    figures = dict(figures, mode="short" if SHORT else "full", date=time.strftime("%Y-%m-%d"))
    chaos_checker.record_figures(FIGURES_OUT, name, figures)


@pytest.fixture
def cluster(image, request):
    c = ComposeCluster(image, SETTINGS)
    started = time.monotonic()
    failed = True
    try:
        c.up()
        print(f"\ncompose project {c.project} up in {time.monotonic() - started:.1f}s")
        yield c
        # Set by the hook in conftest.py.
        failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    finally:
        if failed:
            try:
                where = c.save_logs(LOGS_DIR / c.project)
                print(f"containers' logs saved under {where}; their last lines:")
                print(c.all_logs(40))
            except Exception as e:
                print(f"could not read the containers' logs: {e}")
        c.down()


def windows(events, window_s=30.0):
    """(event, window) pairs: each window ends at the next event at the latest."""
    ordered = sorted(events)
    return [(t, min(window_s, (ordered[i + 1] - t) if i + 1 < len(ordered) else window_s))
            for i, t in enumerate(ordered)]


def ack_pauses(acked, events):
    """Per fault, the longest pause between acknowledgements around it
    (chaos_checker.unavailable_seconds, one fault at a time so that the
    windows of faults close together do not overlap)."""
    out = []
    for t, w in windows(events):
        out += unavailable_seconds(acked, [t], window_s=w)
    return out


class Load:
    """The producer and the consumer group that run through a scenario."""

    def __init__(self, cluster):
        self.cluster = cluster
        cluster.create_topic(TOPIC, PARTITIONS)
        started = time.monotonic()
        self.group = GroupWatch(BOOTSTRAP, TOPIC, PARTITIONS).start()
        self.producer = AckRecorder(BOOTSTRAP, TOPIC).start()
        # The group forming (both members joining), for comparison with the
        # failovers below. Not fatal: the scenario is about the records.
        try:
            self.group.wait_assigned()
            self.group_formed_s = round(self.group.formed_at() - started, 2)
        except TimeoutError as e:
            print(f"warning: {e}")
            self.group_formed_s = None
        time.sleep(2)

    def finish(self, name, events, extra=None, allow_delivery_errors=True):
        """Stops the load, reads everything back, prints and records the
        figures and asserts the guarantees."""
        try:
            remaining = self.producer.stop()
        finally:
            self.group.stop()
        read, _ = read_all(BOOTSTRAP, TOPIC, PARTITIONS)
        figures = check(self.producer.acked, read, self.producer.run)
        # librdkafka acknowledges some records without an offset (an
        # idempotent producer's request timed out in a failover and its next
        # batch succeeded, so the earlier one was stored); the checker looks
        # those up by payload in their partition. Here they are counted.
        where = {}
        for p, records in read.items():
            for _, payload in records:
                where.setdefault(payload, set()).add(p)
        no_offset = [a for a in self.producer.acked if a[1] is None or a[1] < 0]
        figures["acked_without_offset"] = len(no_offset)
        figures["acked_without_offset_read_back"] = sum(1 for a in no_offset if a[0] in where.get(a[2], ()))
        if figures["lost"] == 0:
            del figures["lost_examples"]
        figures["not_acknowledged_at_end"] = remaining
        figures["delivery_errors"] = len(self.producer.errors)
        figures["acks_paused_s"] = summarize(ack_pauses(self.producer.acked, events))
        figures.update(self.group.figures(events))
        figures["group_formed_s"] = self.group_formed_s
        figures.update(extra or {})
        record_figures(name, figures)
        assert figures["acknowledged"] > 0
        assert figures["lost"] == 0, figures
        assert figures["duplicated"] == 0, figures
        assert figures["reordered"] == 0, figures
        if not allow_delivery_errors:
            assert figures["delivery_errors"] == 0, (figures, self.producer.errors[:5])
        return figures


def test_leader_container_killed_and_restarted_repeatedly(cluster):
    load = Load(cluster)
    rounds = 3 if SHORT else 5
    events, elected, back, was_controller = [], [], [], 0
    for _ in range(rounds):
        cluster.wait_full_isr([TOPIC])
        victim = cluster.most_leading(TOPIC)
        # Failover takes longer when the victim is also the active
        # controller: a new one is elected and gives every broker a session.
        was_controller += cluster.active_controller() == victim
        cluster.kill(victim)
        events.append(time.monotonic())
        elected.append(cluster.wait_leaders_moved(TOPIC, victim, SESSION_TIMEOUT_MS / 1000 + 30))
        time.sleep(2)
        restarted = time.monotonic()
        cluster.start(victim)
        cluster.wait_back(victim)
        back.append(time.monotonic() - restarted)
    cluster.wait_full_isr([TOPIC])
    time.sleep(2)
    load.finish("docker kill of the leader of most partitions, restarted", events, {
        "failovers": len(events),
        "victims_that_were_active_controller": was_controller,
        "leader_elected_s": summarize(elected),
        "restarted_node_back_s": summarize(back),
    })


STALE_PROBE = """
import json, sys
from confluent_kafka import Producer
port, topic, partition, timeout_ms, values = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all", "enable.idempotence": False,
                     "message.timeout.ms": timeout_ms, "request.timeout.ms": 5000, "linger.ms": 0})
outcomes = []
for v in values:
    producer.produce(topic, value=v.encode(), partition=partition,
                     on_delivery=lambda err, msg: outcomes.append(None if err is None else err.name()))
producer.flush(timeout_ms / 1000 + 10)
print(json.dumps(outcomes))
"""


def start_stale_probe(cluster, n, topic, partition, values, timeout_ms):
    """A plain (not idempotent: that would need a producer id from the
    unreachable controller) acks=all producer inside node n's network
    namespace, writing to a partition node n leads. Needs root and nsenter;
    None without them."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        return None
    pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", cluster.cid(n)]).stdout.strip()
    return subprocess.Popen(
        ["nsenter", "-t", pid, "-n", sys.executable, "-c", STALE_PROBE, str(HOST_PORTS[n]), topic,
         str(partition), str(timeout_ms), *values],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_network_partition_of_the_leader(cluster):
    """The leader is disconnected from the compose network (and so from the
    other nodes and from the host's clients). A producer inside its network
    namespace writes to it with acks=all: it may append, but must not
    acknowledge. The majority elects new leaders; after healing, the old
    leader truncates what it appended alone, catches up and rejoins every
    ISR, and leads its preferred partitions again."""
    load = Load(cluster)
    probe_topic = "stale-probe"
    cluster.create_topic(probe_topic, 3)
    cluster.wait_full_isr([TOPIC, probe_topic])
    victim = cluster.most_leading(TOPIC)
    was_controller = cluster.active_controller() == victim
    led_before = sorted(p["partition"] for p in cluster.describe(TOPIC)["partitions"] if p["leader"] == victim)
    probe_partition = next((p["partition"] for p in cluster.describe(probe_topic)["partitions"]
                            if p["leader"] == victim), None)
    held_s = 20.0
    stale = [f"stale-{uuid.uuid4().hex[:6]}-{i}" for i in range(5)]

    cluster.disconnect(victim)
    cut = time.monotonic()
    probe = None
    if probe_partition is not None:
        probe = start_stale_probe(cluster, victim, probe_topic, probe_partition, stale,
                                  timeout_ms=int((held_s - 4) * 1000))
    elected = cluster.wait_leaders_moved(TOPIC, victim, SESSION_TIMEOUT_MS / 1000 + 30)
    # Held well past the session timeout and three times the replica lag
    # bound: a cut-off leader that shrank its ISR on its own would ack by now.
    time.sleep(max(0.0, cut + held_s - time.monotonic()))
    probe_outcomes, appended_alone = None, None
    if probe is not None:
        try:
            out, _ = probe.communicate(timeout=30)
            probe_outcomes = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            probe.kill()
            probe.communicate()
        # What the cut-off leader appended without its followers: in its
        # segment files, never below a high watermark.
        files = cluster.partition_files(victim, probe_topic, probe_partition)
        appended_alone = sum(files.count(s.encode()) for s in stale)
    cluster.connect(victim)
    healed = time.monotonic()
    # Until the healed node has caught up with the quorum it still answers
    # with its old image (it believes it leads); everything below is judged
    # by what all three nodes agree on.
    other = next(n for n in cluster.NODES if n != victim)
    wait_until(lambda: cluster.view(victim, TOPIC) == cluster.view(other, TOPIC), 120,
               "the healed node's metadata caught up with the quorum")
    caught_up = time.monotonic() - healed
    cluster.wait_full_isr([TOPIC], timeout_s=120)
    rejoined = time.monotonic() - healed
    cluster.wait_full_isr([probe_topic], timeout_s=120)
    probe_rejoined = time.monotonic() - healed

    def leads_preferred():
        view = cluster.agreed_view(TOPIC)
        return view is not None and sorted(p for p, v in view.items() if v[0] == victim) == led_before
    # Preferred leadership returns to the healed node (checked every 10 s
    # here), so its log is the one read back below.
    try:
        wait_until(leads_preferred, 60, "preferred leaders restored")
        leads_again = True
    except TimeoutError:
        leads_again = False
    left_on_old_leader, stale_visible = None, None
    if probe_partition is not None:
        files = cluster.partition_files(victim, probe_topic, probe_partition)
        left_on_old_leader = sum(files.count(s.encode()) for s in stale)
        probe_read, _ = read_all(BOOTSTRAP, probe_topic, 3)
        stale_visible = sum(1 for records in probe_read.values() for _, v in records if v in stale)
    acked_by_cut_off = None if probe_outcomes is None else sum(1 for o in probe_outcomes if o is None)
    load.finish("network partition of the leader, healed", [cut], {
        "failovers": 1,
        "leader_elected_s": summarize([elected]),
        "cut_off_s": round(healed - cut, 1),
        "victim_was_active_controller": was_controller,
        "stale_writes_sent_to_cut_off_leader": None if probe is None else len(stale),
        "stale_writes_acknowledged": acked_by_cut_off,
        "stale_write_errors": sorted(set(o for o in probe_outcomes or [] if o)),
        "stale_copies_appended_by_cut_off_leader": appended_alone,
        "stale_copies_left_after_heal": left_on_old_leader,
        "stale_records_visible_after_heal": stale_visible,
        "old_leader_metadata_caught_up_s": round(caught_up, 2),
        "old_leader_rejoined_isr_s": round(rejoined, 2),
        "old_leader_rejoined_probe_isr_s": round(probe_rejoined, 2),
        "old_leader_leads_again": leads_again,
    })
    if probe is None:
        print("stale-leader probe not run (needs root and nsenter, and a probe partition led by the victim)")
    else:
        assert probe_outcomes is not None, "the stale-leader probe did not report"
        assert acked_by_cut_off == 0, f"the cut-off leader acknowledged acks=all writes: {probe_outcomes}"
        assert left_on_old_leader == 0, "records the cut-off leader appended alone survived the heal"
        assert stale_visible == 0, "records the cut-off leader appended alone are visible after the heal"


@full_only
def test_leader_container_paused_past_the_session_timeout(cluster):
    load = Load(cluster)
    cluster.wait_full_isr([TOPIC])
    victim = cluster.most_leading(TOPIC)
    was_controller = cluster.active_controller() == victim
    cluster.pause(victim)
    paused = time.monotonic()
    elected = cluster.wait_leaders_moved(TOPIC, victim, SESSION_TIMEOUT_MS / 1000 + 30)
    hold_s = 3 * SESSION_TIMEOUT_MS / 1000
    time.sleep(max(0.0, paused + hold_s - time.monotonic()))
    cluster.unpause(victim)
    resumed = time.monotonic()
    cluster.wait_back(victim)
    cluster.wait_full_isr([TOPIC])
    rejoined = time.monotonic() - resumed
    time.sleep(2)
    load.finish("docker pause of the leader past the session timeout, unpaused", [paused], {
        "failovers": 1,
        "paused_s": round(resumed - paused, 1),
        "victim_was_active_controller": was_controller,
        "leader_elected_s": summarize([elected]),
        "rejoined_isr_s": round(rejoined, 2),
    })


@full_only
def test_rolling_restart_under_load(cluster):
    load = Load(cluster)
    events, shutdown_s, back = [], [], []
    for n in cluster.NODES:
        cluster.wait_full_isr([TOPIC])
        events.append(time.monotonic())
        code, took = cluster.stop(n)
        assert code == 0, f"kafka-{n} exited with {code} on SIGTERM:\n{cluster.logs(n)}"
        shutdown_s.append(took)
        restarted = time.monotonic()
        cluster.start(n)
        cluster.wait_back(n)
        back.append(time.monotonic() - restarted)
    cluster.wait_full_isr([TOPIC])
    time.sleep(2)
    load.finish("rolling restart (docker stop: SIGTERM, controlled shutdown) of all three", events, {
        "restarts": len(events),
        "controlled_shutdown_s": summarize(shutdown_s),
        "restarted_node_back_s": summarize(back),
    }, allow_delivery_errors=False)


@full_only
def test_active_controller_killed_while_topics_are_created(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic
    load = Load(cluster)
    # A short metadata refresh, so that the client learns the new
    # controller soon after the election.
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "topic.metadata.refresh.interval.ms": 1000})
    outcomes = []  # (name, started, finished, error or None)
    stop = threading.Event()

    def create_loop():
        i = 0
        while not stop.is_set():
            name = f"ctl-{i:04d}"
            i += 1
            started = time.monotonic()
            try:
                # Replication factor 2, so that topics can be created
                # while the killed node is down: what is measured is the
                # controller failover, not the missing third broker.
                admin.create_topics([NewTopic(name, 3, 2)], request_timeout=15)[name].result(timeout=30)
                err = None
            except Exception as e:  # timeouts and NOT_CONTROLLER while the quorum elects
                err = str(e)
            outcomes.append((name, started, time.monotonic(), err))
            time.sleep(0.2)

    creator = threading.Thread(target=create_loop, daemon=True)
    creator.start()
    time.sleep(5)
    victim = cluster.active_controller()
    cluster.kill(victim)
    killed = time.monotonic()
    wait_until(lambda: cluster.active_controller(avoid=(victim,)) not in (victim, -1), 30,
               "a new active controller")
    controller_elected = time.monotonic() - killed
    time.sleep(max(0.0, killed + 20 - time.monotonic()))
    cluster.start(victim)
    cluster.wait_back(victim)
    time.sleep(5)
    stop.set()
    creator.join(60)
    new_controller = cluster.active_controller()
    created = [o for o in outcomes if o[3] is None]
    failed = [o for o in outcomes if o[3] is not None]
    missing, leaderless = [], []
    for name, *_ in created:
        try:
            parts = cluster.describe(name)["partitions"]
        except Exception:
            missing.append(name)
            continue
        if len(parts) != 3 or any(p["leader"] < 0 for p in parts) or any(len(p["replicas"]) != 2 for p in parts):
            leaderless.append(name)
    ok_times = sorted(o[2] for o in created)
    gap = max((b - a for a, b in zip(ok_times, ok_times[1:]) if b > killed - 1), default=None)
    cluster.wait_full_isr([TOPIC])
    load.finish("active controller killed while topics are created", [killed], {
        "failovers": 1,
        "killed_controller": victim,
        "controller_elected_s": round(controller_elected, 2),
        "controller_after": new_controller,
        "topics_created": len(created),
        "topic_creations_failed": len(failed),
        "created_but_missing": len(missing),
        "created_without_leaders": len(leaderless),
        "creations_paused_s": round(gap, 2) if gap is not None else None,
        "creation_errors": sorted({o[3].split(":")[0][:80] for o in failed})[:5],
    })
    assert created, "no topic could be created"
    assert not missing, f"topics acknowledged as created are missing: {missing}"
    assert not leaderless, f"topics without leaders: {leaderless}"
