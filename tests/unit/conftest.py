"""Fixtures of the unit tests: a manifest directory and a disk root under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


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
