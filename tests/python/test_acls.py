"""ACLs as Kafka users manage and meet them: `kafka-acls.sh` against a
broker running Kafka's StandardAuthorizer configuration
(`authorizer.class.name`, `super.users`), SASL users authenticating with
real clients (confluent-kafka, kafka-python, Kafka's Java console tools),
and what each user may then do. The issue's example: alice may write topic
T and read group G, bob may do neither. ACLs live in the metadata quorum:
they survive a restart and a controller failover."""

import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from cluster_harness import running_cluster
from conftest import free_port, kraftwerk_bin
from peers import kafka_tool, require_kafka_tools

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
        + " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";")
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def secured_overrides(port):
    return ["--override", f"listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
            "--override", "sasl.enabled.mechanisms=PLAIN",
            "--override", f"listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}",
            "--override", f"authorizer.class.name={AUTHORIZER}",
            "--override", "super.users=User:admin",
            "--override", "kraftwerk.http.listener="]


def conf(bootstrap, user, **extra):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": USERS[user], **extra}


def client_properties(tmp_path, user):
    path = tmp_path / f"{user}.properties"
    path.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'username="{user}" password="{USERS[user]}";\n')
    return path


@pytest.fixture
def secured(broker_factory):
    port = free_port()
    b = broker_factory(port=port, extra=secured_overrides(port))
    b.start()
    return b


def acls(bootstrap, admin_props, *args, check=True):
    return kafka_tool("kafka-acls", "--bootstrap-server", bootstrap, "--command-config", admin_props, *args,
                      check=check)


def create_topic(bootstrap, name, partitions=1):
    admin = AdminClient(conf(bootstrap, "admin"))
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def produce_one(bootstrap, user, topic, value):
    """The delivery error, or None when the record was acknowledged."""
    p = Producer(conf(bootstrap, user))
    errors = []
    p.produce(topic, value, callback=lambda err, _msg: errors.append(err))
    p.flush(20)
    assert errors, "no delivery report"
    return errors[0]


def consume_first(bootstrap, user, topic, group, timeout_s=20):
    """(first value, first error) of a group consumer reading `topic`."""
    c = Consumer(conf(bootstrap, user, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                return None, m.error()
            return m.value(), None
        return None, None
    finally:
        c.close()


def test_alice_writes_t_and_reads_g_and_bob_does_neither(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    create_topic(bootstrap, "T")
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:alice", "--operation", "Write", "--topic", "T")
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:alice", "--operation", "Read",
         "--topic", "T", "--group", "G")
    listed = acls(bootstrap, admin_props, "--list").stdout
    assert "ResourcePattern(resourceType=TOPIC, name=T, patternType=LITERAL)" in listed
    assert "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)" in listed
    assert "ResourcePattern(resourceType=GROUP, name=G, patternType=LITERAL)" in listed

    # librdkafka
    assert produce_one(bootstrap, "alice", "T", b"from-alice") is None
    value, err = consume_first(bootstrap, "alice", "T", "G")
    assert (value, err) == (b"from-alice", None)
    err = produce_one(bootstrap, "bob", "T", b"from-bob")
    assert err is not None and err.code() == 29, err  # TOPIC_AUTHORIZATION_FAILED
    value, err = consume_first(bootstrap, "bob", "T", "G")
    assert value is None and err is not None and err.code() == 30, err  # GROUP_AUTHORIZATION_FAILED

    # kafka-python
    kp_conf = dict(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    p = KafkaProducer(**kp_conf, sasl_plain_username="alice", sasl_plain_password=USERS["alice"])
    p.send("T", b"kafka-python").get(timeout=20)
    p.close()
    p = KafkaProducer(**kp_conf, sasl_plain_username="bob", sasl_plain_password=USERS["bob"],
                      retries=0, max_block_ms=10000)
    with pytest.raises(KafkaError):
        p.send("T", b"denied").get(timeout=20)
    p.close()

    # The Java client through Kafka's console tools.
    alice_props = client_properties(tmp_path, "alice")
    kafka_tool("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", "T",
               "--producer.config", alice_props, input="java-line\n")
    out = kafka_tool("kafka-console-consumer", "--bootstrap-server", bootstrap, "--topic", "T",
                     "--group", "G", "--from-beginning", "--max-messages", "2", "--timeout-ms", "20000",
                     "--consumer.config", alice_props)
    # Group G resumes after the record librdkafka's consumer committed.
    assert out.stdout.split() == ["kafka-python", "java-line"]
    bob_props = client_properties(tmp_path, "bob")
    denied = kafka_tool("kafka-console-producer", "--bootstrap-server", bootstrap, "--topic", "T",
                        "--producer.config", bob_props, input="nope\n", check=False)
    assert "TopicAuthorizationException" in denied.stdout + denied.stderr

    # Removing alice's WRITE takes it away.
    acls(bootstrap, admin_props, "--remove", "--force", "--allow-principal", "User:alice", "--operation", "Write",
         "--topic", "T")
    err = produce_one(bootstrap, "alice", "T", b"after-removal")
    assert err is not None and err.code() == 29, err


def test_acl_semantics_deny_prefix_wildcard_super_user_and_implied_describe(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    for t in ("logs-app", "logs-secret", "orders", "hidden"):
        create_topic(bootstrap, t)
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:alice", "--operation", "Write",
         "--topic", "logs-", "--resource-pattern-type", "prefixed")
    acls(bootstrap, admin_props, "--add", "--deny-principal", "User:alice", "--operation", "Write",
         "--topic", "logs-secret")
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:carol", "--operation", "All", "--topic", "*")
    acls(bootstrap, admin_props, "--add", "--deny-principal", "User:carol", "--operation", "Describe",
         "--topic", "hidden")

    assert produce_one(bootstrap, "alice", "logs-app", b"x") is None, "prefixed ALLOW"
    assert produce_one(bootstrap, "alice", "logs-secret", b"x").code() == 29, "DENY beats ALLOW"
    assert produce_one(bootstrap, "alice", "orders", b"x").code() == 29, "no ACL for alice"
    assert produce_one(bootstrap, "carol", "orders", b"x") is None, "wildcard ALL"
    assert produce_one(bootstrap, "admin", "orders", b"x") is None, "super user without ACLs"
    assert produce_one(bootstrap, "bob", "orders", b"x").code() == 29, "no ACL, none allowed by default"

    def visible(user):
        md = AdminClient(conf(bootstrap, user)).list_topics(timeout=20)
        return {t for t in md.topics if not t.startswith("__")}

    # Metadata lists the topics one may describe: WRITE implies DESCRIBE
    # (alice sees the logs- topics), a DENY of DESCRIBE hides one from
    # carol's wildcard ALL, bob sees nothing.
    assert visible("alice") == {"logs-app", "logs-secret"}
    assert visible("carol") == {"logs-app", "logs-secret", "orders"}
    assert visible("bob") == set()
    assert visible("admin") >= {"logs-app", "logs-secret", "orders", "hidden"}

    # Only the cluster's ALTER may change ACLs.
    alice_props = client_properties(tmp_path, "alice")
    out = kafka_tool("kafka-acls", "--bootstrap-server", bootstrap, "--command-config", alice_props, "--add",
                     "--allow-principal", "User:alice", "--operation", "All", "--topic", "*", check=False)
    assert "ClusterAuthorizationException" in out.stdout + out.stderr

    listed = acls(bootstrap, admin_props, "--list", "--topic", "logs-secret").stdout
    assert "operation=WRITE, permissionType=DENY" in listed
    acls(bootstrap, admin_props, "--remove", "--force", "--topic", "logs-", "--resource-pattern-type", "prefixed")
    remaining = acls(bootstrap, admin_props, "--list", "--topic", "logs-", "--resource-pattern-type", "prefixed")
    assert "User:alice" not in remaining.stdout
    assert produce_one(bootstrap, "alice", "logs-app", b"x").code() == 29


def test_acls_and_scram_users_survive_a_restart(broker_factory, tmp_path):
    require_kafka_tools()
    port = free_port()
    overrides = secured_overrides(port)
    overrides[overrides.index("sasl.enabled.mechanisms=PLAIN")] = "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256"
    b = broker_factory(port=port, extra=overrides)
    b.start()
    admin_props = client_properties(tmp_path, "admin")
    create_topic(b.bootstrap, "kept")
    acls(b.bootstrap, admin_props, "--add", "--allow-principal", "User:dave", "--operation", "Write",
         "--topic", "kept")
    kafka_tool("kafka-configs", "--bootstrap-server", b.bootstrap, "--command-config", admin_props, "--alter",
               "--add-config", "SCRAM-SHA-256=[iterations=4096,password=dave-secret]",
               "--entity-type", "users", "--entity-name", "dave")
    b.stop()
    b.start()
    dave = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "dave", "sasl.password": "dave-secret"}
    p = Producer(dave)
    errors = []
    p.produce("kept", b"after-restart", callback=lambda err, _m: errors.append(err))
    p.flush(20)
    assert errors == [None]
    listed = acls(b.bootstrap, admin_props, "--list", "--topic", "kept").stdout
    assert "principal=User:dave" in listed


def test_acls_survive_a_controller_failover(tmp_path):
    """Three nodes; clients authenticate on a SASL listener, the PLAINTEXT
    one (the harness's admin listener, `User:ANONYMOUS`) is a super user.
    The active controller is killed after the ACL is written: the ACL is
    still enforced, and still listed, by the survivors. Then the whole
    cluster is killed and restarted: ACLs and a SCRAM user come back."""
    require_kafka_tools()

    def sasl_listener(c):
        c.sasl_ports = {n: free_port() for n in c.broker_ids}
        for n in c.broker_ids:
            path = c.root / f"node-{n}.properties"
            text = path.read_text()
            sasl = c.sasl_ports[n]
            text = text.replace(f"listeners=PLAINTEXT://127.0.0.1:{c.kafka_ports[n]}",
                                f"listeners=PLAINTEXT://127.0.0.1:{c.kafka_ports[n]},"
                                f"SASL_PLAINTEXT://127.0.0.1:{sasl}")
            text = text.replace(f"advertised.listeners=PLAINTEXT://127.0.0.1:{c.kafka_ports[n]}",
                                f"advertised.listeners=PLAINTEXT://127.0.0.1:{c.kafka_ports[n]},"
                                f"SASL_PLAINTEXT://127.0.0.1:{sasl}")
            path.write_text(text)

    extra = {"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
             "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
             "authorizer.class.name": AUTHORIZER,
             "super.users": "User:ANONYMOUS;User:admin",
             "inter.broker.listener.name": "PLAINTEXT",
             "broker.session.timeout.ms": "4000",
             "broker.heartbeat.interval.ms": "500"}
    with running_cluster("kraftwerk-acls-", prepare=sasl_listener, extra=extra) as c:
        c.cli("topics", "create", "--topic", "guarded", "--partitions", "3", "--replication-factor", "3")
        kafka_tool("kafka-acls", "--bootstrap-server", c.bootstrap, "--add", "--allow-principal", "User:alice",
                   "--operation", "Write", "--topic", "guarded")
        active = c.cluster_info()["active_controller"]
        c.kill(active)
        survivors = [n for n in c.broker_ids if n != active]
        sasl_bootstrap = ",".join(f"127.0.0.1:{c.sasl_ports[n]}" for n in survivors)
        plain_bootstrap = c.bootstrap_without(active)

        def alice_writes():
            return produce_one(sasl_bootstrap, "alice", "guarded", b"after-failover") is None

        c.wait_until(alice_writes, 60, "alice's write acknowledged after the controller failover")
        assert produce_one(sasl_bootstrap, "bob", "guarded", b"x").code() == 29
        listed = kafka_tool("kafka-acls", "--bootstrap-server", plain_bootstrap, "--list",
                            "--topic", "guarded").stdout
        assert "principal=User:alice" in listed

        # A SCRAM user written now, then the whole cluster killed and
        # started again: the ACL and the credentials come back with it.
        kafka_tool("kafka-configs", "--bootstrap-server", plain_bootstrap, "--alter",
                   "--add-config", "SCRAM-SHA-256=[iterations=4096,password=erin-secret]",
                   "--entity-type", "users", "--entity-name", "erin")
        kafka_tool("kafka-acls", "--bootstrap-server", plain_bootstrap, "--add", "--allow-principal",
                   "User:erin", "--operation", "Write", "--topic", "guarded")
        c.stop_all()
        c.start_all()
        everyone = ",".join(f"127.0.0.1:{c.sasl_ports[n]}" for n in c.broker_ids)
        c.wait_until(lambda: produce_one(everyone, "alice", "guarded", b"after-restart") is None, 60,
                     "alice's write acknowledged after a full cluster restart")
        erin = Producer({"bootstrap.servers": everyone, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "erin",
                         "sasl.password": "erin-secret"})
        outcome = []
        erin.produce("guarded", b"erin-after-restart", callback=lambda err, _m: outcome.append(err))
        erin.flush(30)
        assert outcome == [None]
        assert produce_one(everyone, "bob", "guarded", b"x").code() == 29


def test_acls_apply_to_the_principal_of_a_client_certificate(broker_factory, tmp_path):
    """On a mutual-TLS listener the principal is the certificate's subject
    (`User:CN=alice,O=Kraftwerk`): an ACL for it lets alice's certificate
    write and not bob's, from the same CA."""
    require_kafka_tools()
    from tls_fixtures import CLIENT_DN, issue, make_pki
    pki = make_pki(tmp_path / "pki")
    bob = issue(pki.directory, "bob", pki.ca, pki.ca_key, "/O=Kraftwerk/CN=bob", 2002, server=False)
    plain, mtls = free_port(), free_port()
    b = broker_factory(port=plain, extra=[
        "--override", f"listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{mtls}",
        "--override", f"ssl.keystore.location={pki.server.bundle}",
        "--override", f"ssl.truststore.location={pki.ca}",
        "--override", "ssl.client.auth=required",
        "--override", f"authorizer.class.name={AUTHORIZER}",
        # The loopback PLAINTEXT listener is the admin's.
        "--override", "super.users=User:ANONYMOUS",
        "--override", "kraftwerk.http.listener="])
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("certified", 1, 1)])["certified"].result(timeout=30)
    kafka_tool("kafka-acls", "--bootstrap-server", b.bootstrap, "--add",
               "--allow-principal", f"User:{CLIENT_DN}", "--operation", "Write", "--topic", "certified")

    def produce_as(leaf):
        p = Producer({"bootstrap.servers": f"127.0.0.1:{mtls}", "security.protocol": "SSL",
                      "ssl.ca.location": str(pki.ca), "ssl.certificate.location": str(leaf.cert),
                      "ssl.key.location": str(leaf.key)})
        errors = []
        p.produce("certified", b"signed", callback=lambda err, _m: errors.append(err))
        p.flush(20)
        assert errors, "no delivery report"
        return errors[0]

    assert produce_as(pki.alice) is None
    err = produce_as(bob)
    assert err is not None and err.code() == 29, err


# `kraftwerk acls`, the CLI's kafka-acls.sh: what it adds Kafka's tool
# lists, what Kafka's tool adds it lists, and the broker enforces both.

def kraftwerk_acls(bootstrap, props, *args, check=True):
    """Runs `kraftwerk acls ARGS` as the user whose properties file is given."""
    cmd = [kraftwerk_bin(), "acls", *map(str, args), "--bootstrap-server", bootstrap]
    if props is not None:
        cmd += ["--command-config", str(props)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise AssertionError(f"kraftwerk acls {' '.join(map(str, args))} exited {out.returncode}\n"
                             f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}")
    return out


def kraftwerk_acls_json(bootstrap, props, *args):
    return json.loads(kraftwerk_acls(bootstrap, props, *args, "--output", "json").stdout)


def acl_rows(rows):
    """JSON bindings as comparable tuples."""
    return {(r["resource_type"], r["resource_name"], r["pattern_type"], r["principal"], r["host"],
             r["operation"], r["permission_type"]) for r in rows}


def test_kraftwerk_acls_add_is_listed_by_kafka_acls_and_enforced(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    create_topic(bootstrap, "W")
    assert produce_one(bootstrap, "alice", "W", b"before").code() == 29

    out = kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:alice", "--operation", "Write",
                         "--topic", "W")
    assert "Adding ACLs for resource `ResourcePattern(resourceType=TOPIC, name=W, patternType=LITERAL)`" in out.stdout
    assert "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)" in out.stdout

    listed = acls(bootstrap, admin_props, "--list", "--topic", "W").stdout
    assert "ResourcePattern(resourceType=TOPIC, name=W, patternType=LITERAL)" in listed
    assert "(principal=User:alice, host=*, operation=WRITE, permissionType=ALLOW)" in listed

    assert produce_one(bootstrap, "alice", "W", b"allowed") is None
    assert produce_one(bootstrap, "bob", "W", b"denied").code() == 29

    # Adding the same ACL again is no error, as in Kafka.
    kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:alice", "--operation", "Write",
                   "--topic", "W")
    assert len(kraftwerk_acls_json(bootstrap, admin_props, "list", "--topic", "W")) == 1


def test_acls_added_by_kafka_acls_are_listed_by_kraftwerk_and_roles_match(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:carol", "--operation", "Read",
         "--topic", "R", "--group", "G")
    acls(bootstrap, admin_props, "--add", "--deny-principal", "User:bob", "--deny-host", "10.1.2.3",
         "--operation", "Describe", "--topic", "R")
    rows = acl_rows(kraftwerk_acls_json(bootstrap, admin_props, "list"))
    assert rows == {
        ("TOPIC", "R", "LITERAL", "User:carol", "*", "READ", "ALLOW"),
        ("GROUP", "G", "LITERAL", "User:carol", "*", "READ", "ALLOW"),
        ("TOPIC", "R", "LITERAL", "User:bob", "10.1.2.3", "DESCRIBE", "DENY"),
    }
    text = kraftwerk_acls(bootstrap, admin_props, "list", "--group", "G").stdout
    assert "Current ACLs for resource `ResourcePattern(resourceType=GROUP, name=G, patternType=LITERAL)`" in text
    assert "User:bob" not in text

    # --producer and --consumer add what kafka-acls.sh adds for them.
    role = ["--producer", "--idempotent", "--topic", "{}-t", "--transactional-id", "{}-tx"]
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:kafka-producer",
         *[a.format("k") for a in role])
    kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:kraftwerk-producer",
                   *[a.format("w") for a in role])
    role = ["--consumer", "--topic", "{}-t", "--group", "{}-g"]
    acls(bootstrap, admin_props, "--add", "--allow-principal", "User:kafka-consumer",
         *[a.format("k") for a in role])
    kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:kraftwerk-consumer",
                   *[a.format("w") for a in role])

    def of(principal):
        """(type, name without its k-/w- prefix, pattern, operation, permission)."""
        rows = kraftwerk_acls_json(bootstrap, admin_props, "list", "--principal", principal)
        return {(t, n[2:] if n[:2] in ("k-", "w-") else n, p, o, perm)
                for (t, n, p, _principal, _host, o, perm) in acl_rows(rows)}

    for who in ("producer", "consumer"):
        ours, theirs = of(f"User:kraftwerk-{who}"), of(f"User:kafka-{who}")
        assert ours and ours == theirs, (who, ours, theirs)
    assert ("CLUSTER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE", "ALLOW") in of("User:kraftwerk-producer")


def test_kraftwerk_acls_prefixed_patterns_and_match_filters(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    for t in ("logs-app", "other"):
        create_topic(bootstrap, t)
    add = lambda *a: kraftwerk_acls(bootstrap, admin_props, "add", *a)  # noqa: E731
    add("--allow-principal", "User:alice", "--operation", "Write", "--topic", "logs-",
        "--resource-pattern-type", "prefixed")
    add("--allow-principal", "User:bob", "--operation", "Read", "--topic", "logs-app")
    add("--allow-principal", "User:carol", "--operation", "Describe", "--topic", "*")
    add("--allow-principal", "User:bob", "--operation", "Read", "--topic", "other")
    add("--allow-principal", "User:bob", "--operation", "Read", "--topic", "logs-")

    def names(*args):
        rows = kraftwerk_acls_json(bootstrap, admin_props, "list", *args)
        return sorted((r["resource_name"], r["pattern_type"]) for r in rows)

    assert names("--topic", "logs-app", "--resource-pattern-type", "match") == [
        ("*", "LITERAL"), ("logs-", "PREFIXED"), ("logs-app", "LITERAL")]
    assert names("--topic", "logs-app") == [("logs-app", "LITERAL")]
    assert names("--topic", "logs-", "--resource-pattern-type", "prefixed") == [("logs-", "PREFIXED")]
    assert names("--topic", "logs-", "--resource-pattern-type", "any") == [("logs-", "LITERAL"),
                                                                           ("logs-", "PREFIXED")]
    assert names("--topic", "logs-app", "--resource-pattern-type", "match", "--principal", "User:bob") == [
        ("logs-app", "LITERAL")]
    assert names("--principal", "User:bob", "--operation", "Read") == [
        ("logs-", "LITERAL"), ("logs-app", "LITERAL"), ("other", "LITERAL")]

    # Kafka's tool sees the prefixed ACL as such; the broker applies it.
    listed = acls(bootstrap, admin_props, "--list", "--topic", "logs-", "--resource-pattern-type", "prefixed")
    assert "ResourcePattern(resourceType=TOPIC, name=logs-, patternType=PREFIXED)" in listed.stdout
    assert produce_one(bootstrap, "alice", "logs-app", b"x") is None
    assert produce_one(bootstrap, "alice", "other", b"x").code() == 29


def test_kraftwerk_acls_remove_removes_exactly_the_matching_acls(secured, tmp_path):
    require_kafka_tools()
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    for t in ("T", "U"):
        create_topic(bootstrap, t)
    add = lambda *a: kraftwerk_acls(bootstrap, admin_props, "add", *a)  # noqa: E731
    add("--allow-principal", "User:alice", "--operation", "Write", "--operation", "Read", "--topic", "T")
    add("--allow-principal", "User:bob", "--operation", "Write", "--topic", "T")
    add("--allow-principal", "User:alice", "--operation", "Write", "--topic", "U")
    assert produce_one(bootstrap, "alice", "T", b"x") is None

    removed = kraftwerk_acls_json(bootstrap, admin_props, "remove", "--allow-principal", "User:alice",
                                  "--operation", "Write", "--topic", "T")
    assert acl_rows(removed) == {("TOPIC", "T", "LITERAL", "User:alice", "*", "WRITE", "ALLOW")}
    assert all(r["error"] is None for r in removed)
    assert acl_rows(kraftwerk_acls_json(bootstrap, admin_props, "list")) == {
        ("TOPIC", "T", "LITERAL", "User:alice", "*", "READ", "ALLOW"),
        ("TOPIC", "T", "LITERAL", "User:bob", "*", "WRITE", "ALLOW"),
        ("TOPIC", "U", "LITERAL", "User:alice", "*", "WRITE", "ALLOW"),
    }
    assert produce_one(bootstrap, "alice", "T", b"x").code() == 29
    assert produce_one(bootstrap, "bob", "T", b"x") is None
    assert produce_one(bootstrap, "alice", "U", b"x") is None

    # A prefixed filter does not touch literal ACLs; nothing matched is no error.
    out = kraftwerk_acls(bootstrap, admin_props, "remove", "--topic", "T", "--resource-pattern-type", "prefixed")
    assert "No ACLs matched." in out.stdout
    # Without principal or operation: every ACL of the resource, no prompt.
    out = kraftwerk_acls(bootstrap, admin_props, "remove", "--topic", "T")
    assert "Removed ACLs for resource `ResourcePattern(resourceType=TOPIC, name=T, patternType=LITERAL)`" in out.stdout
    assert "(principal=User:bob, host=*, operation=WRITE, permissionType=ALLOW)" in out.stdout
    assert "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)" in out.stdout
    assert acl_rows(kraftwerk_acls_json(bootstrap, admin_props, "list")) == {
        ("TOPIC", "U", "LITERAL", "User:alice", "*", "WRITE", "ALLOW")}
    assert produce_one(bootstrap, "bob", "T", b"x").code() == 29
    assert "User:alice" in acls(bootstrap, admin_props, "--list", "--topic", "U").stdout


def test_kraftwerk_acls_errors_are_clear(secured, broker, tmp_path):
    bootstrap = secured.bootstrap
    admin_props = client_properties(tmp_path, "admin")
    out = kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:alice", "--operation", "Wrte",
                         "--topic", "T", check=False)
    assert out.returncode != 0
    assert "invalid value 'Wrte' for '--operation" in out.stderr and "IdempotentWrite" in out.stderr
    out = kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:alice", "--operation", "Write",
                         check=False)
    assert out.returncode != 0 and "give a resource: --topic, --group, --cluster or --transactional-id" in out.stderr
    out = kraftwerk_acls(bootstrap, admin_props, "remove", check=False)
    assert out.returncode != 0 and "give a resource" in out.stderr
    out = kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "alice", "--topic", "T", check=False)
    assert out.returncode != 0 and "principalType:name" in out.stderr
    out = kraftwerk_acls(bootstrap, admin_props, "add", "--allow-principal", "User:alice", "--operation", "Read",
                         "--cluster", check=False)
    assert out.returncode != 0 and "cannot name operation Read" in out.stderr

    # Only the cluster's ALTER may change ACLs: the broker's refusal, per ACL.
    out = kraftwerk_acls(bootstrap, client_properties(tmp_path, "alice"), "add", "--allow-principal",
                         "User:alice", "--operation", "All", "--topic", "*", check=False)
    assert out.returncode != 0 and "ClusterAuthorizationFailed" in out.stderr.replace("_", ""), out.stderr
    assert kraftwerk_acls_json(bootstrap, admin_props, "list") == []

    # A broker without an authorizer: Kafka's SECURITY_DISABLED, as an error message.
    out = kraftwerk_acls(broker.bootstrap, None, "list", check=False)
    assert out.returncode != 0 and "(54)" in out.stderr, out.stderr
    assert "panicked" not in out.stderr
