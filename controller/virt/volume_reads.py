"""Reading storage volumes through libvirt: one volume (with the partial rule's marker
checked), a pool's volumes, and which domains use a volume. Used by volumes.py (the
writes), transfer.py and `Storage`.
"""


from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import libvirt

from ..errors import HypervisorError
from .errors import code
from .pools import active_pool, lookup_pool, require_active
from .storage_errors import (
    PartialVolume,
    PoolNotFound,
    PoolUnusable,
    VolumeNotFound,
    classify_storage,
    translate_storage,
)
from .storagexml import (
    VolumeInfo,
    check_volume_name,
    disk_sources,
    marker_name,
    parse_volume,
    same_path,
)

log = logging.getLogger(__name__)

# --- reading volumes ------------------------------------------------------------------

def lookup_volume(pool: Any, name: str) -> Any | None:
    try:
        with translate_storage(f"cannot find volume {name!r} in pool {pool.name()!r}"):
            return pool.storageVolLookupByName(name)
    except VolumeNotFound:
        return None


def read_volume_info(pool: Any, vol: Any, *, partial: bool | None = None) -> VolumeInfo:
    name = vol.name()
    if partial is None:
        partial = lookup_volume(pool, marker_name(name)) is not None
    with translate_storage(f"cannot read volume {name!r} in pool {pool.name()!r}"):
        return parse_volume(vol.XMLDesc(0), pool=pool.name(), partial=partial)


def volume_info(conn: libvirt.virConnect, *, pool: str, name: str) -> VolumeInfo | None:
    """The volume `name` in `pool` (with `partial` set when it is an interrupted write),
    or None when there is no such volume. PoolNotFound or PoolUnusable (inactive) as
    `active_pool` raises them; the pool's activity is asked only when the volume is not
    found (libvirt finds volumes in active pools only), one round trip less a read."""
    check_volume_name(name)
    handle = lookup_pool(conn, pool)
    try:
        with translate_storage(f"cannot find volume {name!r} in pool {pool!r}"):
            vol = handle.storageVolLookupByName(name)
    except HypervisorError as error:
        require_active(handle, pool)  # an inactive pool: PoolUnusable, as before
        if isinstance(error, VolumeNotFound):
            return None
        raise
    return read_volume_info(handle, vol)


def require_complete(conn: libvirt.virConnect, *, pool: str, name: str) -> VolumeInfo:
    """The volume, if it exists and is complete: the one check before attaching a volume
    to a domain or using it as a backing file. VolumeNotFound or PartialVolume else."""
    info = volume_info(conn, pool=pool, name=name)
    if info is None:
        raise VolumeNotFound(f"volume {name!r} does not exist in pool {pool!r}")
    if info.partial:
        raise PartialVolume(f"volume {name!r} in pool {pool!r} is an interrupted write "
                            f"(marker {marker_name(name)!r}); it is not used")
    return info


def volume_by_path(conn: libvirt.virConnect, *, path: str) -> VolumeInfo | None:
    """The volume whose file is `path` in any active pool, or None."""
    try:
        with translate_storage(f"cannot find a volume at {path}"):
            vol = conn.storageVolLookupByPath(path)
            pool = vol.storagePoolLookupByVolume()
    except VolumeNotFound:
        return None
    return read_volume_info(pool, vol)


def list_volumes(conn: libvirt.virConnect, *, pool: str) -> list[VolumeInfo]:
    """Every volume of `pool` except partial markers, each with `partial` set."""
    handle = active_pool(conn, pool)
    with translate_storage(f"cannot list volumes of pool {pool!r}"):
        vols = handle.listAllVolumes(0)
        names = {vol.name() for vol in vols}
    found = []
    for vol in vols:
        name = vol.name()
        if name.endswith(marker_name("")):
            continue
        try:
            found.append(read_volume_info(handle, vol, partial=marker_name(name) in names))
        except VolumeNotFound:
            continue  # deleted meanwhile
    return found


def volumes_backed_by(conn: libvirt.virConnect, *, path: str) -> list[VolumeInfo]:
    """The volumes, in every active pool, whose backing file is `path`: an image volume
    with any of them is in use and is never deleted."""
    with translate_storage("cannot list storage pools"):
        pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    found = []
    for pool in pools:
        try:
            volumes = list_volumes(conn, pool=pool.name())
        except (PoolNotFound, PoolUnusable):
            continue
        found += [vol for vol in volumes
                  if vol.backing is not None and same_path(vol.backing.path, path)]
    return found


def volume_users(conn: libvirt.virConnect, *, path: str, include_backing: bool = False,
                 running_only: bool = False) -> list[str]:
    """The domains (running or defined) with a disk on `path`, given as a file or as a
    pool/volume source; with `include_backing`, also those whose disk's backing chain
    reaches it (running domains only: libvirt reports the chain in the live XML)."""
    flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if running_only else 0
    with translate_storage("cannot list domains"):
        domains = conn.listAllDomains(flags)
    resolved: dict[tuple[str, str], str | None] = {}

    def volume_path(pool: str, volume: str) -> str | None:
        if (pool, volume) not in resolved:
            try:
                resolved[(pool, volume)] = conn.storagePoolLookupByName(pool) \
                    .storageVolLookupByName(volume).path()
            except libvirt.libvirtError:
                resolved[(pool, volume)] = None
        return resolved[(pool, volume)]

    users = []
    for dom in domains:
        try:
            name = dom.name()
            xmls = [dom.XMLDesc(0)]
            if dom.isActive() and dom.isPersistent():
                xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == code("VIR_ERR_NO_DOMAIN"):
                continue  # undefined meanwhile
            raise classify_storage(exc, "cannot read a domain's disks") from exc
        for xml in xmls:
            sources = disk_sources(xml)
            if not include_backing:
                sources = [source for source in sources if source.depth == 0]
            if any(_points_at(source.path, source.pool, source.volume, path, volume_path)
                   for source in sources):
                users.append(name)
                break
    return sorted(users)


def _points_at(source_path: str | None, pool: str | None, volume: str | None, path: str,
               volume_path: Callable[[str, str], str | None]) -> bool:
    if source_path is not None:
        return same_path(source_path, path)
    if pool and volume:
        found = volume_path(pool, volume)
        return found is not None and same_path(found, path)
    return False


# --- writing volumes ------------------------------------------------------------------


