"""A three-node Kraftwerk cluster of real processes for tests: each node is
`kraftwerk server --config node-N.properties` (broker + controller), on
free loopback ports, with its own data directory."""

import json
import os
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import free_port, kraftwerk_bin, wait_for_port


class Cluster:
    def __init__(self, root: str, nodes: int = 3, extra: dict = None, controllers: int = 0):
        """`nodes` combined nodes, or with `controllers` > 0: that many
        dedicated controllers (ids 1..c) plus `nodes` dedicated brokers."""
        self.root = Path(root)
        self.count = nodes
        self.controller_ids = list(range(1, controllers + 1)) if controllers else list(range(1, nodes + 1))
        self.broker_ids = list(range(controllers + 1, controllers + nodes + 1)) if controllers else list(range(1, nodes + 1))
        self.kafka_ports = {n: free_port() for n in self.broker_ids}
        self.controller_ports = {n: free_port() for n in self.controller_ids}
        self.procs = {}
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in self.controller_ports.items())
        for n in sorted(set(self.controller_ids) | set(self.broker_ids)):
            roles = [r for r, ids in (("broker", self.broker_ids), ("controller", self.controller_ids)) if n in ids]
            listeners = []
            if n in self.kafka_ports:
                listeners.append(f"PLAINTEXT://127.0.0.1:{self.kafka_ports[n]}")
            if n in self.controller_ports:
                listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_ports[n]}")
            props = {
                "node.id": n,
                "process.roles": ",".join(roles),
                "listeners": ",".join(listeners),
                "controller.quorum.voters": voters,
                "log.dirs": str(self.root / f"node-{n}"),
            }
            if n in self.kafka_ports:
                props["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{self.kafka_ports[n]}"
            props.update(extra or {})
            (self.root / f"node-{n}.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports.values())

    def bootstrap_without(self, n: int) -> str:
        return ",".join(f"127.0.0.1:{p}" for m, p in self.kafka_ports.items() if m != n)

    def _spawn(self, n: int):
        log = open(self.root / f"node-{n}.log", "ab")
        self.procs[n] = subprocess.Popen([kraftwerk_bin(), "server", "--config", str(self.root / f"node-{n}.properties")],
                                         stdout=log, stderr=subprocess.STDOUT)

    def _wait_listening(self, n: int):
        wait_for_port(self.kafka_ports.get(n) or self.controller_ports[n], self.procs[n])

    def start(self, n: int):
        self._spawn(n)
        self._wait_listening(n)

    def start_all(self):
        nodes = sorted(set(self.controller_ids) | set(self.broker_ids))
        for n in nodes:
            self._spawn(n)
        for n in nodes:
            self._wait_listening(n)
        self.wait_until(lambda: self.all_unfenced(), 30, "every broker registered and unfenced")

    def kill(self, n: int):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def terminate(self, n: int, timeout=45):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=timeout)

    def stop_all(self):
        for n in list(self.procs):
            self.kill(n)

    def cli(self, *args, bootstrap=None, check=True):
        out = subprocess.run([kraftwerk_bin(), *args, "--bootstrap-server", bootstrap or self.bootstrap],
                             capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"kraftwerk {' '.join(args)} failed: {out.stderr}")
        return out

    def describe(self, topic, bootstrap=None):
        return json.loads(self.cli("topics", "describe", "--topic", topic, "--output", "json", bootstrap=bootstrap).stdout)[0]

    def cluster_info(self, bootstrap=None):
        return json.loads(self.cli("cluster", "describe", "--output", "json", bootstrap=bootstrap).stdout)

    def all_unfenced(self):
        """Every broker, asked on its own, sees every broker registered and unfenced."""
        for port in self.kafka_ports.values():
            try:
                brokers = self.cluster_info(bootstrap=f"127.0.0.1:{port}")["brokers"]
            except Exception:
                return False
            if len(brokers) != self.count or any(b["fenced"] for b in brokers):
                return False
        return True

    @staticmethod
    def wait_until(cond, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout_s}s waiting for: {what}")

    def log_tail(self, n, lines=30):
        try:
            return "\n".join((self.root / f"node-{n}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def release_dir(tmp: tempfile.TemporaryDirectory) -> None:
    """Removes a test cluster's directory, or keeps and prints it when
    KRAFTWERK_KEEP_DIRS is set."""
    if os.environ.get("KRAFTWERK_KEEP_DIRS"):
        print(f"cluster directory kept: {tmp.name}")
        tmp._finalizer.detach()
    else:
        tmp.cleanup()


@contextmanager
def running_cluster(prefix: str, prepare=None, **kwargs):
    """A started `Cluster(**kwargs)` in a new temporary directory; `prepare(c)`
    may edit it before it starts. Every process is killed afterwards and the
    directory removed, unless KRAFTWERK_KEEP_DIRS is set (it is then printed)."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    c = Cluster(tmp.name, **kwargs)
    try:
        if prepare:
            prepare(c)
        c.start_all()
        yield c
    finally:
        c.stop_all()
        release_dir(tmp)
