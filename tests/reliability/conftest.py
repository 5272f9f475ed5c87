"""Fixtures of the reliability suite: faults, concurrency and security basics, on real
libvirt with real guests.

Tests on the system libvirtd (qemu:///system) reuse tests/e2e's fixtures: a unique
domain-name prefix per test, a disk folder under /var/lib/libvirt/images, and the
installed `reconcile` command; every domain they create is removed when the test ends.
Tests that kill and restart libvirtd, or that run the service, use tests/service's
private libvirtd (its own mount namespace), which no other work on the host uses.

Each test adds what it measured to FIGURES; pytest prints them at the end of the run
(the figures in docs/RELIABILITY.md are copied from there).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import libvirt
import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures used by this suite's tests
    conn,
    image_dir,
    lock_dir,
    manifests,
    once,
    prefix,
    run,
    virt_type,
    vm,
)
from tests.e2e.support import remove_domains
from tests.service.conftest import (
    Host,
    sandbox,  # noqa: F401 - the private libvirtd
)
from tests.service.support import Sandbox

#: test name → lines to print at the end of the run.
FIGURES: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, lines in FIGURES.items():
        terminalreporter.write_line(test)
        for line in lines:
            terminalreporter.write_line(f"    {line}")


@pytest.fixture
def box(sandbox: Sandbox, prefix: str) -> Iterator[Host]:  # noqa: F811 - the fixtures above
    """The private libvirtd as one test sees it; running again, and rid of this test's
    domains, when the test ends (even if it killed the daemon and failed)."""
    sandbox.ensure_running()
    view = Host(sandbox)
    yield view
    view.close()
    sandbox.ensure_running()
    connection = libvirt.open(sandbox.uri)
    try:
        remove_domains(connection, prefix)
    finally:
        connection.close()


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running when it ends (a failed test) is killed,
    by its PID, before the test's domains are removed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
