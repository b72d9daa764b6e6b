"""franz-go's own kgo integration tests (from the Go module proxy, run by
tests/go/franz-go.sh) against a three-node Kraftwerk cluster. Every test in
tests/go/PASSING must pass; the file says what is left out and why."""

import re
import subprocess
import time
from pathlib import Path

import pytest

from cluster_harness import running_cluster
from conftest import ROOT

RUNNER = ROOT / "tests" / "go" / "franz-go.sh"
PASSING = ROOT / "tests" / "go" / "PASSING"


def expected_passing():
    return {line.strip() for line in PASSING.read_text().splitlines() if line.strip() and not line.startswith("#")}


def run_suite(bootstrap, rf, log, during=None):
    """Runs the kgo tests against `bootstrap`; `during(proc)` runs beside
    them (for example to kill a broker). Returns go test's output."""
    proc = subprocess.Popen([str(RUNNER), "--seeds", bootstrap, "--rf", str(rf), "--records", "10000",
                             "--timeout", "15m", "--out", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if during:
        during(proc)
    out, _ = proc.communicate(timeout=1200)
    return log.read_text(errors="replace") if log.exists() else out


def messages_by_test(output):
    """test name -> the messages its lines printed (`    x_test.go:N: ...`)."""
    messages, current = {}, None
    for line in output.splitlines():
        m = re.match(r"^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)", line)
        if m:
            current = m.group(1)
            continue
        if line.startswith("==="):
            current = None
            continue
        m = re.match(r"^\s{4}\w+_test\.go:\d+: (.*)$", line)
        if m and current:
            messages.setdefault(current, []).append(m.group(1))
    return messages


def only_refused_by(messages, addr):
    """Whether a failed test's messages say nothing but that the killed
    broker at `addr` refused a connection (the client reports the dial
    error of a group session whose coordinator was just killed, and
    retries; Kafka's coordinator dies the same way until it is fenced)."""
    for msg in messages:
        if "completed in" in msg or "deleting" in msg.lower():
            continue
        errs = re.match(r"poll got unexpected errs: \[(.*)\]$", msg)
        if not errs:
            return False
        parts = re.findall(r"\{([^}]*)\}", errs.group(1))
        if not parts or not all(f"dial tcp {addr}: connect: connection refused" in e for e in parts):
            return False
    return True


def check(output, killed_addr=None):
    passed = set(re.findall(r"^--- PASS: (\S+)", output, re.M))
    failed = set(re.findall(r"^\s*--- FAIL: (\S+)", output, re.M))
    if killed_addr:
        messages = messages_by_test(output)
        # A parent fails with its subtests; judge the leaves.
        leaves = {t for t in failed if not any(o.startswith(t + "/") for o in failed)}
        refused = {t for t in leaves if only_refused_by(messages.get(t, []), killed_addr)}
        if refused and refused == leaves:
            print(f"franz-go tests that saw only the killed broker ({killed_addr}) refuse a connection: "
                  f"{sorted(refused)}")
            passed |= failed
            failed = set()
    missing = expected_passing() - passed
    assert not missing, (f"franz-go tests that passed before and did not now: {sorted(missing)}; "
                         f"failed: {sorted(failed)}\n{output[-5000:]}")
    assert not failed, f"franz-go tests failed: {sorted(failed)}\n{output[-5000:]}"


def require_franz_go():
    listing = subprocess.run([str(RUNNER), "--list"], capture_output=True, text=True, timeout=900)
    if listing.returncode == 3:
        pytest.skip(f"franz-go: {listing.stdout.strip()}")
    assert listing.returncode == 0, listing.stdout + listing.stderr


def test_franz_go_kgo_suite_on_one_node(broker, tmp_path):
    require_franz_go()
    check(run_suite(broker.bootstrap, 1, tmp_path / "go-test.log"))


def test_franz_go_kgo_suite_on_three_nodes_with_a_broker_killed(tmp_path):
    """Three nodes; 20 s after the first test starts, a broker that is not
    the active controller is killed, and started again 15 s later. The
    suite's topics get replication factor 2 here: with one broker of three
    down, creating a factor-3 topic is refused (INVALID_REPLICATION_FACTOR,
    as Kafka refuses it), and the suite creates topics all along."""
    require_franz_go()
    with running_cluster("kraftwerk-franz-go-", extra={"broker.session.timeout.ms": 4000,
                                                      "broker.heartbeat.interval.ms": 1000}) as cluster:
        def kill_one(proc):
            victim = next(n for n in (1, 2, 3) if n != cluster.cluster_info()["active_controller"])
            log = tmp_path / "go-test.log"
            started = time.monotonic() + 600  # the tests are compiled first
            while proc.poll() is None and time.monotonic() < started:
                if log.exists() and "=== RUN" in log.read_text(errors="replace"):
                    break
                time.sleep(0.5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            killed_mid_run.append(proc.poll() is None)
            killed_mid_run_victim.append(victim)
            cluster.kill(victim)
            time.sleep(15)
            cluster.start(victim)

        killed_mid_run, killed_mid_run_victim = [], []
        output = run_suite(cluster.bootstrap, 2, tmp_path / "go-test.log", during=kill_one)
        assert killed_mid_run == [True], "the suite ended before the broker was killed"
        check(output, killed_addr=f"127.0.0.1:{cluster.kafka_ports[killed_mid_run_victim[0]]}")
