"""Kraftwerk nodes on test hosts of their own: one Linux network namespace
per node, so that faults are real network faults (links down, packets
dropped between two hosts, loss and delay), without Docker.

Topology of one run (every name carries the run id `kwnet-<pid>-<hex>`,
so parallel or leftover runs never collide):

    kwnet-<run>-br   a Linux bridge `br0`, and one end of every veth pair
    kwnet-<run>-n1   node 1: `eth0` 10.77.0.1/24 (the other veth end), `lo`
    kwnet-<run>-n2   node 2: 10.77.0.2
    kwnet-<run>-n3   node 3: 10.77.0.3
    kwnet-<run>-cl   the clients: 10.77.0.100

Every address lives only inside this run's namespaces: none of them has a
default route or any other interface, so nothing the tests send can leave
these hosts, and two runs can both use 10.77.0.0/24. The root namespace is
not touched (no interface, no route, no firewall rule).

Clients run in the client namespace: `client_side()` moves the calling
thread into it (setns(2) on that thread only, undone on exit). Threads and
processes started there (librdkafka's threads, a recorder thread, the CLI)
inherit it, so the tests use confluent-kafka in-process, with their
delivery callbacks, as they do on loopback. (The alternative, an address
for the root namespace on the bridge, would put a route to 10.77.0.0/24 in
the root namespace: it would collide between runs, and while a link is
down or after a crash, traffic for those addresses would follow the
default route out of the machine.)

Each node is `ip netns exec <ns> kraftwerk server --config node-N.properties`
(broker + controller): listeners on its own address (Kafka 9092,
controller 9093, replication 10092, HTTP 9080), `controller.quorum.voters`
over those addresses. `ip netns exec` also bind-mounts
/etc/netns/<ns>/hosts over /etc/hosts, which gives host names to the test
hosts (`hosts=` below).

Faults: `cut(n)` (its link down), `block(a, b)` (iptables drops inside a's
namespace, both directions, per peer address), `isolate_from_peers(n)`
(cut from the other nodes, still reachable by clients), `flap(n, ...)`,
`degrade(n, loss, delay)` (`tc ... netem` where the kernel has it, else
iptables' random drop plus a userspace NFQUEUE delayer, this file run as a
program), `heal_all()`.

Cleanup: `close()` (called from the fixtures' finally, from atexit and on
SIGTERM) kills the processes and deletes the namespaces (their veths and
the bridge go with them) and /etc/netns/<ns>. A run whose pytest was
killed is swept by the next one: namespaces named after a process that no
longer exists are emptied and deleted.

Needs root and iproute2's `ip`; `skip_reason()` says why not, for
pytest.skip. `block` and the NFQUEUE fallback need `iptables`
(`iptables_reason()`); either backend (nf_tables or legacy) works.
"""

import atexit
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from cluster_harness import release_dir

PREFIX = "kwnet"
SUBNET = "10.77.0"
CLIENT_ADDR = f"{SUBNET}.100"
KAFKA_PORT, CONTROLLER_PORT, HTTP_PORT = 9092, 9093, 9080
CLONE_NEWNET = 0x40000000
NFQUEUE_NUM = 7

_libc = ctypes.CDLL(None, use_errno=True)
# The machine's own network namespace, as this process started in it.
_HOME_NS = os.readlink("/proc/self/ns/net") if os.path.exists("/proc/self/ns/net") else None


def _run(*args, check=True, timeout=30):
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def setns(name_or_path: str) -> None:
    """Moves the calling thread into a network namespace (a name under
    /run/netns, or a path such as /proc/self/ns/net)."""
    path = name_or_path if name_or_path.startswith("/") else f"/run/netns/{name_or_path}"
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@contextmanager
def thread_in_netns(name: str):
    """The calling thread in namespace `name` for the block, then back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(name)
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
    finally:
        os.close(home)


def run_in_netns(name: str, fn, *args):
    """fn(*args) on a fresh thread inside namespace `name`; its result."""
    box = {}

    def body():
        try:
            setns(name)
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


_skip_cache = {}


def skip_reason():
    """None when namespaces, veth pairs and a bridge can be made here,
    else why not."""
    if "base" in _skip_cache:
        return _skip_cache["base"]
    reason = None
    if not sys.platform.startswith("linux"):
        reason = "network namespaces need Linux"
    elif os.geteuid() != 0:
        reason = f"network namespaces need root (running as uid {os.geteuid()})"
    elif not shutil.which("ip"):
        reason = "the `ip` tool (iproute2) is not installed"
    else:
        probe = f"{PREFIX}-probe{os.getpid()}"
        try:
            out = _run("ip", "netns", "add", probe, check=False)
            if out.returncode != 0:
                reason = f"`ip netns add` failed: {out.stderr.strip()}"
            else:
                out = _run("ip", "-n", probe, "link", "add", "b0", "type", "bridge", check=False)
                if out.returncode != 0:
                    reason = f"no Linux bridge in a namespace: {out.stderr.strip()}"
                else:
                    out = _run("ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
                               check=False)
                    if out.returncode != 0:
                        reason = f"no veth pairs: {out.stderr.strip()}"
        finally:
            _run("ip", "netns", "del", probe, check=False)
    _skip_cache["base"] = reason
    return reason


def iptables_reason():
    """None when iptables rules can be added inside a namespace, else why not."""
    if "iptables" in _skip_cache:
        return _skip_cache["iptables"]
    reason = skip_reason()
    if reason is None:
        if not shutil.which("iptables"):
            reason = "the `iptables` tool is not installed (Debian: apt-get install iptables)"
        else:
            probe = f"{PREFIX}-probe{os.getpid()}"
            try:
                _run("ip", "netns", "add", probe)
                out = _run("ip", "netns", "exec", probe, "iptables", "-w", "-A", "OUTPUT", "-d", "10.77.0.250",
                           "-j", "DROP", check=False)
                if out.returncode != 0:
                    reason = f"iptables rules could not be added: {out.stderr.strip()}"
            finally:
                _run("ip", "netns", "del", probe, check=False)
    _skip_cache["iptables"] = reason
    return reason


def netem_available():
    if "netem" not in _skip_cache:
        ok = False
        if skip_reason() is None and shutil.which("tc"):
            probe = f"{PREFIX}-probe{os.getpid()}"
            try:
                _run("ip", "netns", "add", probe)
                ok = _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                          "delay", "1ms", check=False).returncode == 0
            finally:
                _run("ip", "netns", "del", probe, check=False)
        _skip_cache["netem"] = ok
    return _skip_cache["netem"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_leftovers():
    """Deletes the namespaces of earlier runs whose process is gone (a
    pytest killed before its cleanup), after killing what runs in them."""
    out = _run("ip", "netns", "list", check=False)
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"^{PREFIX}-(\d+)-[0-9a-f]+-\w+$", name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        _delete_namespace(name)


def _delete_namespace(name):
    pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _run("ip", "netns", "del", name, check=False)
    shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


# --- A minimal Kafka Metadata (v7) request, to ask one node what it believes.

def _kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def ints(self):
        return [self.take(">i") for _ in range(self.take(">i"))]


def guard_not_root_namespace():
    """Raises unless the calling thread is in a namespace other than the
    machine's own: there, a test host's address would follow the default
    route out of the machine."""
    if os.readlink("/proc/thread-self/ns/net") == _HOME_NS:
        raise RuntimeError("refusing to dial a test host from the machine's own network namespace")


def metadata(address: str, topics, timeout_s: float = 1.0):
    """{"controller": id, "brokers": {id: "host:port"}, "partitions": {(topic, p):
    {"leader", "epoch", "isr", "replicas"}}} as the node at `address` sees
    it; `topics` None asks for every topic. The calling thread's namespace
    must reach it."""
    guard_not_root_namespace()
    host, port = address.rsplit(":", 1)
    if topics is None:
        body = struct.pack(">i", -1) + b"\x00"
    else:
        body = struct.pack(">i", len(topics)) + b"".join(_kstr(t) for t in topics) + b"\x00"
    request = struct.pack(">hhi", 3, 7, 1) + _kstr("netns-monitor") + body
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        r = _Reader(_recv_exact(s, size))
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    brokers = {}
    for _ in range(r.take(">i")):
        node = r.take(">i")
        h = r.string()
        p = r.take(">i")
        r.string()
        brokers[node] = f"{h}:{p}"
    r.string()
    controller = r.take(">i")
    partitions = {}
    for _ in range(r.take(">i")):
        r.take(">h")
        name = r.string()
        r.take(">b")
        for _ in range(r.take(">i")):
            r.take(">h")
            index, leader, epoch = r.take(">iii")
            replicas, isr, _offline = r.ints(), r.ints(), r.ints()
            partitions[(name, index)] = {"leader": leader, "epoch": epoch, "isr": isr, "replicas": replicas}
    return {"controller": controller, "brokers": brokers, "partitions": partitions}


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


# --- The cluster.

_live = []


def _close_all_live():
    for h in list(_live):
        h.close()


atexit.register(_close_all_live)


class NetnsCluster:
    """Three (by default) combined Kraftwerk nodes, each on its own test host."""

    def __init__(self, root: str, nodes: int = 3, extra: dict = None, hosts: dict = None):
        self.root = Path(root)
        self.run = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.ids = list(range(1, nodes + 1))
        self.addr = {n: f"{SUBNET}.{n}" for n in self.ids}
        self.ns = {n: f"{self.run}-n{n}" for n in self.ids}
        self.bridge_ns = f"{self.run}-br"
        self.client_ns = f"{self.run}-cl"
        self.hosts = hosts or {}
        self.procs = {}
        self.helpers = []  # NFQUEUE delayers and other helper processes
        self._made = []  # namespaces created, in order
        self._cut = set()
        self._blocked = set()  # (a, b): a drops b's packets
        self._flappers = []  # stop events of running `flap`s
        self._degraded = {}  # node -> ("netem", None) or ("nfqueue", delayer process)
        self._lock = threading.Lock()
        self._closed = False
        self._old_sigterm = None
        voters = ",".join(f"{n}@{self.addr[n]}:{CONTROLLER_PORT}" for n in self.ids)
        for n in self.ids:
            a = self.addr[n]
            props = {
                "node.id": n,
                "process.roles": "broker,controller",
                "listeners": f"PLAINTEXT://{a}:{KAFKA_PORT},CONTROLLER://{a}:{CONTROLLER_PORT}",
                "advertised.listeners": f"PLAINTEXT://{a}:{KAFKA_PORT}",
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": voters,
                "log.dirs": str(self.root / f"node-{n}"),
                "kraftwerk.http.listener": f"{a}:{HTTP_PORT}",
            }
            props.update(extra or {})
            (self.root / f"node-{n}.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    # -- network

    def create_network(self):
        sweep_leftovers()
        _live.append(self)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            self._old_sigterm = signal.SIG_DFL
            signal.signal(signal.SIGTERM, self._on_sigterm)
        self._add_ns(self.bridge_ns)
        br = ["ip", "-n", self.bridge_ns]
        _run(*br, "link", "set", "lo", "up")
        _run(*br, "link", "add", "br0", "type", "bridge")
        _run(*br, "link", "set", "br0", "up")
        members = [(f"n{n}", self.ns[n], self.addr[n]) for n in self.ids] + [("cl", self.client_ns, CLIENT_ADDR)]
        for port, ns, addr in members:
            self._add_ns(ns)
            _run(*br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run(*br, "link", "set", port, "master", "br0")
            _run(*br, "link", "set", port, "up")
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            if self.hosts:
                d = Path(f"/etc/netns/{ns}")
                d.mkdir(parents=True, exist_ok=True)
                lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
                lines += [f"{ip} {name}" for name, ip in self.hosts.items()]
                (d / "hosts").write_text("\n".join(lines) + "\n")

    def _add_ns(self, name):
        _run("ip", "netns", "add", name)
        self._made.append(name)

    def _on_sigterm(self, signum, frame):
        self.close()
        raise SystemExit(128 + signum)

    @contextmanager
    def client_side(self):
        """The calling thread (and what it starts) in the client namespace."""
        with thread_in_netns(self.client_ns):
            yield

    def in_client(self, fn, *args):
        return run_in_netns(self.client_ns, fn, *args)

    # -- processes

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.addr[n]}:{KAFKA_PORT}" for n in self.ids)

    def bootstrap_of(self, n) -> str:
        return f"{self.addr[n]}:{KAFKA_PORT}"

    @staticmethod
    def _env():
        return {k: v for k, v in os.environ.items() if not k.startswith("KRAFTWERK_")}

    def spawn(self, n, argv=None, env=None, log_name=None, cwd=None):
        """`argv` (default: kraftwerk server --config node-N.properties) in n's namespace."""
        from conftest import kraftwerk_bin
        argv = argv or [kraftwerk_bin(), "server", "--config", str(self.root / f"node-{n}.properties")]
        log = open(self.root / (log_name or f"node-{n}.log"), "ab")
        # `ip netns exec` execs the command: the Popen's pid is kraftwerk's.
        self.procs[n] = subprocess.Popen(["ip", "netns", "exec", self.ns[n], *argv], stdout=log,
                                         stderr=subprocess.STDOUT, env=env if env is not None else self._env(),
                                         cwd=cwd)
        log.close()
        return self.procs[n]

    def wait_listening(self, n, timeout_s=30):
        proc = self.procs[n]

        def probe():
            guard_not_root_namespace()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"node {n} exited with {proc.returncode}:\n{self.log_tail(n)}")
                try:
                    with socket.create_connection((self.addr[n], KAFKA_PORT), timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.1)
            raise TimeoutError(f"node {n} did not listen within {timeout_s}s:\n{self.log_tail(n)}")
        run_in_netns(self.client_ns, probe)

    def start(self, n):
        self.spawn(n)
        self.wait_listening(n)

    def start_all(self, timeout_s=45):
        for n in self.ids:
            self.spawn(n)
        for n in self.ids:
            self.wait_listening(n)
        self.wait_until(self.all_unfenced, timeout_s, "every broker registered and unfenced")

    def kill(self, n):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.kill()
            p.wait(timeout=10)

    def terminate(self, n, timeout=45):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=timeout)

    def log_tail(self, n, lines=30):
        try:
            return "\n".join((self.root / f"node-{n}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cli(self, *args, bootstrap=None, check=True, timeout=60):
        """The kraftwerk CLI, run in the client namespace."""
        from conftest import kraftwerk_bin
        out = subprocess.run(["ip", "netns", "exec", self.client_ns, kraftwerk_bin(), *args,
                              "--bootstrap-server", bootstrap or self.bootstrap],
                             capture_output=True, text=True, timeout=timeout, env=self._env())
        if check and out.returncode != 0:
            raise RuntimeError(f"kraftwerk {' '.join(args)} failed: {out.stderr}")
        return out

    def cluster_info(self, n):
        return json.loads(self.cli("cluster", "describe", "--output", "json",
                                   bootstrap=self.bootstrap_of(n)).stdout)

    def all_unfenced(self):
        for n in self.ids:
            try:
                brokers = self.cluster_info(n)["brokers"]
            except Exception:
                return False
            if len(brokers) != len(self.ids) or any(b["fenced"] for b in brokers):
                return False
        return True

    def views(self, topics, nodes=None, timeout_s=1.0):
        """{node: metadata(...)} from every node that answers (client side)."""
        def ask():
            out = {}
            for n in nodes or self.ids:
                try:
                    out[n] = metadata(self.bootstrap_of(n), topics, timeout_s)
                except (OSError, struct.error, ConnectionError):
                    pass
            return out
        return run_in_netns(self.client_ns, ask)

    @staticmethod
    def wait_until(cond, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.25)
        raise TimeoutError(f"timed out after {timeout_s}s waiting for: {what}")

    # -- faults

    def cut(self, n):
        """n's link down (its bridge port): nothing reaches it, it reaches nothing."""
        _run("ip", "-n", self.bridge_ns, "link", "set", f"n{n}", "down")
        with self._lock:
            self._cut.add(n)

    def restore(self, n):
        _run("ip", "-n", self.bridge_ns, "link", "set", f"n{n}", "up")
        with self._lock:
            self._cut.discard(n)

    def _iptables(self, n, *rule, check=True):
        return _run("ip", "netns", "exec", self.ns[n], "iptables", "-w", *rule, check=check)

    def block(self, a, b):
        """Drops every packet between nodes a and b (iptables in a's namespace)."""
        reason = iptables_reason()
        if reason:
            raise RuntimeError(reason)
        if (a, b) in self._blocked:
            return
        self._iptables(a, "-I", "INPUT", "-s", self.addr[b], "-j", "DROP")
        self._iptables(a, "-I", "OUTPUT", "-d", self.addr[b], "-j", "DROP")
        with self._lock:
            self._blocked.add((a, b))

    def unblock(self, a, b):
        for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
            for _ in range(10):
                if self._iptables(a, "-D", chain, flag, self.addr[b], "-j", "DROP", check=False).returncode != 0:
                    break
        with self._lock:
            self._blocked.discard((a, b))

    def isolate_from_peers(self, n):
        """n cut off from every other node; clients still reach it."""
        for m in self.ids:
            if m != n:
                self.block(n, m)

    def flap(self, n, down_s=1.0, up_s=1.0, duration_s=10.0):
        """Starts toggling n's link (down `down_s`, up `up_s`) for `duration_s`;
        returns the thread (join() it: the link is up afterwards)."""
        stop = threading.Event()
        self._flappers.append(stop)

        def body():
            end = time.monotonic() + duration_s
            try:
                while time.monotonic() < end and not stop.is_set() and not self._closed:
                    self.cut(n)
                    stop.wait(down_s)
                    self.restore(n)
                    stop.wait(up_s)
            finally:
                if not self._closed:
                    self.restore(n)
        t = threading.Thread(target=body, daemon=True)
        t.start()
        return t

    def degrade(self, n, loss_pct=20, delay_ms=100):
        """Packet loss and delay on n's link, both directions: what
        `tc qdisc add dev eth0 root netem loss 20% delay 100ms` does on n's
        interface and on its bridge port. Without netem in the kernel:
        iptables in n's namespace drops `loss_pct` % of the packets through
        eth0 at random (`-m statistic`) and queues the rest (`-j NFQUEUE`) to
        a userspace delayer that lets each through `delay_ms` later. Returns
        which of the two it used."""
        if netem_available():
            args = ["root", "netem", "loss", f"{loss_pct}%", "delay", f"{delay_ms}ms"]
            _run("ip", "netns", "exec", self.ns[n], "tc", "qdisc", "add", "dev", "eth0", *args)
            _run("ip", "netns", "exec", self.bridge_ns, "tc", "qdisc", "add", "dev", f"n{n}", *args)
            self._degraded[n] = ("netem", None)
            return "tc netem"
        reason = iptables_reason()
        if reason:
            raise RuntimeError(f"no netem qdisc in this kernel, and {reason}")
        log = self.root / f"delayer-{n}.log"
        with open(log, "ab") as err:
            helper = subprocess.Popen(["ip", "netns", "exec", self.ns[n], sys.executable, __file__, "nfqueue-delay",
                                       "--queue", str(NFQUEUE_NUM), "--delay-ms", str(delay_ms)],
                                      stdout=subprocess.PIPE, stderr=err, text=True)
        self.helpers.append(helper)
        ready = helper.stdout.readline().strip()
        if ready != "ready":
            helper.kill()
            raise RuntimeError(f"the NFQUEUE delayer did not start: {log.read_text(errors='replace')}")
        self._degraded[n] = ("nfqueue", helper)
        for rule in self._degrade_rules(loss_pct):
            self._iptables(n, "-A", *rule)
        return "iptables random drop + NFQUEUE delayer"

    @staticmethod
    def _degrade_rules(loss_pct):
        out = []
        for chain, direction in (("OUTPUT", "-o"), ("INPUT", "-i")):
            out.append([chain, direction, "eth0", "-m", "statistic", "--mode", "random", "--probability",
                        f"{loss_pct / 100:.2f}", "-j", "DROP"])
            # --queue-bypass: packets pass when no delayer listens.
            out.append([chain, direction, "eth0", "-j", "NFQUEUE", "--queue-num", str(NFQUEUE_NUM),
                        "--queue-bypass"])
        return out

    def undegrade(self, n):
        how, helper = self._degraded.pop(n, (None, None))
        if how == "netem":
            _run("ip", "netns", "exec", self.ns[n], "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
            _run("ip", "netns", "exec", self.bridge_ns, "tc", "qdisc", "del", "dev", f"n{n}", "root", check=False)
        elif how == "nfqueue":
            for chain in ("OUTPUT", "INPUT"):
                self._remove_degrade_rules(n, chain)
            helper.terminate()  # it lets every packet it still holds through
            try:
                helper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                helper.kill()

    def _remove_degrade_rules(self, n, chain):
        """Deletes the statistic and NFQUEUE rules of `degrade` from chain,
        leaving `block`'s rules alone."""
        listing = self._iptables(n, "-S", chain, check=False).stdout.splitlines()
        for line in listing:
            if line.startswith(f"-A {chain} ") and ("NFQUEUE" in line or "statistic" in line):
                self._iptables(n, "-D", *line.split()[1:], check=False)

    def heal_all(self):
        for stop in self._flappers:
            stop.set()
        self._flappers.clear()
        for n in list(self._degraded):
            self.undegrade(n)
        for a, b in list(self._blocked):
            self.unblock(a, b)
        for n in list(self._cut):
            self.restore(n)

    def cut_off(self):
        """Nodes that cannot reach a majority of the others right now."""
        with self._lock:
            out = set(self._cut)
            for n in self.ids:
                reach = [m for m in self.ids if m != n and m not in self._cut
                         and (n, m) not in self._blocked and (m, n) not in self._blocked]
                if len(reach) + 1 <= len(self.ids) // 2:
                    out.add(n)
            return out

    def publish(self, ports):
        """Docker's published ports, on the client test host: for each
        {client_port: (node, port)} a userspace TCP forwarder (what
        docker-proxy is) listens on 127.0.0.1:client_port in the client
        namespace and connects to the node's address and port."""
        args = [f"127.0.0.1:{cp}={self.addr[n]}:{p}" for cp, (n, p) in ports.items()]
        helper = subprocess.Popen(["ip", "netns", "exec", self.client_ns, sys.executable, __file__, "forward", *args],
                                  stdout=subprocess.PIPE, stderr=open(self.root / "forwarder.log", "ab"), text=True)
        self.helpers.append(helper)
        if helper.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the port forwarder did not start: "
                               f"{(self.root / 'forwarder.log').read_text(errors='replace')}")

    # -- cleanup

    def close(self):
        if self._closed:
            return
        self._closed = True
        for p in list(self.procs.values()) + self.helpers:
            try:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=10)
            except Exception:
                pass
        for name in reversed(self._made):
            _delete_namespace(name)
        try:
            os.rmdir("/etc/netns")  # only when empty: other runs may use it
        except OSError:
            pass
        if self in _live:
            _live.remove(self)
        if self._old_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._old_sigterm)
            except ValueError:
                pass


@contextmanager
def netns_cluster(prefix="kraftwerk-netns-", start=True, **kwargs):
    """A NetnsCluster with its network made (and started, unless `start` is
    False), everything removed afterwards whatever happened. With
    KRAFTWERK_KEEP_DIRS set, the data directory is kept and printed."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    c = NetnsCluster(tmp.name, **kwargs)
    try:
        c.create_network()
        if start:
            c.start_all()
        yield c
    finally:
        c.close()
        release_dir(tmp)


# --- The NFQUEUE delayer: `python3 netns_harness.py nfqueue-delay --queue N --delay-ms D`,
# run inside a node's namespace. Every packet queued to N (by the iptables
# rules of `degrade`) is let through D ms after it arrived, in order.

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1


def _nla(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\x00" * ((4 - length % 4) % 4)


def _nfq_msg(msg_type, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


def nfqueue_delay(queue: int, delay_ms: int):
    from collections import deque
    import select

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    try:
        sock.setsockopt(270, 5, 1)  # SOL_NETLINK, NETLINK_NO_ENOBUFS
    except OSError:
        pass
    sock.bind((0, 0))

    def config(attrs, seq):
        sock.send(_nfq_msg(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        data = sock.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", data)
        if kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", data, 16)[0]
            if err != 0:
                raise OSError(-err, f"nfqueue config: {os.strerror(-err)}")

    config([_nla(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, socket.htons(socket.AF_UNSPEC)))], 1)
    config([_nla(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))], 2)
    config([_nla(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536))], 3)
    config([_nla(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN)),
            _nla(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_FAIL_OPEN))], 4)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    pending = deque()  # (release time, packet id), in arrival order
    delay = delay_ms / 1000.0
    print("ready", flush=True)

    def release(upto):
        sock.send(_nfq_msg(NFQNL_MSG_VERDICT_BATCH, queue,
                           [_nla(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, upto))]))

    while not stop:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 0.5
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if readable:
            while True:
                try:
                    data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                now = time.monotonic()
                pos = 0
                while pos + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, pos)
                    if length < 16:
                        break
                    if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        apos = pos + 20
                        while apos + 4 <= pos + length:
                            alen, atype = struct.unpack_from("=HH", data, apos)
                            if alen < 4:
                                break
                            if atype & 0x3FFF == NFQA_PACKET_HDR:
                                pending.append((now + delay, struct.unpack_from(">I", data, apos + 4)[0]))
                            apos += (alen + 3) & ~3
                    pos += (length + 3) & ~3
        now = time.monotonic()
        upto = None
        while pending and pending[0][0] <= now:
            upto = pending.popleft()[1]
        if upto is not None:
            release(upto)
    if pending:
        release(pending[-1][1])


def forward(mappings):
    """`python3 netns_harness.py forward LISTEN=TARGET ...` (host:port each):
    copies every connection accepted on LISTEN to a new one to TARGET."""
    import asyncio

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer, target):
        try:
            target_reader, target_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, target_writer), pipe(target_reader, writer))

    async def main():
        servers = []
        for mapping in mappings:
            listen, target = mapping.split("=")
            host, port = listen.rsplit(":", 1)
            t_host, t_port = target.rsplit(":", 1)
            servers.append(await asyncio.start_server(
                lambda r, w, t=(t_host, int(t_port)): handle(r, w, t), host, int(port)))
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["nfqueue-delay", "forward"])
    parser.add_argument("mappings", nargs="*")
    parser.add_argument("--queue", type=int, default=NFQUEUE_NUM)
    parser.add_argument("--delay-ms", type=int, default=100)
    args = parser.parse_args()
    if args.mode == "forward":
        forward(args.mappings)
    else:
        nfqueue_delay(args.queue, args.delay_ms)
