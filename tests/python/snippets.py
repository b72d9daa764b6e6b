"""The kafka-python snippets of the seed notes, verbatim, and a way to run them.

The snippets connect to `localhost:9092`, as written. `pointed_at` swaps
that address for another one (the Compose cluster's `localhost:19092`)
and changes nothing else. The consumers loop forever, as in the notes:
run them with `Proc` and kill them once they have printed what a test
waits for.
"""

import json
import subprocess
import sys
import threading

# Section 4 of the notes: the producer.
SEED_PRODUCER = '''\
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
'''

# Section 5: a consumer in group 'meu-grupo'.
SEED_CONSUMER = '''\
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
    group_id='meu-grupo',  # Define um grupo de consumidores
    value_deserializer=deserializer  # Desserializa as mensagens
)

# Lendo mensagens
for message in consumer:
    print(f"Mensagem recebida: {message.value}")

# Fecha o consumidor quando terminar
consumer.close()
'''

# Section 6: two consumers sharing group 'grupo-de-consumo-1'.
SEED_GROUP_CONSUMER_1 = '''\
from kafka import KafkaConsumer
import json

# Função de desserialização
def deserializer(message):
    return json.loads(message.decode('utf-8'))

# Criando o consumidor no grupo "grupo-de-consumo-1"
consumer = KafkaConsumer(
    'meu-topico',
    bootstrap_servers=['localhost:9092'],
    auto_offset_reset='earliest',
    group_id='grupo-de-consumo-1',  # Definindo o grupo de consumidores
    value_deserializer=deserializer
)

# Lendo mensagens
for message in consumer:
    print(f"Consumidor 1 - Mensagem recebida: {message.value}")

consumer.close()
'''

SEED_GROUP_CONSUMER_2 = '''\
from kafka import KafkaConsumer
import json

# Função de desserialização
def deserializer(message):
    return json.loads(message.decode('utf-8'))

# Criando outro consumidor no mesmo grupo "grupo-de-consumo-1"
consumer = KafkaConsumer(
    'meu-topico',
    bootstrap_servers=['localhost:9092'],
    auto_offset_reset='earliest',
    group_id='grupo-de-consumo-1',  # Mesmo grupo
    value_deserializer=deserializer
)

# Lendo mensagens
for message in consumer:
    print(f"Consumidor 2 - Mensagem recebida: {message.value}")

consumer.close()
'''



def pointed_at(code: str, bootstrap: str) -> str:
    """The snippet with its one bootstrap address replaced."""
    assert code.count("'localhost:9092'") == 1
    return code.replace("'localhost:9092'", repr(bootstrap))


def run_snippet(code, timeout_s=90, prefix=()):
    """`prefix` goes before the interpreter (e.g. `ip netns exec <ns>`)."""
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)


def received(lines, marker="Mensagem recebida: "):
    """The printed message values of a seed consumer's output lines."""
    return [line.split(marker, 1)[1] for line in lines if marker in line]


EXPECTED = [f"{{'numero': {i}, 'mensagem': 'Mensagem {i}'}}" for i in range(10)]
"""What the seed consumers print for the seed producer's ten messages."""


class Proc:
    """A Python subprocess whose stdout lines are collected by a thread;
    its stderr goes to the file `stderr` names, or nowhere."""

    def __init__(self, code, *args, prefix=(), stderr=None):
        self.stderr = stderr
        err = open(stderr, "w") if stderr else subprocess.DEVNULL
        self.proc = subprocess.Popen([*prefix, sys.executable, "-u", "-c", code, *args],
                                     stdout=subprocess.PIPE, stderr=err, text=True)
        if stderr:
            err.close()
        self.lines = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def events(self):
        out = []
        for line in self.snapshot():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stderr_tail(self, lines=40):
        if not self.stderr:
            return []
        with open(self.stderr, errors="replace") as f:
            return f.read().splitlines()[-lines:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
