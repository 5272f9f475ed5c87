"""Fixtures shared by every suite: a test:///default connection and a rig (a run
assembled as the CLI does, tests/support/rig.py) on it, and a manifest directory and a
disk root under tmp_path.

Each Hypervisor opens its own test:///default connection, which starts from libvirt's
built-in state (one running, unmanaged domain called 'test') and dies with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.locks import VMLocks
from controller.virt import Hypervisor

from .support.rig import Rig

TEST_URI = "test:///default"


@pytest.fixture
def hypervisor() -> Iterator[Hypervisor]:
    hv = Hypervisor.open(TEST_URI)
    hv.connection.connect()
    yield hv
    hv.connection.close()


@pytest.fixture
def locks(tmp_path: Path) -> VMLocks:
    return VMLocks(str(tmp_path / "locks"), timeout=10)


@pytest.fixture
def rig(hypervisor: Hypervisor, locks: VMLocks) -> Rig:
    return Rig.single(hypervisor, locks)


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
