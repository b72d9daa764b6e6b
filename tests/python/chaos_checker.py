"""Records every acknowledged write of an idempotent acks=all producer and
checks afterwards that the log holds each exactly once, in order.

Payloads are `<run>-<sequence>`, so a record read back names the write it
came from. Figures: acknowledged, lost (acked but not read back at its
offset), duplicated (read more than once), reordered (a partition's payload
sequence not increasing), and the seconds each failover left a partition
without acknowledgements.
"""

import json
import os
import signal
import statistics
import threading
import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


class AckRecorder:
    """An idempotent acks=all producer in a thread, recording acks."""

    def __init__(self, bootstrap: str, topic: str, extra: dict = None, rate_per_s: float = 500.0):
        self.topic = topic
        self.run = uuid.uuid4().hex[:8]
        self.acked = []  # (partition, offset, payload, monotonic ack time)
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rate = rate_per_s
        conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "request.timeout.ms": 5000,
            "message.timeout.ms": 90000,
            "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
        }
        conf.update(extra or {})
        self._producer = Producer(conf)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.sent = 0

    def _on_delivery(self, err, msg):
        with self._lock:
            if err is not None:
                self.errors.append(err)
            else:
                self.acked.append((msg.partition(), msg.offset(), msg.value().decode(), time.monotonic()))

    def _loop(self):
        pause = 1.0 / self._rate
        while not self._stop.is_set():
            payload = f"{self.run}-{self.sent:09d}"
            try:
                self._producer.produce(self.topic, value=payload.encode(), on_delivery=self._on_delivery)
                self.sent += 1
            except BufferError:
                pass
            self._producer.poll(pause)

    def start(self):
        self._thread.start()
        return self

    def stop(self, flush_timeout_s: float = 90.0):
        self._stop.set()
        self._thread.join(30)
        remaining = self._producer.flush(flush_timeout_s)
        return remaining

    def acks_for(self, partition: int):
        with self._lock:
            return [a for a in self.acked if a[0] == partition]


def read_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0):
    """Every record of `topic` up to each partition's high watermark: {partition: [(offset, payload)]}."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"checker-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    try:
        ends = {}
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = defaultdict(list)
        done = {p for p, h in ends.items() if h <= 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= ends[msg.partition()]:
                        done.add(msg.partition())
                continue
            out[msg.partition()].append((msg.offset(), msg.value().decode()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return dict(out), ends
    finally:
        consumer.close()


def check(acked, read, run):
    """Compares acks with what was read. Returns the figures as a dict."""
    seen = defaultdict(list)
    for p, records in read.items():
        for offset, payload in records:
            seen[payload].append((p, offset))
    # librdkafka may report a record delivered without an offset: a request
    # timed out in a failover and a later batch of the same idempotent
    # producer succeeded, which proves the earlier one was written. Such a
    # record counts as kept when its payload is in its partition.
    lost = [a for a in acked
            if (a[0], a[1]) not in seen.get(a[2], [])
            and not ((a[1] is None or a[1] < 0) and any(p == a[0] for p, _ in seen.get(a[2], [])))]
    duplicated = sum(len(v) - 1 for k, v in seen.items() if k.startswith(run) and len(v) > 1)
    reordered = 0
    for p, records in read.items():
        last = -1
        for _, payload in records:
            if not payload.startswith(run):
                continue
            seq = int(payload.rsplit("-", 1)[1])
            if seq < last:
                reordered += 1
            last = max(last, seq)
    return {"acknowledged": len(acked), "lost": len(lost), "duplicated": duplicated,
            "reordered": reordered, "lost_examples": lost[:5]}


def unavailable_seconds(acks, events, window_s: float = 30.0):
    """For each event, the longest pause between consecutive acks from one
    second before it to `window_s` after it (delivery reports of requests
    answered just before the event arrive just after it)."""
    times = sorted(a[3] for a in acks)
    gaps = []
    for t in events:
        inside = [x for x in times if t - 1.0 <= x <= t + window_s]
        if len(inside) >= 2:
            gaps.append(max(b - a for a, b in zip(inside, inside[1:])))
    return gaps


def summarize_gaps(gaps):
    if not gaps:
        return {"failovers": 0, "median_s": None, "max_s": None}
    return {"failovers": len(gaps), "median_s": round(statistics.median(gaps), 2), "max_s": round(max(gaps), 2)}


def sigstop(proc):
    os.kill(proc.pid, signal.SIGSTOP)


def sigcont(proc):
    os.kill(proc.pid, signal.SIGCONT)


def record_figures(path: str, name: str, figures: dict) -> None:
    """Prints one scenario's figures and adds them, under `name`, to the
    JSON file at `path` (from which docs/reliability.md is written)."""
    print(f"\n[{name}] {json.dumps(figures)}")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {}
    data[name] = figures
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
