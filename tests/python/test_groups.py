"""Consumer groups with real clients against real `kraftwerk server` processes.

Seed snippets run unchanged (port 9092, like test_seeds.py); the other tests
use kafka-python and confluent-kafka consumers in subprocesses so one can be
SIGKILLed, and a broker that is itself `kill -9`ed and restarted.
"""

import textwrap
import time
import uuid

import pytest

from snippets import EXPECTED, SEED_CONSUMER, SEED_GROUP_CONSUMER_1, SEED_GROUP_CONSUMER_2, SEED_PRODUCER, Proc, received, run_snippet
from test_seeds import port_free

# A group member that prints one JSON line per event, commits synchronously
# after each record, and runs until killed. kafka-python's coordinator logs
# at DEBUG to stderr: a failure shows what the member last did.
MEMBER = textwrap.dedent('''
    import json, logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("kafka.coordinator").setLevel(logging.DEBUG)
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    bootstrap, topic, group, name = sys.argv[1:5]
    def emit(**kw):
        kw["member"] = name
        print(json.dumps(kw), flush=True)
    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(event="revoked", partitions=sorted(tp.partition for tp in revoked))
        def on_partitions_assigned(self, assigned):
            emit(event="assigned", partitions=sorted(tp.partition for tp in assigned))
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
                      max_poll_records=10)
    c.subscribe([topic], listener=Listener())
    while True:
        for tp, records in c.poll(timeout_ms=200).items():
            for r in records:
                emit(event="record", partition=r.partition, offset=r.offset, value=r.value.decode())
            c.commit()
''')


def wait_until(cond, timeout_s, what, detail=None):
    """Polls `cond`; on timeout the error carries `detail()` (what the members saw, the broker log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    extra = f"\n{detail()}" if detail else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{extra}")


def membership(procs, broker):
    """Each member's assign/revoke events and last client log lines, and the
    broker's group log lines, for a failure message."""
    lines = []
    for p in procs:
        events = [e for e in p.events() if e["event"] != "record"]
        lines.append(f"member exit={p.proc.poll()} events={events}")
        lines.extend(f"  | {l}" for l in p.stderr_tail())
    group_lines = [l for l in broker.log_tail(5000).splitlines()
                   if "group" in l and "__consumer_offsets" not in l][-60:]
    return "\n".join(lines + group_lines)


def create_topic(bootstrap, name, partitions):
    from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    admin.close()


def produce(bootstrap, topic, values, partition=None):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap)
    for i, v in enumerate(values):
        p.send(topic, v.encode(), partition=(i % partition) if partition else None)
    p.flush()
    p.close()


def current_assignment(proc):
    """The member's partitions after its last assigned/revoked events (eager protocol)."""
    owned = set()
    for e in proc.events():
        if e["event"] == "assigned":
            owned = set(e["partitions"])
        elif e["event"] == "revoked":
            owned = set()
    return owned


def test_seed_consumers_share_a_group(broker_factory):
    if not port_free(9092):
        pytest.fail("port 9092 is taken; the seed snippets need it for kraftwerk")
    broker = broker_factory(port=9092).start()
    create_topic(broker.bootstrap, "meu-topico", 4)
    consumers = [Proc(SEED_GROUP_CONSUMER_1), Proc(SEED_GROUP_CONSUMER_2)]
    try:
        produced = run_snippet(SEED_PRODUCER)
        assert produced.returncode == 0, produced.stderr + broker.log_tail()
        expected = set(EXPECTED)

        def printed():
            return [v for c in consumers for v in received(c.snapshot())]

        wait_until(lambda: set(printed()) == expected, 40, "both seed consumers to print every message")
        time.sleep(1)
        seen = printed()
        assert sorted(seen) == sorted(expected), "a message was printed twice"
    finally:
        for c in consumers:
            c.kill()

    # The section-5 consumer, group 'meu-grupo' with kafka-python's default auto-commit.
    auto = Proc(SEED_CONSUMER)
    try:
        wait_until(lambda: sorted(received(auto.snapshot())) == sorted(EXPECTED), 30,
                   "the auto-commit seed consumer to read all messages")
    finally:
        auto.kill()


def test_partitions_spread_and_move_when_a_member_dies(broker_factory, tmp_path):
    broker = broker_factory(extra=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    create_topic(broker.bootstrap, "spread", 4)
    group = f"g-{uuid.uuid4().hex[:6]}"
    a = Proc(MEMBER, broker.bootstrap, "spread", group, "a", stderr=tmp_path / "a.log")
    b = Proc(MEMBER, broker.bootstrap, "spread", group, "b", stderr=tmp_path / "b.log")
    procs = [a, b]
    try:
        wait_until(lambda: current_assignment(a) and current_assignment(b)
                   and len(current_assignment(a)) == 2 and len(current_assignment(b)) == 2,
                   30, "two members with two partitions each", lambda: membership(procs, broker))
        assert current_assignment(a).isdisjoint(current_assignment(b))

        c = Proc(MEMBER, broker.bootstrap, "spread", group, "c", stderr=tmp_path / "c.log")
        procs.append(c)
        wait_until(lambda: sorted(len(current_assignment(p)) for p in procs) == [1, 1, 2]
                   and set().union(*(current_assignment(p) for p in procs)) == {0, 1, 2, 3},
                   30, "the third member to get a share", lambda: membership(procs, broker))

        produce(broker.bootstrap, "spread", [f"m{i}" for i in range(40)], partition=4)
        records = lambda: [e for p in procs for e in p.events() if e["event"] == "record"]
        wait_until(lambda: len({r["value"] for r in records()}) == 40, 30, "every record consumed")

        victim = c if current_assignment(c) else b
        victim_parts = current_assignment(victim)
        victim.kill()
        killed_at = time.monotonic()
        survivors = [p for p in procs if p is not victim]
        wait_until(lambda: set().union(*(current_assignment(p) for p in survivors)) == {0, 1, 2, 3},
                   20, "the dead member's partitions to move", lambda: membership(procs, broker))
        moved_after = time.monotonic() - killed_at
        # session.timeout.ms=6000, plus the rebalance itself and the test's polling.
        assert moved_after < 6 + 1 + 2, f"partitions {victim_parts} moved after {moved_after:.1f}s"

        produce(broker.bootstrap, "spread", [f"n{i}" for i in range(40)], partition=4)
        wait_until(lambda: {f"n{i}" for i in range(40)} <= {r["value"] for r in records()}, 30,
                   "records after the failover consumed")
        # With synchronous commits nothing is read twice by live members.
        live = [e for p in survivors for e in p.events() if e["event"] == "record"]
        keys = [(r["partition"], r["offset"]) for r in live]
        assert len(keys) == len(set(keys)), "a surviving member read a record twice"
    finally:
        for p in procs:
            p.kill()


def test_cooperative_sticky_keeps_partitions_that_stay(broker_factory):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    broker = broker_factory(extra=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    create_topic(broker.bootstrap, "coop", 4)
    group = f"coop-{uuid.uuid4().hex[:6]}"
    log = []

    def make(name):
        c = confluent_kafka.Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": group,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest",
        })

        def on_assign(consumer, parts):
            log.append((name, "assign", sorted(p.partition for p in parts)))

        def on_revoke(consumer, parts):
            log.append((name, "revoke", sorted(p.partition for p in parts)))

        c.subscribe(["coop"], on_assign=on_assign, on_revoke=on_revoke)
        return c

    def owned(name):
        s = set()
        for n, kind, parts in log:
            if n == name:
                s = s | set(parts) if kind == "assign" else s - set(parts)
        return s

    first = make("first")
    second = None
    try:
        deadline = time.monotonic() + 30
        while owned("first") != {0, 1, 2, 3} and time.monotonic() < deadline:
            first.poll(0.2)
        assert owned("first") == {0, 1, 2, 3}, log
        before = len(log)
        second = make("second")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (len(owned("second")) == 2 and len(owned("first")) == 2):
            first.poll(0.1)
            second.poll(0.1)
        assert len(owned("first")) == 2 and len(owned("second")) == 2, log
        kept = owned("first")
        revoked = [p for n, kind, parts in log[before:] if n == "first" and kind == "revoke" for p in parts]
        # Incremental: only the partitions handed to the newcomer were revoked.
        assert set(revoked).isdisjoint(kept), log
        assert set(revoked) == owned("second"), log
    finally:
        first.close()
        if second is not None:
            second.close()


def test_committed_offsets_survive_broker_kill(broker_factory):
    from kafka import KafkaConsumer, TopicPartition
    broker = broker_factory(extra=["--override", "group.initial.rebalance.delay.ms=0"]).start()
    create_topic(broker.bootstrap, "durable", 2)
    produce(broker.bootstrap, "durable", [f"v{i}" for i in range(20)], partition=2)

    c = KafkaConsumer("durable", bootstrap_servers=broker.bootstrap, group_id="keeper",
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
    first = [m.value.decode() for m in c]
    assert sorted(first) == sorted(f"v{i}" for i in range(20))
    c.commit()
    committed = {p: c.committed(TopicPartition("durable", p)) for p in (0, 1)}
    c.close()
    assert committed == {0: 10, 1: 10}

    broker.kill()
    broker.start()
    produce(broker.bootstrap, "durable", [f"w{i}" for i in range(6)], partition=2)

    c = KafkaConsumer("durable", bootstrap_servers=broker.bootstrap, group_id="keeper",
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000)
    second = [m.value.decode() for m in c]
    c.close()
    assert sorted(second) == sorted(f"w{i}" for i in range(6)), broker.log_tail()


def test_two_groups_each_get_every_message(broker):
    from kafka import KafkaConsumer
    create_topic(broker.bootstrap, "fanout", 3)
    produce(broker.bootstrap, "fanout", [f"x{i}" for i in range(30)], partition=3)
    for group in ("one", "two"):
        c = KafkaConsumer("fanout", bootstrap_servers=broker.bootstrap, group_id=group,
                          auto_offset_reset="earliest", consumer_timeout_ms=6000)
        got = sorted(m.value.decode() for m in c)
        c.close()
        assert got == sorted(f"x{i}" for i in range(30)), group


def test_admin_lists_describes_and_deletes_groups(broker):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient
    create_topic(broker.bootstrap, "adm", 1)
    produce(broker.bootstrap, "adm", ["a", "b"])
    c = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "adm-group",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["adm"])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.value())
    assert len(got) == 2
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.describe_consumer_groups(["adm-group"])["adm-group"].result(timeout=10)
    assert str(described.state).endswith("STABLE") and len(described.members) == 1
    listed = admin.list_consumer_groups().result(timeout=10)
    assert "adm-group" in [g.group_id for g in listed.valid]
    c.close()
    deadline = time.monotonic() + 10
    while not str(admin.describe_consumer_groups(["adm-group"])["adm-group"].result(timeout=10).state).endswith("EMPTY"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    admin.delete_consumer_groups(["adm-group"])["adm-group"].result(timeout=10)
    listed = admin.list_consumer_groups().result(timeout=10)
    assert "adm-group" not in [g.group_id for g in listed.valid]
