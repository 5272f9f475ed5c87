"""The manifest loader remembers each file's documents by the file's text
(controller/manifests/files.py): the service reloads the same files at every resync.
An edited file is another text, read anew; only copies leave the cache until the loader
has accepted a document, whose checked form and spec are then kept with it (files.Memo);
a spec that depends on files (a disk source, a kernel) is made afresh every time;
documents that are not plain trees are never kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller.manifests import files, load_directory
from controller.manifests.result import LoadResult

VM = ("apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
      "spec:\n  memory: {memory}MiB\n  vcpus: 1\n")


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Each test starts with nothing cached (other tests read the same texts)."""
    saved = dict(files._PARSED)
    files._PARSED.clear()
    try:
        yield
    finally:
        files._PARSED.clear()
        files._PARSED.update(saved)


def _documents(path: Path) -> list[object]:
    return [document for _, document, _, _ in
            files.documents(str(path), path.name, LoadResult(directory=str(path.parent)))]


def test_an_edited_file_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024
    assert path.read_text() in files._PARSED
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024  # from the cache
    path.write_text(VM.format(name="a", memory=96))
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 96 * 1024


def test_only_copies_leave_the_cache_until_the_loader_accepted_the_document(
        tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    first = _documents(path)
    second = _documents(path)
    assert first == second and first[0] is not second[0]
    second[0]["spec"]["memory"] = "1GiB"  # type: ignore[index] # as the validator's defaults do
    second[0]["spec"]["disks"] = [{"source": "/x"}]  # type: ignore[index]
    assert _documents(path) == first
    load = load_directory(str(tmp_path))  # validation fills in defaults in its own copy
    assert load.specs["a"].memory_kib == 64 * 1024
    checked = _documents(path)[0]  # from now on: the document as the loader accepted it
    assert checked is _documents(path)[0] and checked != first[0]  # its defaults filled in
    assert checked["spec"]["memory"] == "64MiB"  # type: ignore[index]
    assert {key: value for key, value in checked["spec"].items()  # type: ignore[index]
            if key in first[0]["spec"]} == first[0]["spec"]  # type: ignore[index]


def test_a_spec_is_made_once_per_text_file_and_roots(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    made = load_directory(str(tmp_path)).specs["a"]
    assert load_directory(str(tmp_path)).specs["a"] is made
    assert load_directory(str(tmp_path), disk_roots=(str(tmp_path),)).specs["a"] is not made
    path.rename(tmp_path / "b.yaml")
    moved = load_directory(str(tmp_path)).specs["a"]
    assert moved.source == "b.yaml" and moved == replace(made, source="b.yaml")


def test_a_disk_source_is_resolved_at_every_load(tmp_path: Path) -> None:
    disks = tmp_path / "disks"
    disks.mkdir()
    (disks / "one.qcow2").write_bytes(b"")
    (disks / "two.qcow2").write_bytes(b"")
    os.symlink(disks / "one.qcow2", disks / "root.qcow2")
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(VM.format(name="a", memory=64)
                                      + f"  disks:\n    - source: {disks}/root.qcow2\n")
    roots = (str(disks),)
    assert load_directory(str(manifests), disk_roots=roots).specs["a"].disks[0].source == str(
        disks / "one.qcow2")
    os.unlink(disks / "root.qcow2")
    os.symlink(disks / "two.qcow2", disks / "root.qcow2")  # the same text, another file
    assert load_directory(str(manifests), disk_roots=roots).specs["a"].disks[0].source == str(
        disks / "two.qcow2")


def test_documents_that_are_not_plain_trees_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: a\n"
                    "spec:\n  memory: &m 64MiB\n  currentMemory: *m\n  vcpus: 1\n")
    assert load_directory(str(tmp_path)).specs["a"].current_memory_kib == 64 * 1024
    assert path.read_text() not in files._PARSED


def test_a_full_cache_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    for index in range(files.PARSED_MAX):
        files._PARSED[f"# {index}\n"] = ()
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024
    assert list(files._PARSED) == [path.read_text()]
