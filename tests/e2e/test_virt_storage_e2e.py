"""controller.virt.storage on the real libvirtd (qemu:///system): streams, growth, full
pools, kill -9 mid-upload, and tiny real guests with disks.

Each test works in a dir pool of its own, `t-<8 hex>-pool` at
/var/lib/libvirt/images/t-<8 hex>-pool, which is emptied, stopped, undefined and
removed at teardown, after the test's domains are gone. The facts these tests rely on
are in docs/STORAGE-FACTS.md.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import libvirt
import pytest

from controller.virt import storage
from controller.virt.storage_errors import (
    ChecksumMismatch,
    InvalidName,
    PartialVolume,
    PoolFull,
    ShrinkRefused,
    UnsafeImage,
    VolumeConflict,
)
from controller.virt.storagexml import PARTIAL_SUFFIX, Backing
from tests.support.command import REPO
from tests.support.disks import IMAGES, remove_pool
from tests.support.domains import remove_domains
from tests.support.libvirtd import SYSTEM_URI
from tests.support.waiting import wait_until

MIB = 1 << 20



class PoolMaker(Protocol):
    def __call__(self, suffix: str, *, tmpfs_size: str | None = None) -> str: ...


@pytest.fixture
def pools(conn: libvirt.virConnect, prefix: str) -> Iterator[PoolMaker]:
    """pools(suffix) → the name of a new, active dir pool `<prefix><suffix>`; every pool
    made is removed with its volumes (and its folder) after the test's domains."""
    made: list[tuple[str, Path]] = []

    def make(suffix: str, *, tmpfs_size: str | None = None) -> str:
        name = prefix + suffix
        path = IMAGES / name
        made.append((name, path))
        if tmpfs_size is not None:
            path.mkdir(mode=0o711)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size},mode=0711",
                            "tmpfs", str(path)], check=True, timeout=60)
        storage.ensure_pool(conn, name=name, path=str(path), autostart=False)
        return name

    yield make
    remove_domains(conn, prefix)
    for name, path in reversed(made):
        remove_pool(conn, name, path)


@pytest.fixture
def pool(pools: PoolMaker) -> str:
    return pools("pool")


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as file:
        file.write(os.urandom(size))
    return path


def qcow2_image(path: Path, data: int = 8 * MIB) -> Path:
    """A qcow2 file holding `data` bytes of random data (a dense image, like a cloud one)."""
    raw = random_file(path.with_suffix(".raw"), data)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, capture_output=True, timeout=120)
    raw.unlink()
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def volume_names(conn: libvirt.virConnect, pool: str) -> list[str]:
    return sorted(conn.storagePoolLookupByName(pool).listVolumes())


def guest_xml(name: str, virt_type: str, disks: str) -> str:
    return (f"<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            f"<devices><console type='pty'/>{disks}</devices></domain>")


def volume_disk(pool: str, volume: str, *, dev: str = "vda", fmt: str = "qcow2") -> str:
    return (f"<disk type='volume' device='disk'><driver name='qemu' type='{fmt}'/>"
            f"<source pool='{pool}' volume='{volume}'/><target dev='{dev}' bus='virtio'/>"
            "</disk>")


# --- streams ----------------------------------------------------------------------------

def test_upload_download_round_trip(conn: libvirt.virConnect, pool: str,
                                    tmp_path: Path) -> None:
    image = qcow2_image(tmp_path / "image.qcow2")
    digest = sha256(image)
    made = storage.upload_volume(conn, pool=pool, name="img", path=str(image),
                                 sha256=digest)
    assert made.created and made.sha256 == digest
    info = made.volume
    assert (info.format, info.capacity, info.partial) == ("qcow2", 8 * MIB, False)
    assert volume_names(conn, pool) == ["img"]  # no marker left
    out = tmp_path / "out.qcow2"
    assert storage.download_volume(conn, pool=pool, name="img", path=str(out)) == digest
    assert out.read_bytes() == image.read_bytes()
    assert storage.volume_sha256(conn, pool=pool, name="img") == digest

    stored = storage.upload_volume(conn, pool=pool, name="img2", path=str(image),
                                   sha256=digest, check=storage.Check.STORED)
    assert stored.created and stored.sha256 == digest
    again = storage.upload_volume(conn, pool=pool, name="img", path=str(image), sha256=digest)
    assert not again.created and again.notes == ()


def test_an_uploaded_volume_reads_as_its_content_at_once(conn: libvirt.virConnect, pool: str,
                                                         tmp_path: Path) -> None:
    # libvirt refreshes the pool after an upload in a thread of its own; read at once,
    # a volume was seen as raw of its file's size (about 1 upload in 20 here)
    image = qcow2_image(tmp_path / "image.qcow2", data=MIB)
    seen = [storage.upload_volume(conn, pool=pool, name=f"v{index}", path=str(image),
                                  check=storage.Check.NONE).volume for index in range(20)]
    assert {(info.format, info.capacity) for info in seen} == {("qcow2", MIB)}


def test_sparse_upload_keeps_holes(conn: libvirt.virConnect, pool: str,
                                   tmp_path: Path) -> None:
    source = tmp_path / "sparse.raw"
    with open(source, "wb") as file:
        file.write(os.urandom(MIB))
        file.seek(30 * MIB)
        file.write(os.urandom(MIB))
    digest = sha256(source)
    made = storage.upload_volume(conn, pool=pool, name="sparse", path=str(source),
                                 format="raw", sha256=digest, sparse=True,
                                 check=storage.Check.STORED)
    assert made.sha256 == digest and made.volume.capacity == 31 * MIB
    assert made.volume.allocation < 8 * MIB  # the 29 MiB hole stayed a hole
    out = tmp_path / "out.raw"
    assert storage.download_volume(conn, pool=pool, name="sparse", path=str(out)) == digest
    assert out.stat().st_size == 31 * MIB and out.stat().st_blocks * 512 < 8 * MIB


def test_a_wrong_checksum_keeps_nothing_and_a_rerun_imports(
        conn: libvirt.virConnect, pool: str, tmp_path: Path) -> None:
    image = qcow2_image(tmp_path / "image.qcow2")
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch) as caught:
        storage.upload_volume(conn, pool=pool, name="img", path=str(image), sha256=wrong)
    assert wrong in str(caught.value) and sha256(image) in str(caught.value)
    assert volume_names(conn, pool) == []
    made = storage.upload_volume(conn, pool=pool, name="img", path=str(image),
                                 sha256=sha256(image))
    assert made.created


def test_an_image_with_a_backing_file_of_its_own_is_refused(
        conn: libvirt.virConnect, pool: str, tmp_path: Path) -> None:
    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname",
                    "-F", "raw", str(evil), "16M"], check=True, timeout=60)
    with pytest.raises(UnsafeImage, match="/etc/hostname"):
        storage.upload_volume(conn, pool=pool, name="evil", path=str(evil))
    assert volume_names(conn, pool) == []


def test_overlay_and_copy_of_an_uploaded_image(conn: libvirt.virConnect, pools: PoolMaker,
                                               tmp_path: Path) -> None:
    images, disks = pools("images"), pools("disks")
    image = storage.upload_volume(conn, pool=images, name="debian-12",
                                  path=str(qcow2_image(tmp_path / "i.qcow2"))).volume
    backing = Backing(path=image.path, format="qcow2")
    overlay = storage.create_volume(conn, pool=disks, name="web-1-root", capacity=None,
                                    backing=backing)
    assert overlay.created and overlay.volume.backing == backing  # across pools
    assert overlay.volume.capacity == image.capacity
    bigger = storage.create_volume(conn, pool=disks, name="web-2-root", capacity=64 * MIB,
                                   backing=backing)
    assert bigger.volume.capacity == 64 * MIB
    copied = storage.copy_volume(conn, pool=disks, name="db-1-root", source_pool=images,
                                 source_name="debian-12", capacity=32 * MIB)
    assert copied.created and copied.volume.backing is None
    assert copied.volume.capacity == 32 * MIB  # libvirt copies at the source's size; grown
    users = sorted(f"{vol.pool}/{vol.name}" for vol in
                   storage.volumes_backed_by(conn, path=image.path))
    assert users == [f"{disks}/web-1-root", f"{disks}/web-2-root"]
    with pytest.raises(VolumeConflict, match="backing file of"):
        storage.delete_volume(conn, pool=images, name="debian-12")


def test_transfer_between_connections(conn: libvirt.virConnect, pools: PoolMaker,
                                      tmp_path: Path) -> None:
    here, there = pools("here"), pools("there")
    image = qcow2_image(tmp_path / "image.qcow2")
    storage.upload_volume(conn, pool=here, name="v", path=str(image))
    other = libvirt.open(SYSTEM_URI)  # a second host's connection, as far as the code can tell
    try:
        moved = storage.transfer_volume(source=conn, source_pool=here, name="v",
                                        target=other, target_pool=there)
        assert moved.created and moved.sha256 == sha256(image)
        assert moved.volume.format == "qcow2" and moved.volume.capacity == 8 * MIB
        again = storage.transfer_volume(source=conn, source_pool=here, name="v",
                                        target=other, target_pool=there)
        assert not again.created
    finally:
        other.close()


# --- the partial rule under kill -9 -------------------------------------------------------

_HALF_UPLOADER = r"""
import pathlib, sys, time
import libvirt
from controller.virt import storage, streams

pool, name, path, flag = sys.argv[1:5]
real_send = streams.send_file

def send_half(stream, fd, size, *, sparse, hasher):
    # the library's own send, of the first half only; then this client is killed
    real_send(stream, fd, size // 2, sparse=sparse, hasher=hasher)
    pathlib.Path(flag).touch()
    time.sleep(600)

streams.send_file = send_half
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
storage.upload_volume(libvirt.open("qemu:///system"), pool=pool, name=name, path=path)
"""


def test_kill_9_mid_upload_then_a_rerun_completes(conn: libvirt.virConnect, pool: str,
                                                  tmp_path: Path) -> None:
    image = qcow2_image(tmp_path / "image.qcow2", data=32 * MIB)
    flag = tmp_path / "half-sent"
    child = subprocess.Popen([sys.executable, "-c", _HALF_UPLOADER, pool, "img", str(image),
                              str(flag)], cwd=REPO)
    try:
        wait_until(lambda: flag.exists() or child.poll() is not None, timeout=120,
                   what="the uploader to send half the image")
        assert child.poll() is None, "the uploader exited before it was killed"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)

    assert volume_names(conn, pool) == ["img", "img" + PARTIAL_SUFFIX]
    half = storage.volume_info(conn, pool=pool, name="img")
    assert half is not None and half.partial
    with pytest.raises(PartialVolume):
        storage.require_complete(conn, pool=pool, name="img")
    with pytest.raises(PartialVolume):
        storage.create_volume(conn, pool=pool, name="ov", capacity=None,
                              backing=Backing(path=half.path, format="qcow2"))

    made = storage.upload_volume(conn, pool=pool, name="img", path=str(image),
                                 sha256=sha256(image), check=storage.Check.STORED)
    assert made.created and not made.volume.partial
    assert volume_names(conn, pool) == ["img"]
    assert storage.require_complete(conn, pool=pool, name="img").format == "qcow2"


# --- full pools ---------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_pool_is_one_clear_error_and_leaves_nothing(
        conn: libvirt.virConnect, pools: PoolMaker, tmp_path: Path) -> None:
    full = pools("full", tmpfs_size="16m")
    big = random_file(tmp_path / "big.raw", 24 * MIB)
    with pytest.raises(PoolFull) as caught:  # refused before any byte is sent
        storage.upload_volume(conn, pool=full, name="big", path=str(big), format="raw")
    assert "\n" not in str(caught.value) and "available" in str(caught.value)
    assert volume_names(conn, full) == []

    # The pool fills behind libvirt's back: its idea of free space is stale, the stream
    # runs into ENOSPC in libvirtd.
    filler = IMAGES / full / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=10"], check=True,
                   capture_output=True, timeout=60)
    middle = random_file(tmp_path / "middle.raw", 8 * MIB)
    with pytest.raises(PoolFull, match="No space left on device") as caught:
        storage.upload_volume(conn, pool=full, name="middle", path=str(middle), format="raw")
    assert "\n" not in str(caught.value)
    filler.unlink()
    storage.pools.refresh_pool(conn, name=full)  # libvirt's own refresh after the stream saw it
    assert volume_names(conn, full) == []  # neither the half volume nor its marker


# --- growing ------------------------------------------------------------------------------

def test_grow_offline_and_refuse_shrink(conn: libvirt.virConnect, pool: str) -> None:
    storage.create_volume(conn, pool=pool, name="v", capacity=16 * MIB)
    assert storage.resize_volume(conn, pool=pool, name="v", capacity=32 * MIB) is True
    assert storage.resize_volume(conn, pool=pool, name="v", capacity=32 * MIB) is False
    with pytest.raises(ShrinkRefused) as caught:
        storage.resize_volume(conn, pool=pool, name="v", capacity=8 * MIB)
    assert str(32 * MIB) in str(caught.value) and str(8 * MIB) in str(caught.value)
    info = storage.volume_info(conn, pool=pool, name="v")
    assert info is not None and info.capacity == 32 * MIB  # libvirt would have shrunk it
    # an odd size is what QEMU makes of it: whole sectors, so a rerun is "already done"
    assert storage.resize_volume(conn, pool=pool, name="v", capacity=32 * MIB + 1) is True
    assert storage.resize_volume(conn, pool=pool, name="v", capacity=32 * MIB + 1) is False


def test_grow_live_on_a_running_guest(conn: libvirt.virConnect, pool: str, prefix: str,
                                      virt_type: str) -> None:
    storage.create_volume(conn, pool=pool, name="root", capacity=16 * MIB)
    dom = conn.defineXML(guest_xml(prefix + "g", virt_type, volume_disk(pool, "root")))
    dom.create()
    assert dom.blockInfo("vda", 0)[0] == 16 * MIB
    with pytest.raises(VolumeConflict, match="grow it live"):
        storage.resize_volume(conn, pool=pool, name="root", capacity=32 * MIB)
    assert storage.grow_live(dom, target_dev="vda", capacity=32 * MIB) is True
    assert dom.blockInfo("vda", 0)[0] == 32 * MIB
    assert storage.grow_live(dom, target_dev="vda", capacity=32 * MIB) is False
    with pytest.raises(ShrinkRefused):
        storage.grow_live(dom, target_dev="vda", capacity=16 * MIB)
    assert dom.blockInfo("vda", 0)[0] == 32 * MIB  # libvirt would have shrunk it
    info = storage.volume_info(conn, pool=pool, name="root")
    assert info is not None and info.capacity == 32 * MIB
    assert storage.volume_users(conn, path=info.path) == [prefix + "g"]
    with pytest.raises(VolumeConflict, match="disk of"):
        storage.delete_volume(conn, pool=pool, name="root")


def test_a_root_only_seed_is_readable_by_the_guest(conn: libvirt.virConnect, pool: str,
                                                   prefix: str, virt_type: str) -> None:
    seed = storage.create_volume(conn, pool=pool, name="seed", capacity=MIB, format="raw",
                                 mode=0o600).volume
    assert seed.mode == 0o600 and os.stat(seed.path).st_uid == 0
    cdrom = (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
             f"<source file='{seed.path}'/><target dev='hdc' bus='ide'/><readonly/></disk>")
    dom = conn.defineXML(guest_xml(prefix + "s", virt_type, cdrom))
    dom.create()  # QEMU opens every disk at start: a seed it cannot read fails the start
    assert dom.isActive() and dom.blockInfo("hdc", 0)[0] == MIB
    assert os.stat(seed.path).st_mode & 0o777 == 0o600


# --- names ----------------------------------------------------------------------------

def test_escaping_names_are_refused(conn: libvirt.virConnect, pool: str) -> None:
    before = sorted(os.listdir(IMAGES))
    for name in ("../escape", "..", "a/b", "." + "hidden"):
        with pytest.raises(InvalidName):
            storage.create_volume(conn, pool=pool, name=name, capacity=MIB)
    assert sorted(os.listdir(IMAGES)) == before and volume_names(conn, pool) == []
