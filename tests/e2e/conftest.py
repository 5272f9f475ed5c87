"""End-to-end fixtures: the real libvirtd (qemu:///system), tiny real guests, and the
installed `reconcile` command driven the way a user drives it; they are
tests/support/system.py's, shared with tests/reliability.

Every domain a test creates is named with that test's own prefix ("t-<8 hex>-") and is
destroyed and undefined (keeping NVRAM) when the test ends, pass or fail. No other domain
on the host is ever touched. Every test here is marked `e2e`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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

from .firmware_support import firmware_state  # noqa: F401 - section 8's tests use it

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)
