"""`GET /metrics` on the HTTP listener (`kraftwerk.http.listener`): the
per-topic byte and record counters rise with what a real client produces
and consumes, and `underreplicatedpartitions` goes to 1 on a leader when
a follower is killed and back to 0 when it rejoins. The Raft quorum
metrics agree with the cluster's active controller and follow its loss;
leader elections are counted, an unclean one too. A group's lag is
exported by its coordinator for every partition of its committed offsets,
also those it holds no replica of. `GET /api/v1/stats` gathers every
broker's counters and lists a dead broker as unreachable."""

import json
import re
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from chaos_checker import sigcont, sigstop
from cluster_harness import running_cluster
from conftest import free_port


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def stats(port, scope=None, timeout=10):
    url = f"http://127.0.0.1:{port}/api/v1/stats" + (f"?scope={scope}" if scope else "")
    with urllib.request.urlopen(url, timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")
        return json.loads(r.read())


def topic_sum(answer, topic, field):
    """`field` of `topic` summed over the reachable brokers of a stats answer."""
    return sum(t[field] for b in answer["brokers"] if b["reachable"]
               for t in b["topics"] if t["topic"] == topic)


def give_http_ports(ports, controllers_too=False):
    """A `prepare` for `running_cluster`: an HTTP listener on a free port for
    every broker (and every dedicated controller), recorded in `ports`."""
    def prepare(cluster):
        nodes = set(cluster.broker_ids) | (set(cluster.controller_ids) if controllers_too else set())
        for n in sorted(nodes):
            ports[n] = free_port()
            path = cluster.root / f"node-{n}.properties"
            path.write_text(path.read_text() + f"kraftwerk.http.listener=127.0.0.1:{ports[n]}\n")
    return prepare


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


FAST_FENCING = {"broker.session.timeout.ms": 4000, "broker.heartbeat.interval.ms": 1000}


def test_under_replicated_partitions_follow_a_follower_kill():
    ports = {}
    with running_cluster("kraftwerk-metrics-", prepare=give_http_ports(ports), extra=FAST_FENCING) as cluster:
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


def test_group_lag_covers_partitions_other_nodes_lead():
    """The group's coordinator exports its lag for every partition it holds
    a replica of, also those another node leads (the follower's high
    watermark), so one scrape per coordinator covers the group."""
    ports = {}
    with running_cluster("kraftwerk-metrics-", prepare=give_http_ports(ports)) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("lagged", 3, 3)])["lagged"].result(30)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for i in range(60):
            producer.produce("lagged", value=b"x", partition=i % 3)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "lag-everywhere",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("lagged", p, 0) for p in range(3)])
        got = 0
        deadline = time.time() + 30
        while got < 60 and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got += 1
        assert got == 60
        consumer.commit(asynchronous=False)
        consumer.close()
        group = admin.describe_consumer_groups(["lag-everywhere"])["lag-everywhere"].result(30)
        coordinator = group.coordinator.id
        leaders = {p: m.leader for p, m in admin.list_topics("lagged", timeout=10).topics["lagged"].partitions.items()}
        assert any(leader != coordinator for leader in leaders.values()), leaders

        def lags():
            text = scrape(ports[coordinator])
            return [value(text, "kafka_consumergroup_lag", consumergroup="lag-everywhere", topic="lagged",
                          partition=str(p)) for p in range(3)]
        assert lags() == [0, 0, 0]
        for i in range(3 * 30):
            producer.produce("lagged", value=b"y", partition=i % 3)
        assert producer.flush(30) == 0
        # A follower learns the new high watermark with its next fetch.
        deadline = time.time() + 10
        seen = lags()
        while seen != [30, 30, 30] and time.time() < deadline:
            time.sleep(0.2)
            seen = lags()
        assert seen == [30, 30, 30], (seen, leaders, coordinator)


def test_stats_gather_every_broker_and_list_a_dead_one_as_unreachable():
    ports = {}
    with running_cluster("kraftwerk-stats-", prepare=give_http_ports(ports), extra=FAST_FENCING) as cluster:
        ask = cluster.broker_ids[0]
        answer = stats(ports[ask])
        assert answer["time_ms"] > 1_600_000_000_000
        assert [b["broker_id"] for b in answer["brokers"]] == cluster.broker_ids
        for b in answer["brokers"]:
            assert b["reachable"], b
            assert b["http_endpoint"] == f"127.0.0.1:{ports[b['broker_id']]}"
            assert b["requests"] >= 1 and b["bytes_in"] >= 0 and b["bytes_out"] >= 0, b

        local = stats(ports[cluster.broker_ids[1]], scope="local")
        assert [b["broker_id"] for b in local["brokers"]] == [cluster.broker_ids[1]]
        assert local["brokers"][0]["reachable"]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ports[ask]}/api/v1/stats?scope=everything", timeout=10)
            raise AssertionError("an unknown scope was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400
            error = json.loads(e.read())
            assert (error["error"], error["error_code"]) == ("INVALID_REQUEST", 42)

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("counted", 3, 3)])["counted"].result(30)
        before = stats(ports[ask])
        count, size = 300, 100
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(count):
            producer.produce("counted", value=b"v" * size, partition=i % 3)
        assert producer.flush(30) == 0
        after = stats(ports[ask])
        assert all(b["reachable"] for b in after["brokers"]), after
        # Only the leaders count what producers send; replication is not counted.
        assert topic_sum(after, "counted", "messages_in") - topic_sum(before, "counted", "messages_in") == count
        assert topic_sum(after, "counted", "bytes_in") - topic_sum(before, "counted", "bytes_in") >= count * size
        for b in after["brokers"]:
            assert b["messages_in"] == sum(t["messages_in"] for t in b["topics"]), b

        dead = cluster.broker_ids[-1]
        cluster.kill(dead)
        deadline = time.time() + 10
        while True:
            started = time.time()
            answer = stats(ports[ask])
            # Each broker is asked within 1 s, all at once.
            assert time.time() - started < 5
            entry = next((b for b in answer["brokers"] if b["broker_id"] == dead), None)
            if entry is not None and not entry["reachable"]:
                break
            assert time.time() < deadline, answer
            time.sleep(0.3)
        assert entry["error"], entry
        assert "bytes_in" not in entry
        alive = [b for b in answer["brokers"] if b["broker_id"] != dead]
        assert [b["broker_id"] for b in alive] == cluster.broker_ids[:-1]
        assert all(b["reachable"] for b in alive), answer


def quorum_metrics(port):
    text = scrape(port)
    states = re.findall(r'^kafka_server_raftmetrics_current_state\{state="(\w+)"\} 1$', text, re.MULTILINE)
    return {
        "leader": value(text, "kafka_server_raftmetrics_current_leader"),
        "epoch": value(text, "kafka_server_raftmetrics_current_epoch"),
        "high_watermark": value(text, "kafka_server_raftmetrics_high_watermark"),
        "log_end_offset": value(text, "kafka_server_raftmetrics_log_end_offset"),
        "state": states[0] if len(states) == 1 else states,
        "elections": value(text, "kafka_controller_controllerstats_leaderelectionrateandtimems_count"),
        "text": text,
    }


def test_raft_metrics_name_the_active_controller_and_follow_its_loss():
    ports = {}
    with running_cluster("kraftwerk-raft-", prepare=give_http_ports(ports), extra=FAST_FENCING) as cluster:
        active = None
        deadline = time.time() + 30
        while True:
            active = cluster.cluster_info()["active_controller"]
            seen = {n: quorum_metrics(ports[n]) for n in cluster.broker_ids}
            if len({m["leader"] for m in seen.values()}) == 1 and seen[cluster.broker_ids[0]]["leader"] == active:
                break
            assert time.time() < deadline, {n: m["leader"] for n, m in seen.items()}
            time.sleep(0.3)
        for n, m in seen.items():
            assert m["epoch"] >= 1 and m["high_watermark"] > 0, m
            assert m["log_end_offset"] >= m["high_watermark"], m
            assert m["state"] == ("leader" if n == active else "follower"), (n, m["state"])
        voter_lags = re.findall(r'^kafka_server_raftmetrics_voter_lag\{voter="(\d+)"\} (\S+)$',
                                seen[active]["text"], re.MULTILINE)
        assert sorted(int(v) for v, _ in voter_lags) == cluster.broker_ids
        epoch = seen[active]["epoch"]

        # A partition led by the active controller, so that killing it also
        # elects a new partition leader.
        followers = [n for n in cluster.broker_ids if n != active]
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("elected", num_partitions=1, replica_assignment=[[active, *followers]])])["elected"].result(30)
        deadline = time.time() + 30
        while cluster.describe("elected")["partitions"][0]["leader"] != active:
            assert time.time() < deadline, "the new partition has no leader"
            time.sleep(0.2)
        elections = {n: quorum_metrics(ports[n])["elections"] for n in followers}

        cluster.kill(active)
        survivors = cluster.bootstrap_without(active)
        deadline = time.time() + 30
        while True:
            seen = {n: quorum_metrics(ports[n]) for n in followers}
            leaders = {m["leader"] for m in seen.values()}
            if len(leaders) == 1 and leaders.pop() not in (active, -1):
                break
            assert time.time() < deadline, {n: (m["leader"], m["state"]) for n, m in seen.items()}
            time.sleep(0.3)
        new_active = seen[followers[0]]["leader"]
        assert cluster.cluster_info(bootstrap=survivors)["active_controller"] == new_active
        for n, m in seen.items():
            assert m["epoch"] > epoch, m
            assert m["state"] == ("leader" if n == new_active else "follower"), (n, m["state"])

        # The dead node is fenced after its session, and its partition gets a new leader.
        deadline = time.time() + 40
        while any(quorum_metrics(ports[n])["elections"] <= elections[n] for n in followers):
            assert time.time() < deadline, {n: quorum_metrics(ports[n])["elections"] for n in followers}
            time.sleep(0.5)
        leader = cluster.describe("elected", bootstrap=survivors)["partitions"][0]["leader"]
        assert leader in followers


def test_a_broker_only_node_reports_the_quorum_it_follows():
    ports = {}
    with running_cluster("kraftwerk-observer-", prepare=give_http_ports(ports, controllers_too=True),
                         nodes=1, controllers=1) as cluster:
        [broker] = cluster.broker_ids
        [controller] = cluster.controller_ids
        deadline = time.time() + 20
        while True:
            m = quorum_metrics(ports[broker])
            if m["leader"] == cluster.controller_ids[0] and m["epoch"] >= 1 and m["high_watermark"] > 0:
                break
            assert time.time() < deadline, m
            time.sleep(0.3)
        # The controller-only state is not the broker's to report.
        assert m["log_end_offset"] is None and m["state"] == [], m
        assert cluster.cluster_info()["active_controller"] == m["leader"]
        [entry] = stats(ports[broker])["brokers"]
        assert entry["broker_id"] == broker and entry["reachable"]

        # The dedicated controller serves its own metrics: it leads the
        # quorum, and counts the topics and partitions it created.
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("on-controller", num_partitions=3, replication_factor=1)])["on-controller"].result(30)
        deadline = time.time() + 20
        while True:
            c = quorum_metrics(ports[controller])
            topics = value(c["text"], "kafka_controller_kafkacontroller_globaltopiccount")
            partitions = value(c["text"], "kafka_controller_kafkacontroller_globalpartitioncount")
            if topics and topics >= 1 and partitions and partitions >= 3:
                break
            assert time.time() < deadline, c["text"]
            time.sleep(0.3)
        assert value(c["text"], "kafka_controller_kafkacontroller_activecontrollercount") == 1
        assert value(c["text"], "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
        assert c["leader"] == controller and c["state"] == "leader", c
        assert c["log_end_offset"] >= c["high_watermark"] > 0, c
        assert value(c["text"], "kafka_server_raftmetrics_voter_lag", voter=str(controller)) == 0
        assert value(c["text"], "process_resident_memory_bytes") > 0
        # Nothing of a broker's: it has no partitions, groups or requests.
        assert "kafka_server_replicamanager" not in c["text"]
        assert "kafka_server_brokertopicmetrics" not in c["text"]


def group_coordinator(admin, group):
    """The node id of `group`'s coordinator, as DescribeGroups names it."""
    deadline = time.time() + 30
    while True:
        try:
            return admin.describe_consumer_groups([group])[group].result(10).coordinator.id
        except Exception:
            assert time.time() < deadline, f"no coordinator found for {group}"
            time.sleep(0.5)


def test_group_lag_covers_partitions_without_a_replica_on_the_coordinator():
    """The coordinator exports lag also for partitions it holds no replica
    of: it asks their leaders for the high watermark when scraped. A leader
    that does not answer in time leaves its partitions out of that scrape
    without holding the scrape up."""
    ports = {}
    with running_cluster("kraftwerk-metrics-", prepare=give_http_ports(ports)) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        group = "lag-from-leaders"
        # A first commit creates the group, so that its coordinator is known
        # before the topic is placed away from it.
        admin.create_topics([NewTopic("lag-warmup", 1, 3)])["lag-warmup"].result(30)
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                             "enable.auto.commit": False})
        deadline = time.time() + 30
        while True:
            try:
                consumer.commit(offsets=[TopicPartition("lag-warmup", 0, 0)], asynchronous=False)
                break
            except Exception:
                assert time.time() < deadline, "the warm-up commit never succeeded"
                time.sleep(0.5)
        coordinator = group_coordinator(admin, group)
        others = [n for n in cluster.broker_ids if n != coordinator]
        # One partition on each other node, none on the coordinator.
        admin.create_topics([NewTopic("lag-remote", num_partitions=2, replica_assignment=[[others[0]], [others[1]]])])["lag-remote"].result(30)
        deadline = time.time() + 30
        while True:
            parts = admin.list_topics("lag-remote", timeout=10).topics["lag-remote"].partitions
            if len(parts) == 2 and [parts[p].leader for p in range(2)] == others:
                break
            assert time.time() < deadline, {p: m.leader for p, m in parts.items()}
            time.sleep(0.2)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
        for i in range(20):
            producer.produce("lag-remote", value=b"x", partition=0)
        for i in range(30):
            producer.produce("lag-remote", value=b"x", partition=1)
        assert producer.flush(30) == 0

        def lags():
            text = scrape(ports[coordinator])
            return [value(text, "kafka_consumergroup_lag", consumergroup=group, topic="lag-remote",
                          partition=str(p)) for p in range(2)]

        def wait_for_lags(expected):
            deadline = time.time() + 15
            seen = lags()
            while seen != expected and time.time() < deadline:
                time.sleep(0.3)
                seen = lags()
            assert seen == expected, (seen, coordinator, others)

        consumer.commit(offsets=[TopicPartition("lag-remote", 0, 5), TopicPartition("lag-remote", 1, 10)],
                        asynchronous=False)
        wait_for_lags([15, 20])
        text = scrape(ports[coordinator])
        assert value(text, "kafka_log_log_size", topic="lag-remote", partition="0") is None, \
            "the coordinator must hold no replica of the topic"
        assert value(text, "kafka_log_log_size", topic="lag-remote", partition="1") is None

        # More commits: the lag falls.
        consumer.commit(offsets=[TopicPartition("lag-remote", 0, 20), TopicPartition("lag-remote", 1, 25)],
                        asynchronous=False)
        wait_for_lags([0, 5])
        # More records: it rises with the leaders' high watermarks.
        for i in range(7):
            producer.produce("lag-remote", value=b"y", partition=0)
        assert producer.flush(30) == 0
        wait_for_lags([7, 5])

        # A paused leader cannot answer: the scrape still comes back within
        # about the one-second limit, without that leader's partition.
        sigstop(cluster.procs[others[1]])
        try:
            started = time.monotonic()
            text = scrape(ports[coordinator])
            took = time.monotonic() - started
        finally:
            sigcont(cluster.procs[others[1]])
        assert took < 3, took
        assert value(text, "kafka_consumergroup_lag", consumergroup=group, topic="lag-remote", partition="0") == 7
        assert value(text, "kafka_consumergroup_lag", consumergroup=group, topic="lag-remote", partition="1") is None
        wait_for_lags([7, 5])
        consumer.close()


UNCLEAN = "kafka_controller_controllerstats_uncleanleaderelectionspersec_total"


def test_an_unclean_election_happens_only_where_the_topic_allows_it_and_is_counted():
    """RF 2 on two brokers, `min.insync.replicas=1`: the follower stops and
    leaves the ISR, records are acknowledged by the leader alone, then the
    leader dies and the follower returns. With
    `unclean.leader.election.enable=true` the follower becomes leader (the
    ISR just itself), the controller counts one unclean election, clients
    produce and consume again, and the records only the dead leader had are
    gone. With the default (false) the partition stays offline.

    A dedicated controller keeps the metadata quorum up while two of the
    three brokers are down."""
    ports = {}
    with running_cluster("kraftwerk-unclean-", prepare=give_http_ports(ports, controllers_too=True),
                         nodes=3, controllers=1, extra=FAST_FENCING) as cluster:
        [controller] = cluster.controller_ids
        leader, follower, survivor = cluster.broker_ids
        survivor_bootstrap = f"127.0.0.1:{cluster.kafka_ports[survivor]}"
        admin = AdminClient({"bootstrap.servers": survivor_bootstrap})
        topics = {"unclean-allowed": "true", "unclean-default": None}
        for name, unclean in topics.items():
            config = {"min.insync.replicas": "1"}
            if unclean is not None:
                config["unclean.leader.election.enable"] = unclean
            admin.create_topics([NewTopic(name, num_partitions=1, replica_assignment=[[leader, follower]], config=config)])[name].result(30)

        def partition(name):
            # librdkafka may time a metadata request out while it reconnects
            # after a kill: ask again.
            deadline = time.time() + 30
            while True:
                try:
                    return admin.list_topics(name, timeout=5).topics[name].partitions[0]
                except KafkaException:
                    assert time.time() < deadline, f"no metadata for {name}"

        def wait_for(name, cond, what, timeout=40):
            deadline = time.time() + timeout
            while True:
                p = partition(name)
                if cond(p):
                    return p
                assert time.time() < deadline, (what, p.leader, p.isrs)
                time.sleep(0.3)

        for name in topics:
            wait_for(name, lambda p: p.leader == leader and sorted(p.isrs) == [leader, follower], "a full ISR")

        def produce(values):
            producer = Producer({"bootstrap.servers": survivor_bootstrap, "acks": "all",
                                 "message.timeout.ms": 30000})
            failed = []
            for name in topics:
                for v in values:
                    producer.produce(name, value=v.encode(), partition=0,
                                     on_delivery=lambda err, msg: err and failed.append(err))
            assert producer.flush(40) == 0 and not failed, failed

        produce([f"both-{i}" for i in range(10)])

        cluster.kill(follower)
        for name in topics:
            wait_for(name, lambda p: p.leader == leader and p.isrs == [leader], "the ISR shrunk to the leader")
        produce([f"leader-only-{i}" for i in range(5)])

        counted = {n: value(scrape(ports[n]), UNCLEAN) for n in (controller, survivor)}
        assert all(c is not None for c in counted.values()), counted

        cluster.kill(leader)
        for name in topics:
            wait_for(name, lambda p: p.leader == -1, "the partition went offline")
        assert value(scrape(ports[controller]), UNCLEAN) == counted[controller]

        cluster.start(follower)
        p = wait_for("unclean-allowed", lambda p: p.leader == follower, "the follower elected uncleanly")
        assert p.isrs == [follower], p.isrs
        deadline = time.time() + 20
        while True:
            now = {n: value(scrape(ports[n]), UNCLEAN) for n in (controller, survivor)}
            if all(now[n] == counted[n] + 1 for n in now):
                break
            assert time.time() < deadline, (counted, now)
            time.sleep(0.3)
        # The follower is back (unfenced: it leads), but the default
        # forbids electing it where it is outside the ISR.
        p = partition("unclean-default")
        assert (p.leader, p.isrs) == (-1, [leader]), (p.leader, p.isrs)

        # Clients use the uncleanly elected leader; what only the dead
        # leader held is gone, what both held is there.
        producer = Producer({"bootstrap.servers": survivor_bootstrap, "acks": "all"})
        for i in range(3):
            producer.produce("unclean-allowed", value=f"after-{i}".encode(), partition=0)
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": survivor_bootstrap, "group.id": "unclean-reader",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition("unclean-allowed", 0, 0)])
        got = []
        deadline = time.time() + 30
        while len(got) < 13 and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value().decode())
        consumer.close()
        assert got == [f"both-{i}" for i in range(10)] + [f"after-{i}" for i in range(3)], got
        assert value(scrape(ports[controller]), UNCLEAN) == counted[controller] + 1
