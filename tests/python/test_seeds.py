"""The kafka-python snippets of the seed notes, run unchanged against Kraftwerk.

The producer snippet is executed exactly as written (it connects to
localhost:9092), so this test runs a broker on 127.0.0.1:9092. The consumer
snippets of the notes all set `group_id`; consumer groups are not served yet,
so the consumer below is the seed consumer without that one line.
"""

import json
import socket
import subprocess
import sys
import textwrap

import pytest

SEED_PRODUCER = textwrap.dedent('''
    from kafka import KafkaProducer
    import json
    import time

    # Função de serialização para converter em bytes
    def serializer(message):
        return json.dumps(message).encode('utf-8')

    # Criando o produtor
    producer = KafkaProducer(
        bootstrap_servers=['localhost:9092'],  # Endereço do Kafka
        value_serializer=serializer  # Serializando mensagens
    )

    # Enviando mensagens
    for i in range(10):
        message = {'numero': i, 'mensagem': f"Mensagem {i}"}
        producer.send('meu-topico', value=message)
        print(f"Mensagem enviada: {message}")
        time.sleep(1)

    # Fecha o produtor
    producer.close()
''')

SEED_CONSUMER_WITHOUT_GROUP = textwrap.dedent('''
    from kafka import KafkaConsumer
    import json

    # Função de desserialização para converter bytes em dicionário Python
    def deserializer(message):
        return json.loads(message.decode('utf-8'))

    # Criando o consumidor
    consumer = KafkaConsumer(
        'meu-topico',  # Nome do tópico
        bootstrap_servers=['localhost:9092'],  # Endereço do Kafka
        auto_offset_reset='earliest',  # Lê a partir do início do tópico
        value_deserializer=deserializer,  # Desserializa as mensagens
        consumer_timeout_ms=10000,  # (test only) stop iterating once drained
    )

    # Lendo mensagens
    for message in consumer:
        print(f"Mensagem recebida: {message.value}")

    # Fecha o consumidor quando terminar
    consumer.close()
''')


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_snippet(code, timeout_s=90):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)


def test_seed_producer_and_consumer_run_unchanged(broker_factory):
    if not port_free(9092):
        pytest.fail("port 9092 is taken; the seed snippets need it for kraftwerk")
    broker = broker_factory(port=9092).start()

    produced = run_snippet(SEED_PRODUCER)
    assert produced.returncode == 0, produced.stderr + broker.log_tail()
    assert produced.stdout.count("Mensagem enviada") == 10

    consumed = run_snippet(SEED_CONSUMER_WITHOUT_GROUP)
    assert consumed.returncode == 0, consumed.stderr + broker.log_tail()
    received = [line for line in consumed.stdout.splitlines() if line.startswith("Mensagem recebida")]
    expected = [f"Mensagem recebida: {{'numero': {i}, 'mensagem': 'Mensagem {i}'}}" for i in range(10)]
    assert received == expected


def test_kafka_python_reports_offsets_and_reads_by_partition(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)])
    assert "orders" in admin.list_topics()
    admin.close()

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, key_serializer=str.encode,
                             value_serializer=lambda v: json.dumps(v).encode())
    metas = [producer.send("orders", key=f"k{i % 7}", value={"i": i}).get(timeout=10) for i in range(60)]
    producer.close()
    by_partition = {}
    for m in metas:
        by_partition.setdefault(m.partition, []).append(m.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, value_deserializer=lambda b: json.loads(b))
    consumer.assign([TopicPartition("orders", p) for p in range(3)])
    seen = sorted(m.value["i"] for m in consumer)
    consumer.close()
    assert seen == list(range(60))
