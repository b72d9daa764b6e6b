#!/usr/bin/env python3
"""Kraftwerk beside Apache Kafka 4.1.1: the same workloads, the same
clients, the same machine, in alternation.

Starts Kraftwerk ($KRAFTWERK_BIN, else target/release, else target/debug)
and Apache Kafka 4.1.1 (tests/peers/kafka.sh: Maven Central jars, fixed
512 MiB heap, G1) with equivalent settings: data directories on the same
disk, combined broker+controller nodes, the same topics (partitions,
replication factor, min.insync.replicas) created by the same admin
client, both flush policies at their defaults (no fsync per message; the
page cache and replication carry durability), group.initial.rebalance.delay.ms=0
and internal topics sized to the cluster on both. Kraftwerk's HTTP
listener is off (Kafka has none).

Each workload runs against both brokers in alternation (round 1
Kraftwerk first, round 2 Kafka first, ...) with each chosen client:

  java        Kafka's own tools as everyone quotes them: ProducerPerformance,
              ConsumerPerformance, EndToEndLatency (JVM options as
              kafka-run-class.sh: -Xmx512m, G1)
  librdkafka  bench/rdkperf.c, a small C program against librdkafka
              (apt's librdkafka-dev), compiled at start
  kraftwerk   `kraftwerk bench produce|consume --output json`

Workloads (record counts at --scale 1):

  max-100     6 partitions: produce 2,000,000 x 100 B at maximum rate
              (acks=all, linger.ms=5, batch.size=131072, idempotent), then
              consume them from the beginning
  max-1k      the same with 500,000 x 1 KiB
  fixed-rate  produce 100 B records for 20 s at half of the slower
              broker's max-100 produce median (per client; calibrated if
              max-100 was not run), linger.ms=1: latency percentiles
  omb         OpenMessaging-style: 100 partitions, 4 producers
              (150,000 x 1 KiB each, max rate, linger.ms=1,
              batch.size=131072, acks=all) while 4 consumers in one group
              read at the tail; producers start once the group is stable,
              the run ends when the group has committed every record;
              java and librdkafka
  backlog     consume a 1 GiB backlog (1 KiB records, 6 partitions,
              loaded once per broker, read from the page cache)
  e2e         end-to-end latency as kafka-e2e-latency measures it: one
              1 KiB record at a time, sent with acks=all and read back by a
              consumer at the tail, 5,000 times; java and librdkafka
  partitions  three nodes only, fresh clusters, one broker at a time:
              10,000 partitions (10 topics x 1,000, RF 3) created at once:
              time to create (answered, and every leader known on every
              node), then one record to every partition (how many take a
              write), open files per node, Metadata request time, broker
              RSS per partition, controller failover time (SIGKILL of the
              active controller until a CreateTopics succeeds: from new
              admin clients every 250 ms, and from one connected before
              the kill) and partition leader failover time (until no
              partition names the killed node as leader)

Every fresh cluster gets the same unmeasured warm-up first (500,000 x
100 B and 100,000 x 1 KiB produced and consumed), so that Kafka's first
measured run does not carry its JIT compilation.

On three nodes topics have replication factor 3 and min.insync.replicas=2,
on one node 1 and 1; producers use acks=all on both. Per run it records
the client's figures (records/s, MB/s = MiB/s, latency percentiles), the
broker processes' CPU seconds (utime+stime deltas from /proc/<pid>/stat,
summed over nodes) and their peak RSS (VmRSS summed over nodes, sampled
every 100 ms during the run). It measures the machine's limits first
(loopback TCP, sequential writes with and without fdatasync/dsync to the
data directories' disk) and writes a markdown report of medians and
Kraftwerk/Kafka ratios.

Usage:
  bench/compare.py [--nodes 1|3|both] [--rounds N] [--workloads a,b,...]
                   [--client java|librdkafka|kraftwerk|all] [--scale F]
                   [--out FILE.md] [--keep]

`--scale 0.05 --rounds 1` is a quick smoke run. Ctrl-C stops every
process it started and removes its temporary directory.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from benchlib import (ROOT, RssSampler, cpu_seconds, free_port_run, kafka_classpath, kraftwerk_binary, rss_mib,
                      start_kafka, stop_kafka, wait_port)

KRAFTWERK = "Kraftwerk"
KAFKA = "Apache Kafka 4.1.1"
BROKERS = [KRAFTWERK, KAFKA]
WORKLOADS = ["max-100", "max-1k", "fixed-rate", "omb", "backlog", "e2e", "partitions"]
CLIENTS = ["java", "librdkafka", "kraftwerk"]

PARTITIONS = 6
MAX_RECORDS = {"max-100": (100, 2_000_000), "max-1k": (1024, 500_000)}
MAX_PROPS = {"acks": "all", "linger.ms": "5", "batch.size": "131072"}
FIXED_RATE_SECONDS = 20
FIXED_RATE_SHARE = 0.5
FIXED_RATE_PROPS = {"acks": "all", "linger.ms": "1", "batch.size": "131072"}
CALIBRATION_RECORDS = 500_000
# Records of the unmeasured warm-up on each fresh cluster (not scaled).
WARM_UP_RECORDS = 500_000
OMB_PARTITIONS = 100
OMB_PRODUCERS = 4
OMB_CONSUMERS = 4
OMB_RECORDS_PER_PRODUCER = 150_000
OMB_RECORD_SIZE = 1024
OMB_PROPS = {"acks": "all", "linger.ms": "1", "batch.size": "131072"}
# OMB consumers commit every second; the run ends when the group's
# committed offsets reach every record produced (their own idle timeouts
# are only a backstop), or this long after the producers finished.
OMB_CONSUMER_COMMIT_MS = 1000
OMB_CONSUMER_IDLE_MS = 600_000
OMB_CATCH_UP_TIMEOUT_S = 60
# Producers start once the group is stable with every member assigned.
OMB_GROUP_STABLE_TIMEOUT_S = 90
BACKLOG_BYTES = 1 << 30
BACKLOG_RECORD_SIZE = 1024
E2E_RECORDS = 5_000
E2E_RECORD_SIZE = 1024
PARTITIONS_TOTAL = 10_000
PARTITIONS_TOPICS = 10
# Limits of the waits in the partitions workload.
PARTITIONS_READY_TIMEOUT_S = 900
FAILOVER_TIMEOUT_S = 120
WRITE_CHECK_TIMEOUT_S = 60
FAILOVER_PROBE_INTERVAL_S = 0.25
# A broker process gets this long to settle before its RSS is read.
RSS_SETTLE_S = 5
CLUSTER_READY_TIMEOUT_S = 120
TOPIC_READY_TIMEOUT_S = 120
OPEN_FILES_WANTED = 200_000

JAVA_OPTS = ["-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={ROOT / 'tests' / 'peers' / 'tools-log4j2.yaml'}"]
TOOLS = "org.apache.kafka.tools."

# Everything started here, so that any exit stops it.
CHILDREN = set()
CLUSTERS = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ClientError(Exception):
    """A client run that failed, hung or came back short."""


def run_process(cmd, timeout_s):
    """Runs a client process to its end; returns its stdout. Raises
    ClientError with the tail of its output if it fails or times out."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise ClientError(f"timed out after {timeout_s:.0f} s: {' '.join(map(str, cmd[:1] + cmd[-12:]))}\n"
                          f"{tail(out)}\n{tail(err)}")
    finally:
        CHILDREN.discard(proc)
    if proc.returncode != 0:
        raise ClientError(f"exit {proc.returncode}: {tail(out)}\n{tail(err)}")
    return out


def start_process(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.add(proc)
    return proc


def finish_process(proc, timeout_s):
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise ClientError(f"timed out after {timeout_s:.0f} s\n{tail(out)}\n{tail(err)}")
    finally:
        CHILDREN.discard(proc)
    if proc.returncode != 0:
        raise ClientError(f"exit {proc.returncode}: {tail(out)}\n{tail(err)}")
    return out


def tail(text, lines=6):
    return "\n".join((text or "").strip().splitlines()[-lines:])


# ---------------------------------------------------------------- clusters


def admin_client(bootstrap):
    """An admin client whose metadata refreshes do not create topics (it
    would otherwise bring back the deleted topics it still remembers)."""
    return AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})


class Cluster:
    """`nodes` combined broker+controller processes of one implementation."""

    def __init__(self, name, nodes, directory):
        self.name = name
        self.nodes = nodes
        self.dir = Path(directory)
        self.bootstrap = ""
        self.addresses = {}  # node id -> host:port
        self.pids = {}  # node id -> pid
        self.killed = set()
        self._admins = {}

    @property
    def rf(self):
        return min(self.nodes, 3)

    @property
    def min_isr(self):
        return 2 if self.rf >= 3 else 1

    def live_pids(self):
        return [pid for n, pid in self.pids.items() if n not in self.killed]

    def alive(self):
        return all(Path(f"/proc/{pid}").exists() for pid in self.live_pids())

    def admin(self, address=None):
        address = address or self.bootstrap
        if address not in self._admins:
            self._admins[address] = admin_client(address)
        return self._admins[address]

    def survivors_bootstrap(self):
        return ",".join(a for n, a in self.addresses.items() if n not in self.killed)

    def wait_ready(self):
        """Every node answers Metadata and lists every broker."""
        deadline = time.monotonic() + CLUSTER_READY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name}: a node exited while starting (logs in {self.dir})")
            try:
                if all(len(self.admin(a).list_topics(timeout=5).brokers) == self.nodes
                       for a in self.addresses.values()):
                    return
            except KafkaException as e:
                last = e
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: not every broker registered within {CLUSTER_READY_TIMEOUT_S} s ({last})")

    def kill(self, node_id):
        os.kill(self.pids[node_id], signal.SIGKILL)
        self.killed.add(node_id)


class KraftwerkCluster(Cluster):
    def start(self):
        binary = kraftwerk_binary()
        ids = range(1, self.nodes + 1)
        ports = {n: free_port_run([0, 1, 2]) for n in ids}  # Kafka, controller, replication
        voters = ",".join(f"{n}@127.0.0.1:{ports[n] + 1}" for n in ids)
        self.procs = {}
        for n in ids:
            node = self.dir / f"node-{n}"
            node.mkdir(parents=True)
            props = {
                "node.id": n,
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://127.0.0.1:{ports[n]},CONTROLLER://127.0.0.1:{ports[n] + 1},"
                             f"REPLICATION://127.0.0.1:{ports[n] + 2}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports[n]}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "log.dirs": node / "data",
                "offsets.topic.replication.factor": self.rf,
                "transaction.state.log.replication.factor": self.rf,
                "transaction.state.log.min.isr": self.min_isr,
                "group.initial.rebalance.delay.ms": 0,
                "kraftwerk.http.listener": "",
            }
            (node / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            out = open(node / "server.log", "wb")
            proc = subprocess.Popen([binary, "server", "--config", str(node / "server.properties")],
                                    stdout=out, stderr=subprocess.STDOUT)
            CHILDREN.add(proc)
            self.procs[n] = proc
            self.pids[n] = proc.pid
            self.addresses[n] = f"127.0.0.1:{ports[n]}"
        for n in ids:
            wait_port(ports[n], self.procs[n])
        self.bootstrap = ",".join(self.addresses.values())
        self.wait_ready()

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            CHILDREN.discard(proc)


class KafkaCluster(Cluster):
    def start(self):
        self.bootstrap, pids = start_kafka(self.dir, self.nodes)
        for n, (address, pid) in enumerate(zip(self.bootstrap.split(","), pids), start=1):
            self.addresses[n] = address
            self.pids[n] = pid
        self.wait_ready()

    def stop(self):
        stop_kafka(self.dir)


def start_cluster(name, nodes, workdir):
    directory = workdir / f"{'kraftwerk' if name == KRAFTWERK else 'kafka'}-{nodes}n-{uuid.uuid4().hex[:6]}"
    cluster = (KraftwerkCluster if name == KRAFTWERK else KafkaCluster)(name, nodes, directory)
    CLUSTERS.append(cluster)
    log(f"starting {name}, {nodes} node(s)")
    try:
        cluster.start()
    except Exception:
        stop_cluster(cluster)
        raise
    log(f"{name} ready at {cluster.bootstrap}")
    return cluster


def stop_cluster(cluster):
    # Admin clients would go on reconnecting to the stopped nodes.
    cluster._admins.clear()
    try:
        cluster.stop()
    finally:
        if cluster in CLUSTERS:
            CLUSTERS.remove(cluster)


def create_topic(cluster, name, partitions, config=None):
    """Creates a topic with the cluster's replication factor and
    min.insync.replicas, by the same admin client on both brokers, and
    waits until every node sees a leader and a full ISR for every
    partition."""
    config = {"min.insync.replicas": str(cluster.min_isr), **(config or {})}
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    while True:
        future = cluster.admin().create_topics([NewTopic(name, partitions, cluster.rf, config=config)],
                                               operation_timeout=60)[name]
        try:
            future.result(timeout=90)
            break
        except TimeoutError:
            raise RuntimeError(f"{cluster.name}: creating {name} was not answered within 90 s")
        except KafkaException as e:
            err = e.args[0]
            if err.name() == "TOPIC_ALREADY_EXISTS":
                break
            if time.monotonic() > deadline or not err.retriable() and err.name() != "INVALID_REPLICATION_FACTOR":
                raise RuntimeError(f"{cluster.name}: creating {name} failed: {err}")
            time.sleep(1)
    while True:
        if all(topic_ready(cluster.admin(a), name, partitions, cluster.rf) for a in cluster.addresses.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cluster.name}: {name} has no leader or no full ISR on every node "
                               f"after {TOPIC_READY_TIMEOUT_S} s")
        time.sleep(0.3)


def topic_ready(admin, name, partitions, rf):
    try:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
    except KafkaException:
        return False
    if topic is None or topic.error is not None or len(topic.partitions) != partitions:
        return False
    return all(p.leader >= 0 and len(p.isrs) == rf for p in topic.partitions.values())


def delete_topic(cluster, name):
    try:
        cluster.admin().delete_topics([name], operation_timeout=30)[name].result(timeout=60)
    except Exception as e:  # noqa: BLE001 - a leftover topic only costs disk
        log(f"{cluster.name}: deleting {name}: {e}")


# ----------------------------------------------------------------- clients


class Clients:
    """Runs the three client families with the same arguments."""

    def __init__(self, timeout_s, rdkperf, classpath, workdir):
        self.timeout_s = timeout_s
        self.workdir = workdir
        self.rdkperf = rdkperf
        self.classpath = classpath
        self.kraftwerk = kraftwerk_binary()

    def java(self, main_class, *args):
        return ["java", *JAVA_OPTS, "-cp", self.classpath, TOOLS + main_class, *map(str, args)]

    def produce_cmd(self, client, bootstrap, topic, records, size, rate, props):
        if client == "java":
            return self.java("ProducerPerformance", "--topic", topic, "--num-records", records, "--record-size", size,
                             "--throughput", rate if rate > 0 else -1, "--producer-props",
                             f"bootstrap.servers={bootstrap}", *[f"{k}={v}" for k, v in props.items()])
        if client == "librdkafka":
            args = [self.rdkperf, "produce", "-b", bootstrap, "-t", topic, "-n", records, "-s", size,
                    "-r", rate if rate > 0 else -1, "-X", "enable.idempotence=true"]
            for k, v in props.items():
                args += ["-X", f"{k}={v}"]
            return list(map(str, args))
        return list(map(str, [self.kraftwerk, "bench", "produce", "--bootstrap-server", bootstrap, "--topic", topic,
                              "--num-records", records, "--record-size", size,
                              "--throughput", rate if rate > 0 else -1, "--output", "json", "--producer-props",
                              *[f"{k}={v}" for k, v in props.items()]]))

    def produce(self, client, bootstrap, topic, records, size, rate=-1, props=None):
        cmd = self.produce_cmd(client, bootstrap, topic, records, size, rate, props or MAX_PROPS)
        return parse_produce(client, run_process(cmd, self.timeout_s), records)

    def consume(self, client, bootstrap, topic, records):
        if client == "java":
            cmd = self.java("ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
                            "--messages", records, "--timeout", 30_000)
            return parse_java_consume(run_process(cmd, self.timeout_s), records)
        if client == "librdkafka":
            cmd = list(map(str, [self.rdkperf, "consume", "-b", bootstrap, "-t", topic, "-n", records]))
        else:
            cmd = list(map(str, [self.kraftwerk, "bench", "consume", "--bootstrap-server", bootstrap, "--topic", topic,
                                 "--num-records", records, "--output", "json"]))
        report = json.loads(run_process(cmd, self.timeout_s).strip().splitlines()[-1])
        if report["records"] < records:
            raise ClientError(f"read {report['records']} of {records} records")
        return {"records": report["records"], "records_per_sec": report["records_per_sec"],
                "mb_per_sec": report["mb_per_sec"]}

    def e2e(self, client, bootstrap, topic, records, size):
        if client == "java":
            out = run_process(self.java("EndToEndLatency", bootstrap, topic, records, "all", size), self.timeout_s)
            avg = re.search(r"Avg latency: ([\d.]+) ms", out)
            pct = re.search(r"Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)", out)
            if not avg or not pct:
                raise ClientError(f"no result in EndToEndLatency's output: {tail(out)}")
            return {"records": records, "avg": float(avg.group(1)), "p50": float(pct.group(1)),
                    "p99": float(pct.group(2)), "p999": float(pct.group(3))}
        if client == "librdkafka":
            cmd = list(map(str, [self.rdkperf, "e2e", "-b", bootstrap, "-t", topic, "-n", records, "-s", size,
                                 "-X", "acks=all"]))
            report = json.loads(run_process(cmd, self.timeout_s).strip().splitlines()[-1])
            return {"records": report["records"], "avg": report["latency_avg_ms"], "p50": report["latency_p50_ms"],
                    "p99": report["latency_p99_ms"], "p999": report["latency_p999_ms"],
                    "max": report["latency_max_ms"]}
        cmd = list(map(str, [self.kraftwerk, "bench", "e2e", "--bootstrap-server", bootstrap, "--topic", topic,
                             "--num-records", records, "--record-size", size, "--producer-props", "acks=all",
                             "--output", "json"]))
        report = json.loads(run_process(cmd, self.timeout_s).strip().splitlines()[-1])
        return {"records": report["records"], "avg": report["latency_avg_ms"], "p50": report["latency_p50_ms"],
                "p99": report["latency_p99_ms"], "p999": report["latency_p999_ms"],
                "max": report["latency_max_ms"]}

    def group_consumer_cmd(self, client, bootstrap, topic, group, records):
        if client == "java":
            config = self.workdir / "omb-consumer.properties"
            config.write_text(f"auto.commit.interval.ms={OMB_CONSUMER_COMMIT_MS}\n")
            return self.java("ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic, "--group", group,
                             "--messages", records, "--timeout", OMB_CONSUMER_IDLE_MS, "--consumer.config", config)
        if client == "librdkafka":
            return list(map(str, [self.rdkperf, "consume", "-b", bootstrap, "-t", topic, "-g", group, "-n", records,
                                  "-i", OMB_CONSUMER_IDLE_MS]))
        return list(map(str, [self.kraftwerk, "bench", "consume", "--bootstrap-server", bootstrap, "--topic", topic,
                              "--group", group, "--num-records", records, "--timeout-ms", OMB_CONSUMER_IDLE_MS,
                              "--consumer-props", f"auto.commit.interval.ms={OMB_CONSUMER_COMMIT_MS}",
                              "--output", "json"]))


PRODUCE_LINE = re.compile(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                          r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def parse_produce(client, out, records):
    if client == "java":
        m = None
        for m in PRODUCE_LINE.finditer(out):
            pass
        if not m:
            raise ClientError(f"no result in ProducerPerformance's output: {tail(out)}")
        sent = int(m.group(1))
        report = {"records": sent, "records_per_sec": float(m.group(2)), "mb_per_sec": float(m.group(3)),
                  "avg": float(m.group(4)), "max": float(m.group(5)), "p50": float(m.group(6)),
                  "p99": float(m.group(8)), "p999": float(m.group(9))}
        errors = records - sent
    else:
        r = json.loads(out.strip().splitlines()[-1])
        report = {"records": r["records"], "records_per_sec": r["records_per_sec"], "mb_per_sec": r["mb_per_sec"],
                  "avg": r["latency_avg_ms"], "max": r["latency_max_ms"], "p50": r["latency_p50_ms"],
                  "p99": r["latency_p99_ms"], "p999": r["latency_p999_ms"]}
        errors = max(r.get("errors", 0), records - r["records"])
    if errors:
        raise ClientError(f"{errors} of {records} records not acknowledged ({report})")
    return report


def parse_java_consume(out, records):
    """ConsumerPerformance's last line; fetch.* excludes the group join."""
    lines = [line for line in out.strip().splitlines() if line.count(",") >= 9]
    if not lines or "WARNING: Exiting before" in out:
        raise ClientError(f"ConsumerPerformance came back short: {tail(out)}")
    f = [x.strip() for x in lines[-1].split(",")]
    consumed = int(f[4])
    if consumed < records:
        raise ClientError(f"read {consumed} of {records} records")
    return {"records": consumed, "records_per_sec": float(f[9]), "mb_per_sec": float(f[8])}


# ----------------------------------------------------------------- measuring


def measured(cluster, fn):
    """Runs fn() and adds the brokers' CPU seconds and peak summed RSS."""
    if not cluster.alive():
        raise ClientError(f"{cluster.name} is not running (a node exited; logs in {cluster.dir})")
    pids = cluster.live_pids()
    before = {pid: cpu_seconds(pid) for pid in pids}
    sampler = RssSampler(pids).start()
    started = time.monotonic()
    try:
        report = fn()
    finally:
        peak = sampler.stop()
    if not cluster.alive():
        raise ClientError(f"{cluster.name}: a node exited during the run (logs in {cluster.dir})")
    report["cpu_s"] = sum(cpu_seconds(pid) - before[pid] for pid in pids)
    report["rss_mib"] = peak
    report["wall_s"] = time.monotonic() - started
    return report


class Results:
    def __init__(self):
        self.runs = {}  # (nodes, label, client, broker) -> [report or {"error": ...}]
        self.labels = {}  # nodes -> [label, ...] in order of first appearance
        self.partitions = []  # (round, broker, report)
        self.notes = []

    def add(self, nodes, label, client, broker, report):
        self.runs.setdefault((nodes, label, client, broker), []).append(report)
        if label not in self.labels.setdefault(nodes, []):
            self.labels[nodes].append(label)
        if "error" in report:
            log(f"{nodes}n {label} [{client}] {broker}: FAILED {report['error'].splitlines()[0]}")
        else:
            log(f"{nodes}n {label} [{client}] {broker}: " + ", ".join(
                f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))

    def median(self, nodes, label, client, broker, key):
        values = [r[key] for r in self.runs.get((nodes, label, client, broker), []) if key in r]
        return statistics.median(values) if values else None


def attempt(results, nodes, label, client, cluster, fn):
    """One measured run; a failure is recorded, not raised."""
    try:
        report = measured(cluster, fn)
    except Exception as e:  # noqa: BLE001 - recorded in the report, the next run goes on
        report = {"error": str(e).strip() or type(e).__name__}
    results.add(nodes, label, client, cluster.name, report)
    return report


def rounds_order(r):
    return BROKERS if r % 2 == 0 else list(reversed(BROKERS))


def topic_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------- workloads


def workload_max(ctx, name, clusters, r):
    size, records = MAX_RECORDS[name]
    records = ctx.count(records)
    unit = "100 B" if size == 100 else "1 KiB"
    for client in ctx.clients:
        for broker in rounds_order(r):
            cluster = clusters[broker]
            topic = topic_name(f"{name}-{client}")
            try:
                create_topic(cluster, topic, PARTITIONS)
            except RuntimeError as e:
                ctx.results.add(cluster.nodes, f"produce {unit}, max rate", client, broker, {"error": str(e)})
                continue
            produced = attempt(ctx.results, cluster.nodes, f"produce {unit}, max rate", client, cluster,
                               lambda: ctx.tools.produce(client, cluster.bootstrap, topic, records, size))
            if "error" in produced:
                ctx.results.add(cluster.nodes, f"consume {unit}", client, broker,
                                {"error": "not run: the produce run before it failed"})
            else:
                attempt(ctx.results, cluster.nodes, f"consume {unit}", client, cluster,
                        lambda: ctx.tools.consume(client, cluster.bootstrap, topic, records))
            delete_topic(cluster, topic)


def fixed_rate_target(ctx, clusters, client):
    nodes = next(iter(clusters.values())).nodes
    key = (nodes, client)
    if key not in ctx.fixed_rates:
        medians = [ctx.results.median(nodes, "produce 100 B, max rate", client, b, "records_per_sec") for b in BROKERS]
        if None in medians:
            medians = []
            for broker in BROKERS:
                cluster = clusters[broker]
                topic = topic_name("calibrate")
                create_topic(cluster, topic, PARTITIONS)
                report = ctx.tools.produce(client, cluster.bootstrap, topic, ctx.count(CALIBRATION_RECORDS), 100)
                delete_topic(cluster, topic)
                medians.append(report["records_per_sec"])
            ctx.results.notes.append(f"{nodes} node(s), {client}: fixed rate calibrated by one max-rate run per "
                                     f"broker ({', '.join(f'{m:,.0f}' for m in medians)} records/s)")
        ctx.fixed_rates[key] = int(min(medians) * FIXED_RATE_SHARE)
    return ctx.fixed_rates[key]


def workload_fixed_rate(ctx, name, clusters, r):
    for client in ctx.clients:
        try:
            rate = fixed_rate_target(ctx, clusters, client)
        except (ClientError, RuntimeError, KafkaException) as e:
            for broker in BROKERS:
                ctx.results.add(clusters[broker].nodes, "produce 100 B at a fixed rate", client, broker,
                                {"error": f"calibration failed: {e}"})
            continue
        records = max(1000, int(rate * FIXED_RATE_SECONDS * ctx.scale))
        label = f"produce 100 B at {rate:,} records/s"
        for broker in rounds_order(r):
            cluster = clusters[broker]
            topic = topic_name(f"fixed-{client}")
            try:
                create_topic(cluster, topic, PARTITIONS)
            except RuntimeError as e:
                ctx.results.add(cluster.nodes, label, client, broker, {"error": str(e)})
                continue
            attempt(ctx.results, cluster.nodes, label, client, cluster,
                    lambda: ctx.tools.produce(client, cluster.bootstrap, topic, records, 100, rate, FIXED_RATE_PROPS))
            delete_topic(cluster, topic)


def wait_group_stable(cluster, group, members, procs):
    """Waits until the group is stable with `members` members that all
    have partitions, so that the producers do not race the join."""
    deadline = time.monotonic() + OMB_GROUP_STABLE_TIMEOUT_S
    state = None
    while time.monotonic() < deadline:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            out, err = dead[0].communicate()
            raise ClientError(f"a consumer exited while joining: {tail(out)}\n{tail(err)}")
        try:
            desc = cluster.admin().describe_consumer_groups([group])[group].result(timeout=10)
            state = (desc.state, len(desc.members))
            if (desc.state == ConsumerGroupState.STABLE and len(desc.members) == members
                    and all(m.assignment and m.assignment.topic_partitions for m in desc.members)):
                return
        except (KafkaException, TimeoutError):
            pass
        time.sleep(0.2)
    raise ClientError(f"the group of {members} consumers was not stable within {OMB_GROUP_STABLE_TIMEOUT_S} s "
                      f"(last seen: {state})")


def wait_group_caught_up(cluster, group, total):
    """The group's committed offsets summed over its partitions (each
    partition starts at 0), once they reach `total` or the wait ends."""
    deadline = time.monotonic() + OMB_CATCH_UP_TIMEOUT_S
    committed = 0
    while time.monotonic() < deadline:
        try:
            result = cluster.admin().list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
            committed = sum(tp.offset for tp in result.topic_partitions if tp.offset > 0)
            if committed >= total:
                break
        except (KafkaException, TimeoutError):
            pass
        time.sleep(0.2)
    return committed


def omb_run(ctx, client, cluster, topic, records_per_producer):
    total = records_per_producer * OMB_PRODUCERS
    group = topic_name("omb-group")
    consumers = [start_process(ctx.tools.group_consumer_cmd(client, cluster.bootstrap, topic, group, total))
                 for _ in range(OMB_CONSUMERS)]
    producers = []
    try:
        wait_group_stable(cluster, group, OMB_CONSUMERS, consumers)
        cmd = ctx.tools.produce_cmd(client, cluster.bootstrap, topic, records_per_producer, OMB_RECORD_SIZE, -1,
                                    OMB_PROPS)
        producers = [start_process(cmd) for _ in range(OMB_PRODUCERS)]
        reports = [parse_produce(client, finish_process(p, ctx.tools.timeout_s), records_per_producer)
                   for p in producers]
        consumed = wait_group_caught_up(cluster, group, total)
    finally:
        for p in consumers + producers:
            if p.poll() is None:
                p.kill()
                p.communicate()
            CHILDREN.discard(p)
    if consumed != total:
        raise ClientError(f"the group's committed offsets reached {consumed:,} of {total:,} records "
                          f"{OMB_CATCH_UP_TIMEOUT_S} s after the producers finished")
    # Producers ran side by side: rates add up; latencies are the worst
    # producer's (p50: the median producer's).
    return {"records": total, "records_per_sec": sum(x["records_per_sec"] for x in reports),
            "mb_per_sec": sum(x["mb_per_sec"] for x in reports),
            "avg": statistics.mean(x["avg"] for x in reports), "p50": statistics.median(x["p50"] for x in reports),
            "p99": max(x["p99"] for x in reports), "p999": max(x["p999"] for x in reports),
            "max": max(x["max"] for x in reports), "consumed": consumed}


def workload_omb(ctx, name, clusters, r):
    records = ctx.count(OMB_RECORDS_PER_PRODUCER)
    label = (f"OMB: {OMB_PARTITIONS} partitions, {OMB_PRODUCERS} producers + {OMB_CONSUMERS} consumers, "
             f"1 KiB, linger.ms=1")
    for client in ctx.clients:
        for broker in rounds_order(r):
            cluster = clusters[broker]
            topic = topic_name("omb")
            try:
                create_topic(cluster, topic, OMB_PARTITIONS)
            except RuntimeError as e:
                ctx.results.add(cluster.nodes, label, client, broker, {"error": str(e)})
                continue
            attempt(ctx.results, cluster.nodes, label, client, cluster,
                    lambda: omb_run(ctx, client, cluster, topic, records))
            delete_topic(cluster, topic)


def workload_backlog(ctx, name, clusters, r):
    records = ctx.count(BACKLOG_BYTES // BACKLOG_RECORD_SIZE)
    gib = records * BACKLOG_RECORD_SIZE / (1 << 30)
    label = f"consume {gib:.2g} GiB backlog (1 KiB records)"
    loader = "librdkafka" if ctx.tools.rdkperf else "kraftwerk"
    for broker in rounds_order(r):
        cluster = clusters[broker]
        if (broker, cluster.nodes) not in ctx.backlogs:
            topic = topic_name("backlog")
            try:
                create_topic(cluster, topic, PARTITIONS)
                started = time.monotonic()
                ctx.tools.produce(loader, cluster.bootstrap, topic, records, BACKLOG_RECORD_SIZE)
                log(f"{broker}: backlog of {records:,} records loaded with {loader} in "
                    f"{time.monotonic() - started:.1f} s")
                ctx.backlogs[(broker, cluster.nodes)] = topic
            except (ClientError, RuntimeError, KafkaException) as e:
                ctx.backlogs[(broker, cluster.nodes)] = None
                ctx.results.notes.append(f"{cluster.nodes} node(s), {broker}: loading the backlog failed: {e}")
        topic = ctx.backlogs[(broker, cluster.nodes)]
        for client in ctx.clients:
            if topic is None:
                ctx.results.add(cluster.nodes, label, client, broker, {"error": "the backlog could not be loaded"})
                continue
            attempt(ctx.results, cluster.nodes, label, client, cluster,
                    lambda: ctx.tools.consume(client, cluster.bootstrap, topic, records))


def workload_e2e(ctx, name, clusters, r):
    records = max(100, ctx.count(E2E_RECORDS))
    label = "end-to-end latency, 1 KiB, one record at a time"
    for client in ctx.clients:
        for broker in rounds_order(r):
            cluster = clusters[broker]
            topic = topic_name(f"e2e-{client}")
            try:
                create_topic(cluster, topic, 1)
            except RuntimeError as e:
                ctx.results.add(cluster.nodes, label, client, broker, {"error": str(e)})
                continue
            attempt(ctx.results, cluster.nodes, label, client, cluster,
                    lambda: ctx.tools.e2e(client, cluster.bootstrap, topic, records, E2E_RECORD_SIZE))
            delete_topic(cluster, topic)


def active_controller(ctx, cluster):
    """The quorum leader's node id, asked with kafka-metadata-quorum."""
    out = run_process(ctx.tools.java("MetadataQuorumCommand", "--bootstrap-server", cluster.bootstrap, "describe",
                                     "--status"), 120)
    m = re.search(r"LeaderId:\s+(\d+)", out)
    if not m:
        raise ClientError(f"no LeaderId in kafka-metadata-quorum's output: {tail(out)}")
    return int(m.group(1))


def partitions_with_leaders(admin, prefix):
    md = admin.list_topics(timeout=60)
    led = total = 0
    leaders = {}
    for name, topic in md.topics.items():
        if not name.startswith(prefix):
            continue
        for p in topic.partitions.values():
            total += 1
            led += p.leader >= 0
            leaders[p.leader] = leaders.get(p.leader, 0) + 1
    return total, led, leaders


def probe_create_topics(make_admin, name_prefix, killed_at, report, key):
    """Tries a CreateTopics (RF 1) with one admin client, one attempt after
    another, until one succeeds; stores the seconds since the kill under
    `key`, or None and the answers seen. Probes are named outside the
    measured topics: one placed on the killed node would keep it as a
    leader."""
    errors = {}
    attempt_no = 0
    report[key] = None
    admin = make_admin()
    while time.monotonic() - killed_at < FAILOVER_TIMEOUT_S:
        attempt_no += 1
        if create_probe(admin, f"{name_prefix}-{attempt_no}", errors):
            report[key] = time.monotonic() - killed_at
            return
        time.sleep(0.05)
    report[key + "_errors"] = errors


def create_probe(admin, name, errors):
    try:
        admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=5, request_timeout=10)[name].result(timeout=12)
        return True
    except KafkaException as e:
        if e.args[0].name() == "TOPIC_ALREADY_EXISTS":
            return True
        reason = str(e.args[0])
    except TimeoutError:
        reason = "no answer within 12 s"
    errors[reason] = errors.get(reason, 0) + 1
    return False


def probe_staggered(bootstrap, name_prefix, killed_at, report, key):
    """A new admin client every FAILOVER_PROBE_INTERVAL_S, each trying one
    CreateTopics: the first to succeed gives the time at which the cluster
    took metadata changes again, to within the interval, whatever a single
    client waits for."""
    errors = {}
    done = threading.Event()
    first = []
    lock = threading.Lock()

    def one(n):
        if create_probe(admin_client(bootstrap), f"{name_prefix}-{n}", errors):
            with lock:
                first.append(time.monotonic() - killed_at)
            done.set()

    threads = []
    n = 0
    while not done.is_set() and time.monotonic() - killed_at < FAILOVER_TIMEOUT_S:
        n += 1
        t = threading.Thread(target=one, args=(n,), daemon=True)
        t.start()
        threads.append(t)
        done.wait(FAILOVER_PROBE_INTERVAL_S)
    for t in threads:
        t.join(15)
    report[key] = min(first) if first else None
    if not first:
        report[key + "_errors"] = errors


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_files_limit(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return None


def writable_check(cluster, prefix, per_topic, report):
    """One record (acks=all) to every partition: a leader named in the
    metadata is not yet a partition that takes writes."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5,
                         "message.timeout.ms": WRITE_CHECK_TIMEOUT_S * 1000, "allow.auto.create.topics": False})
    outcome = {"ok": 0, "errors": {}}

    def delivered(err, msg):
        if err is None:
            outcome["ok"] += 1
        else:
            outcome["errors"][err.name()] = outcome["errors"].get(err.name(), 0) + 1

    started = time.monotonic()
    for i in range(PARTITIONS_TOPICS):
        for partition in range(per_topic):
            while True:
                try:
                    producer.produce(f"{prefix}{i}", b"x", partition=partition, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
    producer.flush(WRITE_CHECK_TIMEOUT_S + 30)
    report["write_check_s"] = time.monotonic() - started
    report["writable_partitions"] = outcome["ok"]
    if outcome["errors"]:
        report["write_errors"] = outcome["errors"]


def partitions_run(ctx, cluster):
    total = max(PARTITIONS_TOPICS, ctx.count(PARTITIONS_TOTAL))
    per_topic = total // PARTITIONS_TOPICS
    total = per_topic * PARTITIONS_TOPICS
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    report = {"partitions": total}
    time.sleep(RSS_SETTLE_S)
    rss_before = sum(rss_mib(pid) for pid in cluster.live_pids())
    cpu_before = sum(cpu_seconds(pid) for pid in cluster.live_pids())
    sampler = RssSampler(cluster.live_pids()).start()

    # One CreateTopics request per topic, all sent at once.
    started = time.monotonic()
    futures = [cluster.admin().create_topics([NewTopic(f"{prefix}{i}", per_topic, cluster.rf,
                                                       config={"min.insync.replicas": str(cluster.min_isr)})],
                                             operation_timeout=PARTITIONS_READY_TIMEOUT_S,
                                             request_timeout=PARTITIONS_READY_TIMEOUT_S)
               for i in range(PARTITIONS_TOPICS)]
    errors = []
    for f in futures:
        for name, fut in f.items():
            try:
                fut.result(timeout=PARTITIONS_READY_TIMEOUT_S)
            except KafkaException as e:
                errors.append(f"{name}: {e.args[0]}")
    report["create_ack_s"] = time.monotonic() - started
    if errors:
        sampler.stop()
        raise ClientError(f"CreateTopics failed for {len(errors)} topics: {errors[:3]}")
    deadline = started + PARTITIONS_READY_TIMEOUT_S
    while True:
        counts = [partitions_with_leaders(cluster.admin(a), prefix)[:2] for a in cluster.addresses.values()]
        if all(c == (total, total) for c in counts):
            break
        if time.monotonic() > deadline:
            sampler.stop()
            raise ClientError(f"partitions with a leader after {PARTITIONS_READY_TIMEOUT_S} s, per node: {counts}")
        time.sleep(0.5)
    report["create_ready_s"] = time.monotonic() - started
    report["create_cpu_s"] = sum(cpu_seconds(pid) for pid in cluster.live_pids()) - cpu_before

    report["open_files_max"] = max(open_files(pid) for pid in cluster.live_pids())
    report["open_files_limit"] = open_files_limit(cluster.live_pids()[0])
    writable_check(cluster, prefix, per_topic, report)

    if ctx.tools.rdkperf:
        md = json.loads(run_process([ctx.tools.rdkperf, "metadata", "-b", cluster.addresses[1], "-n", "5"],
                                    300).strip())
        report["metadata_ms"] = md["median_ms"]
    else:
        times = []
        for _ in range(5):
            t = time.monotonic()
            cluster.admin(cluster.addresses[1]).list_topics(timeout=120)
            times.append((time.monotonic() - t) * 1000)
        report["metadata_ms"] = statistics.median(times)
    time.sleep(RSS_SETTLE_S)
    rss_after = sum(rss_mib(pid) for pid in cluster.live_pids())
    report["rss_mib"] = sampler.stop()
    report["rss_before_mib"] = rss_before
    report["rss_after_mib"] = rss_after
    report["rss_kib_per_partition"] = (rss_after - rss_before) * 1024 / total

    leader = active_controller(ctx, cluster)
    survivors_bootstrap = ",".join(a for n, a in cluster.addresses.items() if n != leader)
    survivors = admin_client(survivors_bootstrap)
    partitions_with_leaders(survivors, prefix)  # connected, and the controller known, before the kill
    killed_at = time.monotonic()
    cluster.kill(leader)
    report["killed_node"] = leader
    # Side by side: CreateTopics from new admin clients started every
    # 250 ms (what the cluster offers), from the client connected before
    # the kill (what a running application sees: librdkafka keeps the
    # controller it knew), and Metadata until no partition names the
    # killed node as leader.
    jobs = [(probe_staggered, (survivors_bootstrap, f"probe-new-{prefix}", killed_at, report,
                               "controller_failover_s")),
            (probe_create_topics, (lambda: survivors, f"probe-old-{prefix}", killed_at, report,
                                   "controller_failover_old_client_s")),
            (watch_leaders, (survivors_bootstrap, prefix, leader, killed_at, report))]
    threads = [threading.Thread(target=fn, args=args) for fn, args in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def watch_leaders(bootstrap, prefix, killed, killed_at, report):
    """Seconds from the kill until every partition of the measured topics
    has a leader other than the killed node, as the survivors tell."""
    admin = admin_client(bootstrap)
    report["leader_failover_s"] = None
    while time.monotonic() - killed_at < FAILOVER_TIMEOUT_S:
        try:
            count, led, leaders = partitions_with_leaders(admin, prefix)
            if led == count and killed not in leaders:
                report["leader_failover_s"] = time.monotonic() - killed_at
                return
        except KafkaException:
            pass
        time.sleep(0.2)
    report["leader_failover_note"] = f"still led by the killed node after {FAILOVER_TIMEOUT_S} s"


def workload_partitions(ctx, workdir, r):
    for broker in rounds_order(r):
        try:
            cluster = start_cluster(broker, 3, workdir)
        except (RuntimeError, KafkaException) as e:
            ctx.results.partitions.append((r, broker, {"error": f"start failed: {e}"}))
            continue
        try:
            report = partitions_run(ctx, cluster)
        except Exception as e:  # noqa: BLE001 - recorded in the report
            report = {"error": str(e).strip() or type(e).__name__}
        finally:
            stop_cluster(cluster)
            shutil.rmtree(cluster.dir, ignore_errors=True)
        log(f"partitions {broker}: {report}")
        ctx.results.partitions.append((r, broker, report))


# ------------------------------------------------------------ machine limits


LOOPBACK_RECEIVER = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
buf = bytearray(1 << 20)
n = 0
while True:
    r = c.recv_into(buf)
    if not r:
        break
    n += r
print(n, flush=True)
"""


def loopback_mb_per_s(seconds):
    """One TCP connection over loopback, 1 MiB writes, a reader in another
    process: the ceiling for any client-broker pair on this machine."""
    receiver = subprocess.Popen([sys.executable, "-c", LOOPBACK_RECEIVER], stdout=subprocess.PIPE, text=True)
    CHILDREN.add(receiver)
    try:
        port = int(receiver.stdout.readline())
        chunk = b"\0" * (1 << 20)
        with socket.create_connection(("127.0.0.1", port)) as s:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            received = int(receiver.stdout.readline())
            elapsed = time.monotonic() - started
        receiver.wait(10)
    finally:
        CHILDREN.discard(receiver)
        if receiver.poll() is None:
            receiver.kill()
    return received / (1 << 20) / elapsed


def dd_write(path, bs, count, flags):
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={bs}", f"count={count}", *flags],
                         capture_output=True, text=True, check=True)
    m = re.search(r"(\d+) bytes .* copied, ([\d.e-]+) s", out.stderr)
    path.unlink(missing_ok=True)
    return int(m.group(1)), float(m.group(2))


def machine_limits(workdir, scale):
    limits = []
    limits.append(("loopback TCP, one connection, 1 MiB writes", f"{loopback_mb_per_s(3):,.0f} MiB/s"))
    target = workdir / "dd.test"
    mib = max(128, int(1024 * min(1.0, scale * 4)))
    for what, flags in ((f"dd {mib} MiB, bs=1M, no sync (page cache)", []),
                        (f"dd {mib} MiB, bs=1M, conv=fdatasync (one flush at the end)", ["conv=fdatasync"])):
        n, s = dd_write(target, "1M", mib, flags)
        limits.append((what, f"{n / (1 << 20) / s:,.0f} MiB/s"))
    count = min(mib, 256)
    n, s = dd_write(target, "1M", count, ["oflag=dsync"])
    limits.append((f"dd {count} MiB, bs=1M, oflag=dsync (every write synced)", f"{n / (1 << 20) / s:,.0f} MiB/s"))
    count = max(200, int(2000 * min(1.0, scale * 4)))
    n, s = dd_write(target, "4k", count, ["oflag=dsync"])
    limits.append((f"dd {count} x 4 KiB, oflag=dsync", f"{count / s:,.0f} synced writes/s ({s / count * 1000:.2f} ms each)"))
    return limits


def machine_description(workdir):
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_gib = int(Path("/proc/meminfo").read_text().split()[1]) / (1 << 20)
    df = subprocess.run(["df", "--output=source,fstype", str(workdir)], capture_output=True, text=True).stdout
    device = " ".join(df.strip().splitlines()[-1].split()) if df.strip() else "?"
    return (f"{os.cpu_count()} vCPUs ({cpu}), {mem_gib:.0f} GiB memory, Linux {os.uname().release}; "
            f"data directories under {workdir.parent} on {device}")


def java_version():
    out = subprocess.run(["java", "-version"], capture_output=True, text=True)
    return (out.stderr.strip().splitlines() or ["?"])[0]


def build_rdkperf(workdir):
    binary = workdir / "rdkperf"
    out = subprocess.run(["cc", "-O2", "-o", str(binary), str(ROOT / "bench" / "rdkperf.c"), "-lrdkafka"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        log("bench/rdkperf.c did not build (apt-get install librdkafka-dev): " + tail(out.stderr, 3))
        return None
    return str(binary)


def raise_open_files():
    """Kafka keeps a file open per segment; 10,000 partitions on each node
    need more than the usual 1,024 or 20,000. Both brokers inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (OPEN_FILES_WANTED, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


# ------------------------------------------------------------------ report


def fmt(value, digits=2):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def node_heading(nodes):
    if nodes == 1:
        return "One node (replication factor 1, acks=all)"
    return "Three nodes (replication factor 3, acks=all, min.insync.replicas=2)"


def results_table(results, nodes, clients):
    lines = [f"### {node_heading(nodes)}", "",
             "| workload | client | broker | records/s | MB/s | avg ms | p50 ms | p99 ms | p99.9 ms | max ms "
             "| broker CPU s | broker peak RSS MiB | K/A records/s | K/A p99 | K/A CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in results.labels.get(nodes, []):
        for client in clients:
            runs = {b: results.runs.get((nodes, label, client, b), []) for b in BROKERS}
            if not any(runs.values()):
                continue
            med = {b: {k: results.median(nodes, label, client, b, k)
                       for k in ("records_per_sec", "mb_per_sec", "avg", "p50", "p99", "p999", "max", "cpu_s",
                                 "rss_mib")} for b in BROKERS}
            for broker in BROKERS:
                ok = [r for r in runs[broker] if "error" not in r]
                errors = [r["error"] for r in runs[broker] if "error" in r]
                skipped = sum(1 for e in errors if e.startswith("not run"))
                failed = sum(1 for e in errors if not e.startswith(("not run", "not measured")))
                total = len(runs[broker])
                name = broker + "".join(note for note in (
                    f" ({failed} of {total} runs failed)" if failed else "",
                    f" ({skipped} of {total} runs not run: their produce run failed)" if skipped else "") if note)
                if not ok:
                    reason = runs[broker][0]["error"].splitlines()[0][:90] if runs[broker] else "not run"
                    lines.append(f"| {label} | {client} | {name} | {reason} |||||||||||")
                    continue
                m = med[broker]
                if broker == KRAFTWERK:
                    a = med[KAFKA]
                    ratios = (ratio(m["records_per_sec"], a["records_per_sec"]), ratio(m["p99"], a["p99"]),
                              ratio(m["cpu_s"], a["cpu_s"]))
                else:
                    ratios = ("", "", "")
                rps = None if label.startswith("end-to-end") else m["records_per_sec"]
                mbs = None if label.startswith("end-to-end") else m["mb_per_sec"]
                lines.append(f"| {label} | {client} | {name} | {fmt(rps)} | {fmt(mbs)} | {fmt(m['avg'])} "
                             f"| {fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['p999'])} | {fmt(m['max'])} "
                             f"| {fmt(m['cpu_s'])} | {fmt(m['rss_mib'], 0)} | {' | '.join(ratios)} |")
    return lines


def partitions_table(results):
    lines = ["### 10,000 partitions on three nodes (replication factor 3)", "",
             "| broker | partitions | CreateTopics answered s | all leaders known s | CPU s to create "
             "| partitions taking a write | open files per node (limit) "
             "| Metadata request ms | RSS before MiB | RSS after MiB | RSS KiB per partition "
             "| controller failover s | the same, admin client from before the kill s | partition leader failover s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for broker in BROKERS:
        runs = [rep for _, b, rep in results.partitions if b == broker]
        ok = [rep for rep in runs if "error" not in rep]
        if not ok:
            reason = runs[0]["error"].splitlines()[0][:120] if runs else "not run"
            lines.append(f"| {broker} | {reason} |||||||||||||")
            continue

        def med(key):
            values = [rep[key] for rep in ok if rep.get(key) is not None]
            return statistics.median(values) if values else None
        failed = len(runs) - len(ok)
        name = broker + (f" ({failed} of {len(runs)} runs failed)" if failed else "")
        def failover_cell(key):
            missing = sum(1 for rep in ok if rep.get(key) is None)
            value = med(key)
            cell = fmt(value) if value is not None else f"none within {FAILOVER_TIMEOUT_S} s"
            return cell + (f" ({missing} of {len(ok)} runs: none within {FAILOVER_TIMEOUT_S} s)"
                           if missing and value is not None else "")
        controller_cell = failover_cell("controller_failover_s")
        leader_cell = failover_cell("leader_failover_s")
        old_client_cell = failover_cell("controller_failover_old_client_s")
        lines.append(f"| {name} | {fmt(med('partitions'), 0)} | {fmt(med('create_ack_s'))} | {fmt(med('create_ready_s'))} "
                     f"| {fmt(med('create_cpu_s'))} | {fmt(med('writable_partitions'), 0)} "
                     f"| {fmt(med('open_files_max'), 0)} ({ok[0].get('open_files_limit')}) "
                     f"| {fmt(med('metadata_ms'))} | {fmt(med('rss_before_mib'), 0)} "
                     f"| {fmt(med('rss_after_mib'), 0)} | {fmt(med('rss_kib_per_partition'), 1)} "
                     f"| {controller_cell} | {old_client_cell} | {leader_cell} |")
    return lines


def problems(results, clients):
    found = []
    for (nodes, label, client, broker), runs in results.runs.items():
        for rep in runs:
            if "error" in rep and not rep["error"].startswith(("not measured", "not run")):
                found.append(f"{nodes} node(s), {label}, {client}, {broker}: {rep['error'].splitlines()[0][:300]}")
    for nodes, labels in results.labels.items():
        for label in labels:
            for client in clients:
                k = results.median(nodes, label, client, KRAFTWERK, "records_per_sec")
                a = results.median(nodes, label, client, KAFKA, "records_per_sec")
                k99 = results.median(nodes, label, client, KRAFTWERK, "p99")
                a99 = results.median(nodes, label, client, KAFKA, "p99")
                if k and a and k < 0.95 * a and "fixed rate" not in label and "records/s" not in label:
                    found.append(f"{nodes} node(s), {label}, {client}: Kraftwerk behind, {k:,.0f} against {a:,.0f} "
                                 f"records/s ({k / a:.2f}x)")
                if k99 is not None and a99 and k99 > 1.2 * a99 and k99 - a99 >= 1:
                    found.append(f"{nodes} node(s), {label}, {client}: Kraftwerk's p99 latency higher, {k99:.1f} "
                                 f"against {a99:.1f} ms")
    for _, broker, rep in results.partitions:
        if "error" in rep:
            found.append(f"partitions, {broker}: {rep['error'].splitlines()[0][:300]}")
            continue
        if rep.get("writable_partitions", 0) < rep.get("partitions", 0):
            found.append(f"partitions, {broker}: {rep.get('writable_partitions')} of {rep.get('partitions')} "
                         f"partitions took a record within {WRITE_CHECK_TIMEOUT_S} s of all leaders being known "
                         f"({rep.get('write_errors')}); open files per node {rep.get('open_files_max')} "
                         f"(limit {rep.get('open_files_limit')})")
        if rep.get("controller_failover_s") is None:
            found.append(f"partitions, {broker}: no CreateTopics succeeded within {FAILOVER_TIMEOUT_S} s of killing "
                         f"the active controller (node {rep.get('killed_node')}), from new admin clients started every "
                         f"{FAILOVER_PROBE_INTERVAL_S} s; they were answered {rep.get('controller_failover_s_errors')}")
        if rep.get("controller_failover_old_client_s") is None:
            found.append(f"partitions, {broker}: an admin client connected before the controller was killed got no "
                         f"CreateTopics through within {FAILOVER_TIMEOUT_S} s; it was answered "
                         f"{rep.get('controller_failover_old_client_s_errors')}")
        if rep.get("leader_failover_s") is None:
            found.append(f"partitions, {broker}: partitions still led by the killed node {FAILOVER_TIMEOUT_S} s "
                         f"after the kill")
    return found


def every_run(results):
    lines = ["### Every run", "", "```"]
    for (nodes, label, client, broker), runs in results.runs.items():
        for i, rep in enumerate(runs, 1):
            if "error" in rep:
                text = "FAILED " + rep["error"].replace("\n", " | ")[:400]
            else:
                text = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in rep.items())
            lines.append(f"{nodes}n | {label} | {client} | {broker} | run {i}: {text}")
    for r, broker, rep in results.partitions:
        lines.append(f"3n | partitions | {broker} | round {r + 1}: " + " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in rep.items()))
    lines.append("```")
    return lines


# -------------------------------------------------------------------- main


class Context:
    def __init__(self, args, tools, results):
        self.scale = args.scale
        self.clients = args.clients
        self.tools = tools
        self.results = results
        self.fixed_rates = {}
        self.backlogs = {}

    def count(self, n):
        return max(1, int(n * self.scale))


RUNNERS = {"max-100": workload_max, "max-1k": workload_max, "fixed-rate": workload_fixed_rate,
           "omb": workload_omb, "backlog": workload_backlog, "e2e": workload_e2e}


def warm_up(ctx, cluster):
    """An unmeasured produce and consume on a fresh cluster, so that the
    first measured run does not carry the JVM's JIT compilation (or any
    broker's first-use costs). Done the same way for both brokers."""
    client = "librdkafka" if ctx.tools.rdkperf else "java"
    started = time.monotonic()
    for size, records in ((100, WARM_UP_RECORDS), (1024, WARM_UP_RECORDS // 5)):
        topic = topic_name("warm-up")
        try:
            create_topic(cluster, topic, PARTITIONS)
            ctx.tools.produce(client, cluster.bootstrap, topic, records, size)
            ctx.tools.consume(client, cluster.bootstrap, topic, records)
        except Exception as e:  # noqa: BLE001 - the measured runs will show it
            log(f"{cluster.name}: warm-up failed: {e}")
        delete_topic(cluster, topic)
    log(f"{cluster.name}: warmed up with {client} in {time.monotonic() - started:.1f} s")


def run_general(ctx, args, nodes, workdir, workloads):
    """The workloads that share one cluster of each broker, side by side."""
    clusters = {}
    try:
        for broker in BROKERS:
            try:
                clusters[broker] = start_cluster(broker, nodes, workdir)
            except Exception as e:  # noqa: BLE001 - nothing to compare on this node count
                ctx.results.notes.append(f"{nodes} node(s): {broker} did not start, workloads skipped: {e}")
                log(f"{broker} did not start: {e}")
                return
        for cluster in clusters.values():
            warm_up(ctx, cluster)
        for workload in workloads:
            log(f"--- {nodes} node(s): {workload}")
            for r in range(args.rounds):
                try:
                    RUNNERS[workload](ctx, workload, clusters, r)
                except Exception as e:  # noqa: BLE001 - recorded; the other workloads go on
                    ctx.results.notes.append(f"{nodes} node(s), {workload}, round {r + 1}: stopped by {e!r}")
                    log(f"{workload} round {r + 1} stopped: {e!r}")
            if workload == "backlog":
                for broker, cluster in clusters.items():
                    topic = ctx.backlogs.get((broker, nodes))
                    if topic:
                        delete_topic(cluster, topic)
    finally:
        for cluster in clusters.values():
            stop_cluster(cluster)
            shutil.rmtree(cluster.dir, ignore_errors=True)


def run_node_count(ctx, args, nodes, workdir):
    general = [w for w in args.workloads if w != "partitions"]
    if general:
        run_general(ctx, args, nodes, workdir, general)
    if "partitions" in args.workloads:
        if nodes == 3:
            log("--- 3 nodes: partitions")
            for r in range(args.rounds):
                workload_partitions(ctx, workdir, r)
        else:
            ctx.results.notes.append("partitions: measured on three nodes only")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", choices=["1", "3", "both"], default="both")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    p.add_argument("--client", default="all", help=f"{', '.join(CLIENTS)}, a comma-separated list of them, or all")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies record counts, durations and sizes")
    p.add_argument("--out", default=None, help="write the markdown report here (it is printed too)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (broker logs)")
    args = p.parse_args()
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        p.error(f"unknown workloads {sorted(unknown)}; known: {', '.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if w in args.workloads]
    args.clients = CLIENTS if args.client == "all" else [c.strip() for c in args.client.split(",")]
    if set(args.clients) - set(CLIENTS):
        p.error(f"unknown clients {sorted(set(args.clients) - set(CLIENTS))}; known: {', '.join(CLIENTS)}, all")
    args.clients = [c for c in CLIENTS if c in args.clients]
    args.node_counts = [1, 3] if args.nodes == "both" else [int(args.nodes)]
    if args.rounds < 1 or args.scale <= 0:
        p.error("--rounds must be at least 1 and --scale above 0")
    return args


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def was_interrupted(error):
    """A KeyboardInterrupt raised by SIGTERM inside a C-level call (such as
    subprocess's waitpid lock) surfaces as a SystemError whose cause is the
    interrupt; both mean the run was stopped."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def cleanup(workdir, keep):
    for proc in list(CHILDREN):
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    for cluster in list(CLUSTERS):
        try:
            stop_cluster(cluster)
        except Exception as e:  # noqa: BLE001 - keep cleaning up
            log(f"stopping {cluster.name}: {e}")
    if keep:
        log(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    open_files = raise_open_files()
    workdir = Path(tempfile.mkdtemp(prefix="kraftwerk-compare-"))
    results = Results()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    interrupted = False
    machine, limits = "?", []
    report = []
    try:
        log(f"working in {workdir}")
        machine = machine_description(workdir)
        log("measuring the machine's limits")
        limits = machine_limits(workdir, args.scale)
        for what, value in limits:
            log(f"  {what}: {value}")
        classpath = kafka_classpath()
        rdkperf = build_rdkperf(workdir) if "librdkafka" in args.clients or "partitions" in args.workloads else None
        if "librdkafka" in args.clients and not rdkperf:
            args.clients = [c for c in args.clients if c != "librdkafka"]
            results.notes.append("librdkafka client skipped: bench/rdkperf.c did not build "
                                 "(apt-get install librdkafka-dev)")
        tools = Clients(timeout_s=90 + 300 * args.scale, rdkperf=rdkperf, classpath=classpath, workdir=workdir)
        ctx = Context(args, tools, results)
        for nodes in args.node_counts:
            run_node_count(ctx, args, nodes, workdir)
    except (KeyboardInterrupt, SystemError) as e:
        if not was_interrupted(e):
            raise
        interrupted = True
        log("interrupted: stopping everything started")
    finally:
        # A second SIGTERM must not cut the cleanup or the report short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(workdir, args.keep)
    if not results.runs and not results.partitions:
        return 130 if interrupted else 1
    finished = datetime.datetime.now(datetime.timezone.utc)
    binary = Path(kraftwerk_binary())
    built = datetime.datetime.fromtimestamp(binary.stat().st_mtime, datetime.timezone.utc)
    report += [
        f"## Kraftwerk beside {KAFKA}: {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC"
        + (" (interrupted)" if interrupted else ""), "",
        f"`bench/compare.py --nodes {args.nodes} --rounds {args.rounds} --workloads {','.join(args.workloads)} "
        f"--client {args.client} --scale {args.scale}`", "",
        f"Machine: {machine}. **Shared**: other work (compiles, fuzzers) ran on the same cores during the run "
        f"(load average {load_start[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end); the brokers "
        f"and the clients share the cores too. Medians of {args.rounds} round(s), the two brokers in alternation; "
        "both clusters of a node count run side by side, the one not measured idle.", "",
        f"Kraftwerk: `{binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}` "
        f"(built {built:%Y-%m-%d %H:%M} UTC). {KAFKA}: Maven Central jars via tests/peers/kafka.sh, "
        f"{java_version()}, broker heap -Xms512m -Xmx512m, G1. Java tools: -Xmx512m, G1. "
        f"librdkafka: bench/rdkperf.c against the system's librdkafka. Open files limit: {open_files}.", "",
        "Held equal: combined broker+controller nodes; data directories on the same disk; topics created by the same "
        "admin client with the same partitions, replication factor and min.insync.replicas; flush policy at both "
        "brokers' defaults (`log.flush.interval.messages` unset: no fsync per message, durability from the page "
        "cache and replication); idempotent producers with acks=all; `group.initial.rebalance.delay.ms=0`. "
        f"Each fresh cluster first gets an unmeasured warm-up ({WARM_UP_RECORDS:,} x 100 B and "
        f"{WARM_UP_RECORDS // 5:,} x 1 KiB produced and consumed). "
        "MB/s is MiB/s. Latencies: the client's send-to-acknowledgement (end-to-end: send-to-read), in ms; "
        "Kafka's Java tools and `kraftwerk bench` truncate percentiles to whole ms. K/A: Kraftwerk's median "
        "over Kafka's (records/s: above 1 is faster; p99 and CPU: below 1 is better). Consume rates of the "
        "Java tool exclude its group join (fetch.nMsg.sec).", "",
        "#### Machine limits (measured at the start of the run)", "", "| measure | value |", "|---|---|"]
    report += [f"| {what} | {value} |" for what, value in limits]
    report.append("")
    for nodes in args.node_counts:
        if results.labels.get(nodes):
            report += results_table(results, nodes, args.clients) + [""]
    if results.partitions:
        report += partitions_table(results) + [""]
    if results.notes:
        report += ["#### Notes", ""] + [f"- {n}" for n in results.notes] + [""]
    found = problems(results, args.clients)
    report += ["#### Where Kraftwerk is behind or something failed", ""]
    report += [f"- {p}" for p in found] if found else ["- nothing"]
    report += [""] + every_run(results)
    text = "\n".join(report) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        log(f"report written to {args.out}")
    print(text)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
