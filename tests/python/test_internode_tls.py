"""TLS between nodes: the controller listener (Raft, broker registration
and heartbeats, metadata writes) and the replication listener (follower
fetches, transaction markers) speak mutual TLS when
`listener.security.protocol.map` says SSL for them. A three-node cluster
runs over it with a real client producing acks=all; nothing reaches those
listeners without a certificate from the trusted CA."""

import socket
import ssl
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from cluster_harness import running_cluster
from conftest import free_port, free_port_run, kraftwerk_bin, wait_for_dev_cluster
from tls_fixtures import make_pki

DERIVED_REPLICATION_OFFSET = 1000  # the replication port is the Kafka port + 1000


def _secure(pki):
    return {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL,REPLICATION:SSL",
        "ssl.keystore.location": str(pki.server.bundle_encrypted),
        "ssl.key.password": "key-secret",
        "ssl.truststore.location": str(pki.ca),
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
    }


def _refused(port: int, context: ssl.SSLContext) -> str:
    """What a TLS client with `context` gets from `port`: the error that ended
    the exchange, or "" when an HTTP/2 preface went through and bytes came
    back (which would mean it was let in)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3 reports a refused client certificate on the first read.
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
                data = tls.recv(64)
                return "" if data else "closed"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return str(e) or type(e).__name__


def test_a_cluster_replicates_and_elects_over_mutual_tls(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with running_cluster("kraftwerk-internode-tls-", extra=_secure(pki)) as c:
        topic = f"tls-{uuid.uuid4().hex[:8]}"
        c.cli("topics", "create", "--topic", topic, "--partitions", "3", "--replication-factor", "3",
              "--config", "min.insync.replicas=3")
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "enable.idempotence": True})
        errors = []
        for i in range(300):
            producer.produce(topic, key=str(i % 3), value=f"v{i}".encode(),
                             on_delivery=lambda err, msg: err and errors.append(err))
        assert producer.flush(30) == 0
        # min.insync.replicas=3: every write was fetched by both followers, over TLS.
        assert errors == []
        for p in c.describe(topic)["partitions"]:
            assert sorted(p["isr"]) == [1, 2, 3], p

        group = f"g-{topic}"
        assert _consume(c.bootstrap, topic, group, 300) == {f"v{i}" for i in range(300)}

        # The active controller goes; the survivors elect over TLS, and the
        # partitions (and group coordinators) it led move to them.
        active = c.cluster_info()["active_controller"]
        c.kill(active)
        survivors = c.bootstrap_without(active)
        c.wait_until(lambda: c.cluster_info(bootstrap=survivors)["active_controller"] not in (None, active),
                     30, "a new active controller")
        c.cli("topics", "alter", "--topic", topic, "--config", "min.insync.replicas=2", bootstrap=survivors)
        producer = Producer({"bootstrap.servers": survivors, "acks": "all", "enable.idempotence": True})
        for i in range(300, 400):
            producer.produce(topic, key=str(i % 3), value=f"v{i}".encode(),
                             on_delivery=lambda err, msg: err and errors.append(err))
        assert producer.flush(60) == 0
        assert errors == []
        assert _consume(survivors, topic, group, 100) == {f"v{i}" for i in range(300, 400)}


def _consume(bootstrap, topic, group, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            seen.add(m.value().decode())
    consumer.commit(asynchronous=False)
    consumer.close()
    return seen


def test_nothing_reaches_the_node_listeners_without_a_trusted_certificate(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with running_cluster("kraftwerk-internode-tls-", extra=_secure(pki)) as c:
        n = c.broker_ids[0]
        ports = {"controller": c.controller_ports[n], "replication": c.kafka_ports[n] + DERIVED_REPLICATION_OFFSET}

        def context(cert=None, key=None, ca=pki.ca):
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.set_alpn_protocols(["h2"])
            if cert:
                ctx.load_cert_chain(str(cert), str(key))
            return ctx

        for name, port in ports.items():
            # No certificate, one from another CA, plain bytes: each refused.
            assert _refused(port, context()) != "", f"{name}: a client without a certificate got in"
            assert _refused(port, context(pki.mallory.cert, pki.mallory.key)) != "", \
                f"{name}: a certificate from an untrusted CA got in"
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                try:
                    data = raw.recv(64)
                except ConnectionError:
                    data = b""
                # Whatever comes back is a TLS alert, never an HTTP/2 frame.
                assert not data or data[0] == 0x15, f"{name}: plaintext answered with {data!r}"
            # The node's own certificate is accepted: the listener does serve.
            assert _refused(port, context(pki.server.cert, pki.server.key)) == "", \
                f"{name}: a node certificate was refused"
        # The refusals were logged with the peer, and the cluster still serves.
        time.sleep(0.5)
        log = (c.root / f"node-{n}.log").read_text(errors="replace")
        assert "gRPC TLS handshake refused" in log
        c.cli("topics", "create", "--topic", "still-serving", "--partitions", "1", "--replication-factor", "3")
        assert len(c.describe("still-serving")["partitions"][0]["isr"]) == 3


@pytest.mark.parametrize("overrides,expected", [
    ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL"}, "PLAINTEXT or SSL"),
    ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,REPLICATION:SSL",
      "ssl.keystore.location": "KEYSTORE"}, "ssl.truststore.location"),
    ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL"}, "ssl.keystore.location"),
])
def test_a_node_listener_that_cannot_be_secured_stops_the_node(tmp_path, overrides, expected):
    import subprocess
    pki = make_pki(tmp_path / "pki")
    kafka, controller = free_port(), free_port()
    args = [kraftwerk_bin(), "server", "--data-dir", str(tmp_path / "data"),
            "--override", "node.id=1",
            "--override", f"listeners=PLAINTEXT://127.0.0.1:{kafka},CONTROLLER://127.0.0.1:{controller}",
            "--override", f"controller.quorum.voters=1@127.0.0.1:{controller}",
            "--override", "kraftwerk.http.listener="]
    for k, v in overrides.items():
        args += ["--override", f"{k}={str(pki.server.bundle) if v == 'KEYSTORE' else v}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert expected in out.stderr, out.stderr


def test_dev_secure_runs_a_cluster_that_only_authenticated_clients_use(tmp_path):
    """`kraftwerk dev --secure`: SASL_SSL for clients, mutual TLS between the
    nodes, ACLs with an admin super user; the admin's settings in
    client.properties work with Kafka's own tools and librdkafka as they
    are, a user without ACLs is refused, and plaintext gets nowhere."""
    import signal
    import subprocess

    from confluent_kafka import KafkaException
    from peers import kafka_tool, require_kafka_tools
    require_kafka_tools()

    # Kafka ports base..base+2, their replication ports +1000, controllers +100, HTTP +200.
    base = free_port_run([0, 1, 2, 100, 101, 102, 200, 201, 202, 1000, 1001, 1002])
    data = tmp_path / "dev"
    dev = subprocess.Popen([kraftwerk_bin(), "dev", "--secure", "--brokers", "3", "--data-dir", str(data),
                            "--base-port", str(base), "--controller-base-port", str(base + 100),
                            "--http-base-port", str(base + 200)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    bootstrap = f"127.0.0.1:{base}"
    config = data / "client.properties"
    try:
        wait_for_dev_cluster(bootstrap, 3, 60, "--command-config", config)
        props = dict(line.split("=", 1) for line in config.read_text().splitlines() if "=" in line)
        assert props["security.protocol"] == "SASL_SSL"

        kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--command-config", config,
                   "--create", "--topic", "secured", "--partitions", "3", "--replication-factor", "3")
        password = props["sasl.jaas.config"].split('password="')[1].split('"')[0]
        admin = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                 "sasl.username": "admin", "sasl.password": password,
                 "ssl.ca.location": str(data / "certs" / "ca.pem")}
        producer = Producer({**admin, "acks": "all"})
        for i in range(50):
            producer.produce("secured", value=f"m{i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({**admin, "group.id": "dev-secure", "auto.offset.reset": "earliest"})
        consumer.subscribe(["secured"])
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 50 and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is not None and not m.error():
                seen.add(m.value())
        consumer.close()
        assert len(seen) == 50

        # A SCRAM user with no ACL may not write.
        subprocess.run([kraftwerk_bin(), "users", "set", "--user", "bob", "--password", "bob-secret",
                        "--bootstrap-server", bootstrap, "--command-config", str(config)],
                       check=True, capture_output=True, timeout=60)
        bob = {**admin, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bob", "sasl.password": "bob-secret"}
        errors = []
        deadline = time.monotonic() + 30
        while not errors and time.monotonic() < deadline:
            p = Producer({**bob, "message.timeout.ms": 5000})
            p.produce("secured", value=b"x", on_delivery=lambda err, msg: errors.append(err))
            p.flush(10)
        assert errors and errors[0] is not None and errors[0].code() == 29, errors  # TOPIC_AUTHORIZATION_FAILED

        # Plaintext is not spoken on the client port.
        plain = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 3000})
        failed = []
        plain.produce("secured", value=b"x", on_delivery=lambda err, msg: failed.append(err))
        plain.flush(10)
        assert failed and failed[0] is not None
    finally:
        dev.send_signal(signal.SIGINT)
        output, _ = dev.communicate(timeout=90)
    assert dev.returncode == 0, output
    assert "mutual TLS between nodes" in output and "stopped" in output
