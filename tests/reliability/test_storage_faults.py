"""Storage and cloud-init seeds under faults: `kill -9` of `reconcile --once` in the middle
of an image download, an image upload, a volume copy, a grow and a seed upload; a libvirtd
restart during an upload; prune with volumes and seeds.

A kill lands at a moment the test chooses: a download paused by the test's HTTP server,
or a write into the pool seen through inotify (the test reacts within a millisecond to
libvirtd writing the volume's file). After each fault the test checks that no volume is
half-used (a partial write keeps its marker, no domain is defined on it) and that the
next pass finishes. Tests that restart libvirtd, or prune, use the private libvirtd
(tests/service/support.Sandbox), which holds only this suite's domains.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from controller.virt import storage
from tests.e2e.storage_support import (
    MIB,
    PARTIAL,
    Inotify,
    Pools,
    assert_sound,
    building,
    dense_qcow2,
    dense_raw,
    domain_disks,
    image_doc,
    image_volume,
    kill9,
    pool_volumes,
    sha256_of,
    small_qcow2,
    start_reconcile,
    volume_disk,
    volume_names,
    wait_line,
)
from tests.support.command import OnceRunner, Pass, describe
from tests.support.domains import must_read
from tests.support.httpserver import Behaviour, FileServer, http_server
from tests.support.libvirtd import SYSTEM_URI as URI
from tests.support.manifests import Manifests, VMBuilder
from tests.support.sandbox import Host, Sandbox
from tests.support.waiting import wait_until

from .conftest import FIGURES

__all__ = ["http_server"]  # the fixture, imported for pytest

# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def pools(conn: libvirt.virConnect, prefix: str) -> Iterator[Pools]:
    made = Pools(lambda: conn, prefix)
    yield made
    made.cleanup()


@pytest.fixture
def pool(pools: Pools) -> str:
    return pools.make()


@pytest.fixture
def box_pools(box: Host, sandbox: Sandbox, prefix: str) -> Iterator[Pools]:
    """Pools in the private libvirtd; their folders are under its own /var/lib/libvirt."""
    images = sandbox.base / "root" / "var" / "lib" / "libvirt" / "images"
    made = Pools(lambda: box.conn, prefix, folder_of=lambda name: images / name)
    yield made
    sandbox.ensure_running()
    made.cleanup()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def sonce(once: OnceRunner, state_dir: Path) -> OnceRunner:
    def runner(*args: str, check_exit: int | None = None) -> Pass:
        return once("--state-dir", str(state_dir), *args, check_exit=check_exit)
    return runner


@pytest.fixture
def background(manifests: Manifests, lock_dir: Path, state_dir: Path,
               children: list[subprocess.Popen[str]]) -> Any:
    """background(*args) starts `reconcile --once -o json --state-dir ... ARGS` (killed at
    teardown if a test leaves it running)."""
    def start(*args: str) -> subprocess.Popen[str]:
        proc = start_reconcile("--once", "-o", "json", "--state-dir", str(state_dir), *args,
                               manifests=manifests.path, lock_dir=lock_dir)
        children.append(proc)
        return proc
    return start


def images_of(result: Pass) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in result.report.get("images", [])}


def one_line(text: str | None) -> str:
    assert text and "\n" not in text and "Traceback" not in text, repr(text)
    return text


def _image_and_vm(manifests: Manifests, vm: VMBuilder, prefix: str, pool: str,
                  tmp_path: Path) -> tuple[str, str, str, str]:
    """A 96 MiB raw Image in `pool` and a stopped VM with a volume made from it: the
    image's name, the VM's, the image volume's, and the image's sha256."""
    base = dense_raw(tmp_path / "base.raw", 96)
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest, pool=pool,
                                            fmt="raw"))
    manifests.write("a.yaml", vm("a", state="stopped",
                                 disks=[volume_disk(a + "-root", pool, image=image)]))
    return image, a, image_volume(image, digest, "raw"), digest


def not_defined(conn: libvirt.virConnect, name: str) -> bool:
    return name not in conn.listDefinedDomains() and name not in [
        dom.name() for dom in conn.listAllDomains(0)]


# --- kill -9 during the import -------------------------------------------------------------


def test_kill_9_during_the_download_then_the_next_pass_finishes(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, background: Any, http_server: FileServer,
        state_dir: Path) -> None:
    base = dense_raw(http_server.root / "base.raw", 2)
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=http_server.url("base.raw"),
                                            sha256=digest, pool=pool, fmt="raw"))
    manifests.write("a.yaml", vm("a", state="stopped",
                                 disks=[volume_disk(a + "-root", pool, image=image)]))
    http_server.behave(pause_after=MIB)  # half of it, then wait for release()
    partial = state_dir / "images" / f"{digest}.part"

    def half_way() -> bool:
        return (http_server.paused == 1 and partial.exists() and partial.stat().st_size > 0)

    proc = background()
    wait_until(lambda: half_way() or proc.poll() is not None, timeout=60,
               what="the download to be half-way")
    kill9(proc)
    http_server.behave(Behaviour())
    http_server.release()
    assert volume_names(conn, pool) == []  # nothing reached the pool
    assert not_defined(conn, a)
    kept = partial.stat().st_size  # kept for a resume, never used as the image
    assert 0 < kept <= MIB

    done = sonce(check_exit=0)
    assert images_of(done)[image]["result"] == "converged"
    assert [step["action"] for step in done.vms[a]["steps"]] == ["create-volume", "define"]
    assert http_server.requests[-1].range == f"bytes={kept}-"  # resumed
    volumes = assert_sound(conn, pool, a)
    assert sha256_of(volumes[image_volume(image, digest, "raw")].path) == digest
    assert sonce(check_exit=0).actions(a) == []


def test_kill_9_during_the_upload_leaves_a_marked_partial_that_is_never_used(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, background: Any, pools: Pools, tmp_path: Path) -> None:
    image, a, imported, digest = _image_and_vm(manifests, vm, prefix, pool, tmp_path)
    watch = Inotify(pools.folder_of(pool))
    try:
        proc = background()
        watch.wait(lambda name: name == imported, written=8 * MIB, timeout=120,
                   alive=lambda: proc.poll() is None)
        kill9(proc)
    finally:
        watch.close()
    left = volume_names(conn, pool)
    assert imported + PARTIAL in left, left  # the interrupted import keeps its marker
    assert set(left) <= {imported, imported + PARTIAL}
    assert not_defined(conn, a)

    dry = sonce("--dry-run", check_exit=3)
    assert "interrupted" in images_of(dry)[image]["steps"][0]["reason"]
    done = sonce(check_exit=0)
    assert "interrupted" in images_of(done)[image]["steps"][0]["reason"]
    assert done.actions(a) == ["create-volume", "define"], done.vms[a]
    volumes = assert_sound(conn, pool, a)
    assert sorted(volumes) == sorted([imported, a + "-root"])
    assert sha256_of(volumes[imported].path) == digest
    assert volumes[a + "-root"].backing == volumes[imported].path


def test_kill_9_during_a_volume_copy_then_the_next_pass_finishes(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, background: Any, pools: Pools,
        tmp_path: Path) -> None:
    base = dense_qcow2(tmp_path / "base.qcow2", 160)
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest,
                                            pool=pool))
    # the image is imported first, for a VM that only overlays it
    manifests.write("b.yaml", vm("b", state="stopped", disks=[
        volume_disk(prefix + "b-root", pool, image=image)]))
    sonce(check_exit=0)
    manifests.write("a.yaml", vm("a", state="stopped", disks=[
        volume_disk(a + "-root", pool, image=image, copy=True)]))

    watch = Inotify(pools.folder_of(pool))
    try:
        proc = background()
        watch.wait(lambda name: name == a + "-root", written=4 * MIB, timeout=120,
                   alive=lambda: proc.poll() is None)
        kill9(proc)
    finally:
        watch.close()
    # libvirtd goes on copying for the killed client: the next pass starts at once
    assert a + "-root" + PARTIAL in volume_names(conn, pool, refresh=False)
    assert not_defined(conn, a)

    done = sonce(check_exit=0)
    assert done.actions(a) == ["create-volume", "define"], done.vms[a]
    assert "interrupted" in done.vms[a]["steps"][0]["reason"]
    volumes = assert_sound(conn, pool, a, prefix + "b")
    copy = volumes[a + "-root"]
    assert copy.backing is None and copy.capacity == volumes[image_volume(image, digest)].capacity
    assert subprocess.run(["qemu-img", "compare", "-q", str(base), copy.path],
                          check=False, timeout=300).returncode == 0  # the whole image
    assert sonce(check_exit=0).actions(a) == []


@pytest.mark.parametrize(("live", "moment"), [(False, "step"), (False, "write"),
                                              (True, "step")],
                         ids=["offline-at-the-step", "offline-during-the-write",
                              "live-at-the-step"])
def test_kill_9_during_a_grow_then_the_next_pass_finishes(
        live: bool, moment: str, conn: libvirt.virConnect, prefix: str, pool: str,
        manifests: Manifests, vm: VMBuilder, sonce: OnceRunner, background: Any,
        pools: Pools) -> None:
    """Killed as the grow-volume step begins (logged, the call maybe not sent yet), or
    when libvirtd writes the new size into the volume's file."""
    a = prefix + "a"
    state = "running" if live else "stopped"
    manifests.write("a.yaml", vm("a", state=state,
                                 disks=[volume_disk(a + "-root", pool, size="16MiB")]))
    sonce(check_exit=0)
    before = must_read(conn, a)
    manifests.write("a.yaml", vm("a", state=state,
                                 disks=[volume_disk(a + "-root", pool, size="48MiB")]))
    watch = Inotify(pools.folder_of(pool))
    try:
        proc = background("-v")
        if moment == "step":
            wait_line(proc, f"{a}: grow-volume (", timeout=120)
        else:
            watch.wait(lambda name: name == a + "-root", timeout=120,
                       alive=lambda: proc.poll() is None)
        kill9(proc)
    finally:
        watch.close()
    grown = pool_volumes(conn, pool)[a + "-root"].capacity == 48 * MIB  # libvirtd may still
    # finish a call sent just before the kill: either way the next pass converges

    done = sonce(check_exit=0)
    assert done.actions(a) in ([], ["grow-volume"]), done.vms[a]
    volumes = assert_sound(conn, pool, a)
    assert volumes[a + "-root"].capacity == 48 * MIB
    assert must_read(conn, a).id == before.id  # a live grow never restarts the VM
    if live:
        assert int(conn.lookupByName(a).blockInfo("vda", 0)[0]) == 48 * MIB
    assert sonce(check_exit=0).actions(a) == []
    FIGURES.setdefault("kill -9 during a grow", []).append(
        f"{'live' if live else 'offline'}, killed at the {moment}: grown after the kill: "
        f"{grown}; the next pass ran {done.actions(a) or 'nothing'}")


# --- cloud-init seeds --------------------------------------------------------------------


def test_kill_9_during_a_seed_upload_then_the_next_pass_finishes(
        conn: libvirt.virConnect, prefix: str, pool: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, background: Any, pools: Pools) -> None:
    a = prefix + "a"
    # a big script (a seed holds at most 16 MiB), so the upload takes a while
    line = "# " + "x" * 97 + "\n"
    (manifests.path / "a.user-data").write_text("#!/bin/sh\n" + line * (12 * MIB // 100))
    manifests.write("a.yaml", vm("a", state="stopped", cloudInit={
        "userDataFile": "a.user-data", "pool": pool}))
    watch = Inotify(pools.folder_of(pool))
    try:
        proc = background()
        seed = watch.wait(lambda name: name.startswith(a + ".cidata-")
                          and not name.endswith(PARTIAL), written=MIB, timeout=120,
                          alive=lambda: proc.poll() is None)
        kill9(proc)
    finally:
        watch.close()
    assert seed + PARTIAL in volume_names(conn, pool)
    assert not_defined(conn, a)

    done = sonce(check_exit=0)
    assert done.actions(a) == ["create-seed", "define"], done.vms[a]
    volumes = assert_sound(conn, pool, a)
    assert sorted(volumes) == [seed]
    assert volumes[seed].capacity > 12 * MIB
    cdroms = [(d.pool, d.volume) for d in domain_disks(conn, a) if d.device == "cdrom"]
    assert cdroms == [(pool, seed)]
    assert sonce(check_exit=0).actions(a) == []


# --- libvirtd still building a volume: the storage functions wait for it ------------------
#
# libvirtd refuses to delete a volume it is still building ("still being allocated") and
# to refresh a pool in which it builds one ("has asynchronous jobs running"). A copy goes
# on for a client killed in the middle of it, and any upload (an image, a seed) ends with
# a pool refresh: both must wait for the build, not fail. Driven through
# controller.virt.storage directly, so that the copy is certainly still running.

_COPY = """
import sys
import libvirt
from controller.virt import storage
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
conn = libvirt.open(sys.argv[1])
storage.copy_volume(conn, pool=sys.argv[2], name="cp", source_pool=sys.argv[2],
                    source_name="img")
"""


@pytest.fixture
def big_image(conn: libvirt.virConnect, pool: str, tmp_path: Path) -> Path:
    """Volume `img` in `pool`: a 256 MiB dense qcow2 (its copy takes a while)."""
    base = dense_qcow2(tmp_path / "base.qcow2", 256)
    storage.upload_volume(conn, pool=pool, name="img", path=str(base),
                          check=storage.Check.NONE)
    return base


def test_a_write_over_an_interrupted_copy_waits_for_libvirtd_to_finish_it(
        conn: libvirt.virConnect, pool: str, pools: Pools, big_image: Path,
        children: list[subprocess.Popen[str]]) -> None:
    watch = Inotify(pools.folder_of(pool))
    try:
        proc = subprocess.Popen([sys.executable, "-c", _COPY, URI, pool], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append(proc)
        watch.wait(lambda name: name == "cp", written=4 * MIB, timeout=120,
                   alive=lambda: proc.poll() is None)
        kill9(proc)
    finally:
        watch.close()
    assert building(conn, pool), "the copy ended before the rerun: the test needs a larger image"
    again = storage.copy_volume(conn, pool=pool, name="cp", source_pool=pool,
                                source_name="img")
    assert again.created and not again.volume.partial
    volumes = assert_sound(conn, pool)
    assert sorted(volumes) == ["cp", "img"]
    assert subprocess.run(["qemu-img", "compare", "-q", str(big_image), volumes["cp"].path],
                          check=False, timeout=300).returncode == 0


def test_an_upload_waits_while_libvirtd_copies_another_volume_of_the_pool(
        conn: libvirt.virConnect, pool: str, pools: Pools, big_image: Path,
        tmp_path: Path) -> None:
    seed = tmp_path / "seed.iso"
    seed.write_bytes(os.urandom(64 * 1024))
    copied: list[object] = []

    def copy() -> None:
        other = libvirt.open(URI)
        try:
            copied.append(storage.copy_volume(other, pool=pool, name="cp", source_pool=pool,
                                              source_name="img"))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            copied.append(error)
        finally:
            other.close()

    watch = Inotify(pools.folder_of(pool))
    thread = threading.Thread(target=copy)
    try:
        thread.start()
        watch.wait(lambda name: name == "cp", written=4 * MIB, timeout=120,
                   alive=thread.is_alive)
    finally:
        watch.close()
    assert building(conn, pool), "the copy ended first: the test needs a larger image"
    made = storage.upload_volume(conn, pool=pool, name="seed", path=str(seed), format="raw",
                                 sha256=sha256_of(seed), check=storage.Check.SENT)
    thread.join(timeout=300)
    assert made.created and made.volume.capacity == 64 * 1024
    assert len(copied) == 1 and not isinstance(copied[0], Exception), copied
    assert sorted(assert_sound(conn, pool)) == ["cp", "img", "seed"]


# --- the private libvirtd: a daemon restart, prune ---------------------------------------


def test_a_libvirtd_restart_during_an_upload_fails_the_vm_and_the_next_pass_completes(
        box: Host, sandbox: Sandbox, box_pools: Pools, prefix: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, background: Any, tmp_path: Path) -> None:
    pool = box_pools.make(autostart=True)
    image, a, imported, digest = _image_and_vm(manifests, vm, prefix, pool, tmp_path)
    watch = Inotify(box_pools.folder_of(pool))
    try:
        proc = background("-c", sandbox.uri)
        watch.wait(lambda name: name == imported, written=8 * MIB, timeout=120,
                   alive=lambda: proc.poll() is None)
        sandbox.stop_daemon()
    finally:
        watch.close()
    sandbox.start_daemon()
    box.close()  # its connection died with the daemon
    out, err = proc.communicate(timeout=180)
    result = Pass(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                  _report(out, err))
    assert result.code == 1, describe(result.proc)
    assert "Traceback" not in err
    assert images_of(result)[image]["result"] == "failed"
    one_line(images_of(result)[image]["error"])
    assert result.result(a) == "failed"
    one_line(result.vms[a]["error"])
    assert not_defined(box.conn, a)
    left = volume_names(box.conn, pool)
    assert set(left) <= {imported, imported + PARTIAL}
    assert imported not in left or imported + PARTIAL in left, left  # never unmarked

    done = sonce("-c", sandbox.uri, check_exit=0)
    assert done.actions(a) == ["create-volume", "define"], done.vms[a]
    volumes = assert_sound(box.conn, pool, a)
    assert sha256_of(box_pools.folder_of(pool) / imported) == digest
    assert sorted(volumes) == sorted([imported, a + "-root"])
    FIGURES.setdefault("libvirtd restart during an upload", []).extend([
        f"image: {images_of(result)[image]['error']}", f"vm: {result.vms[a]['error']}"])


def _report(out: str, err: str) -> dict[str, Any]:
    import json

    lines = out.splitlines()
    assert len(lines) == 1, f"expected one JSON line\n--- stdout\n{out}\n--- stderr\n{err}"
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    return report


def test_prune_keeps_every_volume_and_seed(
        box: Host, sandbox: Sandbox, box_pools: Pools, prefix: str, manifests: Manifests,
        vm: VMBuilder, sonce: OnceRunner, tmp_path: Path) -> None:
    pool = box_pools.make()
    base = small_qcow2(tmp_path / "base.qcow2")
    digest = sha256_of(base)
    image, a = prefix + "img", prefix + "a"
    manifests.write("image.yaml", image_doc(image, url=base.as_uri(), sha256=digest, pool=pool))
    manifests.write("a.yaml", vm("a", disks=[
        volume_disk(a + "-root", pool, image=image, onRemove="delete"),
        volume_disk(a + "-data", pool, size="8MiB", onRemove="delete")],
        cloudInit={"userData": "#cloud-config\n", "pool": pool}))
    first = sonce("-c", sandbox.uri, check_exit=0)
    assert first.actions(a) == ["create-volume", "create-volume", "create-seed", "define",
                                "start"], first.vms[a]
    kept = volume_names(box.conn, pool)
    assert len(kept) == 4  # the image, two volumes, the seed

    manifests.remove("a.yaml")
    listed = sonce("-c", sandbox.uri, "--dry-run", check_exit=0)
    assert listed.orphans(prefix) == [a]
    listed.skip_if_foreign_orphans(prefix)
    pruned = sonce("-c", sandbox.uri, "--prune", check_exit=0)
    assert pruned.result(a) == "pruned", pruned.vms
    assert not_defined(box.conn, a)
    assert volume_names(box.conn, pool) == kept  # not one volume deleted, seeds included
    assert_sound(box.conn, pool)

