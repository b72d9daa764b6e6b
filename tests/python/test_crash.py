"""Crash test: acks=1 producer flushing every message while the broker is
SIGKILLed; after a restart every acknowledged record is there, in order."""

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def test_acknowledged_records_survive_kill_9(broker):
    topic = "crash"
    acked = []
    stop = threading.Event()

    def produce():
        producer = Producer({
            "bootstrap.servers": broker.bootstrap,
            "acks": 1,
            "message.timeout.ms": 3000,
            "retries": 0,
            "socket.timeout.ms": 2000,
        })
        i = 0
        while not stop.is_set():
            result = {}

            def on_delivery(err, msg, result=result):
                result["err"], result["offset"] = err, (msg.offset() if err is None else None)

            producer.produce(topic, value=f"m{i}".encode(), partition=0, on_delivery=on_delivery)
            producer.flush(5)
            if result.get("err") is None and result.get("offset") is not None:
                acked.append((result["offset"], f"m{i}".encode()))
            i += 1

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(acked) >= 500, "producer made no progress before the kill"
    broker.kill()
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()

    broker.start()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "crash-check",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    stored = {}
    while True:
        msg = consumer.poll(10)
        assert msg is not None, "consumer stalled"
        if msg.error():
            assert msg.error().code() == -191, msg.error()
            break
        stored[msg.offset()] = msg.value()
    consumer.close()
    # Every acknowledged record is at its acknowledged offset, and the log
    # has no holes: offsets run 0..n.
    for offset, value in acked:
        assert stored.get(offset) == value, f"acknowledged record at {offset} lost or changed"
    assert sorted(stored) == list(range(len(stored)))
