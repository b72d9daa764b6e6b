"""Helpers shared by the side-by-side benchmark scripts in bench/: the
kraftwerk binary, free ports, waiting for a listener, a broker's CPU
seconds and memory from /proc, and Apache Kafka 4.1.1 started and stopped
through tests/peers/kafka.sh."""

import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "tests" / "peers" / "kafka.sh"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# How often RssSampler reads VmRSS.
RSS_SAMPLE_INTERVAL_S = 0.1
# Ports are picked below the kernel's ephemeral range, so that no outgoing
# connection takes one between the probe and the broker's bind.
PORT_RANGE = (15000, 30000)
PORT_PROBES_MAX = 500


def kraftwerk_binary():
    """$KRAFTWERK_BIN, else the release build, else the dev build."""
    for candidate in (os.environ.get("KRAFTWERK_BIN"), ROOT / "target/release/kraftwerk",
                      ROOT / "target/debug/kraftwerk"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("build kraftwerk first (cargo build --release --bin kraftwerk)")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mib(pid):
    """VmHWM: the largest resident set over the process's lifetime."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid):
    """VmRSS: the resident set now."""
    return _status_kib(pid, "VmRSS") / 1024


class RssSampler:
    """Samples the summed VmRSS of some processes every 100 ms in a thread;
    `peak_mib` is the largest sum seen between start() and stop(). (VmHWM
    cannot be reset, so it only gives the peak since the process began.)"""

    def __init__(self, pids):
        self.pids = list(pids)
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        total = 0.0
        for pid in self.pids:
            try:
                total += rss_mib(pid)
            except OSError:
                pass
        self.peak_mib = max(self.peak_mib, total)

    def _run(self):
        while not self._stop.wait(RSS_SAMPLE_INTERVAL_S):
            self._sample()

    def start(self):
        self._sample()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.peak_mib


def _ephemeral_range():
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


_handed_out = set()


def free_port_run(offsets):
    """A base port such that base + each offset is free now, outside the
    ephemeral range and not handed out before by this process."""
    low, high = _ephemeral_range()
    span = max(offsets)
    for _ in range(PORT_PROBES_MAX):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - span)
        ports = [base + o for o in offsets]
        if any(low <= p <= high or p in _handed_out for p in ports):
            continue
        if all(_port_free(p) for p in ports):
            _handed_out.update(ports)
            return base
    raise SystemExit(f"no free run of ports {offsets} found")


def free_port():
    return free_port_run([0])


def wait_port(port, proc=None, timeout=60):
    """Waits until something accepts on 127.0.0.1:port; fails early when
    `proc` (a Popen) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def kafka_classpath():
    """Resolves Apache Kafka's jars (once, from Maven Central) and returns
    the `java -cp` classpath."""
    out = subprocess.run([str(KAFKA_SH), "classpath"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"Apache Kafka is not available: {out.stdout}{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def start_kafka(run_dir, nodes=1, base_port=None):
    """Starts `nodes` combined Apache Kafka nodes (fixed 512 MiB heap, G1)
    with tests/peers/kafka.sh in run_dir, on free ports unless base_port is
    given. Returns (bootstrap, pids in node order)."""
    if base_port is None:
        base_port = free_port_run([*range(nodes), *range(50, 50 + nodes)])
    out = subprocess.run([str(KAFKA_SH), "start", "--nodes", str(nodes), "--dir", str(run_dir),
                          "--base-port", str(base_port)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"Apache Kafka did not start: {out.stdout}{out.stderr}")
    pids = [int(p) for p in (Path(run_dir) / "pids").read_text().split()]
    return out.stdout.strip().splitlines()[-1], pids


def stop_kafka(run_dir):
    subprocess.run([str(KAFKA_SH), "stop", "--dir", str(run_dir)], capture_output=True)
