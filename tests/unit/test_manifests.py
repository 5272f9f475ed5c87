"""The manifest loader: files, YAML, schema, defaults and the cross-document checks.

Every invalid case must name the exact file, document index and field path,
and must keep the VM's name in `invalid_names` whenever the name can be read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.manifests import Invalid, LoadResult, load_directory
from controller.model import DesiredState, Disk, Interface, UpdatePolicy, VMSpec

DROP = object()  # a spec value that removes the key


def vm(name: Any = "web-1", /, **spec: Any) -> dict[str, Any]:
    """A minimal valid VirtualMachine document; spec keys set to DROP are removed."""
    fields = {"memory": 64, "vcpus": 1, **spec}
    return {
        "apiVersion": "reconcile/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {key: value for key, value in fields.items() if value is not DROP},
    }


def write(directory: Path, relative: str, *documents: Any) -> Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def write_text(directory: Path, relative: str, text: str | bytes) -> Path:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load(directory: Path, images: Path | None = None, *more_roots: Path) -> LoadResult:
    if images is None:
        return load_directory(str(directory))
    return load_directory(str(directory), disk_roots=[str(images), *map(str, more_roots)])


def only_invalid(result: LoadResult) -> Invalid:
    assert len(result.invalid) == 1, result.invalid
    return result.invalid[0]


# --- valid documents and defaults ---------------------------------------------------------

def test_minimal_document_gets_every_default(manifest_dir: Path) -> None:
    write(manifest_dir, "web.yaml", vm("web-1"))
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.problem is None
    assert result.documents == 1
    assert result.prune_safe is True
    assert result.specs == {"web-1": VMSpec(
        name="web-1", source="web.yaml", state=DesiredState.RUNNING, uuid=None, labels=(),
        memory_kib=65536, current_memory_kib=65536, vcpus=1, type="kvm", arch=None,
        machine=None, autostart=False, update_policy=UpdatePolicy.RESTART, stop_timeout=60,
        adopt=False, suspend=False, disks=(), interfaces=(),
    )}


def test_every_field_is_read(manifest_dir: Path, images: Path) -> None:
    document = vm(
        "db-1",
        state="stopped", memory="2GiB", currentMemory="1536MiB", vcpus=4, type="qemu",
        arch="x86_64", machine="pc-q35-7.2", autostart=True, updatePolicy="next-boot",
        stopTimeout=0, adopt=True, suspend=True,
        disks=[
            {"source": f"{images}/db.qcow2"},
            {"source": f"{images}/data.img", "format": "raw", "target": "sdb", "bus": "scsi",
             "readonly": True},
        ],
        interfaces=[
            {"network": "default"},
            {"bridge": "br0", "mac": "52:54:00:AB:CD:EF", "model": "e1000"},
        ],
    )
    document["metadata"]["uuid"] = "6C5D1E2F3A4B4C5D8E9FA0B1C2D3E4F5"
    document["metadata"]["labels"] = {"tier": "db", "team": "data"}
    write(manifest_dir, "db.yaml", document)
    result = load(manifest_dir, images)
    assert result.invalid == []
    assert result.specs == {"db-1": VMSpec(
        name="db-1", source="db.yaml", state=DesiredState.STOPPED,
        uuid="6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5",
        labels=(("team", "data"), ("tier", "db")),
        memory_kib=2 * 1024**2, current_memory_kib=1536 * 1024, vcpus=4, type="qemu",
        arch="x86_64", machine="pc-q35-7.2", autostart=True,
        update_policy=UpdatePolicy.NEXT_BOOT, stop_timeout=0, adopt=True, suspend=True,
        disks=(
            Disk(source=f"{images}/db.qcow2", target="vda", format="qcow2", bus="virtio"),
            Disk(source=f"{images}/data.img", target="sdb", format="raw", bus="scsi",
                 readonly=True),
        ),
        interfaces=(
            Interface(network="default", model="virtio"),
            Interface(bridge="br0", mac="52:54:00:ab:cd:ef", model="e1000"),
        ),
    )}


@pytest.mark.parametrize(
    ("memory", "current", "memory_kib", "current_kib"),
    [
        (64, DROP, 65536, 65536),
        ("1GiB", DROP, 1048576, 1048576),
        ("100000KB", DROP, 97657, 97657),
        ("1GiB", "512MiB", 1048576, 524288),
        ("1GiB", "1GiB", 1048576, 1048576),
        ("1GB", "1000MB", 976563, 976563),
        ("2G", 1024, 2097152, 1048576),
    ],
)
def test_memory_sizes_and_current_memory_default(
    manifest_dir: Path, memory: Any, current: Any, memory_kib: int, current_kib: int,
) -> None:
    write(manifest_dir, "vm.yaml", vm("vm", memory=memory, currentMemory=current))
    spec = load(manifest_dir).specs["vm"]
    assert (spec.memory_kib, spec.current_memory_kib) == (memory_kib, current_kib)


def test_state_absent_needs_neither_memory_nor_vcpus(manifest_dir: Path) -> None:
    write(manifest_dir, "old.yaml", vm("old", state="absent", memory=DROP, vcpus=DROP))
    result = load(manifest_dir)
    assert result.invalid == []
    spec = result.specs["old"]
    assert (spec.state, spec.memory_kib, spec.vcpus) == (DesiredState.ABSENT, 0, 0)
    assert result.prune_safe is True


def test_disk_targets_default_per_bus_and_skip_explicit_ones(
    manifest_dir: Path, images: Path,
) -> None:
    disks = [
        {"source": f"{images}/a.qcow2"},
        {"source": f"{images}/b.qcow2", "target": "vdb"},
        {"source": f"{images}/c.qcow2"},
        {"source": f"{images}/d.qcow2", "bus": "sata"},
        {"source": f"{images}/e.qcow2", "bus": "scsi"},
        {"source": f"{images}/f.qcow2", "bus": "virtio"},
    ]
    write(manifest_dir, "vm.yaml", vm("vm", disks=disks))
    spec = load(manifest_dir, images).specs["vm"]
    assert [(d.target, d.bus) for d in spec.disks] == [
        ("vda", "virtio"), ("vdb", "virtio"), ("vdc", "virtio"),
        ("sda", "sata"), ("sdb", "scsi"), ("vdd", "virtio"),
    ]


def test_disk_targets_go_past_z_like_libvirt(manifest_dir: Path, images: Path) -> None:
    disks = [{"source": f"{images}/{n}.img", "format": "raw"} for n in range(28)]
    write(manifest_dir, "vm.yaml", vm("vm", disks=disks))
    targets = [d.target for d in load(manifest_dir, images).specs["vm"].disks]
    assert targets[:2] == ["vda", "vdb"]
    assert targets[25:] == ["vdz", "vdaa", "vdab"]


def test_two_disks_with_the_same_target(manifest_dir: Path, images: Path) -> None:
    disks = [{"source": f"{images}/a.img", "target": "vdb"},
             {"source": f"{images}/b.img", "target": "vdb"}]
    write(manifest_dir, "vm.yaml", vm("vm", disks=disks))
    result = load(manifest_dir, images)
    assert only_invalid(result) == Invalid(
        "vm.yaml", 0, "spec.disks[1].target", "target vdb is used by two disks")
    assert result.invalid_names == {"vm"}
    assert result.specs == {}


# --- files: recursion, ignored names, several documents ----------------------------------

def test_recursion_and_ignored_files(manifest_dir: Path) -> None:
    write(manifest_dir, "top.yaml", vm("top"))
    write(manifest_dir, "a/b/c/deep.yml", vm("deep"))
    write(manifest_dir, "x.yaml/inside.yaml", vm("inside"))  # a directory named x.yaml
    junk = "this: is: not: yaml: [\n"
    for ignored in (
        ".hidden.yaml", ".git/config.yaml", ".git/objects/x.yml", "a/.cache/vm.yaml",
        ".#top.yaml", "a/.#lock.yaml", "top.yaml~", "top.yaml.swp", "top.yaml.swx",
        "top.yaml.tmp", "4913", "a/4913", "notes.txt", "README.md", "vm.json", "yaml",
    ):
        write_text(manifest_dir, ignored, junk)
    result = load(manifest_dir)
    assert result.invalid == []
    assert {name: spec.source for name, spec in result.specs.items()} == {
        "top": "top.yaml",
        "deep": "a/b/c/deep.yml",
        "inside": "x.yaml/inside.yaml",
    }
    assert result.documents == 3
    assert result.prune_safe is True


def test_multi_document_files_skip_empty_documents(manifest_dir: Path) -> None:
    text = "---\n---\n" + yaml.safe_dump(vm("one")) + "---\n# only a comment\n---\n" \
        + yaml.safe_dump(vm("two")) + "...\n---\n" + yaml.safe_dump(vm("three", vcpus="x"))
    write_text(manifest_dir, "many.yaml", text)
    result = load(manifest_dir)
    assert sorted(result.specs) == ["one", "two"]
    assert result.documents == 3
    # the index counts every document of the file, empty ones included
    assert only_invalid(result) == Invalid(
        "many.yaml", 4, "spec.vcpus", "'x' is not of type 'integer'")
    assert result.invalid_names == {"three"}


def test_files_of_empty_documents_only_hold_no_manifests(manifest_dir: Path) -> None:
    write_text(manifest_dir, "empty.yaml", "")
    write_text(manifest_dir, "comments.yaml", "# nothing here\n---\n---\n")
    result = load(manifest_dir)
    assert (result.invalid, result.specs, result.documents) == ([], {}, 0)
    assert result.problem == f"manifest directory {manifest_dir} holds no manifests"
    assert result.prune_safe is False


# --- schema errors: file, document index, field path -------------------------------------

def _vm_with(**metadata: Any) -> dict[str, Any]:
    document = vm("web-1")
    document["metadata"].update(metadata)
    return document


def _vm_top(**top: Any) -> dict[str, Any]:
    document = vm("web-1")
    document.update(top)
    return {key: value for key, value in document.items() if value is not DROP}


@pytest.mark.parametrize(
    ("document", "path", "error"),
    [
        # wrong types and values
        (vm("web-1", vcpus="two"), "spec.vcpus", "'two' is not of type 'integer'"),
        (vm("web-1", vcpus=True), "spec.vcpus", "True is not of type 'integer'"),
        (vm("web-1", vcpus=1.5), "spec.vcpus", "1.5 is not of type 'integer'"),
        (vm("web-1", vcpus=0), "spec.vcpus", "0 is less than the minimum of 1"),
        (vm("web-1", memory="1.5GiB"), "spec.memory", "'1.5GiB' is not a memory size"),
        (vm("web-1", memory="12 parsecs"), "spec.memory", "'12 parsecs' is not a memory size"),
        (vm("web-1", memory=[64]), "spec.memory", "[64] is not a memory size"),
        (vm("web-1", memory=0), "spec.memory", "0 is not a memory size"),
        (vm("web-1", currentMemory="1gib"), "spec.currentMemory", "'1gib' is not a memory size"),
        (vm("web-1", state="paused"), "spec.state", "'paused' is not one of"),
        (vm("web-1", type="xen"), "spec.type", "'xen' is not one of ['kvm', 'qemu']"),
        (vm("web-1", updatePolicy="later"), "spec.updatePolicy", "'later' is not one of"),
        (vm("web-1", stopTimeout=-1), "spec.stopTimeout", "-1 is less than the minimum of 0"),
        (vm("web-1", autostart="yes"), "spec.autostart", "'yes' is not of type 'boolean'"),
        (vm("web-1", adopt=1), "spec.adopt", "1 is not of type 'boolean'"),
        (vm("web-1", arch="x86 64"), "spec.arch", "does not match"),
        (vm("web-1", machine="<pc>"), "spec.machine", "does not match"),
        (vm("web-1", disks={"source": "/x"}), "spec.disks", "is not of type 'array'"),
        # unknown fields
        (vm("web-1", cpus=2), "spec.cpus", "unknown field(s) ('cpus' was unexpected)"),
        (_vm_top(status={}), "status", "unknown field(s) ('status' was unexpected)"),
        (_vm_with(annotations={}), "metadata.annotations", "unknown field(s)"),
        # missing fields
        (vm("web-1", memory=DROP), "spec.memory", "'memory' is a required property"),
        (vm("web-1", vcpus=DROP), "spec.vcpus", "'vcpus' is a required property"),
        (vm("web-1", state="running", memory=DROP), "spec.memory", "'memory' is a required"),
        (vm("web-1", state="stopped", memory=DROP), "spec.memory", "'memory' is a required"),
        (_vm_top(spec=DROP), "spec", "'spec' is a required property"),
        (_vm_top(metadata=DROP), "metadata", "'metadata' is a required property"),
        (_vm_top(apiVersion=DROP), "apiVersion", "'apiVersion' is a required property"),
        (_vm_top(apiVersion="reconcile/v2"), "apiVersion", "'reconcile/v1' was expected"),
        (_vm_top(kind="Pod"), "kind", "'VirtualMachine' was expected"),
        # metadata
        (_vm_with(uuid="not-a-uuid"), "metadata.uuid", "does not match"),
        (_vm_with(labels={"team": 5}), "metadata.labels.team", "5 is not of type 'string'"),
        (_vm_with(labels=["team"]), "metadata.labels", "is not of type 'object'"),
        # disks
        (vm("web-1", disks=[{"format": "raw"}]), "spec.disks[0]",
         "a disk needs exactly one of source: (a file) or volume:"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "volume": "a"}]),
         "spec.disks[0]", "a disk needs exactly one of source: (a file) or volume:"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "size": "1GiB"}]),
         "spec.disks[0]", "pool, image, copy, size and onRemove go with volume:"),
        (vm("web-1", disks=[{"volume": "../x"}]), "spec.disks[0].volume", "does not match"),
        (vm("web-1", disks=[{"source": "images/a.qcow2"}]), "spec.disks[0].source",
         "does not match"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "format": "vmdk"}]),
         "spec.disks[0].format", "'vmdk' is not one of ['qcow2', 'raw']"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "bus": "usb"}]),
         "spec.disks[0].bus", "'usb' is not one of"),
        (vm("web-1", disks=[{"source": f"/var/lib/libvirt/images/{n}"} for n in range(1025)]),
         "spec.disks", "1025 items; at most 1024 allowed"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "target": "vd1"}]),
         "spec.disks[0].target", "does not match"),
        (vm("web-1", disks=[{"source": "/var/lib/libvirt/images/a", "cache": "none"}]),
         "spec.disks[0].cache", "unknown field(s) ('cache' was unexpected)"),
        # interfaces
        (vm("web-1", interfaces=[{"network": "default", "bridge": "br0"}]),
         "spec.interfaces[0]", "an interface needs exactly one of network: or bridge:"),
        (vm("web-1", interfaces=[{"model": "virtio"}]),
         "spec.interfaces[0]", "an interface needs exactly one of network: or bridge:"),
        (vm("web-1", interfaces=[{"network": "default"}, {"bridge": "br0", "mac": "52:54"}]),
         "spec.interfaces[1].mac", "does not match"),
        (vm("web-1", interfaces=[{"network": "a<b"}]), "spec.interfaces[0].network",
         "does not match"),
    ],
)
def test_schema_errors_name_the_field(
    manifest_dir: Path, document: dict[str, Any], path: str, error: str,
) -> None:
    write(manifest_dir, "good.yaml", vm("good"))
    write(manifest_dir, "sub/bad.yaml", vm("other"), document)
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("sub/bad.yaml", 1, path)
    assert error in invalid.error
    assert str(invalid) == f"sub/bad.yaml[1]: {path}: {invalid.error}"
    assert invalid.to_json() == {"file": "sub/bad.yaml", "document": 1, "path": path,
                                 "error": invalid.error}
    assert sorted(result.specs) == ["good", "other"]
    assert "web-1" in result.invalid_names or "metadata" not in document
    assert result.prune_safe is False


@pytest.mark.parametrize(
    "name",
    ["web<1>", "a&b", "it's", 'say"hi"', "x>y", "-lead", ".dot", "white space", "", "ü",
     "a/b", "x" * 65, "line\nbreak"],
)
def test_bad_names_are_rejected(manifest_dir: Path, name: str) -> None:
    write(manifest_dir, "vm.yaml", vm(name))
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("vm.yaml", 0, "metadata.name")
    assert "does not match" in invalid.error
    assert result.specs == {}


@pytest.mark.parametrize("name", [42, None, ["web-1"], {"x": 1}])
def test_names_of_wrong_type(manifest_dir: Path, name: Any) -> None:
    write(manifest_dir, "vm.yaml", vm(name))
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("vm.yaml", 0, "metadata.name")
    assert "is not of type 'string'" in invalid.error
    assert result.invalid_names == set()


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (["a", "list"], "['a', 'list'] is not of type 'object'"),
        ("just a string", "'just a string' is not of type 'object'"),
        (42, "42 is not of type 'object'"),
    ],
)
def test_documents_that_are_not_mappings(manifest_dir: Path, document: Any, error: str) -> None:
    write(manifest_dir, "vm.yaml", document)
    assert only_invalid(load(manifest_dir)) == Invalid("vm.yaml", 0, "", error)


def test_current_memory_above_memory(manifest_dir: Path) -> None:
    write(manifest_dir, "vm.yaml", vm("vm", memory="1GiB", currentMemory="2GiB"))
    result = load(manifest_dir)
    assert only_invalid(result) == Invalid(
        "vm.yaml", 0, "spec.currentMemory",
        "currentMemory '2GiB' is more than memory '1GiB'")
    assert result.invalid_names == {"vm"}


def test_memory_above_one_pib(manifest_dir: Path) -> None:
    write(manifest_dir, "vm.yaml", vm("vm", memory="1025TiB"))
    result = load(manifest_dir)
    assert only_invalid(result) == Invalid(
        "vm.yaml", 0, "spec.memory", "'1025TiB' is larger than 1 PiB")
    assert result.invalid_names == {"vm"}


# --- names across documents ---------------------------------------------------------------

def test_duplicate_names_across_files_are_both_invalid(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("web-1"))
    write(manifest_dir, "b/b.yaml", vm("other"), vm("web-1", vcpus=2))
    write(manifest_dir, "c.yaml", vm("fine"))
    result = load(manifest_dir)
    assert result.invalid == [
        Invalid("a.yaml", 0, "metadata.name", "name 'web-1' is also defined in b/b.yaml[1]"),
        Invalid("b/b.yaml", 1, "metadata.name", "name 'web-1' is also defined in a.yaml[0]"),
    ]
    assert result.invalid_names == {"web-1"}
    assert sorted(result.specs) == ["fine", "other"]
    assert result.prune_safe is False


def test_duplicate_name_in_one_file(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("web-1"), vm("web-1"), vm("web-1"))
    result = load(manifest_dir)
    assert [(i.document, i.error) for i in result.invalid] == [
        (0, "name 'web-1' is also defined in a.yaml[1], a.yaml[2]"),
        (1, "name 'web-1' is also defined in a.yaml[0], a.yaml[2]"),
        (2, "name 'web-1' is also defined in a.yaml[0], a.yaml[1]"),
    ]
    assert result.specs == {}


def test_a_name_also_used_by_an_invalid_document(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("web-1"))
    write(manifest_dir, "b.yaml", vm("web-1", vcpus="many"))
    result = load(manifest_dir)
    assert result.invalid == [
        Invalid("b.yaml", 0, "spec.vcpus", "'many' is not of type 'integer'"),
        Invalid("a.yaml", 0, "metadata.name",
                "name 'web-1' is also defined in an invalid document"),
    ]
    assert result.invalid_names == {"web-1"}
    assert result.specs == {}


# --- files that are not YAML, or not readable ---------------------------------------------

def test_not_yaml_invalidates_the_whole_file_and_keeps_names(manifest_dir: Path) -> None:
    text = yaml.safe_dump(vm("first")) + "---\n" + yaml.safe_dump(vm("second")) \
        + "---\nspec: {memory: 64, vcpus: 1\n---\n" + yaml.safe_dump(vm("after"))
    write_text(manifest_dir, "broken.yaml", text)
    write(manifest_dir, "ok.yaml", vm("ok"))
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("broken.yaml", 2, "")
    assert invalid.error.startswith("not valid YAML: ")
    assert "(line " in invalid.error
    # names read before the error stay untouchable; what follows was never read
    assert result.invalid_names == {"first", "second"}
    assert sorted(result.specs) == ["ok"]
    assert result.prune_safe is False


def test_a_valid_name_clashing_with_a_broken_file(manifest_dir: Path) -> None:
    write_text(manifest_dir, "a.yaml", yaml.safe_dump(vm("web-1")) + "---\n[unclosed\n")
    write(manifest_dir, "b.yaml", vm("web-1"))
    result = load(manifest_dir)
    assert [(i.file, i.document, i.path) for i in result.invalid] == [
        ("a.yaml", 1, ""), ("b.yaml", 0, "metadata.name")]
    assert result.specs == {}


_HEAD = "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: a}\n"


@pytest.mark.parametrize(
    ("text", "document", "duplicate"),
    [
        (_HEAD + "spec: {memory: 64, vcpus: 1, vcpus: 2}\n", 0, "duplicate key 'vcpus'"),
        (_HEAD + "spec: {memory: 64, vcpus: 1}\n---\nkind: x\nkind: y\n", 1,
         "duplicate key 'kind'"),
        ("metadata: {name: a}\nmetadata: {name: b}\n", 0, "duplicate key 'metadata'"),
        ("? [a, b]\n: 1\n", 0, "a mapping key must be a plain value"),
    ],
)
def test_duplicate_keys_make_the_file_invalid(
    manifest_dir: Path, text: str, document: int, duplicate: str,
) -> None:
    write_text(manifest_dir, "dup.yaml", text)
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("dup.yaml", document, "")
    assert invalid.error.startswith(f"not valid YAML: {duplicate}")
    assert result.specs == {}
    assert result.invalid_names == ({"a"} if document == 1 else set())


def _billion_laughs(name: str) -> str:
    lines = ["apiVersion: reconcile/v1", "kind: VirtualMachine",
             f"metadata: {{name: {name}}}", "spec:", "  memory: 64", "  vcpus: 1",
             'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 12)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_without_expanding_it(manifest_dir: Path) -> None:
    write_text(manifest_dir, "bomb.yaml", _billion_laughs("bomb"))
    write(manifest_dir, "ok.yaml", vm("ok"))
    results: list[LoadResult] = []
    worker = threading.Thread(target=lambda: results.append(load(manifest_dir)), daemon=True)
    worker.start()
    worker.join(timeout=60)  # a guard against a hang, not a timing assertion
    assert results, "loading an alias bomb did not finish"
    result = results[0]
    assert only_invalid(result) == Invalid(
        "bomb.yaml", 0, "", "not usable YAML: more than 100000 nodes once aliases are expanded")
    assert result.invalid_names == {"bomb"}
    assert sorted(result.specs) == ["ok"]


def test_very_deep_nesting_of_the_yaml_itself(manifest_dir: Path) -> None:
    write_text(manifest_dir, "deep.yaml", "[" * 100_000 + "]" * 100_000 + "\n")
    invalid = only_invalid(load(manifest_dir))
    assert (invalid.file, invalid.document, invalid.path) == ("deep.yaml", 0, "")
    assert invalid.error.startswith(("not valid YAML: ", "not usable YAML: "))
    assert "depth" in invalid.error or "nested too deeply" in invalid.error


def test_deep_nesting_inside_a_document_keeps_its_name(manifest_dir: Path) -> None:
    depth = 990  # below libyaml's own limit of 1000, above Python's recursion budget
    write_text(manifest_dir, "deep.yaml",
               "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: deep\n"
               "  labels: {x: " + "[" * depth + "]" * depth + "}\n"
               "spec: {memory: 64, vcpus: 1}\n")
    result = load(manifest_dir)
    assert only_invalid(result) == Invalid("deep.yaml", 0, "", "nested too deeply")
    assert result.invalid_names == {"deep"}


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (bytes(range(256)) * 8, "cannot read: 'utf-8' codec can't decode byte 0x80"),
        ("metadata: {name: café}\n".encode("latin-1"),
         "cannot read: 'utf-8' codec can't decode byte 0xe9"),
        (b"\xff\xfe\x00a\x00p\x00i", "cannot read: 'utf-8' codec can't decode byte 0xff"),
    ],
)
def test_files_that_are_not_utf8(manifest_dir: Path, content: bytes, error: str) -> None:
    write_text(manifest_dir, "junk.yaml", content)
    write(manifest_dir, "ok.yaml", vm("ok"))
    result = load(manifest_dir)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("junk.yaml", None, "")
    assert invalid.error.startswith(error)
    assert sorted(result.specs) == ["ok"]
    assert result.prune_safe is False


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02\x03\x04", b"\x1b[31mred\x1b[0m: x\n", b"{{{{]]]]", b"key: 'unterminated\n",
     b"\tindented: with a tab\n  - mixed\n"],
)
def test_utf8_junk_is_not_valid_yaml(manifest_dir: Path, content: bytes) -> None:
    write_text(manifest_dir, "junk.yaml", content)
    invalid = only_invalid(load(manifest_dir))
    assert (invalid.file, invalid.document, invalid.path) == ("junk.yaml", 0, "")
    assert invalid.error.startswith("not valid YAML: ")


def test_fifo_and_dangling_symlink_are_reported_not_read(manifest_dir: Path) -> None:
    os.mkfifo(manifest_dir / "pipe.yaml")  # opening it would block forever
    (manifest_dir / "dangling.yaml").symlink_to(manifest_dir / "missing.yaml")
    write(manifest_dir, "ok.yaml", vm("ok"))
    result = load(manifest_dir)
    assert result.invalid == [
        Invalid("dangling.yaml", None, "", "cannot read: not a regular file"),
        Invalid("pipe.yaml", None, "", "cannot read: not a regular file"),
    ]
    assert sorted(result.specs) == ["ok"]
    assert result.prune_safe is False


def test_symlinked_manifest_file_is_read(manifest_dir: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "elsewhere/real.yaml", vm("linked"))
    (manifest_dir / "link.yaml").symlink_to(outside)
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.specs["linked"].source == "link.yaml"


_LOAD_AS_UNPRIVILEGED = """
import json, sys
from controller.manifests import load_directory
result = load_directory(sys.argv[1])
print(json.dumps({"invalid": [i.to_json() for i in result.invalid], "problem": result.problem,
                  "specs": sorted(result.specs), "prune_safe": result.prune_safe}))
"""


def _load_without_dac_override(directory: Path) -> dict[str, Any]:
    """Load in a child that cannot bypass file permissions, even when we are root.

    Root reads a chmod 000 file regardless; dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set before exec makes the child
    subject to the permission bits like anyone else.
    """
    command = [sys.executable, "-c", _LOAD_AS_UNPRIVILEGED, str(directory)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    loaded: dict[str, Any] = json.loads(completed.stdout)
    return loaded


def test_unreadable_file_and_folder(manifest_dir: Path) -> None:
    write(manifest_dir, "ok.yaml", vm("ok"))
    secret = write(manifest_dir, "secret.yaml", vm("secret"))
    locked = manifest_dir / "locked"
    write(locked, "inner.yaml", vm("inner"))
    secret.chmod(0)
    locked.chmod(0)
    try:
        loaded = _load_without_dac_override(manifest_dir)
    finally:
        locked.chmod(0o755)
    assert loaded == {
        "invalid": [
            {"file": "secret.yaml", "document": None, "path": "",
             "error": "cannot read: Permission denied"},
            {"file": "locked", "document": None, "path": "",
             "error": "cannot read: Permission denied"},
        ],
        "problem": None,
        "specs": ["ok"],
        "prune_safe": False,
    }


def test_unreadable_manifest_directory(manifest_dir: Path) -> None:
    write(manifest_dir, "ok.yaml", vm("ok"))
    manifest_dir.chmod(0)
    try:
        loaded = _load_without_dac_override(manifest_dir)
    finally:
        manifest_dir.chmod(0o755)
    assert loaded == {
        "invalid": [],
        "problem": f"manifest directory {manifest_dir} is not readable",
        "specs": [],
        "prune_safe": False,
    }


# --- the directory itself: prune safety -----------------------------------------------------

def test_missing_directory(tmp_path: Path) -> None:
    result = load(tmp_path / "nope")
    assert result.problem == f"manifest directory {tmp_path / 'nope'} does not exist"
    assert (result.specs, result.invalid, result.prune_safe) == ({}, [], False)


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "vm.yaml", vm("vm"))
    result = load(path)
    assert result.problem == f"manifest path {path} is not a directory"
    assert (result.specs, result.prune_safe) == ({}, False)


def test_empty_directory(manifest_dir: Path) -> None:
    result = load(manifest_dir)
    assert result.problem == f"manifest directory {manifest_dir} holds no manifests"
    assert (result.specs, result.invalid, result.documents, result.prune_safe) == (
        {}, [], 0, False)


def test_directory_with_only_ignored_files(manifest_dir: Path) -> None:
    write(manifest_dir, ".hidden/vm.yaml", vm("vm"))
    write(manifest_dir, "vm.yaml~", vm("vm"))
    result = load(manifest_dir)
    assert result.problem == f"manifest directory {manifest_dir} holds no manifests"
    assert result.prune_safe is False


def test_only_invalid_documents_is_not_called_empty(manifest_dir: Path) -> None:
    write(manifest_dir, "bad.yaml", vm("bad", vcpus="x"))
    result = load(manifest_dir)
    assert result.problem is None
    assert result.documents == 1
    assert result.prune_safe is False


def test_prune_safe_when_everything_is_valid(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("a"), vm("b", state="absent"))
    result = load(manifest_dir)
    assert (result.problem, result.invalid, result.documents) == (None, [], 2)
    assert result.prune_safe is True


# --- disk sources ---------------------------------------------------------------------------

def _disk_vm(name: str, *sources: str) -> dict[str, Any]:
    return vm(name, disks=[{"source": source} for source in sources])


def _disk_error(manifest_dir: Path, images: Path, source: str, *roots: Path) -> Invalid:
    write(manifest_dir, "vm.yaml", _disk_vm("vm", f"{images}/fine.qcow2", source))
    result = load(manifest_dir, images, *roots)
    assert result.specs == {}
    assert result.invalid_names == {"vm"}
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == (
        "vm.yaml", 0, "spec.disks[1].source")
    return invalid


def test_source_inside_the_default_root(manifest_dir: Path) -> None:
    source = f"/var/lib/libvirt/images/unit-{uuid.uuid4().hex}.qcow2"  # need not exist
    write(manifest_dir, "vm.yaml", _disk_vm("vm", source))
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.specs["vm"].disks == (Disk(source=os.path.realpath(source), target="vda"),)


@pytest.mark.parametrize(
    "source",
    ["/etc/shadow", "/var/lib/libvirt/images-evil/x.qcow2", "/var/lib/libvirt/x.qcow2",
     "/var/lib/libvirt/images/../qemu/x.qcow2"],
)
def test_sources_outside_the_default_root(manifest_dir: Path, source: str) -> None:
    write(manifest_dir, "vm.yaml", _disk_vm("vm", source))
    invalid = only_invalid(load(manifest_dir))
    assert (invalid.file, invalid.document, invalid.path) == ("vm.yaml", 0, "spec.disks[0].source")
    assert "is outside the allowed disk roots (/var/lib/libvirt/images)" in invalid.error


def test_source_outside_a_custom_root(manifest_dir: Path, images: Path) -> None:
    invalid = _disk_error(manifest_dir, images, "/var/lib/libvirt/images/x.qcow2")
    assert invalid.error == (f"/var/lib/libvirt/images/x.qcow2 is outside the allowed disk "
                             f"roots ({images}); see --disk-root")


def test_dot_dot_traversal(manifest_dir: Path, images: Path, tmp_path: Path) -> None:
    invalid = _disk_error(manifest_dir, images, f"{images}/../secret.img")
    assert invalid.error.startswith(
        f"{images}/../secret.img (resolves to {tmp_path}/secret.img) is outside")


def test_symlink_inside_pointing_outside(manifest_dir: Path, images: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.qcow2").write_bytes(b"")
    (images / "sneaky.qcow2").symlink_to(tmp_path / "outside.qcow2")
    invalid = _disk_error(manifest_dir, images, f"{images}/sneaky.qcow2")
    assert invalid.error.startswith(
        f"{images}/sneaky.qcow2 (resolves to {tmp_path}/outside.qcow2) is outside")


def test_symlinked_directory_inside_pointing_outside(
    manifest_dir: Path, images: Path, tmp_path: Path,
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (images / "pool").symlink_to(tmp_path / "elsewhere")
    invalid = _disk_error(manifest_dir, images, f"{images}/pool/not-yet.qcow2")
    assert "is outside the allowed disk roots" in invalid.error


def test_symlink_inside_pointing_inside_uses_the_resolved_path(
    manifest_dir: Path, images: Path,
) -> None:
    (images / "base").mkdir()
    (images / "base" / "real.qcow2").write_bytes(b"")
    (images / "alias.qcow2").symlink_to(images / "base" / "real.qcow2")
    write(manifest_dir, "vm.yaml", _disk_vm("vm", f"{images}/alias.qcow2"))
    result = load(manifest_dir, images)
    assert result.invalid == []
    assert result.specs["vm"].disks == (Disk(source=f"{images}/base/real.qcow2", target="vda"),)


def test_disk_root_that_is_itself_a_symlink(manifest_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "real-images").mkdir()
    (tmp_path / "images-link").symlink_to(tmp_path / "real-images")
    write(manifest_dir, "vm.yaml", _disk_vm("vm", f"{tmp_path}/images-link/a.qcow2"))
    result = load(manifest_dir, tmp_path / "images-link")
    assert result.invalid == []
    assert result.specs["vm"].disks[0].source == f"{tmp_path}/real-images/a.qcow2"


def test_device_outside_the_roots(manifest_dir: Path, images: Path) -> None:
    invalid = _disk_error(manifest_dir, images, "/dev/null")
    assert invalid.error.startswith("/dev/null is outside the allowed disk roots")


def test_device_inside_a_root_is_not_a_disk_image(manifest_dir: Path, images: Path) -> None:
    invalid = _disk_error(manifest_dir, images, "/dev/null", Path("/dev"))
    assert invalid.error == "/dev/null is not a regular file"


def test_symlink_to_a_device(manifest_dir: Path, images: Path) -> None:
    (images / "null.img").symlink_to("/dev/null")
    invalid = _disk_error(manifest_dir, images, f"{images}/null.img")
    assert invalid.error.startswith(f"{images}/null.img (resolves to /dev/null) is outside")


def test_directory_as_a_source(manifest_dir: Path, images: Path) -> None:
    (images / "dir.qcow2").mkdir()
    invalid = _disk_error(manifest_dir, images, f"{images}/dir.qcow2")
    assert invalid.error == f"{images}/dir.qcow2 is not a regular file"


def test_the_root_itself_as_a_source(manifest_dir: Path, images: Path) -> None:
    invalid = _disk_error(manifest_dir, images, f"{images}/")
    assert invalid.error == f"{images}/ is a disk root, not a disk image"


def test_a_second_disk_root(manifest_dir: Path, images: Path, tmp_path: Path) -> None:
    (tmp_path / "fast").mkdir()
    write(manifest_dir, "vm.yaml", _disk_vm("vm", f"{images}/a.qcow2", f"{tmp_path}/fast/b.raw"))
    result = load(manifest_dir, images, tmp_path / "fast")
    assert result.invalid == []
    assert [d.source for d in result.specs["vm"].disks] == [
        f"{images}/a.qcow2", f"{tmp_path}/fast/b.raw"]


def test_one_disk_in_two_vms(manifest_dir: Path, images: Path) -> None:
    write(manifest_dir, "a.yaml", _disk_vm("a", f"{images}/shared.qcow2"))
    write(manifest_dir, "b.yaml", _disk_vm("b", f"{images}/own.qcow2", f"{images}/shared.qcow2"))
    result = load(manifest_dir, images)
    assert result.invalid == [Invalid(
        "b.yaml", 0, "spec.disks[1].source",
        f"{images}/shared.qcow2 is already the disk of 'a' (a.yaml[0])")]
    assert sorted(result.specs) == ["a"]
    assert result.invalid_names == {"b"}
    assert result.prune_safe is False


def test_one_disk_in_two_vms_through_a_symlink(manifest_dir: Path, images: Path) -> None:
    (images / "real.qcow2").write_bytes(b"")
    (images / "alias.qcow2").symlink_to(images / "real.qcow2")
    write(manifest_dir, "a.yaml", _disk_vm("a", f"{images}/real.qcow2"),
          _disk_vm("b", f"{images}/alias.qcow2"))
    result = load(manifest_dir, images)
    assert result.invalid == [Invalid(
        "a.yaml", 1, "spec.disks[0].source",
        f"{images}/real.qcow2 is already the disk of 'a' (a.yaml[0])")]
    assert sorted(result.specs) == ["a"]


@pytest.mark.parametrize("bad", ["\x01", "\n", "\t", "\x7f", "\ufffe"])
def test_sources_with_characters_xml_cannot_hold(manifest_dir: Path, images: Path,
                                                 bad: str) -> None:
    write(manifest_dir, "vm.yaml", _disk_vm("vm", f"{images}/a{bad}b.qcow2"))
    result = load(manifest_dir, images)
    invalid = only_invalid(result)
    assert (invalid.file, invalid.document, invalid.path) == ("vm.yaml", 0, "spec.disks[0].source")
    assert "does not match" in invalid.error
    assert result.invalid_names == {"vm"}


def test_sources_with_xml_metacharacters_are_fine(manifest_dir: Path, images: Path) -> None:
    source = f"{images}/a & b <c> 'd\" é.qcow2"
    write(manifest_dir, "vm.yaml", _disk_vm("vm", source))
    result = load(manifest_dir, images)
    assert result.invalid == []
    assert result.specs["vm"].disks[0].source == source


def test_one_vm_listing_one_image_twice_is_invalid(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: a}\n"
        f"spec: {{memory: 64, vcpus: 1, disks: [{{source: {images}/a.img}}, "
        f"{{source: {images}/a.img, target: vdb}}]}}\n")
    load = load_directory(str(tmp_path / "m"), disk_roots=[str(images)])
    assert [(i.path, i.error) for i in load.invalid] == [
        ("spec.disks[1].source", f"{images}/a.img is listed twice")]


@pytest.mark.parametrize("bus", ["sata", "ide"])
def test_readonly_sata_or_ide_disk_is_invalid(tmp_path: Path, bus: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: a}\n"
        f"spec: {{memory: 64, vcpus: 1, disks: [{{source: {images}/a.img, bus: {bus}, "
        "readonly: true}]}\n")
    load = load_directory(str(tmp_path / "m"), disk_roots=[str(images)])
    assert [(i.path, i.error) for i in load.invalid] == [
        ("spec.disks[0].readonly",
         f"QEMU has no read-only {bus.upper()} disks; use bus: virtio or scsi")]


def test_ide_disks_default_to_hd_targets(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: a}\n"
        f"spec: {{memory: 64, vcpus: 1, disks: [{{source: {tmp_path}/a.img, bus: ide}}, "
        f"{{source: {tmp_path}/b.img, bus: ide}}]}}\n")
    load = load_directory(str(tmp_path / "m"), disk_roots=[str(tmp_path)])
    assert not load.invalid
    assert [(d.target, d.bus) for d in load.specs["a"].disks] == [("hda", "ide"), ("hdb", "ide")]
