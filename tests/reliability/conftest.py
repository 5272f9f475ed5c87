"""Fixtures of the reliability suite: faults, concurrency and security basics, on real
libvirt with real guests.

Tests on the system libvirtd (qemu:///system) use the fixtures tests/e2e uses
(tests/support/system.py): a unique domain-name prefix per test, a disk folder under
/var/lib/libvirt/images, and the installed `reconcile` command; every domain they create
is removed when the test ends. Tests that kill and restart libvirtd, or that run the
service, use the private libvirtd of tests/support/sandbox.py (its own mount namespace),
which no other work on the host uses.

Each test adds what it measured to FIGURES; pytest prints them at the end of the run
(the figures in docs/RELIABILITY.md are copied from there).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import children  # noqa: F401 - kills what a test started
from tests.support.sandbox import (
    Host,
    Sandbox,
    host_for_test,
    sandbox,  # noqa: F401 - the private libvirtd, a session fixture
)
from tests.support.system import (  # noqa: F401 - fixtures used by this suite's tests
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
    with host_for_test(sandbox, prefix) as view:
        yield view
