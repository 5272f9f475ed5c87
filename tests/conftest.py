"""Fixtures shared by every suite: a test:///default connection and an engine on it, and
a manifest directory and a disk root under tmp_path.

Each Hypervisor opens its own test:///default connection, which starts from libvirt's
built-in state (one running, unmanaged domain called 'test') and dies with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.engine import Engine
from controller.executor import RetryPolicy
from controller.hypervisor import Hypervisor
from controller.locks import VMLocks

TEST_URI = "test:///default"


@pytest.fixture
def hypervisor() -> Iterator[Hypervisor]:
    hv = Hypervisor(TEST_URI)
    hv.connect()
    yield hv
    hv.close()


@pytest.fixture
def locks(tmp_path: Path) -> VMLocks:
    return VMLocks(str(tmp_path / "locks"), timeout=10)


@pytest.fixture
def engine(hypervisor: Hypervisor, locks: VMLocks) -> Engine:
    return Engine(hypervisor, locks, retry=RetryPolicy(attempts=2, first_wait=0.01))


@pytest.fixture
def manifest_dir(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """An allowed disk root; pass `disk_roots=[str(images)]` to the loader."""
    path = tmp_path / "images"
    path.mkdir()
    return path
