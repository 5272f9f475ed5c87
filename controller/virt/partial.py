"""The partial rule, for every volume reconcile writes (volumes.py, transfer.py).

libvirt cannot rename a volume, so a volume cannot be written
under a temporary name and published. Instead every volume reconcile writes
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
import logging
from collections.abc import Callable, Iterator
from typing import Any

import libvirt

from ..errors import HypervisorError
from .errors import code
from .storage_errors import VolumeConflict, VolumeNotFound, translate_storage, when_built
from .storagexml import Backing, Ensured, differences, marker_name, volume_xml
from .volume_reads import lookup_volume, read_volume_info

log = logging.getLogger(__name__)


@contextlib.contextmanager
def writing(pool: Any, name: str) -> Iterator[Callable[[], None]]:
    """The partial rule around one write of `name`: the marker exists before the body
    starts; a partial `name` from an earlier run is deleted first. The body calls the
    yielded `done` when the content is complete; only then is the marker removed. If the
    body fails before that, what it wrote is deleted, then the marker (best effort: a
    leftover that cannot be deleted keeps its marker); after it, the content is kept."""
    where = f"volume {name!r} in pool {pool.name()!r}"
    marker = marker_name(name)
    ours = lookup_volume(pool, marker)  # the marker's handle, to delete it at the end
    interrupted = ours is not None
    if not interrupted:
        with translate_storage(f"cannot create the partial marker of {where}"):
            try:
                ours = pool.createXML(
                    volume_xml(name=marker, capacity=0, format="raw", mode=0o600), 0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != code("VIR_ERR_STORAGE_VOL_EXIST"):
                    raise
    leftover = lookup_volume(pool, name)
    if leftover is not None:
        if not interrupted:  # made meanwhile by another client, complete: not ours to touch
            fresh = lookup_volume(pool, marker)
            if fresh is not None:
                delete_raw(fresh, f"the partial marker of {where}")
            raise VolumeConflict(f"{where} was created meanwhile by another client")
        log.info("deleting the partial %s left by an interrupted run", where)
        delete_raw(leftover, where)
    finished = False

    def done() -> None:
        nonlocal finished
        finished = True

    try:
        yield done
    except BaseException:
        if finished:  # complete by the body's word before it failed: kept, marker cleared
            with contextlib.suppress(HypervisorError):
                marker_vol = lookup_volume(pool, marker)
                if marker_vol is not None:
                    delete_raw(marker_vol, f"the partial marker of {where}")
            raise
        with contextlib.suppress(HypervisorError):  # the first error is the one to report
            written = lookup_volume(pool, name)
            if written is not None:
                delete_raw(written, where)
            # nothing of the write is left: the marker has nothing left to mark
            marker_vol = lookup_volume(pool, marker)
            if marker_vol is not None:
                delete_raw(marker_vol, f"the partial marker of {where}")
        raise
    if not finished:
        raise RuntimeError(f"write of {where} ended without completing")  # a bug of ours
    # through the handle it was made (or found) with: a libvirt handle names the volume
    # by pool and name, so this deletes what a fresh lookup would find, one call less
    marker_vol = ours if ours is not None else lookup_volume(pool, marker)
    if marker_vol is not None:
        delete_raw(marker_vol, f"the partial marker of {where}")


def delete_raw(vol: Any, where: str) -> None:
    """Delete a volume; one that libvirt still builds (a copy for a client killed
    meanwhile) once the build is done."""
    try:
        when_built(lambda: vol.delete(0), f"cannot delete {where}")
    except VolumeNotFound:
        pass


def find_complete(pool: Any, name: str, *, format: str, capacity: int | None,
              backing: Backing | None) -> Ensured | None:
    """A complete existing `name` as an Ensured (created=False), or None if there is none
    or it is partial (the caller writes it again)."""
    vol = lookup_volume(pool, name)
    if vol is None:
        return None
    info = read_volume_info(pool, vol)
    if info.partial:
        return None
    return Ensured(volume=info, created=False,
                   notes=differences(info, format=format, capacity=capacity, backing=backing))


