"""The compiled fast path for Image and Hosts documents: what it accepts, the reference
validator (jsonschema, strict integers and ECMA patterns) accepts too, and a manifest
tree with an Image no longer imports jsonschema at all (it cost every such pass ~150 ms,
0.4 s on a loaded machine: benchmarks/results/NOTES.md, issue 13)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.manifests.validation import fast_valid, validator
from tests.safety.strategies import _get, _paths, hostile_values

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
IMAGE: dict[str, Any] = {
    "apiVersion": "reconcile/v1", "kind": "Image",
    "metadata": {"name": "debian-12", "labels": {"os": "debian"}},
    "spec": {"url": "https://images.example/debian.qcow2", "sha256": SHA, "format": "qcow2",
             "pool": "default"}}
HOSTS: dict[str, Any] = {"apiVersion": "reconcile/v1", "kind": "Hosts",
                         "hosts": {"kvm-1": "qemu+ssh://root@kvm-1.example/system"}}
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one to three values replaced, keys deleted or extra keys added."""
    document: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        target = _get(document, path)
        operation = draw(st.sampled_from(["replace", "delete", "extra-key"]))
        if operation == "delete" and path:
            del _get(document, path[:-1])[path[-1]]
        elif operation == "extra-key" and isinstance(target, dict):
            target[draw(st.text(max_size=8))] = draw(hostile_values)
        elif path:
            _get(document, path[:-1])[path[-1]] = draw(hostile_values)
        else:
            document = draw(hostile_values)
    return document


@pytest.mark.parametrize(("kind", "document"), [("Image", IMAGE), ("Hosts", HOSTS)])
def test_valid_documents_take_the_fast_path(kind: str, document: dict[str, Any]) -> None:
    assert validator(kind).is_valid(document)
    assert fast_valid(copy.deepcopy(document), kind)


@pytest.mark.parametrize("change", [
    {"sha256": SHA[:-1]}, {"sha256": SHA + "\n"}, {"url": "ftp://x/y"}, {"url": "http://a b"},
    {"format": "vmdk"}, {"pool": "-p"}, {"extra": 1}])
def test_bad_image_specs_go_to_the_reference(change: dict[str, Any]) -> None:
    document = copy.deepcopy(IMAGE)
    document["spec"].update(change)
    assert not validator("Image").is_valid(document)
    assert not fast_valid(document, "Image")


@SETTINGS
@given(st.one_of(mutated(IMAGE), mutated(HOSTS)))
def test_the_fast_path_never_accepts_what_the_reference_refuses(document: Any) -> None:
    kind = "Hosts" if isinstance(document, dict) and "hosts" in document else "Image"
    try:
        reference = validator(kind).is_valid(document)
    except RecursionError:
        reference = False
    if fast_valid(copy.deepcopy(document), kind):
        assert reference


def test_a_tree_with_an_image_loads_without_jsonschema(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Image\nmetadata: {name: debian}\n"
        f"spec: {{url: 'https://images.example/d.qcow2', sha256: {SHA}}}\n---\n"
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: web}\n"
        "spec: {memory: 64MiB, vcpus: 1, disks: [{volume: web-root, image: debian}]}\n")
    code = ("import sys\nfrom controller.manifests import load_directory\n"
            f"result = load_directory({str(tmp_path)!r})\n"
            "assert not result.invalid, result.invalid\n"
            "assert list(result.images) == ['debian'], result.images\n"
            "print('jsonschema' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
