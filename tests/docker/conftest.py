"""Keeps each test's outcome on its item, so that the cluster fixture of
test_container_chaos.py prints the containers' logs when a test failed."""

import pytest


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
