"""Storage across hosts end to end (contract section 6, "Moves carry their volumes"):
`reconcile` against the real test hosts of hosts.py, whose /var/lib/libvirt are private to
each (so nothing can reach a host's pool but through libvirt's storage API). An Image
imported on a remote host, a VM made there from it with a volume and a cloud-init seed, a
cold move that copies the volumes (verified, same UUID, the source's kept), a kill -9
during that copy, and a running guest whose disks move live."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from controller.model import Backing
from controller.virt.carry import carry_volume
from controller.virt.pools import ensure_default_pool
from controller.virt.storage_errors import VolumeConflict
from controller.virt.storagexml import marker_name
from controller.virt.transfer import volume_sha256
from controller.virt.volume_reads import volume_info
from controller.virt.volumes import create_volume
from tests.support.libvirtd import VIRT_TYPE
from tests.support.waiting import wait_until

from .conftest import Hosts
from .test_multihost_e2e import NeverTwo, Tree, _results, _state, _where

pytestmark = pytest.mark.e2e

POOL = "default"
MIB = 1024 * 1024


@pytest.fixture
def tree(tmp_path: Path, hosts: Hosts, prefix: str) -> Iterator[Tree]:
    """A manifest tree; afterwards the prefix's volumes are gone from every host."""
    yield Tree(tmp_path, hosts, prefix)
    for host in hosts.values():
        conn = host.conn()
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                if vol.name().startswith(prefix):
                    vol.delete(0)


@pytest.fixture
def never_two() -> Iterator[list[NeverTwo]]:
    watchers: list[NeverTwo] = []
    yield watchers
    for watcher in watchers:
        watcher.stop()


def _image(tmp_path: Path) -> tuple[Path, str]:
    """A 8 MiB qcow2 image (its first MiB a pattern), made on the machine that runs
    reconcile, and its sha256."""
    raw = tmp_path / "image.raw"
    with open(raw, "wb") as file:
        file.write(b"\xab" * MIB)
        file.truncate(8 * MIB)
    image = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)],
                   check=True, capture_output=True, timeout=60)
    return image, hashlib.sha256(image.read_bytes()).hexdigest()


def _manifest(tree: Tree, short: str, host: str, *, state: str, move: str = "cold",
              image: tuple[Path, str] | None = None, data_mib: int = 4,
              cloud_init: bool = True) -> str:
    name = tree.prefix + short
    docs = []
    disks = []
    if image is not None:
        docs.append(
            "apiVersion: reconcile/v1\nkind: Image\n"
            f"metadata: {{name: {tree.prefix}img}}\n"
            f"spec: {{url: 'file://{image[0]}', sha256: {image[1]}}}\n")
        disks.append(f"    - {{volume: {name}-root, image: {tree.prefix}img, size: 16MiB}}\n")
    disks.append(f"    - {{volume: {name}-data, size: {data_mib}MiB, format: raw}}\n")
    seed = ("  cloudInit:\n    userData: |\n      #cloud-config\n"
            f"      hostname: {short}\n") if cloud_init else ""
    docs.append(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  memory: 64\n  vcpus: 1\n  type: {VIRT_TYPE}\n  stopTimeout: 0\n"
        f"  state: {state}\n  host: {host}\n  moveStrategy: {move}\n"
        "  disks:\n" + "".join(disks) + seed)
    (tree.root / f"{short}.yaml").write_text("---\n".join(docs))
    return name


def _volumes(conn: libvirt.virConnect, prefix: str) -> set[str]:
    """The names in the default pool starting with `prefix`; none while it is not there
    or not active yet."""
    try:
        return {name for name in conn.storagePoolLookupByName(POOL).listVolumes()
                if name.startswith(prefix)}
    except libvirt.libvirtError:
        return set()


def _fill(conn: libvirt.virConnect, name: str, data: bytes) -> None:
    """Write `data` at the start of a volume, through a libvirt upload stream."""
    vol = conn.storagePoolLookupByName(POOL).storageVolLookupByName(name)
    stream = conn.newStream(0)
    vol.upload(stream, 0, len(data), 0)
    offset = 0
    while offset < len(data):
        offset += stream.send(data[offset:offset + MIB])
    stream.finish()


def _complete_and_same(hosts: Hosts, name: str, *, source: str, target: str) -> str:
    """`name` is complete on both hosts with the same content; its sha256."""
    one, two = hosts[source].conn(), hosts[target].conn()
    for conn in (one, two):
        info = volume_info(conn, pool=POOL, name=name)
        assert info is not None and not info.partial, (name, info)
    digest = volume_sha256(one, pool=POOL, name=name)
    assert volume_sha256(two, pool=POOL, name=name) == digest
    return digest


def test_an_image_on_a_remote_host_a_vm_from_it_and_a_cold_move_that_carries_its_volumes(
        tree: Tree, hosts: Hosts, tmp_path: Path) -> None:
    image = _image(tmp_path)
    name = _manifest(tree, "cold", "kvm-1", state="stopped", image=image)
    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[name] == ("converged", "kvm-1")
    one, two = hosts["kvm-1"].conn(), hosts["kvm-2"].conn()
    made = _volumes(one, tree.prefix)
    image_volume = next(vol for vol in made if vol.startswith(f"{tree.prefix}img.sha256-"))
    seed = next(vol for vol in made if ".cidata-" in vol)
    assert made == {image_volume, seed, f"{name}-root", f"{name}-data"}
    assert seed.startswith(name) and _volumes(two, tree.prefix) == set()
    base = volume_info(one, pool=POOL, name=image_volume)
    root = volume_info(one, pool=POOL, name=f"{name}-root")
    assert base is not None and root is not None and root.backing is not None
    assert root.backing.path == base.path
    # the remote pool is the remote host's own: nothing of it is on this machine
    assert not Path(base.path).exists()
    assert volume_sha256(one, pool=POOL, name=image_volume) == image[1]
    _fill(one, f"{name}-data", os.urandom(MIB))  # the guest's data, to be carried
    uuid = one.lookupByName(name).UUIDString()

    _manifest(tree, "cold", "kvm-2", state="stopped", image=image)
    done = subprocess.run(tree.command("--once"), capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (f"note: the volumes on kvm-1 are kept: default/{name}-root, default/{name}-data"
            in done.stdout), done.stdout
    moved = [(step["action"], step.get("host")) for step in tree.steps()
             if step["vm"] == name and step["phase"] == "done"][-5:]
    assert moved == [("create-seed", "kvm-2"), ("copy-volume", "kvm-1"),
                     ("copy-volume", "kvm-1"), ("define", "kvm-2"), ("undefine", "kvm-1")]
    assert _where(hosts, name) == {"kvm-2": ("stopped", uuid)}
    there = _volumes(two, tree.prefix)
    assert there == {image_volume, seed, f"{name}-root", f"{name}-data"}  # the seed made
    for volume in (f"{name}-root", f"{name}-data"):
        _complete_and_same(hosts, volume, source="kvm-1", target="kvm-2")
    root_there = volume_info(two, pool=POOL, name=f"{name}-root")
    base_there = volume_info(two, pool=POOL, name=image_volume)
    assert root_there is not None and base_there is not None and root_there.backing
    assert root_there.backing.path == base_there.path and not base_there.partial
    assert _volumes(one, tree.prefix) == made  # the source's volumes are kept

    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[name] == ("unchanged", "kvm-2")

    # back to kvm-1, which kept the old copies; the data changed on kvm-2 meanwhile
    _fill(two, f"{name}-data", os.urandom(MIB))
    old_data = volume_sha256(one, pool=POOL, name=f"{name}-data")
    _manifest(tree, "cold", "kvm-1", state="stopped", image=image)
    code, report, err = tree.once()
    assert code == 1
    vms = report["vms"]
    assert isinstance(vms, list)
    (failed,) = [vm for vm in vms if vm["name"] == name]
    assert (failed["result"], failed["host"]) == ("failed", "kvm-1")
    assert (f"volume '{name}-data' in pool 'default' exists on host kvm-1 with other "
            "content" in failed["error"]) and "never overwritten" in failed["error"]
    assert volume_sha256(one, pool=POOL, name=f"{name}-data") == old_data  # untouched
    assert _where(hosts, name) == {"kvm-2": ("stopped", uuid)}
    one.storagePoolLookupByName(POOL).storageVolLookupByName(f"{name}-data").delete(0)

    code, report, err = tree.once()  # the old copy gone: the move goes on
    assert code == 0, err
    steps = [(step["action"], step["reason"])
             for step in _vm(report, name)["steps"]]  # type: ignore[attr-defined]
    assert [action for action, _ in steps] == ["copy-volume", "copy-volume", "define",
                                               "undefine"]
    assert "compared with kvm-2's before use" in steps[0][1]  # the unchanged root
    assert _where(hosts, name) == {"kvm-1": ("stopped", uuid)}
    for volume in (f"{name}-root", f"{name}-data"):
        _complete_and_same(hosts, volume, source="kvm-2", target="kvm-1")


def _vm(report: dict[str, object], name: str) -> dict[str, object]:
    vms = report["vms"]
    assert isinstance(vms, list)
    found: dict[str, object] = next(vm for vm in vms if vm["name"] == name)
    return found


def test_an_overlay_is_never_copied_to_a_host_without_its_image(
        hosts: Hosts, prefix: str) -> None:
    """The copy's own check, below the planner's: a broken backing chain never lands."""
    one, two = hosts["kvm-1"].conn(), hosts["kvm-2"].conn()
    for conn in (one, two):
        ensure_default_pool(conn)
    image = f"{prefix}img.qcow2"
    try:
        base = create_volume(one, pool=POOL, name=image, capacity=4 * MIB)
        create_volume(one, pool=POOL, name=f"{prefix}ov", capacity=8 * MIB,
                      backing=Backing(base.volume.path, "qcow2"))
        with pytest.raises(VolumeConflict, match="copying it would break its backing chain"):
            carry_volume(source=one, target=two, pool=POOL, name=f"{prefix}ov",
                         where="kvm-2")
        create_volume(two, pool=POOL, name=image, capacity=4 * MIB, format="raw")
        with pytest.raises(VolumeConflict, match="would give it another backing file"):
            carry_volume(source=one, target=two, pool=POOL, name=f"{prefix}ov",
                         where="kvm-2")
        assert _volumes(two, prefix) == {image}  # nothing of the overlay, no marker
    finally:
        for conn in (one, two):
            for name in _volumes(conn, prefix):
                conn.storagePoolLookupByName(POOL).storageVolLookupByName(name).delete(0)


def test_a_cold_move_killed_during_the_copy_is_finished_and_never_attaches_a_partial_copy(
        tree: Tree, hosts: Hosts) -> None:
    name = _manifest(tree, "kill", "kvm-1", state="stopped", data_mib=96, cloud_init=False)
    code, _, err = tree.once()
    assert code == 0, err
    one, three = hosts["kvm-1"].conn(), hosts["kvm-3"].conn()
    _fill(one, f"{name}-data", os.urandom(96 * MIB))  # no holes: the copy takes a while
    uuid = one.lookupByName(name).UUIDString()
    marker = marker_name(f"{name}-data")

    _manifest(tree, "kill", "kvm-3", state="stopped", data_mib=96, cloud_init=False)
    process = subprocess.Popen(tree.command("--once"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        # the copy is being written: its volume and its partial marker are both there
        wait_until(lambda: {marker, f"{name}-data"} <= _volumes(three, tree.prefix)
                   or process.poll() is not None, 120, interval=0.005,
                   what="the copy to be under way on kvm-3")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the pass ended before the kill"
    assert marker in _volumes(three, tree.prefix)  # an interrupted copy, marked so
    assert _where(hosts, name) == {"kvm-1": ("stopped", uuid)}  # never defined on it

    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[name] == ("converged", "kvm-3")
    steps = [(step["action"], step["reason"])
             for step in _vm(report, name)["steps"]]  # type: ignore[attr-defined]
    assert [action for action, _ in steps] == ["copy-volume", "define", "undefine"]
    assert steps[0][1].endswith("(an interrupted copy is made again)")
    assert _where(hosts, name) == {"kvm-3": ("stopped", uuid)}
    _complete_and_same(hosts, f"{name}-data", source="kvm-1", target="kvm-3")
    assert marker not in _volumes(three, tree.prefix)


def test_a_running_guest_with_volumes_moves_live_its_disks_copied(
        tree: Tree, hosts: Hosts, tmp_path: Path, never_two: list[NeverTwo]) -> None:
    image = _image(tmp_path)
    name = _manifest(tree, "live", "kvm-2", state="stopped", move="live", image=image)
    code, _, err = tree.once()
    assert code == 0, err
    two, three = hosts["kvm-2"].conn(), hosts["kvm-3"].conn()
    _fill(two, f"{name}-data", os.urandom(MIB))
    _manifest(tree, "live", "kvm-2", state="running", move="live", image=image)
    code, _, err = tree.once()
    assert code == 0, err
    state = _state(two, name)
    assert state is not None and state[0] == "running"
    watcher = NeverTwo(hosts, name)
    never_two.append(watcher)
    cpu_before = two.lookupByName(name).info()[4]

    _manifest(tree, "live", "kvm-3", state="running", move="live", image=image)
    code, report, err = tree.once()
    assert code == 0, err
    vm = _vm(report, name)
    assert (vm["result"], vm["host"]) == ("converged", "kvm-3")
    assert [step["action"] for step in vm["steps"]] == [  # type: ignore[attr-defined]
        "create-seed", "migrate"]
    assert _where(hosts, name) == {"kvm-3": ("running", state[1])}
    arrived = three.lookupByName(name)
    assert arrived.isPersistent() and arrived.info()[4] >= cpu_before  # it kept running
    watcher.stop()
    assert watcher.both == []
    # the disks: complete (no marker left), the data the guest had, the overlay on the
    # image imported there first (libvirt copied it whole: the base's data is in it too)
    there = _volumes(three, tree.prefix)
    assert not any(vol.endswith(marker_name("")) for vol in there), there
    _complete_and_same(hosts, f"{name}-data", source="kvm-2", target="kvm-3")
    root = volume_info(three, pool=POOL, name=f"{name}-root")
    image_volume = next(vol for vol in there if vol.startswith(f"{tree.prefix}img.sha256-"))
    base = volume_info(three, pool=POOL, name=image_volume)
    assert root is not None and base is not None and root.backing is not None
    assert root.backing.path == base.path and not root.partial
    assert {f"{name}-root", f"{name}-data"} <= _volumes(two, tree.prefix)  # kept

    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[name] == ("unchanged", "kvm-3")
