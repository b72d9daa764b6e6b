"""confluent-kafka (librdkafka) against Kraftwerk: every compression codec,
keys and headers, read back byte for byte with offsets and timestamps."""

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

RECORDS = 100_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def payload(i: int) -> bytes:
    # Varied sizes and content so compression and batching are exercised.
    return (f"record-{i}-".encode() + bytes((i * 7 + j) % 251 for j in range(i % 97)))


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_100k_with_codec(broker, codec):
    topic = f"codec-{codec}"
    create_topic(broker.bootstrap, topic, 2)

    delivered = {}
    errors = []

    def on_delivery(i):
        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                delivered[i] = (msg.partition(), msg.offset(), msg.timestamp()[1])
        return report

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "compression.type": codec,
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    for i in range(RECORDS):
        while True:
            try:
                producer.produce(topic, key=f"key-{i % 1000}".encode(), value=payload(i),
                                 headers=[("seq", str(i).encode()), ("codec", codec.encode())],
                                 timestamp=1_700_000_000_000 + i, on_delivery=on_delivery(i))
                break
            except BufferError:
                producer.poll(0.1)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    assert len(delivered) == RECORDS

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "enable.auto.commit": False,
        "group.id": f"unused-{codec}",  # librdkafka insists; assign() needs no coordinator
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    got = {}
    eof = set()
    while len(eof) < 2:
        msg = consumer.poll(10)
        assert msg is not None, "consumer stalled"
        if msg.error():
            if msg.error().code() == -191:  # _PARTITION_EOF
                eof.add(msg.partition())
                continue
            raise KafkaException(msg.error())
        headers = dict(msg.headers())
        i = int(headers["seq"])
        assert msg.key() == f"key-{i % 1000}".encode()
        assert msg.value() == payload(i)
        assert headers["codec"] == codec.encode()
        got[i] = (msg.partition(), msg.offset(), msg.timestamp()[1])
    consumer.close()
    assert got == delivered
    # Keys land on partitions the way every Kafka client computes them.
    by_key = {}
    for i, (p, _, _) in got.items():
        by_key.setdefault(i % 1000, set()).add(p)
    assert all(len(ps) == 1 for ps in by_key.values())
