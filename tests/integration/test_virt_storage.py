"""controller.virt.storage on libvirt's in-process test driver (test:///default).

The test driver keeps pools and volumes in memory (nothing on the host is touched) and
supports pool define/build/start/autostart, volume create (with a backing store),
createXMLFrom, delete and lookups, but not upload, download, wipe or resize: those
are exercised on the real libvirtd in tests/e2e/test_virt_storage_e2e.py, and here
only the refusals we make before libvirt is asked, and that libvirt's "not supported"
leaves nothing behind. Its built-in pool is `default-pool` at /default-pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import libvirt
import pytest

from controller.errors import PermanentError
from controller.virt import storage
from controller.virt.storage_errors import (
    InvalidName,
    InvalidRequest,
    PartialVolume,
    PoolNotFound,
    PoolUnusable,
    ShrinkRefused,
    VolumeConflict,
)
from controller.virt.storagexml import PARTIAL_SUFFIX, Backing

POOL = "default-pool"
MIB = 1 << 20


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def names(conn: libvirt.virConnect, pool: str = POOL) -> list[str]:
    return sorted(conn.storagePoolLookupByName(pool).listVolumes())


def raw_create(conn: libvirt.virConnect, name: str, capacity: int = MIB,
               fmt: str = "raw") -> libvirt.virStorageVol:
    """A volume made behind the module's back: what another client or a killed run left."""
    xml = (f"<volume><name>{name}</name><capacity>{capacity}</capacity>"
           f"<target><format type='{fmt}'/></target></volume>")
    return conn.storagePoolLookupByName(POOL).createXML(xml, 0)


# --- pools ----------------------------------------------------------------------------

def test_ensure_pool_defines_builds_starts_and_autostarts(conn: libvirt.virConnect) -> None:
    path = "/nonexistent-reconcile-test/pool"
    info = storage.ensure_pool(conn, name="made", path=path)
    assert (info.name, info.type, info.path) == ("made", "dir", path)
    assert info.active and info.autostart and info.persistent and not info.shared
    assert not os.path.exists("/nonexistent-reconcile-test")  # the test driver touched nothing
    again = storage.ensure_pool(conn, name="made", path=path)
    assert again.active and again.name == "made"
    assert [p.name() for p in conn.listAllStoragePools()].count("made") == 1


def test_ensure_default_pool_is_virt_installs(conn: libvirt.virConnect) -> None:
    assert storage.pool_info(conn, name="default") is None
    info = storage.ensure_default_pool(conn)
    assert (info.name, info.type, info.path) == ("default", "dir", "/var/lib/libvirt/images")
    assert info.active and info.autostart


def test_ensure_pool_starts_an_inactive_pool_and_keeps_its_definition(
        conn: libvirt.virConnect) -> None:
    pool = conn.storagePoolLookupByName(POOL)
    pool.destroy()
    info = storage.ensure_pool(conn, name=POOL, path="/elsewhere")
    assert info.active and info.path == "/default-pool"  # an existing pool is used as it is


def test_ensure_pool_refuses_bad_names_and_paths(conn: libvirt.virConnect) -> None:
    before = sorted(p.name() for p in conn.listAllStoragePools())
    for name, path in [("../x", "/srv/x"), ("ok", "relative"), ("ok", "/srv/../etc")]:
        with pytest.raises(InvalidName):
            storage.ensure_pool(conn, name=name, path=path)
    assert sorted(p.name() for p in conn.listAllStoragePools()) == before


def test_pool_info_and_missing_pools(conn: libvirt.virConnect) -> None:
    info = storage.pool_info(conn, name=POOL)
    assert info is not None and info.type == "dir" and info.path == "/default-pool"
    assert info.capacity > 0 and info.available > 0
    assert storage.pool_info(conn, name="nope") is None
    with pytest.raises(PoolNotFound, match="nope"):
        storage.volume_info(conn, pool="nope", name="x")
    conn.storagePoolLookupByName(POOL).destroy()
    with pytest.raises(PoolUnusable, match="not active"):
        storage.volume_info(conn, pool=POOL, name="x")


# --- names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escape", "x/y", ".", "..", "", ".hidden",
                                  "x" * 129, "web-1" + PARTIAL_SUFFIX])
def test_escaping_names_are_refused_before_libvirt(conn: libvirt.virConnect, name: str) -> None:
    # The test driver itself accepts "../escape" and "x/y" (path /default-pool/../escape).
    calls: list[Callable[[], object]] = [
        lambda: storage.create_volume(conn, pool=POOL, name=name, capacity=MIB),
        lambda: storage.copy_volume(conn, pool=POOL, name=name, source_pool=POOL,
                                    source_name="src"),
        lambda: storage.upload_volume(conn, pool=POOL, name=name, path=__file__),
        lambda: storage.volume_info(conn, pool=POOL, name=name),
        lambda: storage.delete_volume(conn, pool=POOL, name=name),
        lambda: storage.resize_volume(conn, pool=POOL, name=name, capacity=MIB),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert names(conn) == []


# --- create, overlay, copy --------------------------------------------------------------

def test_create_then_rerun_is_the_same_volume(conn: libvirt.virConnect) -> None:
    made = storage.create_volume(conn, pool=POOL, name="web-1-root", capacity=16 * MIB)
    assert made.created and not made.volume.partial
    assert (made.volume.capacity, made.volume.format) == (16 * MIB, "qcow2")
    again = storage.create_volume(conn, pool=POOL, name="web-1-root", capacity=16 * MIB)
    assert not again.created and again.notes == ()
    assert again.volume == made.volume
    assert names(conn) == ["web-1-root"]  # no marker left


def test_an_existing_volume_that_differs_is_kept_with_notes(conn: libvirt.virConnect) -> None:
    storage.create_volume(conn, pool=POOL, name="v", capacity=16 * MIB, format="raw")
    other = storage.create_volume(conn, pool=POOL, name="v", capacity=32 * MIB, format="qcow2")
    assert not other.created
    assert other.notes == ("format raw, wanted qcow2",
                           f"capacity {16 * MIB} bytes, wanted {32 * MIB}")
    assert other.volume.format == "raw" and other.volume.capacity == 16 * MIB  # not applied


def test_overlay_on_an_image(conn: libvirt.virConnect) -> None:
    base = storage.create_volume(conn, pool=POOL, name="debian-12", capacity=64 * MIB).volume
    backing = Backing(path=base.path, format="qcow2")
    overlay = storage.create_volume(conn, pool=POOL, name="web-1-root", capacity=None,
                                    backing=backing)
    assert overlay.created
    assert overlay.volume.backing == backing
    assert overlay.volume.capacity == 64 * MIB  # the image's size
    assert storage.volumes_backed_by(conn, path=base.path) == [overlay.volume]
    rerun = storage.create_volume(conn, pool=POOL, name="web-1-root", capacity=None,
                                  backing=backing)
    assert not rerun.created and rerun.notes == ()


def test_overlay_smaller_than_its_image_is_refused(conn: libvirt.virConnect) -> None:
    base = storage.create_volume(conn, pool=POOL, name="img", capacity=64 * MIB).volume
    with pytest.raises(ShrinkRefused, match="smaller than its backing"):
        storage.create_volume(conn, pool=POOL, name="ov", capacity=16 * MIB,
                              backing=Backing(path=base.path, format="qcow2"))
    assert names(conn) == ["img"]


def test_bad_requests_touch_nothing(conn: libvirt.virConnect) -> None:
    with pytest.raises(InvalidRequest, match="capacity is needed"):
        storage.create_volume(conn, pool=POOL, name="v", capacity=None)
    with pytest.raises(InvalidRequest, match="only a qcow2"):
        storage.create_volume(conn, pool=POOL, name="v", capacity=MIB, format="raw",
                              backing=Backing(path="/default-pool/x", format="qcow2"))
    with pytest.raises(InvalidRequest, match="format"):
        storage.create_volume(conn, pool=POOL, name="v", capacity=MIB, format="vmdk")
    assert names(conn) == []


def test_copy_is_a_full_copy_and_reruns(conn: libvirt.virConnect) -> None:
    storage.create_volume(conn, pool=POOL, name="img", capacity=64 * MIB)
    copied = storage.copy_volume(conn, pool=POOL, name="db-1-root", source_pool=POOL,
                                 source_name="img")
    assert copied.created and copied.volume.backing is None
    assert copied.volume.capacity == 64 * MIB
    again = storage.copy_volume(conn, pool=POOL, name="db-1-root", source_pool=POOL,
                                source_name="img")
    assert not again.created
    with pytest.raises(ShrinkRefused, match="smaller than its source"):
        storage.copy_volume(conn, pool=POOL, name="small", source_pool=POOL,
                            source_name="img", capacity=MIB)
    assert names(conn) == ["db-1-root", "img"]


def test_a_larger_copy(conn: libvirt.virConnect) -> None:
    storage.create_volume(conn, pool=POOL, name="img", capacity=16 * MIB)
    copied = storage.copy_volume(conn, pool=POOL, name="big", source_pool=POOL,
                                 source_name="img", capacity=32 * MIB)
    assert copied.created and copied.volume.capacity == 32 * MIB
    assert names(conn) == ["big", "img"]


# --- the partial rule -------------------------------------------------------------------

def test_a_partial_volume_is_seen_refused_and_rewritten(conn: libvirt.virConnect) -> None:
    # What a kill -9 during a write leaves: the volume and its marker.
    raw_create(conn, "img" + PARTIAL_SUFFIX, capacity=0)
    half = raw_create(conn, "img", capacity=8 * MIB, fmt="qcow2")
    info = storage.volume_info(conn, pool=POOL, name="img")
    assert info is not None and info.partial
    assert [vol.name for vol in storage.list_volumes(conn, pool=POOL)] == ["img"]
    with pytest.raises(PartialVolume, match="interrupted write"):
        storage.require_complete(conn, pool=POOL, name="img")
    with pytest.raises(PartialVolume, match="backing file"):
        storage.create_volume(conn, pool=POOL, name="ov", capacity=None,
                              backing=Backing(path=half.path(), format="qcow2"))
    with pytest.raises(PartialVolume):
        storage.copy_volume(conn, pool=POOL, name="cp", source_pool=POOL, source_name="img")
    with pytest.raises(PartialVolume):
        storage.resize_volume(conn, pool=POOL, name="img", capacity=16 * MIB)
    rerun = storage.create_volume(conn, pool=POOL, name="img", capacity=16 * MIB)
    assert rerun.created and not rerun.volume.partial and rerun.volume.capacity == 16 * MIB
    assert names(conn) == ["img"]
    assert storage.require_complete(conn, pool=POOL, name="img").capacity == 16 * MIB


def test_a_lone_marker_is_finished_by_a_rerun(conn: libvirt.virConnect) -> None:
    # killed after the marker was made and before the volume was
    raw_create(conn, "v" + PARTIAL_SUFFIX, capacity=0)
    assert storage.volume_info(conn, pool=POOL, name="v") is None
    made = storage.create_volume(conn, pool=POOL, name="v", capacity=MIB)
    assert made.created and names(conn) == ["v"]


def test_a_complete_volume_made_by_someone_else_is_never_rewritten(
        conn: libvirt.virConnect) -> None:
    raw_create(conn, "theirs", capacity=4 * MIB)
    kept = storage.create_volume(conn, pool=POOL, name="theirs", capacity=4 * MIB,
                                 format="raw")
    assert not kept.created and kept.notes == ()


def test_upload_where_the_driver_cannot_leaves_nothing(conn: libvirt.virConnect,
                                                       tmp_path: os.PathLike[str]) -> None:
    source = os.path.join(tmp_path, "image")
    with open(source, "wb") as file:
        file.write(b"x" * 4096)
    with pytest.raises(PermanentError, match="not supported"):
        storage.upload_volume(conn, pool=POOL, name="img", path=source, format="raw")
    assert names(conn) == []


# --- resize, delete, users ------------------------------------------------------------

def test_resize_refuses_shrink_before_libvirt(conn: libvirt.virConnect) -> None:
    storage.create_volume(conn, pool=POOL, name="v", capacity=16 * MIB)
    with pytest.raises(ShrinkRefused) as caught:
        storage.resize_volume(conn, pool=POOL, name="v", capacity=8 * MIB)
    message = str(caught.value)
    assert "'v'" in message and str(16 * MIB) in message and str(8 * MIB) in message
    assert storage.resize_volume(conn, pool=POOL, name="v", capacity=16 * MIB) is False
    with pytest.raises(PermanentError, match="not supported"):  # the test driver cannot grow
        storage.resize_volume(conn, pool=POOL, name="v", capacity=32 * MIB)


def _define(conn: libvirt.virConnect, name: str, disks: str) -> libvirt.virDomain:
    return conn.defineXML(
        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
        f"<os><type>hvm</type></os><devices>{disks}</devices></domain>")


def test_volume_users_by_path_and_by_pool_volume(conn: libvirt.virConnect) -> None:
    a = storage.create_volume(conn, pool=POOL, name="a", capacity=MIB).volume
    b = storage.create_volume(conn, pool=POOL, name="b", capacity=MIB).volume
    _define(conn, "by-path", f"<disk type='file' device='disk'><source file='{a.path}'/>"
                             "<target dev='vda'/></disk>")
    dom = _define(conn, "by-volume", f"<disk type='volume' device='cdrom'><source "
                                     f"pool='{POOL}' volume='b'/><target dev='hdc'/></disk>")
    assert storage.volume_users(conn, path=a.path) == ["by-path"]
    assert storage.volume_users(conn, path=b.path) == ["by-volume"]
    assert storage.volume_users(conn, path="/default-pool/none") == []
    assert storage.volume_users(conn, path=b.path, running_only=True) == []
    dom.create()
    assert storage.volume_users(conn, path=b.path, running_only=True) == ["by-volume"]


def test_delete_refuses_a_volume_in_use_or_backing_another(conn: libvirt.virConnect) -> None:
    base = storage.create_volume(conn, pool=POOL, name="img", capacity=MIB).volume
    storage.create_volume(conn, pool=POOL, name="ov", capacity=None,
                          backing=Backing(path=base.path, format="qcow2"))
    with pytest.raises(VolumeConflict, match="backing file of default-pool/ov"):
        storage.delete_volume(conn, pool=POOL, name="img")
    ov_path = conn.storagePoolLookupByName(POOL).storageVolLookupByName("ov").path()
    dom = _define(conn, "user", f"<disk type='file' device='disk'><source file='{ov_path}'/>"
                                "<target dev='vda'/></disk>")
    with pytest.raises(VolumeConflict, match="disk of user"):
        storage.delete_volume(conn, pool=POOL, name="ov")
    dom.undefine()
    assert storage.delete_volume(conn, pool=POOL, name="ov") is True
    assert storage.delete_volume(conn, pool=POOL, name="ov") is False
    assert storage.delete_volume(conn, pool=POOL, name="img") is True
    assert names(conn) == []


def test_delete_removes_a_partial_and_its_marker(conn: libvirt.virConnect) -> None:
    raw_create(conn, "v" + PARTIAL_SUFFIX, capacity=0)
    raw_create(conn, "v")
    assert storage.delete_volume(conn, pool=POOL, name="v") is True
    assert names(conn) == []
