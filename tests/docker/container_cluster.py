"""A Kraftwerk cluster of containers for the container chaos suite: the
three combined nodes of deploy/docker-compose.yml under a compose project of
its own, driven with docker-compose and the docker CLI (kill, pause,
network disconnect), plus a consumer group that records how it rebalances.

Every call that waits has a bound. `ComposeCluster.down()` removes every
container, network and volume of the project, also after a failure.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
CHAOS_OVERRIDE = Path(__file__).resolve().parent / "compose.chaos.yml"
BUILD_IMAGE = ROOT / "deploy" / "build-image.sh"
DEFAULT_IMAGE = "kraftwerk:local"
SKIP_REASON = "no Docker engine answers: container tests skipped"

# Node n publishes its host listener on this port (deploy/docker-compose.yml).
HOST_PORTS = {1: 19092, 2: 19093, 3: 19094}
BOOTSTRAP = ",".join(f"localhost:{p}" for p in HOST_PORTS.values())

COMMAND_TIMEOUT_S = 120
IMAGE_BUILD_TIMEOUT_S = 3600


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def compose_command():
    """`docker-compose` (v1), else `docker compose` (v2), else None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return ["docker", "compose"]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def skip_reason():
    """Why the container tests cannot run here, or None."""
    if not docker_answers():
        return SKIP_REASON
    if compose_command() is None:
        return "neither docker-compose nor 'docker compose' is installed: container tests skipped"
    return None


def run(cmd, timeout=COMMAND_TIMEOUT_S, check=True, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def image_exists(image: str) -> bool:
    return run(["docker", "image", "inspect", image], check=False).returncode == 0


def ensure_image() -> str:
    """`$KRAFTWERK_IMAGE`, or kraftwerk:local, built by deploy/build-image.sh
    (from `$KRAFTWERK_BIN` or target/debug/kraftwerk when one exists) if it
    is not there yet."""
    image = os.environ.get("KRAFTWERK_IMAGE", DEFAULT_IMAGE)
    if image_exists(image):
        return image
    cmd = [str(BUILD_IMAGE), "--tag", image]
    binary = os.environ.get("KRAFTWERK_BIN") or str(ROOT / "target" / "debug" / "kraftwerk")
    if Path(binary).exists():
        cmd += ["--binary", binary]
    print(f"building {image}: {' '.join(cmd)}")
    out = subprocess.run(cmd, timeout=IMAGE_BUILD_TIMEOUT_S)
    if out.returncode != 0 or not image_exists(image):
        raise RuntimeError(f"building {image} failed")
    return image


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ports_free(timeout_s=60):
    """The cluster's host ports are free. The proxies of a project that was
    just taken down can hold them for a moment; anything holding them longer
    is another cluster."""
    deadline = time.monotonic() + timeout_s
    while True:
        taken = [p for p in HOST_PORTS.values() if port_taken(p)]
        if not taken:
            return
        if time.monotonic() >= deadline:
            holders = run(["ss", "-ltnp"], check=False).stdout if shutil.which("ss") else ""
            holders = "\n".join(line for line in holders.splitlines() if any(f":{p} " in line for p in taken))
            raise RuntimeError(
                f"ports {taken} on this host are taken; the Compose cluster publishes 19092-19094 "
                f"(another Kraftwerk compose cluster? see `docker ps`)\n{holders}")
        time.sleep(0.5)


def wait_until(cond, timeout_s, what, interval_s=0.3):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception as e:  # a node being killed or not ready yet
            last = e
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for: {what}" + (f" (last error: {last})" if last else ""))


class ComposeCluster:
    """Three combined nodes, services kafka-1..3, node ids 1..3."""

    NODES = (1, 2, 3)

    def __init__(self, image: str, settings: dict, chaos_override: bool = True, compose_file: Path = COMPOSE_FILE):
        """`chaos_override` lays compose.chaos.yml over the file (Docker
        does not restart what a scenario kills); without it the project is
        the Compose file exactly as a user runs it."""
        compose = compose_command()
        if compose is None:
            raise RuntimeError("neither docker-compose nor 'docker compose' is installed")
        self.project = "kwchaos" + uuid.uuid4().hex[:8]
        self.env = dict(os.environ)
        self.env["KRAFTWERK_IMAGE"] = image
        self.env.update({k: str(v) for k, v in settings.items()})
        files = ["-f", str(compose_file)] + (["-f", str(CHAOS_OVERRIDE)] if chaos_override else [])
        self.base = compose + ["-p", self.project, *files]
        self._ids = {}

    # --- compose and docker -------------------------------------------------

    def compose(self, *args, timeout=COMMAND_TIMEOUT_S, check=True):
        return run([*self.base, *args], timeout=timeout, check=check, env=self.env)

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def cid(self, n: int) -> str:
        if n not in self._ids:
            cid = self.compose("ps", "-q", f"kafka-{n}").stdout.strip()
            if not cid:
                raise RuntimeError(f"kafka-{n} has no container")
            self._ids[n] = cid
        return self._ids[n]

    def up(self, timeout_s=120):
        wait_ports_free()
        self.compose("up", "-d", timeout=300)
        wait_until(self.all_unfenced, timeout_s, "every broker registered and unfenced", interval_s=1.0)

    def down(self):
        """Removes the project's containers, network and volumes, whatever
        state they are in (paused, disconnected, stopped)."""
        for n in self.NODES:
            try:
                run(["docker", "unpause", self.cid(n)], check=False, timeout=30)
            except Exception:
                pass
        self.compose("down", "-v", "--remove-orphans", "-t", "20", timeout=300, check=False)
        label = f"label=com.docker.compose.project={self.project}"
        for kind, listing in (("container", ["docker", "ps", "-aq", "--filter", label]),
                              ("network", ["docker", "network", "ls", "-q", "--filter", label]),
                              ("volume", ["docker", "volume", "ls", "-q", "--filter", label])):
            left = run(listing, check=False).stdout.split()
            if left:
                print(f"removing leftover {kind}s of {self.project}: {left}")
                rm = ["docker", "rm", "-f", "-v"] if kind == "container" else ["docker", kind, "rm"]
                run(rm + left, check=False)

    def kill(self, n: int):
        run(["docker", "kill", self.cid(n)])

    def start(self, n: int):
        run(["docker", "start", self.cid(n)])

    def stop(self, n: int, grace_s: int = 60):
        """`docker stop` (SIGTERM, then SIGKILL after the grace period):
        (exit code, seconds it took)."""
        started = time.monotonic()
        run(["docker", "stop", "-t", str(grace_s), self.cid(n)], timeout=grace_s + 60)
        took = time.monotonic() - started
        code = int(run(["docker", "inspect", "--format", "{{.State.ExitCode}}", self.cid(n)]).stdout.strip())
        return code, took

    def pause(self, n: int):
        run(["docker", "pause", self.cid(n)])

    def unpause(self, n: int):
        run(["docker", "unpause", self.cid(n)])

    def disconnect(self, n: int):
        run(["docker", "network", "disconnect", self.network, self.cid(n)])

    def connect(self, n: int):
        # The alias is what the other nodes resolve (kafka-N); it does not
        # come back by itself.
        run(["docker", "network", "connect", "--alias", f"kafka-{n}", self.network, self.cid(n)])

    def exec(self, n: int, *args, timeout=60, check=True):
        return run(["docker", "exec", self.cid(n), "/usr/local/bin/kraftwerk", *args], timeout=timeout, check=check)

    def logs(self, n: int, tail: int = 60) -> str:
        out = run(["docker", "logs", "--tail", str(tail), self.cid(n)], check=False)
        return out.stdout + out.stderr

    def save_logs(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for n in self.NODES:
            out = run(["docker", "logs", self.cid(n)], check=False, timeout=60)
            (directory / f"kafka-{n}.log").write_text(out.stdout + out.stderr)
        return directory

    def all_logs(self, tail: int = 60) -> str:
        return "\n".join(f"--- kafka-{n} ---\n{self.logs(n, tail)}" for n in self.NODES)

    # --- the cluster as one node sees it ------------------------------------

    def cli(self, n: int, *args, timeout=30, check=True):
        """A kraftwerk client command run inside node n against itself."""
        return self.exec(n, *args, "--bootstrap-server", f"127.0.0.1:{HOST_PORTS[n]}", timeout=timeout, check=check)

    def cluster_info(self, n: int) -> dict:
        return json.loads(self.cli(n, "cluster", "describe", "--output", "json").stdout)

    def all_unfenced(self, nodes=NODES) -> bool:
        for n in nodes:
            brokers = self.cluster_info(n)["brokers"]
            if len(brokers) != len(self.NODES) or any(b["fenced"] for b in brokers):
                return False
        return True

    def describe(self, topic: str, avoid=()) -> dict:
        """The topic as the first answering node outside `avoid` sees it."""
        last = None
        for n in self.NODES:
            if n in avoid:
                continue
            try:
                return json.loads(self.cli(n, "topics", "describe", "--topic", topic, "--output", "json",
                                           timeout=15).stdout)[0]
            except Exception as e:
                last = e
        raise RuntimeError(f"no node described {topic}: {last}")

    def active_controller(self, avoid=()) -> int:
        for n in self.NODES:
            if n not in avoid:
                try:
                    return int(self.cluster_info(n)["active_controller"])
                except Exception:
                    continue
        raise RuntimeError("no node answered DescribeCluster")

    def create_topic(self, topic: str, partitions: int, rf: int = 3, min_isr: int = 2, timeout_s=30):
        def created():
            out = self.cli(1, "topics", "create", "--topic", topic, "--partitions", str(partitions),
                           "--replication-factor", str(rf), "--config", f"min.insync.replicas={min_isr}",
                           check=False)
            return out.returncode == 0 or "already exists" in out.stderr
        wait_until(created, timeout_s, f"topic {topic} created", interval_s=1.0)
        wait_until(lambda: all(p["leader"] >= 0 for p in self.describe(topic)["partitions"]), timeout_s,
                   f"leaders for {topic}")

    def leader_counts(self, topic: str, avoid=()) -> dict:
        counts = {n: 0 for n in self.NODES}
        for p in self.describe(topic, avoid)["partitions"]:
            if p["leader"] in counts:
                counts[p["leader"]] += 1
        return counts

    def most_leading(self, topic: str) -> int:
        counts = self.leader_counts(topic)
        return max(counts, key=lambda n: (counts[n], -n))

    def view(self, n: int, topic: str) -> dict:
        """Node n's own view of the topic: {partition: (leader, leader epoch, ISR)}."""
        parts = json.loads(self.cli(n, "topics", "describe", "--topic", topic, "--output", "json",
                                    timeout=15).stdout)[0]["partitions"]
        return {p["partition"]: (p["leader"], p["leader_epoch"], tuple(sorted(p["isr"])), len(p["replicas"]))
                for p in parts}

    def agreed_view(self, topic: str):
        """The topic as every node sees it, or None while they disagree (a
        node that was cut off or paused serves its old image until it has
        caught up with the quorum)."""
        views = [self.view(n, topic) for n in self.NODES]
        return views[0] if all(v == views[0] for v in views[1:]) else None

    def full_isr(self, topic: str) -> bool:
        """Every node sees the same leaders and every replica in the ISR."""
        view = self.agreed_view(topic)
        return view is not None and all(leader >= 0 and len(isr) == replicas
                                        for leader, _, isr, replicas in view.values())

    def wait_full_isr(self, topics, timeout_s=90):
        for t in topics:
            wait_until(lambda: self.full_isr(t), timeout_s, f"every replica of {t} back in the ISR, as every node sees it",
                       interval_s=0.5)

    def wait_leaders_moved(self, topic: str, victim: int, timeout_s: float) -> float:
        """Seconds until, as the other nodes see it, every partition of
        `topic` has a live leader other than `victim`."""
        started = time.monotonic()

        def moved():
            parts = self.describe(topic, avoid=(victim,))["partitions"]
            return all(p["leader"] not in (victim, -1) for p in parts)
        wait_until(moved, timeout_s, f"leadership of {topic} moved away from node {victim}", interval_s=0.2)
        return time.monotonic() - started

    def wait_back(self, n: int, timeout_s=90):
        """Node n answers again and sees every broker unfenced."""
        wait_until(lambda: self.all_unfenced(nodes=(n,)), timeout_s, f"node {n} back and every broker unfenced",
                   interval_s=0.5)

    def partition_files(self, n: int, topic: str, partition: int) -> bytes:
        """The files of one partition directory on node n (a tar stream from
        `docker cp`), for looking for record payloads in its segments."""
        out = subprocess.run(["docker", "cp", f"{self.cid(n)}:/data/{topic}-{partition}", "-"],
                             capture_output=True, timeout=COMMAND_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"docker cp of {topic}-{partition} from kafka-{n} failed: {out.stderr.decode()}")
        return out.stdout


class GroupWatch:
    """Consumers of one group in threads, recording when they consume and
    when they are assigned partitions."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, members: int = 2, group: str = None):
        from confluent_kafka import Consumer
        self.topic = topic
        self.partitions = partitions
        self.group = group or f"chaos-group-{uuid.uuid4().hex[:6]}"
        self.consumed_at = []  # monotonic times of consumed records, all members
        self.assigned = []  # (monotonic time, member, partitions)
        self.errors = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumers = []
        self._threads = []
        for m in range(members):
            consumer = Consumer({
                "bootstrap.servers": bootstrap,
                "group.id": self.group,
                "client.id": f"chaos-member-{m}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 120000,
                "topic.metadata.refresh.interval.ms": 1000,
            })
            self._consumers.append(consumer)
            self._threads.append(threading.Thread(target=self._loop, args=(m, consumer), daemon=True))

    def _loop(self, member, consumer):
        def on_assign(c, partitions):
            with self._lock:
                self.assigned.append((time.monotonic(), member, sorted(p.partition for p in partitions)))

        consumer.subscribe([self.topic], on_assign=on_assign)
        while not self._stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                with self._lock:
                    self.errors.append(str(msg.error()))
                continue
            with self._lock:
                self.consumed_at.append(time.monotonic())

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def formed_at(self) -> float:
        """When every member held partitions and together all of them, by
        the first assignment that made it so."""
        latest = {}
        with self._lock:
            for t, member, parts in self.assigned:
                latest[member] = parts
                if (len(latest) == len(self._consumers) and all(latest.values())
                        and len({p for ps in latest.values() for p in ps}) == self.partitions):
                    return t
        raise RuntimeError(f"group {self.group} never spread all partitions over all members")

    def wait_assigned(self, timeout_s=60):
        """Every member holds partitions, all partitions are held, records flow."""
        def formed():
            self.formed_at()
            return len(self.consumed_at) > 0
        wait_until(formed, timeout_s, f"group {self.group} formed by all members and consuming")

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(30)
        closers = [threading.Thread(target=c.close, daemon=True) for c in self._consumers]
        for t in closers:
            t.start()
        for t in closers:
            t.join(30)

    def figures(self, events, window_s: float = 30.0) -> dict:
        """Per fault: the longest pause in the group's consumption from one
        second before it to `window_s` after (or to the next fault), and,
        when the group was assigned partitions anew in that window, how long
        after the fault the last assignment came (the rebalance time)."""
        with self._lock:
            consumed = sorted(self.consumed_at)
            assigned = list(self.assigned)
        pauses, rebalances = [], []
        ordered = sorted(events)
        for i, t in enumerate(ordered):
            # A window ends at the next fault at the latest.
            end = min(t + window_s, ordered[i + 1]) if i + 1 < len(ordered) else t + window_s
            inside = [x for x in consumed if t - 1.0 <= x <= end]
            if len(inside) >= 2:
                pauses.append(max(b - a for a, b in zip(inside, inside[1:])))
            after = [a for a, _, _ in assigned if t < a <= end]
            if after:
                rebalances.append(max(after) - t)
        return {
            "consumer_pause_s": summarize(pauses),
            "rebalances": len(rebalances),
            "rebalance_s": summarize(rebalances),
            "consumed": len(consumed),
        }


def summarize(values):
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}
