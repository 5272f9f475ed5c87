"""controller.virt.carry on libvirt's in-process test driver: a live move's target
volumes under the partial rule, and a finished live move's marker. The driver has no
volume streams, and its test:///default connections in one process share one host, so
the copies between hosts run on the real test hosts
(tests/multihost/test_multihost_storage.py)."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from controller.model import Backing, VolumeWant
from controller.virt import carry, storage
from controller.virt.storage_errors import VolumeConflict
from controller.virt.storagexml import PARTIAL_SUFFIX

POOL = "default-pool"
MIB = 1 << 20


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def names(conn: libvirt.virConnect) -> list[str]:
    return sorted(conn.storagePoolLookupByName(POOL).listVolumes())


WANTS = (VolumeWant(POOL, "root", format="qcow2", capacity=8 * MIB, target="vda"),
         VolumeWant(POOL, "data", format="raw", capacity=4 * MIB, target="vdb"))


def test_a_migrations_volumes_are_partial_until_it_is_done(conn: libvirt.virConnect) -> None:
    with carry.receiving(conn, WANTS):
        assert names(conn) == sorted(["root", "data", "root" + PARTIAL_SUFFIX,
                                      "data" + PARTIAL_SUFFIX])
        root = storage.volume_info(conn, pool=POOL, name="root")
        assert root is not None and root.partial and root.capacity == 8 * MIB
    assert names(conn) == ["data", "root"]
    assert not storage.require_complete(conn, pool=POOL, name="data").partial


def test_a_failed_migration_leaves_nothing_of_its_volumes(conn: libvirt.virConnect) -> None:
    with pytest.raises(RuntimeError, match="migration failed"), carry.receiving(conn, WANTS):
        raise RuntimeError("migration failed")
    assert names(conn) == []


def test_kept_before_a_late_failure_the_volumes_stay_complete(
        conn: libvirt.virConnect) -> None:
    """A migration that failed after the switch-over: the guest runs on the volumes."""
    with pytest.raises(RuntimeError), carry.receiving(conn, WANTS) as keep:
        keep()
        raise RuntimeError("confirm failed")
    assert names(conn) == ["data", "root"]


def test_an_interrupted_migrations_leftovers_are_made_again(conn: libvirt.virConnect) -> None:
    pool = conn.storagePoolLookupByName(POOL)
    for name in ("root" + PARTIAL_SUFFIX, "root"):
        pool.createXML(f"<volume><name>{name}</name><capacity>{MIB}</capacity>"
                       "<target><format type='raw'/></target></volume>", 0)
    with carry.receiving(conn, WANTS[:1]):
        pass
    info = storage.require_complete(conn, pool=POOL, name="root")
    assert info.capacity == 8 * MIB  # the leftover (1 MiB) was replaced


def test_a_complete_volume_on_the_target_is_never_written(conn: libvirt.virConnect) -> None:
    storage.create_volume(conn, pool=POOL, name="root", capacity=MIB)
    with pytest.raises(VolumeConflict), carry.receiving(conn, WANTS):
        pass
    assert names(conn) == ["root"]
    assert storage.require_complete(conn, pool=POOL, name="root").capacity == MIB


def test_an_overlay_target_needs_its_backing_file_there(conn: libvirt.virConnect) -> None:
    want = VolumeWant(POOL, "ov", capacity=8 * MIB,
                      backing=Backing("/default-pool/missing.qcow2", "qcow2"))
    with pytest.raises(VolumeConflict, match="no volume on this host"), \
            carry.receiving(conn, (want,)):
        pass
    assert names(conn) == []


def test_clear_partial_keeps_the_volume_and_drops_only_its_marker(
        conn: libvirt.virConnect) -> None:
    with carry.receiving(conn, WANTS[:1]):  # a kill -9 between switch-over and marker
        assert carry.clear_partial(conn, pool=POOL, name="root")
        assert names(conn) == ["root"]
        assert not storage.require_complete(conn, pool=POOL, name="root").partial
    assert not carry.clear_partial(conn, pool=POOL, name="root")
    assert not carry.clear_partial(conn, pool=POOL, name="absent")
