"""Fuzzing the manifest loader: whatever is in the directory, load_directory never raises,
reports every problem as an Invalid (file, document, path, one-line error), and lets
through only specs the contract allows."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from controller.manifests import LoadResult, load_directory

from .checks import check_load
from .conftest import count, fuzz_settings
from .strategies import (
    DISK_ROOT,
    Entry,
    billion_laughs,
    deep_text,
    dump,
    entries,
    multi,
    mutated_document,
    names,
    rendered_document,
    valid_document,
    write_entries,
    yaml_like_text,
)


def load_entries(base: Path, items: list[Entry]) -> tuple[Path, LoadResult]:
    """Write `items` into a fresh directory under `base` and load it."""
    directory = Path(tempfile.mkdtemp(dir=base))
    write_entries(directory, items)
    return directory, load_directory(str(directory), disk_roots=[DISK_ROOT])


@fuzz_settings()
@given(items=entries())
def test_any_directory_loads_without_raising(tmp_path: Path, items: list[Entry]) -> None:
    directory, result = load_entries(tmp_path, items)
    check_load(result, directory, [DISK_ROOT])
    count("loader: random directories (documents, junk, folders, FIFOs, symlinks)")


@fuzz_settings()
@given(content=st.binary(max_size=4096))
def test_random_bytes(tmp_path: Path, content: bytes) -> None:
    directory, result = load_entries(tmp_path, [Entry("junk.yaml", "bytes", content)])
    check_load(result, directory, [DISK_ROOT])
    assert result.specs == {}
    count("loader: random bytes")


@fuzz_settings()
@given(text=st.one_of(yaml_like_text, st.text(max_size=400)))
def test_random_yaml_text(tmp_path: Path, text: str) -> None:
    directory, result = load_entries(tmp_path, [Entry("junk.yaml", "text", text)])
    check_load(result, directory, [DISK_ROOT])
    assert result.specs == {}
    count("loader: random YAML-like text")


@fuzz_settings()
@given(documents=st.lists(mutated_document(), min_size=1, max_size=5), flow=st.booleans(),
       one_file=st.booleans())
def test_documents_near_the_schema(
    tmp_path: Path, documents: list[object], flow: bool, one_file: bool,
) -> None:
    texts = [dump(document, flow=flow) for document in documents]
    items = ([Entry("all.yaml", "text", multi(texts))] if one_file else
             [Entry(f"doc-{i}.yaml", "text", text) for i, text in enumerate(texts)])
    directory, result = load_entries(tmp_path, items)
    check_load(result, directory, [DISK_ROOT])
    count("loader: mutated documents near the schema")


# Junk that holds no readable VM name, so it cannot make a valid manifest a duplicate.
_junk_text = st.one_of(yaml_like_text, st.text(max_size=200)).filter(
    lambda text: "name" not in text)
# a folder named like a file is searched like any folder: its broken inside.yaml is reported
_ALWAYS_REPORTED = {"junk/laughs.yaml", "junk/deep.yaml", "junk/dir.yaml/inside.yaml",
                    "junk/dangling.yaml", "junk/fifo.yaml"}
_junk = st.one_of(
    st.builds(Entry, st.just("junk/bytes.yaml"), st.just("bytes"), st.binary(max_size=300)),
    st.builds(Entry, st.just("junk/text.yaml"), st.just("text"), _junk_text),
    st.builds(Entry, st.just("junk/laughs.yaml"), st.just("text"),
              st.integers(6, 12).map(lambda depth: billion_laughs("junk-bomb", depth))),
    st.builds(Entry, st.just("junk/deep.yaml"), st.just("text"),
              st.builds(deep_text, st.integers(1000, 3000), st.sampled_from(["flow", "map"]))),
    st.builds(Entry, st.just("junk/dir.yaml"), st.just("dir")),
    st.builds(Entry, st.just("junk/dangling.yaml"), st.just("dangling")),
    st.builds(Entry, st.just("junk/fifo.yaml"), st.just("fifo")),
    st.builds(Entry, st.just("junk/empty.yaml"), st.just("text"),
              st.sampled_from(["", "\n", "---\n---\n", "# nothing\n"])),
)


@st.composite
def _valid_files(draw: st.DrawFn) -> list[Entry]:
    vm_names = draw(st.lists(names.filter(lambda n: n != "junk-bomb"), min_size=1, max_size=4,
                             unique=True))
    return [Entry(f"vms/{name}.yaml", "text", draw(rendered_document(valid_document(name=name))))
            for name in vm_names]


@fuzz_settings()
@given(valid=_valid_files(), junk=st.lists(_junk, max_size=6, unique_by=lambda e: e.name))
def test_junk_never_hides_or_changes_a_valid_manifest(
    tmp_path: Path, valid: list[Entry], junk: list[Entry],
) -> None:
    _, alone = load_entries(tmp_path, valid)
    assert alone.invalid == [] and len(alone.specs) == len(valid)
    directory, result = load_entries(tmp_path, valid + junk)
    check_load(result, directory, [DISK_ROOT])
    assert result.specs == alone.specs
    reported = {entry.file for entry in result.invalid}
    junk_files = {entry.name for entry in junk} | {
        f"{entry.name}/inside.yaml" for entry in junk if entry.kind == "dir"}
    assert reported <= junk_files
    assert junk_files & _ALWAYS_REPORTED <= reported
    assert "junk/empty.yaml" not in reported
    assert result.prune_safe is (not result.invalid)
    count("loader: valid manifests among junk files")
