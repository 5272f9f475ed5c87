"""The manifest loader remembers each file's documents by the file's text
(controller/manifests/files.py): the service reloads the same files at every resync.
An edited file is another text, read anew; only copies leave the cache; documents that
are not plain trees are never kept."""

from __future__ import annotations

from pathlib import Path

from controller.manifests import files, load_directory
from controller.manifests.result import LoadResult

VM = ("apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
      "spec:\n  memory: {memory}MiB\n  vcpus: 1\n")


def _documents(path: Path) -> list[object]:
    return [document for _, document, _ in
            files.documents(str(path), path.name, LoadResult(directory=str(path.parent)))]


def test_an_edited_file_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024
    assert path.read_text() in files._PARSED
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024  # from the cache
    path.write_text(VM.format(name="a", memory=96))
    assert load_directory(str(tmp_path)).specs["a"].memory_kib == 96 * 1024


def test_only_copies_leave_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    first = _documents(path)
    second = _documents(path)
    assert first == second and first[0] is not second[0]
    second[0]["spec"]["memory"] = "1GiB"  # type: ignore[index] # as the validator's defaults do
    second[0]["spec"]["disks"] = [{"source": "/x"}]  # type: ignore[index]
    assert _documents(path) == first
    load = load_directory(str(tmp_path))  # validation fills in defaults in its own copy
    assert load.specs["a"].memory_kib == 64 * 1024 and _documents(path) == first


def test_documents_that_are_not_plain_trees_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: a\n"
                    "spec:\n  memory: &m 64MiB\n  currentMemory: *m\n  vcpus: 1\n")
    assert load_directory(str(tmp_path)).specs["a"].current_memory_kib == 64 * 1024
    assert path.read_text() not in files._PARSED


def test_a_full_cache_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(VM.format(name="a", memory=64))
    saved = dict(files._PARSED)
    files._PARSED.clear()
    try:
        for index in range(files.PARSED_MAX):
            files._PARSED[f"# {index}\n"] = ()
        assert load_directory(str(tmp_path)).specs["a"].memory_kib == 64 * 1024
        assert list(files._PARSED) == [path.read_text()]
    finally:
        files._PARSED.clear()
        files._PARSED.update(saved)
