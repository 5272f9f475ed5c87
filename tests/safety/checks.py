"""The properties every load of a manifest directory must have, however bad its files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from controller.manifests import Invalid, LoadResult
from controller.model import DesiredState

from .strategies import NAME_RE


def single_line(text: str) -> bool:
    return not any(ch in text for ch in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def check_invalid(entry: Invalid, directory: Path) -> None:
    assert isinstance(entry.file, str) and entry.file, entry
    assert not os.path.isabs(entry.file), entry
    assert os.path.lexists(directory / entry.file), entry
    assert entry.document is None or (isinstance(entry.document, int) and entry.document >= 0)
    assert isinstance(entry.path, str) and single_line(entry.path), entry
    assert isinstance(entry.error, str) and entry.error.strip(), entry
    assert single_line(entry.error), entry
    assert len(entry.error) <= 10_000, entry.error[:200]  # quoted values are cut short
    assert single_line(str(entry)), entry
    json.dumps(entry.to_json())


def check_load(result: LoadResult, directory: Path, roots: Sequence[str]) -> None:
    """Every problem is an Invalid with file, document, path and a one-line error, and
    whatever made it through is a spec the contract allows."""
    assert isinstance(result, LoadResult)
    for entry in result.invalid:
        check_invalid(entry, directory)
    if result.problem is not None:
        assert single_line(result.problem)
    if result.invalid:
        assert not result.prune_safe
    assert result.documents >= len(result.specs)
    real_roots = [os.path.realpath(root) for root in roots]
    for name, spec in result.specs.items():
        assert spec.name == name
        assert NAME_RE.fullmatch(name), name
        assert name not in result.invalid_names
        assert os.path.lexists(directory / spec.source)
        assert type(spec.vcpus) is int and type(spec.memory_kib) is int
        assert type(spec.stop_timeout) is int and 0 <= spec.stop_timeout <= 86400
        if spec.state is not DesiredState.ABSENT:
            assert 1 <= spec.vcpus <= 4096
            assert 1 <= spec.current_memory_kib <= spec.memory_kib <= 2**40
        elif spec.memory_kib:
            assert 1 <= spec.current_memory_kib <= spec.memory_kib <= 2**40
        for disk in spec.disks:
            assert any(disk.source.startswith(root + "/") for root in real_roots), disk
            assert os.path.realpath(disk.source) == disk.source
    sources = [disk.source for spec in result.specs.values() for disk in spec.disks]
    assert len(sources) == len(set(sources)), "one image in two VMs"
