"""The image every container test runs (built once per session when it is
missing), and each test's outcome kept on its item, so that the cluster
fixture of test_container_chaos.py prints the containers' logs when a test
failed."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from container_cluster import ensure_image, skip_reason  # noqa: E402


@pytest.fixture(scope="session")
def image():
    if skip_reason():
        pytest.skip(skip_reason())
    return ensure_image()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
