"""Storage (issue 13) and cloud-init seeds (issue 14) end to end: `reconcile --once` as a
user runs it, on the real libvirtd, with Images served over HTTP (tests/support/httpserver)
or read from file:// URLs, and volumes in a dir pool of each test's own.

Each test checks the exit code, the one line that says what went wrong, and that no
volume was lost or half-used: the pool's volumes (no partial marker left, nothing
created that should not be) and the domain definitions (every volume disk complete).
The faults that need a kill -9 or a daemon restart are in
tests/reliability/test_storage_faults.py.
"""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.support.command import OnceRunner, Pass, Runner, describe
from tests.support.domains import must_read
from tests.support.httpserver import Behaviour, FileServer, http_server
from tests.support.manifests import Manifests, VMBuilder

from .storage_support import (
    MIB,
    Pools,
    assert_sound,
    dense_raw,
    domain_disks,
    domain_xml,
    image_doc,
    image_volume,
    marked_volumes,
    pool_exists,
    pool_volumes,
    sha256_of,
    small_qcow2,
    volume_disk,
    volume_names,
)

__all__ = ["http_server"]  # the fixture, imported for pytest

# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def pools(conn: libvirt.virConnect, prefix: str) -> Iterator[Pools]:
    """Pools of this test's own, removed with their volumes at teardown; and the check that
    no `default` pool appeared (every manifest here names its pools)."""
    had_default = pool_exists(conn, "default")
    made = Pools(lambda: conn, prefix)
    yield made
    made.cleanup()
    if not had_default and pool_exists(conn, "default"):
        pytest.fail("a `default` pool was created; no manifest of this test names it")


@pytest.fixture
def pool(pools: Pools) -> str:
    return pools.make()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def sonce(once: OnceRunner, state_dir: Path) -> OnceRunner:
    """once(...) with this test's own --state-dir (the image cache)."""
    def runner(*args: str, check_exit: int | None = None) -> Pass:
        return once("--state-dir", str(state_dir), *args, check_exit=check_exit)
    return runner


def images_of(result: Pass) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in result.report.get("images", [])}


def actions(entry: dict[str, Any]) -> list[str]:
    return [step["action"] for step in entry["steps"]]


def one_line(text: str | None) -> str:
    assert text and "\n" not in text and "Traceback" not in text, repr(text)
    return text


def gets(server: FileServer) -> int:
    return sum(1 for seen in server.requests if seen.method == "GET")


# --- the happy path ----------------------------------------------------------------------


def test_one_pass_makes_a_vm_from_nothing_and_images_are_imported_once(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, once: OnceRunner, http_server: FileServer,
        tmp_path: Path) -> None:
    base = small_qcow2(http_server.root / "base.qcow2", "16M")
    digest = sha256_of(base)
    image, a, b = prefix + "img", prefix + "a", prefix + "b"
    imported = image_volume(image, digest)
    manifests.write("image.yaml", image_doc(image, url=http_server.url("base.qcow2"),
                                            sha256=digest, pool=pool))
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", pool, image=image)]))

    first = sonce(check_exit=0)
    assert images_of(first)[image]["result"] == "converged"
    assert actions(images_of(first)[image]) == ["import-image"]
    assert first.actions(a) == ["create-volume", "define", "start"], first.vms[a]
    volumes = assert_sound(conn, pool, a)
    assert set(volumes) == {imported, a + "-root"}
    assert sha256_of(volumes[imported].path) == digest  # what landed is what was verified
    root = volumes[a + "-root"]
    assert (root.format, root.capacity, root.backing) == ("qcow2", 16 * MIB,
                                                          volumes[imported].path)
    assert [(d.target, d.type, d.pool, d.volume) for d in domain_disks(conn, a)] == [
        ("vda", "volume", pool, a + "-root")]
    assert must_read(conn, a).running
    assert marked_volumes(conn, a) == {(pool, a + "-root")}
    assert gets(http_server) == 1

    again = sonce(check_exit=0)
    assert images_of(again)[image]["result"] == "unchanged"
    assert (again.result(a), again.actions(a)) == ("unchanged", [])
    dry = sonce("--dry-run", check_exit=0)
    assert (dry.result(a), dry.actions(a)) == ("unchanged", [])

    # A second VM from the same image, with an empty cache (a new --state-dir): the
    # pool has the image, so nothing is downloaded or imported again.
    manifests.write("b.yaml", vm("b", disks=[volume_disk(b + "-root", pool, image=image,
                                                         size="32MiB")]))
    second = once("--state-dir", str(tmp_path / "other-state"), check_exit=0)
    assert images_of(second)[image]["result"] == "unchanged"
    assert actions(images_of(second)[image]) == []
    assert second.actions(b) == ["create-volume", "define", "start"], second.vms[b]
    assert second.result(a) == "unchanged"
    assert gets(http_server) == 1
    volumes = assert_sound(conn, pool, a, b)
    assert set(volumes) == {imported, a + "-root", b + "-root"}
    assert (volumes[b + "-root"].capacity, volumes[b + "-root"].backing) == (
        32 * MIB, volumes[imported].path)


def test_a_file_url_image_and_a_full_copy(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    base = dense_raw(tmp_path / "base.raw", 4)
    digest = sha256_of(base)
    image, a, b = prefix + "img", prefix + "a", prefix + "b"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest, pool=pool,
                                            fmt="raw"))
    manifests.write("vms.yaml",
                    vm("a", state="stopped",
                       disks=[volume_disk(a + "-root", pool, image=image, copy=True,
                                          format="raw", size="8MiB")]),
                    vm("b", state="stopped",
                       disks=[volume_disk(b + "-root", pool, image=image, copy=True)]))
    first = sonce(check_exit=0)
    assert first.actions(a) == ["create-volume", "define"], first.vms[a]
    assert first.actions(b) == ["create-volume", "define"], first.vms[b]
    volumes = assert_sound(conn, pool, a, b)
    imported = volumes[image_volume(image, digest, "raw")]
    assert sha256_of(imported.path) == digest
    copy_a, copy_b = volumes[a + "-root"], volumes[b + "-root"]
    assert copy_a.backing is None and copy_b.backing is None  # copies, not overlays
    # format: raw is a raw copy, as the domain XML says; the default is qcow2
    assert (copy_a.format, copy_a.capacity) == ("raw", 8 * MIB)
    assert (copy_b.format, copy_b.capacity) == ("qcow2", 4 * MIB)
    drivers = {disk.get("type") for disk in ET.fromstring(domain_xml(conn, a)).iter("driver")}
    assert drivers == {"raw"}
    with open(copy_a.path, "rb") as file:  # the guest sees the image's bytes
        assert file.read(4 * MIB) == base.read_bytes()
    again = sonce(check_exit=0)
    assert (again.actions(a), again.actions(b)) == ([], [])


# --- bad input and faults: each a test ---------------------------------------------------


def test_a_checksum_mismatch_keeps_nothing_and_fails_the_vms_that_need_it(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, run: Runner, http_server: FileServer,
        state_dir: Path) -> None:
    base = small_qcow2(http_server.root / "base.qcow2")
    actual = sha256_of(base)
    wrong = "ab" * 32
    image, a, c = prefix + "img", prefix + "a", prefix + "c"
    manifests.write("image.yaml", image_doc(image, url=http_server.url("base.qcow2"),
                                            sha256=wrong, pool=pool))
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", pool, image=image)]))
    manifests.write("c.yaml", vm("c", state="stopped",
                                 disks=[volume_disk(c + "-root", pool, size="8MiB")]))

    result = sonce(check_exit=1)
    entry = images_of(result)[image]
    assert entry["result"] == "failed"
    message = one_line(entry["error"])
    assert wrong in message and actual in message, message
    assert result.result(a) == "failed"
    assert image in one_line(result.vms[a]["error"])
    assert result.result(c) == "converged"  # a VM that does not need it is not held up
    assert conn.listDefinedDomains().count(a) == 0 and must_read(conn, c).shut_off
    assert volume_names(conn, pool) == [c + "-root"]
    assert_sound(conn, pool, a, c)
    cached = [path.name for path in (state_dir / "images").iterdir()
              if not path.name.endswith(".lock")] if (state_dir / "images").exists() else []
    assert cached == [], f"kept in the image cache: {cached}"

    text = run("--once", "--state-dir", str(state_dir), check_exit=1)
    lines = [line for line in text.stdout.splitlines() if wrong in line]
    assert len(lines) == 1 and actual in lines[0], describe(text)


@pytest.mark.parametrize("fault", ["404", "silent", "stall"])
def test_a_download_that_fails_fails_its_vms_and_the_next_pass_completes(
        fault: str, conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, http_server: FileServer) -> None:
    base = dense_raw(http_server.root / "base.raw", 1)
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=http_server.url("base.raw"),
                                            sha256=digest, pool=pool, fmt="raw"))
    manifests.write("a.yaml", vm("a", state="stopped",
                                 disks=[volume_disk(a + "-root", pool, image=image)]))
    faults: dict[str, dict[str, Any]] = {"404": {"status": 404}, "silent": {"silent": True},
                                         "stall": {"stall_after": 64 * 1024}}
    http_server.behave(**faults[fault])
    expected = {"404": "HTTP 404", "silent": "sent no answer within 2 s",
                "stall": "no byte from"}[fault]

    failed = sonce("--download-timeout", "2", check_exit=1)
    message = one_line(images_of(failed)[image]["error"])
    assert expected in message and http_server.url("base.raw") in message, message
    assert failed.result(a) == "failed" and image in failed.vms[a]["error"]
    assert volume_names(conn, pool) == []  # nothing of the image, no VM volume
    assert a not in conn.listDefinedDomains()

    http_server.behave(Behaviour())
    fixed = sonce("--download-timeout", "2", check_exit=0)
    assert images_of(fixed)[image]["result"] == "converged"
    assert fixed.actions(a) == ["create-volume", "define"], fixed.vms[a]
    volumes = assert_sound(conn, pool, a)
    assert sha256_of(volumes[image_volume(image, digest, "raw")].path) == digest


def test_a_pool_that_does_not_exist_fails_only_its_vms(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    missing = prefix + "nopool"
    base = small_qcow2(tmp_path / "base.qcow2")
    image, a, b, c = prefix + "img", prefix + "a", prefix + "b", prefix + "c"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=sha256_of(base),
                                            pool=missing))
    manifests.write("vms.yaml",
                    vm("a", state="stopped", disks=[volume_disk(a + "-root", missing,
                                                                size="8MiB")]),
                    vm("b", state="stopped", disks=[volume_disk(b + "-root", pool,
                                                                image=image)]),
                    vm("c", state="stopped", disks=[volume_disk(c + "-root", pool,
                                                                size="8MiB")]))
    result = sonce(check_exit=1)
    assert result.result(a) == "failed"
    assert f"storage pool {missing} does not exist" in one_line(result.vms[a]["error"])
    assert images_of(result)[image]["result"] == "failed"
    assert missing in one_line(images_of(result)[image]["error"])
    assert result.result(b) == "failed"
    assert result.result(c) == "converged"
    assert not pool_exists(conn, missing)
    defined = conn.listDefinedDomains()
    assert a not in defined and b not in defined and c in defined
    assert volume_names(conn, pool) == [c + "-root"]


def test_a_volume_attached_to_another_domain_is_a_conflict(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, virt_type: str) -> None:
    shared, other, a = prefix + "shared", prefix + "other", prefix + "a"
    handle = conn.storagePoolLookupByName(pool)
    handle.createXML(f"<volume><name>{shared}</name><capacity>{8 * MIB}</capacity>"
                     "<target><format type='qcow2'/></target></volume>", 0)
    conn.defineXML(
        f"<domain type='{virt_type}'><name>{other}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source pool='{pool}' volume='{shared}'/><target dev='vda' bus='virtio'/></disk>"
        "</devices></domain>")
    before = domain_xml(conn, other)
    manifests.write("a.yaml", vm("a", disks=[volume_disk(shared, pool, size="8MiB")]))

    result = sonce(check_exit=1)
    assert result.result(a) == "conflict"
    message = one_line(result.vms[a]["error"])
    assert f"volume {pool}/{shared}" in message and other in message, message
    assert result.actions(a) == []
    assert a not in conn.listDefinedDomains()
    assert domain_xml(conn, other) == before
    assert volume_names(conn, pool) == [shared]
    assert pool_volumes(conn, pool)[shared].capacity == 8 * MIB


def test_a_volume_name_that_escapes_the_pool_is_an_invalid_manifest(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, run: Runner, state_dir: Path) -> None:
    a = prefix + "a"
    manifests.write("a.yaml", vm("a", disks=[volume_disk("../x", pool, size="8MiB")]))
    result = sonce(check_exit=2)
    (invalid,) = result.report["invalid"]
    assert (invalid["file"], invalid["path"]) == ("a.yaml", "spec.disks[0].volume"), invalid
    one_line(invalid["error"])
    assert a not in result.vms, result.vms[a]
    assert volume_names(conn, pool) == []
    assert a not in conn.listDefinedDomains()
    assert not (Path("/var/lib/libvirt/images") / "x").exists()
    text = run("--once", "--state-dir", str(state_dir), check_exit=2)
    assert [line for line in text.stderr.splitlines() + text.stdout.splitlines()
            if "spec.disks[0].volume" in line and "a.yaml" in line], describe(text)


def test_an_image_that_names_no_image_document_is_an_invalid_manifest(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner) -> None:
    a = prefix + "a"
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", pool,
                                                         image=prefix + "nothing")]))
    result = sonce(check_exit=2)
    (invalid,) = result.report["invalid"]
    assert invalid["path"] == "spec.disks[0].image", invalid
    assert f"'{prefix}nothing' names no Image document" in one_line(invalid["error"])
    assert volume_names(conn, pool) == []
    assert a not in conn.listDefinedDomains()


def test_a_size_below_the_images_virtual_size_fails_and_creates_nothing(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    base = small_qcow2(tmp_path / "base.qcow2", "16M")
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest,
                                            pool=pool))
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", pool, image=image,
                                                         size="8MiB")]))
    result = sonce(check_exit=1)
    assert result.result(a) == "failed" and result.actions(a) == []
    message = one_line(result.vms[a]["error"])
    assert f"{pool}/{a}-root" in message and "8 MiB" in message and "16 MiB" in message
    assert volume_names(conn, pool) == [image_volume(image, digest)]  # the image only
    assert a not in conn.listDefinedDomains()


def test_a_shrink_fails_and_nothing_of_the_vms_plan_runs(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, run: Runner, state_dir: Path) -> None:
    a = prefix + "a"
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", pool, size="16MiB")]))
    sonce(check_exit=0)
    before = must_read(conn, a)
    assert before.running

    # a shrink together with a change that would restart the VM
    manifests.write("a.yaml", vm("a", memory="96MiB",
                                 disks=[volume_disk(a + "-root", pool, size="8MiB")]))
    result = sonce(check_exit=1)
    assert result.result(a) == "failed" and result.actions(a) == []
    message = one_line(result.vms[a]["error"])
    assert f"{pool}/{a}-root" in message and "16 MiB" in message and "8 MiB" in message
    after = must_read(conn, a)
    assert after.id == before.id and after.saved_xml == before.saved_xml  # untouched
    assert pool_volumes(conn, pool)[a + "-root"].capacity == 16 * MIB
    assert sonce("--dry-run", check_exit=1).result(a) == "failed"
    text = run("--once", "--state-dir", str(state_dir), check_exit=1)
    lines = [line for line in text.stdout.splitlines() if "shrink" in line]
    assert len(lines) == 1 and "16 MiB" in lines[0], describe(text)


def test_growing_offline_and_live(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner) -> None:
    a, b = prefix + "a", prefix + "b"
    manifests.write("vms.yaml",
                    vm("a", disks=[volume_disk(a + "-root", pool, size="16MiB")]),
                    vm("b", state="stopped",
                       disks=[volume_disk(b + "-root", pool, size="16MiB", format="raw")]))
    sonce(check_exit=0)
    running = must_read(conn, a)
    manifests.write("vms.yaml",
                    vm("a", disks=[volume_disk(a + "-root", pool, size="32MiB")]),
                    vm("b", state="stopped",
                       disks=[volume_disk(b + "-root", pool, size="24MiB", format="raw")]))
    result = sonce(check_exit=0)
    assert result.actions(a) == ["grow-volume"] and "(live)" in result.vms[a]["steps"][0][
        "reason"]
    assert result.actions(b) == ["grow-volume"] and "(offline)" in result.vms[b]["steps"][0][
        "reason"]
    assert must_read(conn, a).id == running.id  # not restarted
    assert int(conn.lookupByName(a).blockInfo("vda", 0)[0]) == 32 * MIB  # the guest sees it
    volumes = assert_sound(conn, pool, a, b)
    assert (volumes[a + "-root"].capacity, volumes[b + "-root"].capacity) == (32 * MIB,
                                                                              24 * MIB)
    again = sonce(check_exit=0)
    assert (again.actions(a), again.actions(b)) == ([], [])


def test_a_full_pool_fails_the_import_before_any_byte_and_keeps_nothing(
        conn: libvirt.virConnect, prefix: str, pools: Pools, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    full = pools.make("pool", tmpfs_size="16M")
    base = dense_raw(tmp_path / "base.raw", 24)
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest, pool=full,
                                            fmt="raw"))
    manifests.write("a.yaml", vm("a", disks=[volume_disk(a + "-root", full, image=image)]))
    for _ in range(2):  # the same failure again: nothing half-done in between
        result = sonce(check_exit=1)
        message = one_line(images_of(result)[image]["error"])
        assert "bytes available" in message and full in message, message
        assert result.result(a) == "failed"
        assert volume_names(conn, full) == []
        assert a not in conn.listDefinedDomains()


# --- removal -----------------------------------------------------------------------------


def test_state_absent_deletes_only_the_volumes_reconcile_created_with_on_remove_delete(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    base = small_qcow2(tmp_path / "base.qcow2")
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    own = prefix + "own"  # made by the operator, not by reconcile
    conn.storagePoolLookupByName(pool).createXML(
        f"<volume><name>{own}</name><capacity>{8 * MIB}</capacity>"
        "<target><format type='qcow2'/></target></volume>", 0)
    disks = [volume_disk(a + "-root", pool, image=image, onRemove="delete"),
             volume_disk(a + "-data", pool, size="8MiB"),
             volume_disk(own, pool, size="8MiB", onRemove="delete")]
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest, pool=pool))
    manifests.write("a.yaml", vm("a", disks=disks))
    first = sonce(check_exit=0)
    assert first.actions(a) == ["create-volume", "create-volume", "define", "start"]
    assert marked_volumes(conn, a) == {(pool, a + "-root"), (pool, a + "-data")}

    manifests.write("a.yaml", vm("a", state="absent", disks=disks))
    gone = sonce(check_exit=0)
    assert gone.actions(a) == ["destroy", "undefine", "delete-volume"], gone.vms[a]
    assert a + "-root" in gone.vms[a]["steps"][-1]["reason"]
    assert volume_names(conn, pool) == sorted([image_volume(image, digest), a + "-data", own])
    assert sonce(check_exit=0).actions(a) == []


def test_a_disk_removed_from_the_list_is_detached_and_its_volume_kept(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner) -> None:
    a = prefix + "a"
    manifests.write("a.yaml", vm("a", disks=[
        volume_disk(a + "-root", pool, size="8MiB", onRemove="delete"),
        volume_disk(a + "-data", pool, size="8MiB", onRemove="delete")]))
    sonce(check_exit=0)
    assert [d.volume for d in domain_disks(conn, a)] == [a + "-root", a + "-data"]
    manifests.write("a.yaml", vm("a", disks=[
        volume_disk(a + "-root", pool, size="8MiB", onRemove="delete")]))
    result = sonce(check_exit=0)
    assert "define" in result.actions(a) and "delete-volume" not in result.actions(a)
    assert [d.volume for d in domain_disks(conn, a)] == [a + "-root"]
    assert [d.volume for d in domain_disks(conn, a, live=True)] == [a + "-root"]
    assert volume_names(conn, pool) == sorted([a + "-root", a + "-data"])
    assert_sound(conn, pool, a)

    # and state: absent later deletes only the disks it still lists
    manifests.write("a.yaml", vm("a", state="absent", disks=[
        volume_disk(a + "-root", pool, size="8MiB", onRemove="delete")]))
    sonce(check_exit=0)
    assert volume_names(conn, pool) == [a + "-data"]


# --- export --------------------------------------------------------------------------------


def test_export_of_pool_volumes_and_adopting_it_changes_only_the_mark(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        sonce: OnceRunner, run: Runner, virt_type: str) -> None:
    name = prefix + "ops"
    handle = conn.storagePoolLookupByName(pool)
    for volume, fmt, size in ((name + "-root", "qcow2", 16), (name + "-data", "raw", 8)):
        handle.createXML(f"<volume><name>{volume}</name><capacity>{size * MIB}</capacity>"
                         f"<allocation>0</allocation><target><format type='{fmt}'/>"
                         "</target></volume>", 0)
    conn.defineXML(
        f"<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source pool='{pool}' volume='{name}-root'/><target dev='vda' bus='virtio'/></disk>"
        "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
        f"<source pool='{pool}' volume='{name}-data'/><target dev='vdb' bus='virtio'/></disk>"
        "<console type='pty'/></devices></domain>")
    before = domain_xml(conn, name)

    exported = run("export", name, check_exit=0)
    (document,) = yaml.safe_load_all(exported.stdout)
    assert [_volume_fields(disk) for disk in document["spec"]["disks"]] == [
        {"volume": name + "-root", "pool": pool, "size": "16MiB", "format": "qcow2",
         "target": "vda"},
        {"volume": name + "-data", "pool": pool, "size": "8MiB", "format": "raw",
         "target": "vdb"}]
    manifests.write("ops.yaml", exported.stdout)

    # Adoption writes the ownership mark (one define) and nothing else: no volume is
    # created, grown or touched.
    dry = sonce("--dry-run", check_exit=3)
    assert dry.actions(name) == ["define"], dry.vms[name]
    applied = sonce(check_exit=0)
    assert applied.actions(name) == ["define"], applied.vms[name]
    assert _without_metadata(domain_xml(conn, name)) == _without_metadata(before)
    assert marked_volumes(conn, name) == set()  # reconcile created none of them
    volumes = assert_sound(conn, pool, name)
    assert sorted(volumes) == sorted([name + "-root", name + "-data"])
    assert (volumes[name + "-root"].capacity, volumes[name + "-data"].capacity) == (
        16 * MIB, 8 * MIB)
    assert sonce("--dry-run", check_exit=0).actions(name) == []


def test_the_export_of_a_vm_reconcile_made_from_volumes_applies_as_a_no_op(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, run: Runner, tmp_path: Path) -> None:
    base = small_qcow2(tmp_path / "base.qcow2", "16M")
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=sha256_of(base),
                                            pool=pool))
    manifests.write("a.yaml", vm("a", state="stopped", disks=[
        volume_disk(a + "-root", pool, image=image, size="24MiB"),
        volume_disk(a + "-data", pool, size="8MiB", format="raw")]))
    sonce(check_exit=0)
    before = domain_xml(conn, a)

    exported = run("export", a, check_exit=0)
    (document,) = yaml.safe_load_all(exported.stdout)
    assert [_volume_fields(disk) for disk in document["spec"]["disks"]] == [
        {"volume": a + "-root", "pool": pool, "size": "24MiB", "format": "qcow2",
         "target": "vda"},
        {"volume": a + "-data", "pool": pool, "size": "8MiB", "format": "raw",
         "target": "vdb"}]
    manifests.remove("a.yaml")
    manifests.write("a.yaml", exported.stdout)
    dry = sonce("--dry-run", check_exit=0)
    assert (dry.result(a), dry.actions(a)) == ("unchanged", []), dry.vms[a]
    assert sonce(check_exit=0).actions(a) == []
    assert domain_xml(conn, a) == before
    assert_sound(conn, pool, a)


def _volume_fields(disk: dict[str, Any]) -> dict[str, Any]:
    """An exported disk's fields that name its volume, its size and where it is attached."""
    return {key: disk[key] for key in ("volume", "pool", "size", "format", "target")
            if key in disk}


def _without_metadata(xml: str) -> str:
    root = ET.fromstring(xml)
    for metadata in root.findall("metadata"):
        root.remove(metadata)
    return ET.tostring(root, encoding="unicode")


# --- cloud-init seeds ----------------------------------------------------------------------


def _seeds(conn: libvirt.virConnect, pool: str, name: str) -> list[str]:
    return [volume for volume in volume_names(conn, pool)
            if volume.startswith(name + ".cidata-")]


def test_a_seed_is_rebuilt_only_when_its_content_changes_and_goes_with_state_absent(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner) -> None:
    a = prefix + "a"

    def write(user_data: str, **spec: Any) -> None:
        manifests.write("a.yaml", vm("a", state="stopped", cloudInit={
            "userData": user_data, "pool": pool}, **spec))

    write("#cloud-config\nhostname: one\n")
    first = sonce(check_exit=0)
    assert first.actions(a) == ["create-seed", "define"], first.vms[a]
    (seed,) = _seeds(conn, pool, a)
    info = os.stat(pool_volumes(conn, pool)[seed].path)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0  # root only
    cdroms = [d for d in domain_disks(conn, a) if d.device == "cdrom"]
    assert [(d.pool, d.volume, d.readonly) for d in cdroms] == [(pool, seed, True)]

    again = sonce(check_exit=0)
    assert (again.result(a), again.actions(a)) == ("unchanged", [])
    assert _seeds(conn, pool, a) == [seed]

    write("#cloud-config\nhostname: two\n")
    changed = sonce(check_exit=0)
    assert changed.actions(a)[:2] == ["create-seed", "define"], changed.vms[a]
    (new,) = _seeds(conn, pool, a)  # the old one, used by no definition, is gone
    assert new != seed
    assert [d.volume for d in domain_disks(conn, a) if d.device == "cdrom"] == [new]
    assert sonce(check_exit=0).actions(a) == []

    write("#cloud-config\nhostname: two\n", memory="96MiB")  # not a seed change
    other = sonce(check_exit=0)
    assert "create-seed" not in other.actions(a) and _seeds(conn, pool, a) == [new]

    manifests.write("a.yaml", vm("a", state="absent",
                                 cloudInit={"userData": "x", "pool": pool}))
    gone = sonce(check_exit=0)
    assert gone.actions(a) == ["undefine", "delete-volume"], gone.vms[a]
    assert _seeds(conn, pool, a) == [] and volume_names(conn, pool) == []


def test_secrets_in_user_data_are_never_printed(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, run: Runner, state_dir: Path, tmp_path: Path) -> None:
    a = prefix + "a"
    step_log = tmp_path / "steps.jsonl"
    secret = f"hunter2-{prefix}secret"

    def write(password: str) -> None:
        manifests.write("a.yaml", vm("a", state="stopped", cloudInit={
            "userData": f"#cloud-config\npassword: {password}\nchpasswd: {{expire: false}}\n",
            "pool": pool}))

    outputs = []
    write(secret)
    runs: list[tuple[str, ...]] = [("--dry-run",), ("--dry-run", "-o", "json"), ("-vv",),
                                   ("-o", "json", "-vv")]
    for args in runs:
        outputs.append(run("--once", "--state-dir", str(state_dir), "--step-log",
                           str(step_log), *args))
    write(secret + "-new")  # a change of the secret: shown as a content hash only
    for args in [("--dry-run", "-vv"), ("-o", "json", "-vv")]:
        outputs.append(run("--once", "--state-dir", str(state_dir), "--step-log",
                           str(step_log), *args))
    assert [proc.returncode for proc in outputs] == [3, 3, 0, 0, 3, 0], [
        describe(proc) for proc in outputs]
    steps = [json.loads(line) for line in step_log.read_text().splitlines()]
    assert {entry["action"] for entry in steps} >= {"create-seed", "define"}
    for proc in outputs:
        assert secret not in proc.stdout and secret not in proc.stderr, describe(proc)
        assert "hunter2" not in proc.stdout + proc.stderr, describe(proc)
    assert "hunter2" not in step_log.read_text()
    assert "sha256:" in outputs[4].stdout  # the change, as a hash
    status = run("status", "-o", "json")
    assert "hunter2" not in status.stdout + status.stderr
    assert a in [entry["name"] for entry in json.loads(status.stdout)["vms"]]
