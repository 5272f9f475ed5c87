"""Fixtures for integration tests on libvirt's in-process test driver (test:///default).

Each Hypervisor opens its own test:///default connection, which starts from libvirt's
built-in state (one running, unmanaged domain called 'test') and dies with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.engine import Engine
from controller.executor import RetryPolicy
from controller.hypervisor import Hypervisor
from controller.locks import VMLocks
from controller.manifests import LoadResult, load_directory

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
    directory = tmp_path / "manifests"
    directory.mkdir()
    return directory


Writer = Callable[[str, str], LoadResult]


@pytest.fixture
def write(manifest_dir: Path) -> Writer:
    """Write one manifest file and return the reloaded directory."""
    def writer(filename: str, text: str) -> LoadResult:
        (manifest_dir / filename).write_text(text)
        return load_directory(str(manifest_dir))
    return writer


def vm(name: str, **spec: object) -> str:
    """A manifest document for `name`; spec values are rendered as YAML flow scalars."""
    fields = {"memory": 64, "vcpus": 1, "stopTimeout": 0}
    fields.update(spec)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n{body}\n")
