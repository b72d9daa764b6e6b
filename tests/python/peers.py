"""Software that no one here wrote, installed by the project's own scripts:
Apache Kafka's command-line tools (`tests/peers/kafka.sh`) and the Java
client scenarios (`tests/java`, built with Maven). Each helper skips the
calling test, saying why, when Java, Maven or Maven Central is missing."""

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

KAFKA_SH = ROOT / "tests" / "peers" / "kafka.sh"
JAVA_DIR = ROOT / "tests" / "java"
SKIPPED = 3  # kafka.sh's exit status for "nothing was run"


@functools.lru_cache(maxsize=None)
def _kafka_install():
    """(ok, message): the Kafka jars resolved once per test session."""
    out = subprocess.run([str(KAFKA_SH), "install"], capture_output=True, text=True, timeout=900)
    if out.returncode == SKIPPED:
        return False, out.stdout.strip()
    if out.returncode != 0:
        return None, out.stdout + out.stderr
    return True, out.stdout.strip()


def require_kafka_tools():
    ok, message = _kafka_install()
    if ok is False:
        pytest.skip(f"Kafka's tools: {message}")
    if ok is None:
        pytest.fail(f"tests/peers/kafka.sh install failed: {message}")


def kafka_tool(name, *args, timeout=120, check=True, input=None):
    """Runs a Kafka tool as a user types it (`kafka-topics.sh --list ...`);
    returns the CompletedProcess (text)."""
    require_kafka_tools()
    out = subprocess.run([str(KAFKA_SH), "tool", name, *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, input=input)
    if check and out.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} exited {out.returncode}\n"
                             f"stdout:\n{out.stdout[-4000:]}\nstderr:\n{out.stderr[-4000:]}")
    return out


def kafka_tool_popen(name, *args, **kwargs):
    """A long-running Kafka tool (a console consumer, a verifiable producer)."""
    require_kafka_tools()
    return subprocess.Popen([str(KAFKA_SH), "tool", name, *map(str, args)], text=True, **kwargs)


@functools.lru_cache(maxsize=None)
def _java_build():
    if not shutil.which("java"):
        return False, "java is not installed"
    if not shutil.which("mvn"):
        return False, "mvn is not installed"
    out = subprocess.run(["mvn", "-q", "-B", "package"], cwd=JAVA_DIR, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        text = out.stdout + out.stderr
        if "Could not transfer" in text or "Could not resolve" in text or "UnknownHost" in text:
            return False, "Maven Central is not reachable: " + text[-500:]
        return None, text[-4000:]
    return True, f"{JAVA_DIR}/target/classes:{JAVA_DIR}/target/deps/*"


def java_classpath():
    ok, message = _java_build()
    if ok is False:
        pytest.skip(f"Java client scenarios: {message}")
    if ok is None:
        pytest.fail(f"building tests/java failed:\n{message}")
    return message


def java_scenario(scenario, bootstrap, *args, **popen):
    """Starts `kraftwerk.javaclient.<scenario> BOOTSTRAP args...`; its stdout
    is a pipe of text lines (LEADERS ..., ACKED n, then OK or FAIL)."""
    cp = java_classpath()
    cmd = ["java", "-Xmx512m", "-XX:+UseSerialGC", "-cp", cp, f"kraftwerk.javaclient.{scenario}", bootstrap,
           *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def run_java_scenario(scenario, bootstrap, *args, timeout=400):
    proc = java_scenario(scenario, bootstrap, *args)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{scenario} did not finish within {timeout}s:\n{out[-6000:]}")
    assert proc.returncode == 0, f"{scenario} exited {proc.returncode}:\n{out[-6000:]}"
    assert any(line.startswith("OK ") for line in out.splitlines()), out[-6000:]
    return out
