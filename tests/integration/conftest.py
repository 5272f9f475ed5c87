"""Helpers for integration tests on libvirt's in-process test driver (test:///default);
the hypervisor, engine and manifest_dir fixtures are in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.manifests import LoadResult, load_directory

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
    fields: dict[str, object] = {"memory": 64, "vcpus": 1, "stopTimeout": 0}
    fields.update(spec)
    body = "\n".join(f"  {key}: {value}" for key, value in fields.items())
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n{body}\n")
