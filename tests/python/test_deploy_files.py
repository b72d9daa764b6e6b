"""The Compose files in deploy/, checked without a Docker engine: every
Kraftwerk service's configuration (its KRAFTWERK_* environment, with
Compose's `${VAR:-default}` interpolation) is read and checked by
`kraftwerk server --check`, as the node would read it at startup; the
secure file's one-shot `certs` service is run as it would run, and each
node's certificate names every address other nodes and clients dial it by.
The container tests in tests/docker run these files for real where Docker
is installed."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import kraftwerk_bin

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FILES = ["docker-compose.yml", "docker-compose.dedicated.yml", "docker-compose.secure.yml"]
# What a user sets in the shell for the secure file.
SHELL = {"KRAFTWERK_ADMIN_PASSWORD": "compose-check-secret"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*)|:\?([^}]*))?\}")


def interpolate(value: str) -> str:
    def one(m):
        name, default, required = m.group(1), m.group(2), m.group(3)
        if name in SHELL:
            return SHELL[name]
        if required is not None:
            raise AssertionError(f"${{{name}}} is required: {required}")
        return default or ""
    return INTERPOLATION.sub(one, value)


def compose(name):
    return yaml.safe_load((DEPLOY / name).read_text())


def node_services(doc):
    return {name: s for name, s in doc["services"].items() if "server" in (s.get("command") or [])}


def environment(service, replace):
    env = {}
    for k, v in (service.get("environment") or {}).items():
        value = interpolate(str(v))
        for old, new in replace.items():
            value = value.replace(old, new)
        env[k] = value
    return env


def sans(pem: Path) -> set:
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    return {item.split(":", 1)[1].strip() for item in re.split(r",\s*", text.split("\n", 1)[1].strip()) if ":" in item}


@pytest.mark.parametrize("name", FILES)
def test_every_node_of_the_compose_file_would_start(name, tmp_path):
    doc = compose(name)
    nodes = node_services(doc)
    assert nodes, f"{name} has no Kraftwerk node"
    replace = {"/certs": str(tmp_path / "certs")}
    if "certs" in doc["services"]:
        command = [interpolate(str(a)) for a in doc["services"]["certs"]["command"]]
        out = subprocess.run([kraftwerk_bin(), *[a.replace("/certs", replace["/certs"]) for a in command]],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for node in nodes:
            assert f"{node}=" in " ".join(command), f"the certs service makes no certificate for {node}"
        # Every node waits for the certificates.
        for node, service in nodes.items():
            assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully", node
    ids = set()
    for node, service in nodes.items():
        data = tmp_path / node
        env = environment(service, {**replace, "/data": str(data)})
        ids.add(env["KRAFTWERK_NODE_ID"])
        base = {k: v for k, v in os.environ.items() if not k.startswith("KRAFTWERK_")}
        out = subprocess.run([kraftwerk_bin(), "server", "--check"], env={**base, **env},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{name}: {node} would not start:\n{out.stderr}"
        assert "configuration OK" in out.stdout
        # The health check, when there is one, asks a listener the node has.
        health = (service.get("healthcheck") or {}).get("test")
        if health:
            address = health[health.index("--bootstrap-server") + 1]
            assert f"//{address}" in env["KRAFTWERK_LISTENERS"] or \
                f"//0.0.0.0:{address.split(':')[1]}" in env["KRAFTWERK_LISTENERS"], (node, address)
        # Each published port is a listener advertised to the host as localhost.
        for mapping in service.get("ports", []):
            host_port = str(mapping).split(":")[0]
            assert f"//localhost:{host_port}" in env.get("KRAFTWERK_ADVERTISED_LISTENERS", ""), (node, mapping)
    assert len(ids) == len(nodes), f"{name}: node ids repeat"


def test_secure_compose_certificates_name_every_address_nodes_are_dialled_by(tmp_path):
    doc = compose("docker-compose.secure.yml")
    command = [interpolate(str(a)).replace("/certs", str(tmp_path)) for a in doc["services"]["certs"]["command"]]
    subprocess.run([kraftwerk_bin(), *command], check=True, capture_output=True, timeout=60)
    for node, service in node_services(doc).items():
        env = environment(service, {"/certs": str(tmp_path)})
        names = sans(Path(env["KRAFTWERK_SSL_KEYSTORE_LOCATION"]))
        node_id = env["KRAFTWERK_NODE_ID"]
        voters = dict(v.split("@") for v in env["KRAFTWERK_CONTROLLER_QUORUM_VOTERS"].split(","))
        dialled = {voters[node_id].rsplit(":", 1)[0]}
        for advertised in env["KRAFTWERK_ADVERTISED_LISTENERS"].split(","):
            listener, address = advertised.split("://")
            if listener != "ADMIN":
                dialled.add(address.rsplit(":", 1)[0])
        assert dialled <= names, f"{node}: certificate names {names}, dialled as {dialled}"
        protocols = dict(p.split(":") for p in env["KRAFTWERK_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert protocols["CONTROLLER"] == protocols["REPLICATION"] == "SSL"
        # Only the loopback admin listener is plaintext.
        for listener in env["KRAFTWERK_LISTENERS"].split(","):
            name, address = listener.split("://")
            if protocols[name] == "PLAINTEXT":
                assert address.startswith("127.0.0.1:"), listener


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.dedicated.yml"])
def test_prometheus_and_grafana_of_the_monitoring_profile_see_every_broker(name):
    doc = compose(name)
    services = doc["services"]
    for extra in ("prometheus", "grafana"):
        assert services[extra]["profiles"] == ["monitoring"], f"{extra} must not start by default"
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    brokers = {}
    for node, service in node_services(doc).items():
        env = environment(service, {})
        if "broker" not in env.get("KRAFTWERK_PROCESS_ROLES", "broker,controller"):
            continue
        http = env["KRAFTWERK_KRAFTWERK_HTTP_LISTENER"]
        assert http.startswith("0.0.0.0:"), f"{node}: Prometheus must reach its HTTP listener"
        brokers[node] = f"{service['hostname']}:{http.split(':')[1]}"
    assert targets == set(brokers.values()), (targets, brokers)
    # What the containers mount exists here.
    for extra in ("prometheus", "grafana"):
        for volume in services[extra]["volumes"]:
            assert (DEPLOY / volume.split(":")[0]).exists(), volume


def image_environment():
    """The ENV of deploy/Dockerfile's final image (what a container starts with
    before Compose's `environment` is applied)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stage = text.rsplit("\nFROM ", 1)[1]
    env = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_compose_cluster_runs_on_three_test_hosts_and_serves_the_seed_snippets(tmp_path):
    """deploy/docker-compose.yml without Docker: each node service becomes a
    `kraftwerk` process on a test host of its own (a network namespace,
    tests/python/netns_harness.py) with the image's ENV, then the service's
    environment, its command, and its service name resolvable on every test
    host (/etc/netns/<ns>/hosts); its published ports become forwarders on
    the client test host's 127.0.0.1, as docker-proxy does. Each node must
    pass the Compose health check; then the seed notes' kafka-python
    producer, pointed at localhost:19092 like a client on the Docker host,
    and their group consumer, pointed at kafka-2:9092 like a container on
    the Compose network, must work."""
    import time

    import netns_harness
    from snippets import EXPECTED, SEED_CONSUMER, SEED_PRODUCER, Proc, pointed_at, received, run_snippet

    reason = netns_harness.skip_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    doc = compose("docker-compose.yml")
    nodes = node_services(doc)
    names = sorted(nodes)
    # Compose's network resolves each service by its name and its hostname.
    hosts = {}
    for i, name in enumerate(names, 1):
        for alias in {name, nodes[name].get("hostname", name)}:
            hosts[alias] = f"{netns_harness.SUBNET}.{i}"
    with netns_harness.netns_cluster("kraftwerk-compose-", start=False, nodes=len(names), hosts=hosts) as c:
        base = {k: v for k, v in os.environ.items() if not k.startswith("KRAFTWERK_")}
        published = {}
        for i, name in enumerate(names, 1):
            service = nodes[name]
            data = tmp_path / name
            data.mkdir()
            env = {**base, **image_environment(), **environment(service, {"/data": str(data)})}
            command = [interpolate(str(a)) for a in service["command"]]
            c.spawn(i, [kraftwerk_bin(), *command], env=env, cwd=str(data))
            for mapping in service.get("ports", []):
                host_port, container_port = str(mapping).split(":")[-2:]
                published[int(host_port)] = (i, int(container_port))
        c.publish(published)
        health = doc["x-node"]["healthcheck"]["test"] if "x-node" in doc else nodes[names[0]]["healthcheck"]["test"]
        check = [kraftwerk_bin() if a == "/usr/local/bin/kraftwerk" else a for a in health[1:]]
        deadline = time.monotonic() + 60
        for i, name in enumerate(names, 1):
            while True:
                assert c.procs[i].poll() is None, f"{name} exited:\n{c.log_tail(i)}"
                out = subprocess.run(["ip", "netns", "exec", c.ns[i], *check], capture_output=True, text=True,
                                     timeout=30, env=base)
                if out.returncode == 0 and c.all_unfenced():
                    break
                assert time.monotonic() < deadline, f"{name} not healthy: {out.stderr}\n{c.log_tail(i)}"
                time.sleep(0.5)

        client = ("ip", "netns", "exec", c.client_ns)
        produced = run_snippet(pointed_at(SEED_PRODUCER, "localhost:19092"), prefix=client)
        assert produced.returncode == 0, produced.stderr
        assert produced.stdout.count("Mensagem enviada") == 10
        consumer = Proc(pointed_at(SEED_CONSUMER, f"{names[1]}:9092"), prefix=client)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and len(received(consumer.snapshot())) < len(EXPECTED):
                time.sleep(0.2)
            time.sleep(1)
            seen = received(consumer.snapshot())
        finally:
            consumer.kill()
        # Auto-created with the Compose file's three partitions: compare sets.
        assert sorted(seen) == sorted(EXPECTED), "\n".join(c.log_tail(i, 20) for i in c.ids)
