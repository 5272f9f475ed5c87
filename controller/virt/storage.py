"""Storage pools and volumes through libvirt's storage API: contract section 6.

Called by the reconciler's storage steps (`import-image`, `create-volume`,
`grow-volume`, cold moves, `state: absent`) with a raw `libvirt.virConnect`.
Everything goes through libvirt (pools, volumes, upload/download streams), never
through local file commands on the host's files, so a `qemu+ssh://` host works as
the local one does. Only the files reconcile itself reads or writes on the machine
that runs it (an image to upload, a download's destination) are local.

Every libvirt error is classified once, in `_translate`: the storage codes into
`storage_errors`, the rest by `controller.hypervisor.classify`. The byte plumbing of
streams is in `streams.py`, the XML in `storagexml.py` (pure).

The partial rule. libvirt cannot rename a volume, so a volume cannot be written
under a temporary name and published. Instead every volume this module writes
(created empty, as an overlay, copied, uploaded, transferred) is written under
its final name NAME while a marker volume NAME.reconcile-partial (raw, 0 bytes)
exists in the same pool: the marker is created first and deleted last, after the
content is complete and, for uploads, its sha256 is verified. So:
  - a kill -9 or a daemon restart at any moment leaves the marker: `volume_info`
    says `partial=True`, `require_complete` raises PartialVolume, an overlay on it
    is refused, and a rerun of the same call deletes NAME and writes it again;
  - a NAME without a marker is complete and is never written again ("created
    once, never overwritten"): a rerun returns it with `created=False` and notes
    of how it differs from what was asked.
The marker names are reserved: `check_volume_name` refuses them as volume names.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import libvirt

from controller.errors import HypervisorError
from controller.hypervisor import classify

from . import streams
from .storage_errors import (
    ChecksumMismatch,
    InvalidRequest,
    PartialVolume,
    PoolFull,
    PoolNotFound,
    PoolUnusable,
    ShrinkRefused,
    UnsafeImage,
    VolumeConflict,
    VolumeNotFound,
)
from .storagexml import (
    Backing,
    PoolInfo,
    VolumeInfo,
    check_format,
    check_pool_path,
    check_volume_name,
    differences,
    dir_pool_xml,
    disk_sources,
    marker_name,
    parse_pool,
    parse_volume,
    same_path,
    volume_xml,
    whole_sectors,
)

log = logging.getLogger(__name__)

#: Where virt-install (and so reconcile) makes the `default` pool on qemu:///system.
DEFAULT_POOL = "default"
DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def _code(name: str) -> int:
    return int(getattr(libvirt, name, -1))


_FULL_WORDS = ("no space left on device", "not enough space", "disk quota exceeded",
               "not enough free space")


def _classify(exc: libvirt.libvirtError, what: str) -> HypervisorError:
    """A libvirtError from a storage call as one of ours, with a one-line message."""
    code = exc.get_error_code()
    text = (exc.get_error_message() or str(exc)).strip().replace("\n", " ")
    message = f"{what}: {text} (libvirt error {code}, domain {exc.get_error_domain()})"
    lowered = text.lower()
    if code == _code("VIR_ERR_NO_STORAGE_POOL"):
        return PoolNotFound(message, code=code, domain=exc.get_error_domain())
    if code == _code("VIR_ERR_NO_STORAGE_VOL"):
        return VolumeNotFound(message, code=code, domain=exc.get_error_domain())
    if any(word in lowered for word in _FULL_WORDS):
        return PoolFull(message, code=code, domain=exc.get_error_domain())
    if (code == _code("VIR_ERR_STORAGE_VOL_EXIST") or "already in use" in lowered
            or ("storage vol" in lowered and "already exists" in lowered)):
        return VolumeConflict(message, code=code, domain=exc.get_error_domain())
    return classify(exc, what)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise _classify(exc, what) from exc


@dataclass(frozen=True)
class Ensured:
    """What a create/copy/upload/transfer left: the volume, whether this call wrote it
    (False: it existed, complete, and was left as it is), how the existing one differs
    from what was asked, and the sha256 of what was written when it was streamed."""

    volume: VolumeInfo
    created: bool
    notes: tuple[str, ...] = ()
    sha256: str | None = None


# --- pools ----------------------------------------------------------------------------

def _lookup_pool(conn: libvirt.virConnect, name: str) -> Any:
    with _translate(f"cannot find storage pool {name!r}"):
        return conn.storagePoolLookupByName(name)


def _pool_info(pool: Any) -> PoolInfo:
    name = pool.name()
    with _translate(f"cannot read storage pool {name!r}"):
        return parse_pool(pool.XMLDesc(0), active=bool(pool.isActive()),
                          autostart=bool(pool.autostart()),
                          persistent=bool(pool.isPersistent()))


def _active_pool(conn: libvirt.virConnect, name: str) -> Any:
    pool = _lookup_pool(conn, name)
    with _translate(f"cannot read storage pool {name!r}"):
        active = pool.isActive()
    if not active:
        raise PoolUnusable(f"storage pool {name!r} is not active")
    return pool


def pool_info(conn: libvirt.virConnect, *, name: str) -> PoolInfo | None:
    """The pool `name`, or None when the host has no such pool."""
    try:
        return _pool_info(_lookup_pool(conn, name))
    except PoolNotFound:
        return None


def ensure_pool(conn: libvirt.virConnect, *, name: str, path: str,
                autostart: bool = True) -> PoolInfo:
    """The pool `name`, made a `dir` pool at `path` (defined, built, started, autostart)
    when missing, and started when inactive. An existing pool is used as it is, whatever
    its type and path (as virt-install does with `default`). Safe to repeat and to race:
    a definition made meanwhile by another client is used."""
    check_volume_name(name, what="pool name")
    check_pool_path(path)
    try:
        pool = _lookup_pool(conn, name)
    except PoolNotFound:
        pool = _define_dir_pool(conn, name=name, path=path, autostart=autostart)
    with _translate(f"cannot start storage pool {name!r}"):
        if not pool.isActive():
            try:
                pool.create(0)
            except libvirt.libvirtError as exc:
                if pool.isActive():  # started meanwhile by someone else
                    pass
                else:
                    raise PoolUnusable(
                        f"cannot start storage pool {name!r}: "
                        f"{(exc.get_error_message() or str(exc)).strip()}") from exc
    return _pool_info(pool)


def _define_dir_pool(conn: libvirt.virConnect, *, name: str, path: str,
                     autostart: bool) -> Any:
    try:
        pool = conn.storagePoolDefineXML(dir_pool_xml(name=name, path=path), 0)
    except libvirt.libvirtError as exc:
        text = (exc.get_error_message() or str(exc)).strip()
        try:  # defined meanwhile by another client?
            return conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            pass
        error = _classify(exc, f"cannot define storage pool {name!r} at {path}")
        if isinstance(error, HypervisorError) and "conflict" in text.lower():
            raise PoolUnusable(f"cannot define storage pool {name!r} at {path}: {text}",
                               code=error.code, domain=error.domain) from exc
        raise error from exc
    with _translate(f"cannot build storage pool {name!r} at {path}"):
        pool.build(0)  # a dir pool: make the folder (an existing one is kept)
    with _translate(f"cannot start storage pool {name!r}"):
        if not pool.isActive():
            pool.create(0)
    if autostart:
        with _translate(f"cannot set autostart on storage pool {name!r}"):
            pool.setAutostart(1)
    log.info("created storage pool %s (dir, %s)", name, path)
    return pool


def ensure_default_pool(conn: libvirt.virConnect) -> PoolInfo:
    """The `default` pool; when missing, a dir pool at /var/lib/libvirt/images, built,
    started and autostarted, as virt-install makes it."""
    return ensure_pool(conn, name=DEFAULT_POOL, path=DEFAULT_POOL_PATH)


def refresh_pool(conn: libvirt.virConnect, *, name: str) -> PoolInfo:
    """Rescan the pool (volumes made outside libvirt, free space) and return it."""
    pool = _active_pool(conn, name)
    with _translate(f"cannot refresh storage pool {name!r}"):
        pool.refresh(0)
    return _pool_info(pool)


# --- reading volumes ------------------------------------------------------------------

def _lookup_volume(pool: Any, name: str) -> Any | None:
    try:
        with _translate(f"cannot find volume {name!r} in pool {pool.name()!r}"):
            return pool.storageVolLookupByName(name)
    except VolumeNotFound:
        return None


def _volume_info(pool: Any, vol: Any, *, partial: bool | None = None) -> VolumeInfo:
    name = vol.name()
    if partial is None:
        partial = _lookup_volume(pool, marker_name(name)) is not None
    with _translate(f"cannot read volume {name!r} in pool {pool.name()!r}"):
        return parse_volume(vol.XMLDesc(0), pool=pool.name(), partial=partial)


def volume_info(conn: libvirt.virConnect, *, pool: str, name: str) -> VolumeInfo | None:
    """The volume `name` in `pool` (with `partial` set when it is an interrupted write),
    or None when there is no such volume."""
    check_volume_name(name)
    handle = _active_pool(conn, pool)
    vol = _lookup_volume(handle, name)
    return None if vol is None else _volume_info(handle, vol)


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
        with _translate(f"cannot find a volume at {path}"):
            vol = conn.storageVolLookupByPath(path)
            pool = vol.storagePoolLookupByVolume()
    except VolumeNotFound:
        return None
    return _volume_info(pool, vol)


def list_volumes(conn: libvirt.virConnect, *, pool: str) -> list[VolumeInfo]:
    """Every volume of `pool` except partial markers, each with `partial` set."""
    handle = _active_pool(conn, pool)
    with _translate(f"cannot list volumes of pool {pool!r}"):
        vols = handle.listAllVolumes(0)
        names = {vol.name() for vol in vols}
    found = []
    for vol in vols:
        name = vol.name()
        if name.endswith(marker_name("")):
            continue
        try:
            found.append(_volume_info(handle, vol, partial=marker_name(name) in names))
        except VolumeNotFound:
            continue  # deleted meanwhile
    return found


def volumes_backed_by(conn: libvirt.virConnect, *, path: str) -> list[VolumeInfo]:
    """The volumes, in every active pool, whose backing file is `path`: an image volume
    with any of them is in use and is never deleted."""
    with _translate("cannot list storage pools"):
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
    with _translate("cannot list domains"):
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
            if exc.get_error_code() == _code("VIR_ERR_NO_DOMAIN"):
                continue  # undefined meanwhile
            raise _classify(exc, "cannot read a domain's disks") from exc
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

@contextlib.contextmanager
def _writing(pool: Any, name: str) -> Iterator[Callable[[], None]]:
    """The partial rule around one write of `name`: the marker exists before the body
    starts; a partial `name` from an earlier run is deleted first. The body calls the
    yielded `done` when the content is complete; only then is the marker removed. If the
    body fails, what it wrote is deleted, then the marker (best effort: a leftover that
    cannot be deleted keeps its marker)."""
    where = f"volume {name!r} in pool {pool.name()!r}"
    marker = marker_name(name)
    interrupted = _lookup_volume(pool, marker) is not None
    if not interrupted:
        with _translate(f"cannot create the partial marker of {where}"):
            try:
                pool.createXML(volume_xml(name=marker, capacity=0, format="raw", mode=0o600), 0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != _code("VIR_ERR_STORAGE_VOL_EXIST"):
                    raise
    leftover = _lookup_volume(pool, name)
    if leftover is not None:
        if not interrupted:  # made meanwhile by another client, complete: not ours to touch
            fresh = _lookup_volume(pool, marker)
            if fresh is not None:
                _delete(fresh, f"the partial marker of {where}")
            raise VolumeConflict(f"{where} was created meanwhile by another client")
        log.info("deleting the partial %s left by an interrupted run", where)
        _delete(leftover, where)
    finished = False

    def done() -> None:
        nonlocal finished
        finished = True

    try:
        yield done
    except BaseException:
        with contextlib.suppress(HypervisorError):  # the first error is the one to report
            written = _lookup_volume(pool, name)
            if written is not None:
                _delete(written, where)
            # nothing of the write is left: the marker has nothing left to mark
            marker_vol = _lookup_volume(pool, marker)
            if marker_vol is not None:
                _delete(marker_vol, f"the partial marker of {where}")
        raise
    if not finished:
        raise RuntimeError(f"write of {where} ended without completing")  # a bug of ours
    marker_vol = _lookup_volume(pool, marker)
    if marker_vol is not None:
        _delete(marker_vol, f"the partial marker of {where}")


def _delete(vol: Any, where: str) -> None:
    try:
        with _translate(f"cannot delete {where}"):
            vol.delete(0)
    except VolumeNotFound:
        pass


def _existing(pool: Any, name: str, *, format: str, capacity: int | None,
              backing: Backing | None) -> Ensured | None:
    """A complete existing `name` as an Ensured (created=False), or None if there is none
    or it is partial (the caller writes it again)."""
    vol = _lookup_volume(pool, name)
    if vol is None:
        return None
    info = _volume_info(pool, vol)
    if info.partial:
        return None
    return Ensured(volume=info, created=False,
                   notes=differences(info, format=format, capacity=capacity, backing=backing))


def _check_backing(conn: libvirt.virConnect, backing: Backing) -> VolumeInfo | None:
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
    handle = _active_pool(conn, pool)
    existing = _existing(handle, name, format=format, capacity=capacity, backing=backing)
    if existing is not None:
        return existing
    if backing is not None:
        base = _check_backing(conn, backing)
        if base is not None and capacity is not None and capacity < base.capacity:
            raise ShrinkRefused(
                f"volume {name!r}: capacity {capacity} bytes is smaller than its backing "
                f"file {backing.path} ({base.capacity} bytes)")
        if base is not None and capacity is None:
            capacity = base.capacity  # else 0: libvirt takes the backing file's
    xml = volume_xml(name=name, capacity=capacity or 0, format=format, backing=backing,
                     mode=mode)
    where = f"volume {name!r} in pool {pool!r}"
    with _writing(handle, name) as done:
        with _translate(f"cannot create {where}"):
            vol = handle.createXML(xml, 0)
        done()
    return Ensured(volume=_volume_info(handle, vol, partial=False), created=True)


def copy_volume(conn: libvirt.virConnect, *, pool: str, name: str, source_pool: str,
                source_name: str, capacity: int | None = None,
                format: str = "qcow2") -> Ensured:
    """Volume `name` in `pool` as a full copy of a complete volume (createXMLFrom; an
    overlay is flattened), of `capacity` bytes (None: the source's; never smaller)."""
    check_volume_name(name)
    check_format(format)
    capacity = None if capacity is None else whole_sectors(capacity)
    handle = _active_pool(conn, pool)
    existing = _existing(handle, name, format=format, capacity=capacity, backing=None)
    if existing is not None:  # whatever became of the source since
        return existing
    source = require_complete(conn, pool=source_pool, name=source_name)
    if capacity is not None and capacity < source.capacity:
        raise ShrinkRefused(f"volume {name!r}: capacity {capacity} bytes is smaller than "
                            f"its source {source_name!r} ({source.capacity} bytes)")
    wanted = capacity or source.capacity
    source_handle = _active_pool(conn, source_pool)
    with _translate(f"cannot find volume {source_name!r} in pool {source_pool!r}"):
        source_vol = source_handle.storageVolLookupByName(source_name)
    xml = volume_xml(name=name, capacity=wanted, format=format, allocation=None)
    where = f"volume {name!r} in pool {pool!r}"
    with _writing(handle, name) as done:
        with _translate(f"cannot copy volume {source_name!r} to {where}"):
            vol = handle.createXMLFrom(xml, source_vol, 0)
            info = _volume_info(handle, vol, partial=True)
            if info.capacity < wanted:  # libvirt copies at the source's size
                vol.resize(wanted, 0)
        done()
    return Ensured(volume=_volume_info(handle, vol, partial=False), created=True)


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
    handle = _active_pool(conn, pool)
    with _translate(f"cannot grow volume {name!r} in pool {pool!r} to {capacity} bytes"):
        handle.storageVolLookupByName(name).resize(capacity, 0)
    return True


def grow_live(dom: libvirt.virDomain, *, target_dev: str, capacity: int) -> bool:
    """Grow the disk `target_dev` of a running domain to `capacity` bytes (block resize:
    the guest sees it at once); True if it grew, False if it already had that size. A
    smaller capacity is refused before libvirt is asked."""
    what = f"disk {target_dev} of domain {dom.name()!r}"
    capacity = whole_sectors(capacity)
    with _translate(f"cannot read the size of {what}"):
        current = int(dom.blockInfo(target_dev, 0)[0])
    if capacity < current:
        raise ShrinkRefused(f"{what} cannot shrink from {current} to {capacity} bytes")
    if capacity == current:
        return False
    with _translate(f"cannot grow {what} to {capacity} bytes"):
        dom.blockResize(target_dev, capacity, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    return True


def delete_volume(conn: libvirt.virConnect, *, pool: str, name: str) -> bool:
    """Delete a volume (and its partial marker); True if it existed. Refused while a
    domain has it as a disk or another volume has it as its backing file."""
    check_volume_name(name)
    handle = _active_pool(conn, pool)
    vol = _lookup_volume(handle, name)
    where = f"volume {name!r} in pool {pool!r}"
    if vol is not None:
        info = _volume_info(handle, vol)
        users = volume_users(conn, path=info.path, include_backing=True)
        if users:
            raise VolumeConflict(f"{where} is a disk of {', '.join(users)}: not deleted")
        backed = volumes_backed_by(conn, path=info.path)
        if backed:
            names = ", ".join(f"{vol.pool}/{vol.name}" for vol in backed)
            raise VolumeConflict(f"{where} is the backing file of {names}: not deleted")
        _delete(vol, where)
    marker = _lookup_volume(handle, marker_name(name))
    if marker is not None:
        _delete(marker, f"the partial marker of {where}")
    return vol is not None


# --- streams --------------------------------------------------------------------------

def _finish(stream: Any, what: str) -> None:
    with _translate(what):
        stream.finish()


def _abort(stream: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def volume_sha256(conn: libvirt.virConnect, *, pool: str, name: str,
                  sparse: bool = True) -> str:
    """The sha256 of a volume's content, read back through a download stream."""
    handle = _active_pool(conn, pool)
    with _translate(f"cannot find volume {name!r} in pool {pool!r}"):
        vol = handle.storageVolLookupByName(name)
    return _download_to(conn, vol, f"volume {name!r} in pool {pool!r}", sparse=sparse,
                        data=lambda _chunk: None, hole=lambda _length: None)[0]


def _download_to(conn: libvirt.virConnect, vol: Any, where: str, *, sparse: bool,
                 data: Callable[[bytes], None], hole: Callable[[int], None]) -> tuple[str, int]:
    hasher = streams.Hasher()
    with _translate(f"cannot download {where}"):
        stream = conn.newStream(0)
    try:
        with _translate(f"cannot download {where}"):
            vol.download(stream, 0, 0,
                         libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM if sparse else 0)
            total = streams.receive(stream, sparse=sparse, hasher=hasher, data=data, hole=hole)
        _finish(stream, f"cannot download {where}")
    except BaseException:
        hasher.stop()
        _abort(stream)
        raise
    return hasher.hexdigest(), total


class Check(enum.Enum):
    """How much of a streamed write is hashed (sha256). Measured with a 1 GiB qcow2 on this
    project's loaded 2-core machines (docs/STORAGE-FACTS.md), as multiples of `virsh
    vol-upload`'s time: NONE 0.93-1.17x, SENT 1.03-1.41x, STORED 2.15-3.54x."""

    NONE = "none"  # nothing: the caller vouches for the local file (it hashed it itself)
    SENT = "sent"  # the bytes, as they are read and sent
    STORED = "stored"  # the volume, read back from the pool after the write


def upload_volume(conn: libvirt.virConnect, *, pool: str, name: str, path: str,
                  format: str = "qcow2", sha256: str | None = None,
                  check: Check = Check.SENT, sparse: bool = False,
                  mode: int | None = None) -> Ensured:
    """Volume `name` in `pool` with the content of the local file `path`, byte for byte,
    through a libvirt upload stream (holes sent as holes when `sparse`). `check` says what
    is hashed; `sha256`, when given, must be what was hashed, else ChecksumMismatch and
    nothing is kept (with Check.STORED and a `sha256`, the sent bytes are not hashed).
    A qcow2 file that names a backing file of its own is refused. An existing complete
    volume is returned as it is (created=False)."""
    check_volume_name(name)
    check_format(format)
    if check is Check.NONE and sha256 is not None:
        raise InvalidRequest("a sha256 to compare needs Check.SENT or Check.STORED")
    expected = sha256.lower() if sha256 else None
    handle = _active_pool(conn, pool)
    existing = _existing(handle, name, format=format, capacity=None, backing=None)
    if existing is not None:
        return existing
    where = f"volume {name!r} in pool {pool!r}"
    with open(path, "rb") as file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        with _translate(f"cannot read storage pool {pool!r}"):
            available = int(handle.info()[3])
        if size > available:
            raise PoolFull(f"cannot upload {path} ({size} bytes) to {where}: the pool has "
                           f"{available} bytes available")
        with _writing(handle, name) as done:
            # raw, sparse, of exactly the file's size: the upload then writes every byte,
            # and libvirt's refresh after the upload reads the format from the content
            xml = volume_xml(name=name, capacity=size, format="raw", mode=mode)
            with _translate(f"cannot create {where}"):
                vol = handle.createXML(xml, 0)
            hash_sent = check is Check.SENT or (check is Check.STORED and expected is None)
            sent = _upload(conn, vol, fd, size, where=where, sparse=sparse, hashing=hash_sent)
            if check is Check.SENT and expected is not None and sent != expected:
                raise ChecksumMismatch(f"{path} has sha256 {sent}, expected {expected}; "
                                       f"{where} is not kept")
            _refresh_after_stream(handle, where)
            digest = sent
            if check is Check.STORED:
                digest = _download_to(conn, vol, where, sparse=True,
                                      data=lambda _chunk: None, hole=lambda _n: None)[0]
                wanted = expected or sent
                if digest != wanted:
                    raise ChecksumMismatch(f"{where} reads back with sha256 {digest}, "
                                           f"expected {wanted}; not kept")
            info = _volume_info(handle, vol, partial=True)
            if info.backing is not None:
                raise UnsafeImage(f"{path} names a backing file of its own "
                                     f"({info.backing.path}); not imported")
            done()
    return Ensured(volume=_volume_info(handle, vol, partial=False), created=True,
                   sha256=digest)


def _refresh_after_stream(pool: Any, where: str) -> None:
    """Refresh the pool, so that the volume's format and capacity are read from what was
    uploaded. libvirt refreshes the pool itself after an upload stream, but in a thread of
    its own: read at once, the volume was seen still as raw of the file's size."""
    with _translate(f"cannot refresh the pool of {where}"):
        pool.refresh(0)


def _upload(conn: libvirt.virConnect, vol: Any, fd: int, size: int, *, where: str,
            sparse: bool, hashing: bool) -> str | None:
    hasher = streams.Hasher() if hashing else streams.NoHasher()
    with _translate(f"cannot upload to {where}"):
        stream = conn.newStream(0)
    try:
        with _translate(f"cannot upload to {where}"):
            vol.upload(stream, 0, size,
                       libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM if sparse else 0)
            streams.send_file(stream, fd, size, sparse=sparse, hasher=hasher)
        _finish(stream, f"cannot upload to {where}")
    except BaseException:
        hasher.stop()
        _abort(stream)
        raise
    return hasher.hexdigest() or None


def download_volume(conn: libvirt.virConnect, *, pool: str, name: str, path: str,
                    sparse: bool = True) -> str:
    """Write a complete volume's content to the local file `path` (holes kept as holes
    when `sparse`); returns its sha256. The file appears only when complete: it is
    written as `path.partial` and renamed."""
    info = require_complete(conn, pool=pool, name=name)
    handle = _active_pool(conn, pool)
    with _translate(f"cannot find volume {name!r} in pool {pool!r}"):
        vol = handle.storageVolLookupByName(name)
    temporary = f"{path}.partial"
    with open(temporary, "wb") as file:
        fd = file.fileno()
        try:
            def skip(length: int) -> None:
                os.lseek(fd, length, os.SEEK_CUR)

            digest, total = _download_to(
                conn, vol, f"volume {name!r} in pool {pool!r}", sparse=sparse,
                data=lambda chunk: _write_all(fd, chunk), hole=skip)
            os.ftruncate(fd, total)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    os.replace(temporary, path)
    log.debug("downloaded %s (%d bytes, allocation %d)", name, total, info.allocation)
    return digest


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


def transfer_volume(*, source: libvirt.virConnect, source_pool: str, name: str,
                    target: libvirt.virConnect, target_pool: str,
                    sparse: bool = True, check: Check = Check.STORED,
                    mode: int | None = None) -> Ensured:
    """Copy a complete volume from one host to another (a cold move): a download stream
    on `source` piped into an upload stream on `target`, the bytes hashed on the way
    (Check.SENT), and with Check.STORED also the target read back and compared. The
    target volume is byte-identical to the source's file (an overlay keeps naming its
    backing file's path: that image must be at the same path on the target); the partial
    rule applies on the target. An existing complete target volume is returned as it is
    (created=False, no notes)."""
    check_volume_name(name)
    handle = _active_pool(target, target_pool)
    there = _lookup_volume(handle, name)
    if there is not None:
        done_before = _volume_info(handle, there)
        if not done_before.partial:
            return Ensured(volume=done_before, created=False)
    info = require_complete(source, pool=source_pool, name=name)
    source_handle = _active_pool(source, source_pool)
    with _translate(f"cannot find volume {name!r} in pool {source_pool!r}"):
        source_vol = source_handle.storageVolLookupByName(name)
        size = int(source_vol.info()[1]) if info.format == "raw" else _physical(source_vol)
    where = f"volume {name!r} in pool {target_pool!r}"
    with _writing(handle, name) as done:
        with _translate(f"cannot create {where}"):
            vol = handle.createXML(volume_xml(name=name, capacity=size, format="raw",
                                              mode=mode), 0)
        digest = _pipe(source, source_vol, target, vol, size, sparse=sparse,
                       hashing=check is not Check.NONE,
                       what=f"cannot copy volume {name!r} from pool {source_pool!r} to {where}")
        _refresh_after_stream(handle, where)
        if check is Check.STORED:
            read, _ = _download_to(target, vol, where, sparse=True,
                                   data=lambda _chunk: None, hole=lambda _n: None)
            if read != digest:
                raise ChecksumMismatch(f"{where} reads back with sha256 {read}, "
                                       f"sent {digest}; not kept")
        done()
    return Ensured(volume=_volume_info(handle, vol, partial=False), created=True,
                   sha256=digest)


def _physical(vol: Any) -> int:
    """The size of a volume's file (what a download stream delivers)."""
    flags = getattr(libvirt, "VIR_STORAGE_VOL_GET_PHYSICAL", 1)
    return int(vol.infoFlags(flags)[2])


def _pipe(source: libvirt.virConnect, source_vol: Any, target: libvirt.virConnect,
          target_vol: Any, size: int, *, sparse: bool, hashing: bool,
          what: str) -> str | None:
    hasher = streams.Hasher() if hashing else streams.NoHasher()
    with _translate(what):
        down = source.newStream(0)
        up = target.newStream(0)
    try:
        with _translate(what):
            source_vol.download(down, 0, size,
                                libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM if sparse else 0)
            target_vol.upload(up, 0, size,
                              libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM if sparse else 0)

            def data(chunk: bytes) -> None:
                sent = 0
                while sent < len(chunk):
                    sent += up.send(chunk[sent:] if sent else chunk)

            def hole(length: int) -> None:
                up.sendHole(length, 0)

            total = streams.receive(down, sparse=sparse, hasher=hasher, data=data, hole=hole)
            if total != size:
                raise OSError(f"the source delivered {total} bytes, expected {size}")
        _finish(down, what)
        _finish(up, what)
    except BaseException:
        hasher.stop()
        _abort(down)
        _abort(up)
        raise
    return hasher.hexdigest() or None
