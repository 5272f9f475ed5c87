"""Moving bytes in and out of volumes through libvirt streams: upload a local file (an
image import, a seed), download one, copy a volume between two hosts (a cold move),
and the sha256 of a volume's content. Under the partial rule of partial.py.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
from collections.abc import Callable
from typing import Any

import libvirt

from . import streams
from .partial import find_complete, writing
from .pools import active_pool
from .storage_errors import (
    ChecksumMismatch,
    InvalidRequest,
    PoolFull,
    UnsafeImage,
    translate_storage,
    when_built,
)
from .storagexml import (
    Ensured,
    check_format,
    check_volume_name,
    volume_xml,
)
from .volume_reads import lookup_volume, read_volume_info, require_complete

log = logging.getLogger(__name__)


def _finish(stream: Any, what: str) -> None:
    with translate_storage(what):
        stream.finish()


def _abort(stream: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def volume_sha256(conn: libvirt.virConnect, *, pool: str, name: str,
                  sparse: bool = True) -> str:
    """The sha256 of a volume's content, read back through a download stream."""
    handle = active_pool(conn, pool)
    with translate_storage(f"cannot find volume {name!r} in pool {pool!r}"):
        vol = handle.storageVolLookupByName(name)
    return _download_to(conn, vol, f"volume {name!r} in pool {pool!r}", sparse=sparse,
                        data=lambda _chunk: None, hole=lambda _length: None)[0]


def _download_to(conn: libvirt.virConnect, vol: Any, where: str, *, sparse: bool,
                 data: Callable[[bytes], None], hole: Callable[[int], None]) -> tuple[str, int]:
    hasher = streams.Hasher()
    with translate_storage(f"cannot download {where}"):
        stream = conn.newStream(0)
    try:
        with translate_storage(f"cannot download {where}"):
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
    handle = active_pool(conn, pool)
    existing = find_complete(handle, name, format=format, capacity=None, backing=None)
    if existing is not None:
        return existing
    where = f"volume {name!r} in pool {pool!r}"
    with open(path, "rb") as file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        with translate_storage(f"cannot read storage pool {pool!r}"):
            available = int(handle.info()[3])
        if size > available:
            raise PoolFull(f"cannot upload {path} ({size} bytes) to {where}: the pool has "
                           f"{available} bytes available")
        with writing(handle, name) as done:
            # raw, sparse, of exactly the file's size: the upload then writes every byte,
            # and libvirt's refresh after the upload reads the format from the content
            xml = volume_xml(name=name, capacity=size, format="raw", mode=mode)
            with translate_storage(f"cannot create {where}"):
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
            info = read_volume_info(handle, vol, partial=True)
            if info.backing is not None:
                raise UnsafeImage(f"{path} names a backing file of its own "
                                     f"({info.backing.path}); not imported")
            done()
    return Ensured(volume=read_volume_info(handle, vol, partial=False), created=True,
                   sha256=digest)


def _refresh_after_stream(pool: Any, where: str) -> None:
    """Refresh the pool, so that the volume's format and capacity are read from what was
    uploaded. libvirt refreshes the pool itself after an upload stream, but in a thread of
    its own: read at once, the volume was seen still as raw of the file's size. A pool in
    which libvirt builds another volume (a copy) cannot be refreshed: wait for it."""
    when_built(lambda: pool.refresh(0), f"cannot refresh the pool of {where}")


def _upload(conn: libvirt.virConnect, vol: Any, fd: int, size: int, *, where: str,
            sparse: bool, hashing: bool) -> str | None:
    hasher = streams.Hasher() if hashing else streams.NoHasher()
    with translate_storage(f"cannot upload to {where}"):
        stream = conn.newStream(0)
    try:
        with translate_storage(f"cannot upload to {where}"):
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
    handle = active_pool(conn, pool)
    with translate_storage(f"cannot find volume {name!r} in pool {pool!r}"):
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
    handle = active_pool(target, target_pool)
    there = lookup_volume(handle, name)
    if there is not None:
        done_before = read_volume_info(handle, there)
        if not done_before.partial:
            return Ensured(volume=done_before, created=False)
    info = require_complete(source, pool=source_pool, name=name)
    source_handle = active_pool(source, source_pool)
    with translate_storage(f"cannot find volume {name!r} in pool {source_pool!r}"):
        source_vol = source_handle.storageVolLookupByName(name)
        size = int(source_vol.info()[1]) if info.format == "raw" else _physical(source_vol)
    where = f"volume {name!r} in pool {target_pool!r}"
    with writing(handle, name) as done:
        with translate_storage(f"cannot create {where}"):
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
        # libvirt reads the format (and a qcow2's backing file) from the content again
        landed = read_volume_info(handle, vol, partial=True)
        if (landed.format, landed.backing) != (info.format, info.backing):
            raise UnsafeImage(f"{where} reads as {landed.format} (backing "
                              f"{landed.backing.path if landed.backing else 'none'}), "
                              f"the source as {info.format} (backing "
                              f"{info.backing.path if info.backing else 'none'}); not kept")
        done()
    return Ensured(volume=read_volume_info(handle, vol, partial=False), created=True,
                   sha256=digest)


def _physical(vol: Any) -> int:
    """The size of a volume's file (what a download stream delivers)."""
    flags = getattr(libvirt, "VIR_STORAGE_VOL_GET_PHYSICAL", 1)
    return int(vol.infoFlags(flags)[2])


def _pipe(source: libvirt.virConnect, source_vol: Any, target: libvirt.virConnect,
          target_vol: Any, size: int, *, sparse: bool, hashing: bool,
          what: str) -> str | None:
    hasher = streams.Hasher() if hashing else streams.NoHasher()
    with translate_storage(what):
        down = source.newStream(0)
        up = target.newStream(0)
    try:
        with translate_storage(what):
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
                raise OSError(  # noqa: TRY301 - the except below aborts both streams
                    f"the source delivered {total} bytes, expected {size}")
        _finish(down, what)
        _finish(up, what)
    except BaseException:
        hasher.stop()
        _abort(down)
        _abort(up)
        raise
    return hasher.hexdigest() or None
