"""A full disk: the broker's data directory on a small tmpfs, filled up while
a producer writes. The producer must get KAFKA_STORAGE_ERROR (not a dropped
connection), the broker must keep answering, every acknowledged record must
be readable, once space is freed writes must succeed again, and after a
kill -9 and restart every acknowledged record must still be there.

Mounting the tmpfs needs root (CAP_SYS_ADMIN); without it the test says so
and skips.
"""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from chaos_checker import read_all
from conftest import Broker, free_port

MOUNT_BYTES = 32 * 1024 * 1024
HEADROOM_BYTES = 2 * 1024 * 1024
RECORD = b"x" * 1000


@pytest.fixture
def small_disk():
    root = tempfile.mkdtemp(prefix="kraftwerk-full-disk-")
    mnt = os.path.join(root, "mnt")
    os.mkdir(mnt)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_BYTES}", "tmpfs", mnt],
                         capture_output=True, text=True)
    if out.returncode != 0:
        os.rmdir(mnt)
        os.rmdir(root)
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode}): full-disk test skipped")
    try:
        yield root, mnt
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
        subprocess.run(["rm", "-rf", root], capture_output=True)


def fill(path, leave_bytes):
    """A ballast file that leaves about `leave_bytes` free on the mount."""
    st = os.statvfs(os.path.dirname(path))
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def produce(bootstrap, topic, count):
    """(acked [(offset, value)], error names) for `count` acks=1 sends."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, "enable.idempotence": False,
                         "retries": 0, "message.timeout.ms": 10000, "linger.ms": 0})
    acked, errors = [], []
    for i in range(count):
        value = b"%08d" % i + RECORD

        def on_delivery(err, msg, value=value):
            if err is None:
                acked.append((msg.offset(), value))
            else:
                errors.append(err.name())

        producer.produce(topic, value=value, partition=0, on_delivery=on_delivery)
        if i % 20 == 19:
            producer.flush(15)
        if errors:
            break
    producer.flush(15)
    return acked, errors


def stored_records(bootstrap, topic):
    """{offset: value} of partition 0, read up to its high watermark."""
    records, _ = read_all(bootstrap, topic, 1)
    return {offset: value.encode() for offset, value in records.get(0, [])}


def test_full_disk_refuses_writes_with_a_storage_error_and_loses_nothing(small_disk):
    root, mnt = small_disk
    broker = Broker(os.path.join(mnt, "data"), free_port())
    broker.log_path = Path(root) / "broker.log"
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("full", 1, 1)])["full"].result(timeout=15)
        ballast = os.path.join(mnt, "ballast")
        fill(ballast, HEADROOM_BYTES)

        acked, errors = produce(broker.bootstrap, "full", 20000)
        assert acked, "nothing was acknowledged before the disk filled"
        assert errors, f"{len(acked)} records acknowledged and no error: the disk never filled"
        assert set(errors) == {"KAFKA_STORAGE_ERROR"}, errors
        print(f"\n{len(acked)} records acknowledged, then {errors[0]}")
        assert broker.proc.poll() is None, "the broker exited on a full disk:\n" + broker.log_tail()
        assert "full" in admin.list_topics(timeout=10).topics, "the broker stopped answering metadata"
        stored = stored_records(broker.bootstrap, "full")
        assert all(stored.get(o) == v for o, v in acked), "an acknowledged record is missing"

        # Space again: writes succeed.
        os.remove(ballast)
        more, errors = produce(broker.bootstrap, "full", 50)
        assert not errors and len(more) == 50, (errors, broker.log_tail())

        # And nothing acknowledged is lost across a kill -9.
        broker.kill()
        broker.start()
        stored = stored_records(broker.bootstrap, "full")
        missing = [o for o, v in acked + more if stored.get(o) != v]
        assert not missing, f"{len(missing)} acknowledged records missing after restart, e.g. {missing[:5]}"
    finally:
        broker.stop()
