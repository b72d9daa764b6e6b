"""The documented way to a cluster, as a user takes it: `deploy/up.sh`
starts deploy/docker-compose.yml unchanged (and, with `--dedicated`,
deploy/docker-compose.dedicated.yml: three controllers and three brokers;
the image is the one deploy/build-image.sh built, so `--no-build`), and the
seed notes' kafka-python producer and group consumer, pointed at
localhost:19092, work against it. The project is taken down with its
volumes afterwards.

    python3 -m pytest tests/docker/test_compose_quickstart.py -v
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from container_cluster import BOOTSTRAP, ROOT, ComposeCluster, skip_reason, wait_ports_free  # noqa: E402

if skip_reason():
    print(skip_reason())
    pytest.skip(skip_reason(), allow_module_level=True)

from snippets import EXPECTED, SEED_CONSUMER, SEED_PRODUCER, Proc, pointed_at, received, run_snippet  # noqa: E402

UP = ROOT / "deploy" / "up.sh"


@pytest.mark.parametrize("variant", ["combined", "dedicated"])
def test_up_script_starts_a_cluster_that_the_seed_snippets_work_against(image, variant):
    flags = ["--no-build"] + (["--dedicated"] if variant == "dedicated" else [])
    compose_file = ROOT / "deploy" / ("docker-compose.dedicated.yml" if variant == "dedicated" else "docker-compose.yml")
    cluster = ComposeCluster(image, {}, chaos_override=False, compose_file=compose_file)
    env = dict(cluster.env, COMPOSE_PROJECT_NAME=cluster.project)
    consumer = None
    try:
        wait_ports_free()
        started = time.monotonic()
        up = subprocess.run([str(UP), *flags], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\ndeploy/up.sh {' '.join(flags)}: healthy in {time.monotonic() - started:.1f}s")
        assert BOOTSTRAP in up.stdout, "up.sh does not print the bootstrap servers"

        produced = run_snippet(pointed_at(SEED_PRODUCER, "localhost:19092"))
        assert produced.returncode == 0, produced.stderr
        assert produced.stdout.count("Mensagem enviada") == 10

        consumer = Proc(pointed_at(SEED_CONSUMER, "localhost:19092"))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(received(consumer.snapshot())) < len(EXPECTED):
            time.sleep(0.2)
        time.sleep(1)
        # The topic is auto-created with the cluster's three partitions, so
        # only the order within each partition is the producer's: compare sets,
        # and that nothing was printed twice.
        seen = received(consumer.snapshot())
        assert sorted(seen) == sorted(EXPECTED), cluster.all_logs(40)
    finally:
        if consumer is not None:
            consumer.kill()
        cluster.down()
