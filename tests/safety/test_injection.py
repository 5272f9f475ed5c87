"""Injection: XML metacharacters, path traversal, symlinks out of a disk root, devices and
shared images are rejected as invalid with the exact field and a clear reason; the domain
XML built from hostile but valid strings holds exactly those strings and nothing more."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.cli import main
from controller.domainxml import MANAGED_NS, build_domain, parse_domain
from controller.manifests import load_directory
from controller.model import Result
from controller.virt import Hypervisor
from tests.conftest import TEST_URI
from tests.support.command import run_main

from ..support.rig import Rig
from .conftest import count, fuzz_settings

DEFAULT_ROOT = "/var/lib/libvirt/images"


def vm(name: str = "vm", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": name},
            "spec": {"memory": 64, "vcpus": 1, "stopTimeout": 0, **spec}}


def with_field(path: str, value: Any) -> dict[str, Any]:
    """A valid document with one field set; interface and disk fields get the rest they need."""
    document = vm(interfaces=[{"network": "default"}],
                  disks=[{"source": f"{DEFAULT_ROOT}/vm.qcow2"}])
    if path.startswith("spec.interfaces[0].bridge"):
        document["spec"]["interfaces"] = [{}]
    *parents, leaf = path.replace("[0]", ".0").split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = value
    return document


def validate(capsys: pytest.CaptureFixture[str], directory: Path,
             *roots: Path | str) -> tuple[int, dict[str, Any]]:
    argv = ["validate", "-m", str(directory), "-o", "json"]
    for root in roots:
        argv += ["--disk-root", str(root)]
    code, out, err = run_main(capsys, *argv)
    assert "Traceback" not in out + err
    report: dict[str, Any] = json.loads(out)
    return code, report


def write(directory: Path, filename: str, *documents: Any) -> None:
    (directory / filename).write_text(yaml.safe_dump_all(documents, sort_keys=False))


@pytest.fixture
def manifests(manifest_dir: Path) -> Path:
    return manifest_dir


def rejected(capsys: pytest.CaptureFixture[str], directory: Path, *roots: Path | str,
             ) -> dict[str, Any]:
    """The one invalid entry of a directory holding one bad document in vm.yaml."""
    code, report = validate(capsys, directory, *roots)
    assert code == 2
    assert report["valid"] == []
    (entry,) = report["invalid"]
    assert (entry["file"], entry["document"]) == ("vm.yaml", 0)
    count("injected inputs rejected")
    found: dict[str, Any] = entry
    return found


# --- XML metacharacters and control characters in every string field --------------------

INJECTED_FIELDS = [
    ("metadata.name", value) for value in [
        "a<b", "a>b", "a&b", 'a"b', "a'b", "a]]>b", "<name>x</name>", "x</name><uuid>1</uuid>",
        "a&#x41;", "a&amp;", "web\n", "web\r\n", "\nweb", "a\x00b", "a\tb", "a b", "ünï",
        "вм-1", "web\u2028x", "../etc", "a/b", "-x", ".x", "a" * 65, "",
    ]
] + [
    ("metadata.uuid", "6c5d4a9e-0000-4000-8000-000000000001\n"),
    ("metadata.uuid", "<uuid>6c5d4a9e-0000-4000-8000-000000000001</uuid>"),
    ("spec.machine", "pc'/><x"), ("spec.machine", "pc\n"), ("spec.machine", "pc&q35"),
    ("spec.arch", "x86_64\n"), ("spec.arch", "<arch/>"),
    ("spec.interfaces[0].network", "default'/><source bridge='br0"),
    ("spec.interfaces[0].network", "default\n"), ("spec.interfaces[0].network", "a&b"),
    ("spec.interfaces[0].bridge", 'br0"/>'), ("spec.interfaces[0].bridge", "br0\n"),
    ("spec.interfaces[0].model", "virtio'/><x"), ("spec.interfaces[0].model", "e1000\n"),
    ("spec.interfaces[0].mac", "52:54:00:12:34:56\n"),
    ("spec.interfaces[0].mac", "52:54:00:12:34:56'/>"),
    ("spec.disks[0].target", "vda\n"), ("spec.disks[0].target", "vda'/><x"),
    ("spec.disks[0].source", f"{DEFAULT_ROOT}/a\n.img"),
    ("spec.disks[0].source", f"{DEFAULT_ROOT}/a\x00.img"),
    ("spec.disks[0].source", f"{DEFAULT_ROOT}/a\x1b[2J.img"),
    ("spec.disks[0].source", f"{DEFAULT_ROOT}/a\ufffe.img"),
]


@pytest.mark.parametrize(("path", "value"), INJECTED_FIELDS)
def test_metacharacters_and_control_characters_are_rejected(
    capsys: pytest.CaptureFixture[str], manifests: Path, path: str, value: str,
) -> None:
    write(manifests, "vm.yaml", with_field(path, value))
    entry = rejected(capsys, manifests)
    assert entry["path"] == path
    assert entry["error"] == f"{value!r} does not match {_pattern(path)!r}"


def _pattern(path: str) -> str:
    from controller.manifests import schema
    node: Any = schema()["properties"]
    parts = path.replace("[0]", "").split(".")
    for index, part in enumerate(parts):
        node = node[part]
        if index < len(parts) - 1:
            node = node["items"]["properties"] if "items" in node else node["properties"]
    pattern: str = node["pattern"]
    return pattern


def test_injected_documents_create_no_domain(
    manifests: Path, hypervisor: Hypervisor, rig: Rig,
) -> None:
    """All of the above in one directory beside one valid VM: only that VM is created,
    and with invalid documents present nothing is pruned."""
    for index, (path, value) in enumerate(INJECTED_FIELDS):
        document = with_field(path, value)
        if path != "metadata.name":
            document["metadata"]["name"] = f"injected-{index}"
        write(manifests, f"injected-{index}.yaml", document)
    write(manifests, "good.yaml", vm("good"))
    load = load_directory(str(manifests))
    assert sorted(load.specs) == ["good"]
    assert len(load.invalid) == len(INJECTED_FIELDS)
    report = rig.run_pass(load, prune=True, max_prune=100)
    assert [(o.name, o.result) for o in report.outcomes] == [("good", Result.CONVERGED)]
    names = sorted(dom.name() for dom in hypervisor.connection.conn.listAllDomains(0))
    assert names == ["good", "test"]


# --- disk sources: traversal, symlinks, devices -----------------------------------------

def _disk_error(capsys: pytest.CaptureFixture[str], manifests: Path, source: str,
                *roots: Path | str) -> str:
    write(manifests, "vm.yaml", vm(disks=[{"source": source}]))
    entry = rejected(capsys, manifests, *roots)
    assert entry["path"] == "spec.disks[0].source"
    error: str = entry["error"]
    return error


@pytest.mark.parametrize(("relative", "resolved"), [
    ("../../etc/shadow", "/var/lib/etc/shadow"),
    ("../../../../etc/shadow", "/etc/shadow"),
    ("../qemu/nvram/x_VARS.fd", "/var/lib/libvirt/qemu/nvram/x_VARS.fd"),
])
def test_traversal_out_of_the_default_root(
    capsys: pytest.CaptureFixture[str], manifests: Path, relative: str, resolved: str,
) -> None:
    assert os.path.realpath(DEFAULT_ROOT) == DEFAULT_ROOT
    source = f"{DEFAULT_ROOT}/{relative}"
    assert _disk_error(capsys, manifests, source) == (
        f"{source} (resolves to {resolved}) is outside the allowed disk roots "
        f"({DEFAULT_ROOT}); see --disk-root")


@pytest.mark.parametrize("relative", [
    "../../../../../../../../etc/shadow", "./../images-evil/x.img", "a/../../x.img",
    "..", "../images/../../x.img",
])
def test_traversal_out_of_a_custom_root(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path, relative: str,
) -> None:
    source = f"{images}/{relative}"
    resolved = os.path.realpath(source)
    assert _disk_error(capsys, manifests, source, images) == (
        f"{source} (resolves to {resolved}) is outside the allowed disk roots ({images}); "
        "see --disk-root")


def test_prefix_of_a_root_is_not_inside_it(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path, tmp_path: Path,
) -> None:
    (tmp_path / "images-evil").mkdir()
    source = f"{tmp_path}/images-evil/x.img"
    assert _disk_error(capsys, manifests, source, images) == (
        f"{source} is outside the allowed disk roots ({images}); see --disk-root")


@pytest.mark.parametrize("link", ["file", "folder", "chain", "relative", "dangling"])
def test_symlinks_that_leave_the_root(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path, tmp_path: Path,
    link: str,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.img").write_bytes(b"not yours")
    if link == "file":
        (images / "escape.qcow2").symlink_to("/etc/shadow")
        source, resolved = f"{images}/escape.qcow2", "/etc/shadow"
    elif link == "folder":
        (images / "pool").symlink_to("/etc")
        source, resolved = f"{images}/pool/shadow", "/etc/shadow"
    elif link == "chain":
        (images / "b.img").symlink_to(outside / "secret.img")
        (images / "a.img").symlink_to(images / "b.img")
        source, resolved = f"{images}/a.img", f"{outside}/secret.img"
    elif link == "relative":
        (images / "rel.img").symlink_to("../outside/secret.img")
        source, resolved = f"{images}/rel.img", f"{outside}/secret.img"
    else:
        (images / "later.img").symlink_to(outside / "not-yet.img")
        source, resolved = f"{images}/later.img", f"{outside}/not-yet.img"
    assert _disk_error(capsys, manifests, source, images) == (
        f"{source} (resolves to {resolved}) is outside the allowed disk roots ({images}); "
        "see --disk-root")


def test_symlink_loop_inside_the_root(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path,
) -> None:
    (images / "loop1").symlink_to(images / "loop2")
    (images / "loop2").symlink_to(images / "loop1")
    assert _disk_error(capsys, manifests, f"{images}/loop1", images) == (
        f"{images}/loop1 is not usable: Too many levels of symbolic links")


def _block_device_in_dev() -> str | None:
    for name in sorted(os.listdir("/dev")):
        path = f"/dev/{name}"
        if not os.path.islink(path) and stat.S_ISBLK(os.lstat(path).st_mode):
            return path
    return None


def test_devices_are_not_disk_images(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path,
) -> None:
    """Even when a root holds devices (a root of /dev, a device node, a FIFO), a disk
    source must be a regular file."""
    sources = ["/dev/null", "/dev/zero"]
    block = _block_device_in_dev()
    if block:
        sources.append(block)
    os.mkfifo(images / "fifo.img")
    sources.append(f"{images}/fifo.img")
    try:
        os.mknod(images / "sda", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        os.mknod(images / "null.img", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        sources += [f"{images}/sda", f"{images}/null.img"]
    except PermissionError:
        pass  # no CAP_MKNOD: the devices in /dev above still count
    (images / "folder.img").mkdir()
    sources.append(f"{images}/folder.img")
    for source in sources:
        error = _disk_error(capsys, manifests, source, images, "/dev")
        assert error == f"{source} is not a regular file"
    assert len(sources) >= 4


def test_symlink_to_a_device_leaves_the_root(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path,
) -> None:
    target = _block_device_in_dev() or "/dev/null"
    (images / "disk.img").symlink_to(target)
    assert _disk_error(capsys, manifests, f"{images}/disk.img", images) == (
        f"{images}/disk.img (resolves to {target}) is outside the allowed disk roots "
        f"({images}); see --disk-root")


def test_a_disk_root_itself_and_relative_paths(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path,
) -> None:
    assert _disk_error(capsys, manifests, f"{images}/", images) == (
        f"{images}/ is a disk root, not a disk image")
    assert _disk_error(capsys, manifests, f"{images}/.", images) == (
        f"{images}/. is a disk root, not a disk image")
    write(manifests, "vm.yaml", vm(disks=[{"source": "images/vm.qcow2"}]))
    entry = rejected(capsys, manifests, images)
    assert entry["path"] == "spec.disks[0].source"
    assert entry["error"].startswith("'images/vm.qcow2' does not match ")


# --- one image, two VMs ---------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["same", "dot", "double-slash", "dot-dot", "symlink"])
def test_an_image_already_used_by_another_manifest(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path, spelling: str,
) -> None:
    shared = f"{images}/shared.qcow2"
    (images / "sub").mkdir()
    (images / "alias.qcow2").symlink_to(images / "shared.qcow2")
    other = {"same": shared, "dot": f"{images}/./shared.qcow2",
             "double-slash": f"{images}//shared.qcow2",
             "dot-dot": f"{images}/sub/../shared.qcow2",
             "symlink": f"{images}/alias.qcow2"}[spelling]
    write(manifests, "a.yaml", vm("a", disks=[{"source": shared}]))
    write(manifests, "b.yaml", vm("b", disks=[{"source": f"{images}/own.qcow2"},
                                              {"source": other}]))
    code, report = validate(capsys, manifests, images)
    assert code == 2
    assert report["valid"] == ["a"]
    assert report["invalid"] == [{
        "file": "b.yaml", "document": 0, "path": "spec.disks[1].source",
        "error": f"{shared} is already the disk of 'a' (a.yaml[0])"}]
    count("injected inputs rejected")


def test_a_shared_image_is_never_given_to_the_second_vm(
    capsys: pytest.CaptureFixture[str], manifests: Path, images: Path,
) -> None:
    """`reconcile --once` creates the first VM, refuses the second, and exits 2."""
    shared = f"{images}/shared.qcow2"
    write(manifests, "a.yaml", vm("a", disks=[{"source": shared}]))
    write(manifests, "b.yaml", vm("b", disks=[{"source": shared}]))
    code = main(["--once", "-m", str(manifests), "--disk-root", str(images), "-c", TEST_URI,
                 "-o", "json", "--prune"])
    captured = capsys.readouterr()
    assert code == 2
    report = json.loads(captured.out)
    assert [(vm["name"], vm["result"]) for vm in report["vms"]] == [("a", "converged")]
    assert [entry["file"] for entry in report["invalid"]] == ["b.yaml"]
    count("injected inputs rejected")


def test_an_image_in_use_by_an_existing_domain_is_refused(
    manifests: Path, images: Path, rig: Rig, hypervisor: Hypervisor,
) -> None:
    shared = f"{images}/shared.qcow2"
    write(manifests, "a.yaml", vm("a", disks=[{"source": shared}]))
    first = rig.run_pass(load_directory(str(manifests), disk_roots=[str(images)]),
                            prune=False, max_prune=0)
    assert [o.result for o in first.outcomes] == [Result.CONVERGED]
    (manifests / "a.yaml").unlink()  # 'a' is now an orphan that still holds the image
    write(manifests, "b.yaml", vm("b", disks=[{"source": shared}]))
    report = rig.run_pass(load_directory(str(manifests), disk_roots=[str(images)]),
                             prune=False, max_prune=0)
    (outcome,) = [o for o in report.outcomes if o.name == "b"]
    assert outcome.result in (Result.CONFLICT, Result.FAILED)
    assert outcome.error is not None and shared in outcome.error
    with pytest.raises(libvirt.libvirtError):
        hypervisor.connection.conn.lookupByName("b")


# --- the XML built from hostile but valid strings ----------------------------------------

_component = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="/\ufffe\uffff"),
    min_size=1, max_size=12,
).filter(lambda part: part not in (".", ".."))
_tricky = st.sampled_from(["<", ">", "&", "'", '"', "]]>", "<![CDATA[", "&amp;", "&#0;",
                           "</source><source file='/etc/shadow'/>", "\u2028", "\U0001f600",
                           "é", "\ufeff", " "])
_hostile_component = st.lists(st.one_of(_component, _tricky), min_size=1, max_size=4).map(
    "".join).filter(lambda part: part not in (".", ".."))

_ALLOWED_TAGS = {"domain", "name", "uuid", "metadata", f"{{{MANAGED_NS}}}managed", "memory",
                 "currentMemory", "vcpu", "os", "type", "boot", "features", "acpi", "apic",
                 "devices", "serial", "console", "disk", "driver", "source", "target",
                 "readonly", "interface", "mac", "model"}


@fuzz_settings()
@given(paths=st.lists(st.lists(_hostile_component, min_size=1, max_size=3), min_size=1,
                      max_size=4),
       name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
       bridge=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}", fullmatch=True))
def test_hostile_valid_strings_round_trip_through_the_domain_xml(
    tmp_path: Path, hypervisor: Hypervisor, paths: list[list[str]], name: str, bridge: str,
) -> None:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    sources = sorted({"/".join([str(root), *parts]) for parts in paths})
    directory = tmp_path / f"m-{len(os.listdir(tmp_path))}"
    directory.mkdir()
    document = vm(name, state="stopped", disks=[{"source": s} for s in sources],
                  interfaces=[{"bridge": bridge}])
    (directory / "vm.yaml").write_text(yaml.safe_dump(document, allow_unicode=True),
                                       encoding="utf-8")
    load = load_directory(str(directory), disk_roots=[str(root)])
    assert load.invalid == [], load.invalid
    spec = load.specs[name]
    assert [disk.source for disk in spec.disks] == sources

    xml = build_domain(spec)
    tree = ET.fromstring(xml)
    assert {element.tag for element in tree.iter()} <= _ALLOWED_TAGS
    assert [el.get("file") for el in tree.findall("devices/disk/source")] == sources
    assert tree.findtext("name") == name
    assert len(tree.findall("devices/disk")) == len(sources)
    assert [el.get("bridge") for el in tree.findall("devices/interface/source")] == [bridge]
    assert parse_domain(xml).disks == spec.disks

    # libvirt's own parser reads back the same values, and so does a redefinition
    dom = hypervisor.connection.conn.defineXML(xml)
    try:
        saved = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert parse_domain(saved).name == name
        assert [disk.source for disk in parse_domain(saved).disks] == sources
        again = build_domain(spec, saved)
        assert [disk.source for disk in parse_domain(again).disks] == sources
        hypervisor.connection.conn.defineXML(again)
        assert [d.source for d in parse_domain(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).disks] == sources
    finally:
        dom.undefine()
    count("domain XML round trips of hostile valid disk paths (built, libvirt, redefined)")
