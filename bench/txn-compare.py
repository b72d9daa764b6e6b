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

from benchlib import cpu_seconds, free_port, kraftwerk_binary, peak_rss_mib, start_kafka, stop_kafka, wait_port

SIZES = [10, 100, 1000]
RECORDS = {10: 20_000, 100: 100_000, 1000: 200_000}
PARTITIONS = 6
VALUE = b"x" * 100


def start_kraftwerk(workdir):
    binary = kraftwerk_binary()
    port = free_port()
    log = open(workdir / "kraftwerk.log", "wb")
    proc = subprocess.Popen([binary, "server", "--data-dir", str(workdir / "kraftwerk-data"),
                             "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
                             "--override", "kraftwerk.http.listener="], stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc, f"127.0.0.1:{port}", proc.pid


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
    kafka_dir = workdir / "kafka"
    kafka_bootstrap, (kafka_pid,) = start_kafka(kafka_dir)
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
        stop_kafka(kafka_dir)
        shutil.rmtree(workdir, ignore_errors=True)

    print("| records per transaction | broker | records/s | transactions/s | broker CPU s per run | ratio (records/s) |")
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
