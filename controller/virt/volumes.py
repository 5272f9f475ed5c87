"""Storage volumes through libvirt: read, create (empty or as an overlay), copy, grow,
delete, and who uses them. Called through `Hypervisor.storage` (storage.py). Every write
keeps the partial rule of partial.py."""

from __future__ import annotations

import logging

import libvirt

from .partial import delete_raw, find_complete, writing
from .pools import active_pool
from .storage_errors import (
    InvalidRequest,
    PartialVolume,
    ShrinkRefused,
    VolumeConflict,
    translate_storage,
)
from .storagexml import (
    Backing,
    Ensured,
    VolumeInfo,
    check_format,
    check_volume_name,
    marker_name,
    volume_xml,
    whole_sectors,
)
from .volume_reads import (
    lookup_volume,
    read_volume_info,
    require_complete,
    volume_by_path,
    volume_users,
    volumes_backed_by,
)

log = logging.getLogger(__name__)

def check_backing(conn: libvirt.virConnect, backing: Backing) -> VolumeInfo | None:
    """The backing file's volume, refusing a partial one; None if it is not a volume."""
    check_format(backing.format)
    found = volume_by_path(conn, path=backing.path)
    if found is not None and found.partial:
        raise PartialVolume(f"backing file {backing.path} is an interrupted write "
                            f"(volume {found.name!r} in pool {found.pool!r}); not used")
    return found


def create_volume(conn: libvirt.virConnect, *, pool: str, name: str, capacity: int | None,
                  format: str = "qcow2", backing: Backing | None = None,
                  mode: int | None = None) -> Ensured:
    """Volume `name` in `pool`: empty of `capacity` bytes, or a qcow2 overlay on `backing`
    (capacity None: the backing file's; never smaller than it). An existing complete
    volume is returned as it is (created=False, with notes of how it differs)."""
    check_volume_name(name)
    check_format(format)
    if backing is not None and format != "qcow2":
        raise InvalidRequest(f"volume {name!r}: only a qcow2 volume can have a backing file")
    if backing is None and (capacity is None or capacity <= 0):
        raise InvalidRequest(f"volume {name!r}: a capacity is needed without a backing file")
    capacity = None if capacity is None else whole_sectors(capacity)
    handle = active_pool(conn, pool)
    existing = find_complete(handle, name, format=format, capacity=capacity, backing=backing)
    if existing is not None:
        return existing
    if backing is not None:
        base = check_backing(conn, backing)
        if base is not None and capacity is not None and capacity < base.capacity:
            raise ShrinkRefused(
                f"volume {name!r}: capacity {capacity} bytes is smaller than its backing "
                f"file {backing.path} ({base.capacity} bytes)")
        if base is not None and capacity is None:
            capacity = base.capacity  # else 0: libvirt takes the backing file's
    xml = volume_xml(name=name, capacity=capacity or 0, format=format, backing=backing,
                     mode=mode)
    where = f"volume {name!r} in pool {pool!r}"
    with writing(handle, name) as done:
        with translate_storage(f"cannot create {where}"):
            vol = handle.createXML(xml, 0)
        done()
    return Ensured(volume=read_volume_info(handle, vol, partial=False), created=True)


def copy_volume(conn: libvirt.virConnect, *, pool: str, name: str, source_pool: str,
                source_name: str, capacity: int | None = None,
                format: str = "qcow2") -> Ensured:
    """Volume `name` in `pool` as a full copy of a complete volume (createXMLFrom; an
    overlay is flattened), of `capacity` bytes (None: the source's; never smaller)."""
    check_volume_name(name)
    check_format(format)
    capacity = None if capacity is None else whole_sectors(capacity)
    handle = active_pool(conn, pool)
    existing = find_complete(handle, name, format=format, capacity=capacity, backing=None)
    if existing is not None:  # whatever became of the source since
        return existing
    source = require_complete(conn, pool=source_pool, name=source_name)
    if capacity is not None and capacity < source.capacity:
        raise ShrinkRefused(f"volume {name!r}: capacity {capacity} bytes is smaller than "
                            f"its source {source_name!r} ({source.capacity} bytes)")
    wanted = capacity or source.capacity
    source_handle = active_pool(conn, source_pool)
    with translate_storage(f"cannot find volume {source_name!r} in pool {source_pool!r}"):
        source_vol = source_handle.storageVolLookupByName(source_name)
    xml = volume_xml(name=name, capacity=wanted, format=format, allocation=None)
    where = f"volume {name!r} in pool {pool!r}"
    with writing(handle, name) as done:
        with translate_storage(f"cannot copy volume {source_name!r} to {where}"):
            vol = handle.createXMLFrom(xml, source_vol, 0)
            info = read_volume_info(handle, vol, partial=True)
            if info.capacity < wanted:  # libvirt copies at the source's size
                vol.resize(wanted, 0)
        done()
    return Ensured(volume=read_volume_info(handle, vol, partial=False), created=True)


def resize_volume(conn: libvirt.virConnect, *, pool: str, name: str, capacity: int) -> bool:
    """Grow a volume offline to `capacity` bytes (rounded up to whole 512-byte sectors, as
    for every capacity here); True if it grew, False if it already
    has that capacity. A smaller capacity is refused before libvirt is asked (libvirt
    shrinks a qcow2 volume when told to). A volume a running domain uses is refused too
    (QEMU holds its write lock): grow it with `grow_live`."""
    info = require_complete(conn, pool=pool, name=name)
    capacity = whole_sectors(capacity)
    if capacity < info.capacity:
        raise ShrinkRefused(f"volume {name!r} in pool {pool!r} cannot shrink from "
                            f"{info.capacity} to {capacity} bytes")
    if capacity == info.capacity:
        return False
    running = volume_users(conn, path=info.path, running_only=True)
    if running:
        raise VolumeConflict(f"volume {name!r} in pool {pool!r} is a disk of running "
                             f"domain {', '.join(running)}: grow it live, not offline")
    handle = active_pool(conn, pool)
    with translate_storage(f"cannot grow volume {name!r} in pool {pool!r} to {capacity} bytes"):
        handle.storageVolLookupByName(name).resize(capacity, 0)
    return True


def grow_live(dom: libvirt.virDomain, *, target_dev: str, capacity: int) -> bool:
    """Grow the disk `target_dev` of a running domain to `capacity` bytes (block resize:
    the guest sees it at once); True if it grew, False if it already had that size. A
    smaller capacity is refused before libvirt is asked."""
    what = f"disk {target_dev} of domain {dom.name()!r}"
    capacity = whole_sectors(capacity)
    with translate_storage(f"cannot read the size of {what}"):
        current = int(dom.blockInfo(target_dev, 0)[0])
    if capacity < current:
        raise ShrinkRefused(f"{what} cannot shrink from {current} to {capacity} bytes")
    if capacity == current:
        return False
    with translate_storage(f"cannot grow {what} to {capacity} bytes"):
        dom.blockResize(target_dev, capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    return True


def delete_volume(conn: libvirt.virConnect, *, pool: str, name: str) -> bool:
    """Delete a volume (and its partial marker); True if it existed. Refused while a
    domain has it as a disk or another volume has it as its backing file."""
    check_volume_name(name)
    handle = active_pool(conn, pool)
    vol = lookup_volume(handle, name)
    where = f"volume {name!r} in pool {pool!r}"
    if vol is not None:
        info = read_volume_info(handle, vol)
        users = volume_users(conn, path=info.path, include_backing=True)
        if users:
            raise VolumeConflict(f"{where} is a disk of {', '.join(users)}: not deleted")
        backed = volumes_backed_by(conn, path=info.path)
        if backed:
            names = ", ".join(f"{vol.pool}/{vol.name}" for vol in backed)
            raise VolumeConflict(f"{where} is the backing file of {names}: not deleted")
        delete_raw(vol, where)
    marker = lookup_volume(handle, marker_name(name))
    if marker is not None:
        delete_raw(marker, f"the partial marker of {where}")
    return vol is not None
