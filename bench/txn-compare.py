#!/usr/bin/env python3
"""Transactional produce throughput, Kraftwerk beside Apache Kafka.

Starts a single-node Kraftwerk (`target/release/kraftwerk`, or
$KRAFTWERK_BIN) and a single-node Apache Kafka 4.1.1
(`tests/peers/kafka.sh`, fixed 512 MiB heap), then, for transactions of
10, 100 and 1,000 records, runs the same confluent-kafka (librdkafka)
transactional producer against each broker in alternation (ROUNDS
rounds): 100-byte records, one topic of 6 partitions, records spread over
all partitions, every transaction committed. Prints a markdown table of
medians: records/s, transactions/s, broker CPU seconds per run (utime +
stime from /proc) and broker peak RSS.

Usage: bench/txn-compare.py [ROUNDS] (default 3).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
SIZES = [10, 100, 1000]
RECORDS = {10: 20_000, 100: 100_000, 1000: 200_000}
PARTITIONS = 6
VALUE = b"x" * 100
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_port(port, timeout=60):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def start_kraftwerk(workdir):
    binary = os.environ.get("KRAFTWERK_BIN", str(ROOT / "target" / "release" / "kraftwerk"))
    if not Path(binary).exists():
        raise SystemExit(f"{binary} is missing: cargo build --release --bin kraftwerk")
    port = 39092
    log = open(workdir / "kraftwerk.log", "wb")
    proc = subprocess.Popen([binary, "server", "--data-dir", str(workdir / "kraftwerk-data"),
                             "--listeners", f"PLAINTEXT://127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, f"127.0.0.1:{port}", proc.pid


def start_kafka(workdir):
    run_dir = workdir / "kafka"
    out = subprocess.run([str(ROOT / "tests" / "peers" / "kafka.sh"), "start", "--dir", str(run_dir),
                          "--base-port", "39192"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"Apache Kafka did not start: {out.stdout}{out.stderr}")
    pid = int((run_dir / "pids").read_text().split()[0])
    return run_dir, out.stdout.strip().splitlines()[-1], pid


def one_run(bootstrap, size):
    topic = f"txn-bench-{size}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    time.sleep(1)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic, "linger.ms": 5,
                         "batch.size": 131072})
    producer.init_transactions(60)
    records = RECORDS[size]
    start = time.perf_counter()
    sent = 0
    while sent < records:
        producer.begin_transaction()
        for i in range(size):
            while True:
                try:
                    producer.produce(topic, value=VALUE, partition=(sent + i) % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.commit_transaction(60)
        sent += size
    elapsed = time.perf_counter() - start
    producer.flush(10)
    return records / elapsed, records / size / elapsed


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    workdir = Path(tempfile.mkdtemp(prefix="kraftwerk-txn-bench-"))
    kraftwerk, kraftwerk_bootstrap, kraftwerk_pid = start_kraftwerk(workdir)
    kafka_dir, kafka_bootstrap, kafka_pid = start_kafka(workdir)
    brokers = [("Kraftwerk", kraftwerk_bootstrap, kraftwerk_pid), ("Apache Kafka 4.1.1", kafka_bootstrap, kafka_pid)]
    results = {}
    try:
        for size in SIZES:
            for r in range(rounds):
                order = brokers if r % 2 == 0 else list(reversed(brokers))
                for name, bootstrap, pid in order:
                    cpu_before = cpu_seconds(pid)
                    rate, txn_rate = one_run(bootstrap, size)
                    cpu = cpu_seconds(pid) - cpu_before
                    results.setdefault((size, name), []).append((rate, txn_rate, cpu))
                    print(f"size {size} round {r + 1} {name}: {rate:,.0f} records/s, {txn_rate:,.0f} txn/s, "
                          f"{cpu:.2f} CPU s", file=sys.stderr)
        rss = {name: peak_rss_mib(pid) for name, _, pid in brokers}
    finally:
        kraftwerk.terminate()
        kraftwerk.wait(30)
        subprocess.run([str(ROOT / "tests" / "peers" / "kafka.sh"), "stop", "--dir", str(kafka_dir)],
                       capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"| records per transaction | broker | records/s | transactions/s | broker CPU s per run | ratio (records/s) |")
    print("|---|---|---|---|---|---|")
    for size in SIZES:
        medians = {}
        for name, _, _ in brokers:
            runs = results[(size, name)]
            medians[name] = tuple(statistics.median(x[i] for x in runs) for i in range(3))
        base = medians["Apache Kafka 4.1.1"][0]
        for name, _, _ in brokers:
            rate, txn_rate, cpu = medians[name]
            print(f"| {size} | {name} | {rate:,.0f} | {txn_rate:,.0f} | {cpu:.2f} | {rate / base:.2f}x |")
    print()
    print("Broker peak RSS: " + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss.items()))


if __name__ == "__main__":
    main()
