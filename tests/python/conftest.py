"""Starts real `kraftwerk server` processes for the Python client tests.

The binary is `$KRAFTWERK_BIN`, or `target/debug/kraftwerk` under the
repository root (`scripts/test` builds it first).
"""

import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30


def kraftwerk_bin() -> str:
    path = os.environ.get("KRAFTWERK_BIN") or str(ROOT / "target" / "debug" / "kraftwerk")
    if not Path(path).exists():
        pytest.fail(f"{path} does not exist: build it with `cargo build --bin kraftwerk` or set KRAFTWERK_BIN")
    return path


def _ephemeral_range():
    try:
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A free port outside the kernel's ephemeral range, so that no outgoing
    connection can take it between this probe and the broker's bind, nor
    while a killed node is being restarted on it."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(15000, 30000) if not (low <= p <= high)]
    for _ in range(200):
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port outside the ephemeral range")


_handed_out = set()


def wait_for_dev_cluster(bootstrap: str, count: int, timeout_s: float, *cli_args) -> None:
    """Waits until `kraftwerk cluster describe` (with `cli_args`, e.g.
    --command-config) shows `count` brokers, none fenced."""
    import json
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run([kraftwerk_bin(), "cluster", "describe", "--output", "json",
                              "--bootstrap-server", bootstrap, *map(str, cli_args)],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            brokers = json.loads(out.stdout)["brokers"]
            if len(brokers) == count and not any(b["fenced"] for b in brokers):
                return
        assert time.monotonic() < deadline, out.stderr
        time.sleep(0.5)


def free_port_run(offsets) -> int:
    """A base port such that base + each offset is free (for `kraftwerk dev`,
    whose nodes take ports at fixed offsets from a base)."""
    for base in range(15000, 30000, 89):
        ports = [base + o for o in offsets]
        if any(p in _handed_out for p in ports):
            continue
        free = True
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            _handed_out.update(ports)
            return base
    raise RuntimeError("no free port range")


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kraftwerk exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"kraftwerk did not listen on {port} within {timeout_s}s")


class Broker:
    """One `kraftwerk server` process with its own data directory."""

    def __init__(self, data_dir: str, port: int, extra=()):
        self.data_dir = data_dir
        self.port = port
        self.extra = list(extra)
        self.proc = None
        self.log_path = Path(data_dir).parent / f"broker-{port}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        args = [
            kraftwerk_bin(), "server",
            "--data-dir", self.data_dir,
            "--listeners", f"PLAINTEXT://127.0.0.1:{self.port}",
            *self.extra,
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        return self

    def kill(self):
        """SIGKILL: no chance to flush or close anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, n=40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def broker_factory():
    made = []
    tmp = tempfile.TemporaryDirectory(prefix="kraftwerk-test-")

    def make(port=None, extra=()):
        data = os.path.join(tmp.name, f"data-{len(made)}")
        b = Broker(data, port or free_port(), extra)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()
    tmp.cleanup()


@pytest.fixture
def broker(broker_factory):
    return broker_factory().start()
