"""pytest wiring for the end-to-end tests.

- Skips are failures: CI runs as root with namespaces, so an end-to-end test that did not
  run is a defect, not a pass (pytest_runtest_makereport turns a skip into a failure).
- Each test gets a fresh agent and host registry, cleaned up even when it fails.
"""
import os

import pytest

from warren_e2e import Agent, Hosts


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"end-to-end test was skipped ({report.longrepr}); skips are failures here"


def pytest_sessionstart(session):
    if os.geteuid() != 0:
        raise pytest.UsageError("the end-to-end tests need root (network namespaces); run Scripts/test.sh as root")


@pytest.fixture
def hosts():
    h = Hosts()
    try:
        yield h
    finally:
        h.cleanup()


@pytest.fixture
def agent():
    a = Agent()
    try:
        yield a.start()
    finally:
        a.cleanup()
