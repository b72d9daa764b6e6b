"""The web console (`/console/` on every node's HTTP listener) in a real
headless Chromium driven by Playwright, against a three-node cluster: every
page loads and shows what Kafka's clients and Kraftwerk's CLI see; a topic
created in the page exists for `kraftwerk topics list`; the message browser
shows a record librdkafka produced; a group's lag appears and falls as it
consumes, and resetting it from the page works. Each page's screenshot is
saved under `$KRAFTWERK_CONSOLE_SCREENSHOTS` (default
`target/console-screenshots`); the latest ones are kept in `docs/console/`.

Needs Chromium (Debian's `chromium`, which ./scripts/test installs when it
can) and the `playwright` Python package; without them the tests say they
skipped."""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from cluster_harness import running_cluster
from conftest import free_port, kraftwerk_bin

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("KRAFTWERK_CONSOLE_SCREENSHOTS", ROOT / "target" / "console-screenshots"))


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed: console tests skipped")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine (Debian package `chromium`): console tests skipped")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def cluster():
    http = {}

    def prepare(c):
        for n in c.broker_ids:
            http[n] = free_port()
            with open(c.root / f"node-{n}.properties", "a") as f:
                f.write(f"kraftwerk.http.listener=127.0.0.1:{http[n]}\n")

    with running_cluster("kraftwerk-console-", prepare=prepare,
                         extra={"default.replication.factor": 3, "offsets.topic.replication.factor": 3,
                                "replica.lag.time.max.ms": 3000}) as c:
        c.http = http
        c.console = f"http://127.0.0.1:{http[1]}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(c.console + "/api/v1/cluster", timeout=10) as r:
                    if len(json.loads(r.read())["brokers"]) == 3:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the console's API never answered"
            time.sleep(0.3)
        yield c


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    errors = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("dialog", lambda d: d.accept())
    yield p
    context.close()
    assert not errors, f"the page raised: {errors}"


def open_page(page, base, hash_route):
    page.goto(f"{base}/console/{hash_route}")
    page.wait_for_selector(f'main[data-loaded="{hash_route.split("?")[0]}"]', timeout=30_000)


def screenshot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def cli(cluster, *args):
    return subprocess.run([kraftwerk_bin(), *args, "--bootstrap-server", cluster.bootstrap],
                          capture_output=True, text=True, timeout=60, check=True).stdout


def test_cluster_page_shows_brokers_quorum_and_live_throughput(cluster, page):
    info = json.loads(cli(cluster, "cluster", "describe", "--output", "json"))
    open_page(page, cluster.console, "#/cluster")
    rows = page.locator("[data-testid=brokers] tbody tr")
    assert rows.count() == 3
    assert sorted(int(r.get_attribute("data-broker")) for r in rows.all()) == [1, 2, 3]
    assert page.locator("[data-testid=controller-id]").inner_text() == str(info["active_controller"])
    voters = page.locator("[data-testid=quorum] tbody tr")
    assert voters.count() == 3
    assert page.locator("[data-testid=quorum] .badge", has_text="leader").count() == 1

    # Traffic shows in the per-broker charts once two samples are taken.
    cli(cluster, "topics", "create", "--topic", "console-traffic", "--partitions", "3",
        "--replication-factor", "3", "--if-not-exists")
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 5})
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        for _ in range(200):
            producer.produce("console-traffic", value=b"x" * 200)
        producer.flush(10)
        time.sleep(0.2)
    page.wait_for_function(
        """() => document.querySelectorAll('[data-testid=chart-broker-bytes-in] polyline').length === 3""",
        timeout=20_000)
    assert page.locator("[data-testid=chart-broker-requests] .legend span").count() == 3
    screenshot(page, "cluster")


def test_a_topic_created_in_the_page_is_a_kafka_topic(cluster, page):
    topic = f"console-{uuid.uuid4().hex[:6]}"
    open_page(page, cluster.console, "#/topics")
    page.fill("[data-testid=new-topic-name]", topic)
    page.fill("[data-testid=new-topic-partitions]", "4")
    page.fill("[data-testid=new-topic-replication]", "3")
    page.click("[data-testid=create-topic] button[type=submit]")
    page.wait_for_selector(f'[data-testid=topics] tr[data-topic="{topic}"]', timeout=20_000)
    assert topic in cli(cluster, "topics", "list").split()
    described = json.loads(cli(cluster, "topics", "describe", "--topic", topic, "--output", "json"))[0]
    assert len(described["partitions"]) == 4
    screenshot(page, "topics")

    # Its page shows each partition's leader, replicas and ISR as Kafka's metadata has them.
    page.click(f'[data-testid=topics] tr[data-topic="{topic}"] a')
    page.wait_for_selector(f'main[data-loaded="#/topics/{topic}"]')
    rows = page.locator("[data-testid=partitions] tbody tr")
    assert rows.count() == 4
    for p in described["partitions"]:
        cells = page.locator(f'[data-testid=partitions] tr[data-partition="{p["partition"]}"] td').all_inner_texts()
        assert cells[1] == str(p["leader"])
        assert cells[2] == ", ".join(map(str, p["replicas"]))
        assert cells[3] == ", ".join(map(str, p["isr"]))
        assert cells[7] == "in sync"
    # A config set in the page is the topic's config for Kafka's admin API.
    page.fill("[data-testid=config-key]", "retention.ms")
    page.fill("[data-testid=config-value]", "7200000")
    page.click("[data-testid=alter-config] button[type=submit]")
    page.wait_for_selector('[data-testid=configs] tr[data-config="retention.ms"] >> text=7200000', timeout=20_000)
    screenshot(page, "topic")

    # Deleting it from the list removes it from the cluster.
    open_page(page, cluster.console, "#/topics")
    page.click(f"[data-testid=delete-topic-{topic}]")
    page.wait_for_selector(f'[data-testid=topics] tr[data-topic="{topic}"]', state="detached", timeout=20_000)
    deadline = time.monotonic() + 20
    while topic in cli(cluster, "topics", "list").split():
        assert time.monotonic() < deadline, "the topic deleted in the page is still listed"
        time.sleep(0.5)


def test_message_browser_shows_what_librdkafka_produced(cluster, page):
    topic = f"browse-{uuid.uuid4().hex[:6]}"
    cli(cluster, "topics", "create", "--topic", topic, "--partitions", "2", "--replication-factor", "3")
    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(30):
        producer.produce(topic, key=f"k-{i}", value=f"plain value {i}", partition=i % 2)
    producer.produce(topic, key="order-42", value=json.dumps({"id": 42, "items": ["tea"]}),
                     headers=[("origin", b"librdkafka")], partition=1)
    assert producer.flush(30) == 0

    open_page(page, cluster.console, f"#/topics/{topic}/messages")
    page.wait_for_selector("[data-testid=records] tbody tr[data-offset]", timeout=20_000)
    assert "31 record(s)" in page.inner_text("[data-testid=messages]")
    # Latest first: the JSON record is pretty-printed, its header shown.
    first = page.locator("[data-testid=records] tbody tr").first
    assert '"items": [' in first.inner_text() and "origin: librdkafka" in first.inner_text()

    page.fill("[data-testid=browse-filter]", "order-42")
    page.click("[data-testid=browse] button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=records] tbody tr[data-offset]').length === 1")
    screenshot(page, "messages")

    page.select_option("[data-testid=browse-format]", "hex")
    page.click("[data-testid=browse] button[type=submit]")
    page.wait_for_selector("[data-testid=record-value] >> text=7b 22 69 64 22")  # {"id"

    # From an offset, one partition.
    page.fill("[data-testid=browse-filter]", "")
    page.select_option("[data-testid=browse-format]", "text")
    page.select_option("[data-testid=browse-partition]", "0")
    page.select_option("[data-testid=browse-mode]", "offset")
    page.fill("[data-testid=browse-offset]", "10")
    page.click("[data-testid=browse] button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=records] tbody tr[data-offset]').length === 5")
    assert page.locator("[data-testid=records] tbody tr").first.get_attribute("data-offset") == "10"


def test_group_lag_appears_falls_and_resets_from_the_page(cluster, page):
    topic = f"lag-{uuid.uuid4().hex[:6]}"
    group = f"g-{topic}"
    cli(cluster, "topics", "create", "--topic", topic, "--partitions", "3", "--replication-factor", "3")
    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(300):
        producer.produce(topic, value=f"v{i}", partition=i % 3)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in range(3)], asynchronous=False)

    open_page(page, cluster.console, "#/groups")
    page.wait_for_selector(f'[data-testid=groups] tr[data-group="{group}"]', timeout=20_000)
    screenshot(page, "groups")
    page.click(f'[data-testid=groups] tr[data-group="{group}"] a')
    page.wait_for_selector(f'main[data-loaded="#/groups/{group}"]')
    assert page.inner_text("[data-testid=total-lag]") == "300"

    # The group consumes 150 records and commits: the page, refreshing on its
    # own, shows the lag fall.
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 150 and time.monotonic() < deadline:
        m = consumer.poll(1.0)
        if m is not None and m.error() is None:
            seen += 1
            if seen == 150:
                consumer.commit(message=None, asynchronous=False)
    assert seen == 150
    committed = sum(tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10))
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=total-lag]').textContent === '{300 - committed}'",
        timeout=20_000)
    assert 300 - committed < 300
    assert page.locator("[data-testid=members] tbody tr").count() == 1
    screenshot(page, "group")
    consumer.close()

    # Empty again, the group is reset to the log end from the page.
    page.wait_for_function("() => document.querySelector('[data-testid=group-state]').textContent === 'Empty'",
                           timeout=30_000)
    page.select_option("[data-testid=reset-topic]", topic)
    page.select_option("[data-testid=reset-to]", "latest")
    page.click("[data-testid=reset-offsets] button[type=submit]")
    page.wait_for_function("() => document.querySelector('[data-testid=total-lag]').textContent === '0'",
                           timeout=20_000)
    check = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    offsets = check.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    check.close()
    assert sum(tp.offset for tp in offsets) == 300


def test_every_node_serves_the_console(cluster, page):
    for n, port in cluster.http.items():
        open_page(page, f"http://127.0.0.1:{port}", "#/topics")
        assert page.locator("[data-testid=topics]").count() == 1, f"node {n}"


def test_read_only_console_offers_no_changes_and_the_api_refuses_them(broker_factory, browser):
    http = free_port()
    broker = broker_factory(extra=["--override", f"kraftwerk.http.listener=127.0.0.1:{http}",
                                   "--override", "kraftwerk.http.api.read.only=true"]).start()
    base = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "/api/v1/session", timeout=5).read()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    context = browser.new_context()
    page = context.new_page()
    open_page(page, base, "#/topics")
    assert "read-only" in page.inner_text("#session")
    assert not page.locator("[data-testid=create-topic]").is_visible()
    screenshot(page, "read-only")
    context.close()
    request = urllib.request.Request(base + "/api/v1/topics", method="POST",
                                     data=json.dumps({"name": "nope"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["error"] == "POLICY_VIOLATION"
    listed = subprocess.run([kraftwerk_bin(), "topics", "list", "--bootstrap-server", broker.bootstrap],
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert "nope" not in listed


def test_a_killed_broker_shows_fenced_and_its_partitions_under_replicated(cluster, page):
    """Runs last in this module: it kills node 3 of the shared cluster."""
    topic = f"urp-{uuid.uuid4().hex[:6]}"
    cli(cluster, "topics", "create", "--topic", topic, "--partitions", "3", "--replication-factor", "3")
    cluster.kill(3)
    open_page(page, cluster.console, f"#/topics/{topic}")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=partitions] tr.under-replicated').length === 3",
        timeout=60_000)
    assert "under-replicated" in page.inner_text("[data-testid=partitions]")
    screenshot(page, "topic-under-replicated")
    open_page(page, cluster.console, "#/topics")
    page.wait_for_selector(f'[data-testid=topics] tr.under-replicated[data-topic="{topic}"]', timeout=30_000)
    open_page(page, cluster.console, "#/cluster")
    page.wait_for_selector('[data-testid=brokers] tr[data-broker="3"] >> text=fenced', timeout=60_000)
