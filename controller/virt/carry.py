"""Volumes that go with a VM to another host (contract section 6, "Moves carry their
volumes"). Called through `Storage.carry_to` and `Storage.receiving` by the storage
steps of a move (controller/storage_steps.py).

- `carry_volume`: a cold move's copy-volume. A complete volume is copied to the same
  pool on the target through two streams (transfer.py: hashed on the way, read back and
  compared), under the partial rule there. An overlay is copied as it is only when the
  target holds its backing file's volume complete at the same path, in the same pool
  under the same name: never a broken backing chain. A complete volume of that name on
  the target is compared with the source's (sha256 of both) and used only if they are
  the same: it may be an old copy kept by an earlier move, and is never overwritten.
- `receiving`: a live move's target volumes, made (empty, or an overlay on the same
  backing file) under the partial rule before the migration copies the disks into them,
  and complete only once the migration is: an interrupted one leaves them partial, and
  the next pass makes them again. A kill between the migration's end and that leaves
  a running guest on a partial volume: `clear_partial` clears its marker then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import libvirt

from ..model import VolumeInfo, VolumeWant
from .partial import delete_raw, writing
from .pools import active_pool
from .storage_errors import PartialVolume, VolumeConflict, translate_storage
from .storagexml import Ensured, check_volume_name, marker_name, volume_xml
from .transfer import Check, transfer_volume, volume_sha256
from .volume_reads import lookup_volume, read_volume_info, require_complete, volume_by_path
from .volumes import check_backing


def carry_volume(*, source: libvirt.virConnect, target: libvirt.virConnect, pool: str,
                 name: str, where: str = "the target host",
                 check: Check = Check.STORED) -> Ensured:
    """Volume `name` of `pool` on `source`, complete and verified on `target` in the same
    pool (see the module). `where` names the target in messages."""
    check_volume_name(name)
    info = require_complete(source, pool=pool, name=name)
    handle = active_pool(target, pool)
    there = lookup_volume(handle, name)
    if there is not None:
        have = read_volume_info(handle, there)
        if not have.partial:
            return _same(source, target, have, pool=pool, name=name, where=where)
    if info.backing is not None:
        _check_chain(source, target, info, where=where)
    return transfer_volume(source=source, source_pool=pool, name=name, target=target,
                           target_pool=pool, check=check, mode=info.mode)


def _same(source: libvirt.virConnect, target: libvirt.virConnect, have: VolumeInfo, *,
          pool: str, name: str, where: str) -> Ensured:
    ours = volume_sha256(source, pool=pool, name=name)
    theirs = volume_sha256(target, pool=pool, name=name)
    if ours != theirs:
        raise VolumeConflict(
            f"volume {name!r} in pool {pool!r} exists on {where} with other content "
            f"(sha256 {theirs}, the source's {ours}): an old copy kept by an earlier move? "
            "It is never overwritten; delete it there to move the VM")
    return Ensured(volume=have, created=False, sha256=ours)


def _check_chain(source: libvirt.virConnect, target: libvirt.virConnect, info: VolumeInfo,
                 *, where: str) -> None:
    """Refuse to copy overlay `info` unless its backing file resolves on the target to
    the same volume as on the source."""
    assert info.backing is not None
    path = info.backing.path
    what = f"volume {info.name!r} in pool {info.pool!r} is an overlay on {path}"
    base = volume_by_path(source, path=path)
    if base is None or base.partial:
        raise VolumeConflict(f"{what}, which is no complete volume on the source host")
    found = volume_by_path(target, path=path)
    if found is None:
        raise VolumeConflict(f"{what}; {where} has no volume there (import image volume "
                             f"{base.pool}/{base.name} there first): copying it would "
                             "break its backing chain")
    if found.partial:
        raise PartialVolume(f"{what}; on {where} that is an interrupted write: not used")
    if (found.pool, found.name, found.format) != (base.pool, base.name, base.format):
        raise VolumeConflict(f"{what}; on {where} that is volume {found.pool}/{found.name}, "
                             f"not {base.pool}/{base.name}: copying it would give it "
                             "another backing file")


@contextlib.contextmanager
def receiving(conn: libvirt.virConnect, wants: Sequence[VolumeWant]) -> (
        Iterator[Callable[[], None]]):
    """The volumes `wants` made on this host for a migration to copy disks into, each
    partial until the body calls the yielded `keep` (or ends without an error): a body
    that fails before `keep` leaves nothing of them."""
    with contextlib.ExitStack() as stack:
        dones = []
        for want in wants:
            check_volume_name(want.name)
            handle = active_pool(conn, want.pool)
            done = stack.enter_context(writing(handle, want.name))
            if want.backing is not None and check_backing(conn, want.backing) is None:
                raise VolumeConflict(f"volume {want.name!r}: its backing file "
                                     f"{want.backing.path} is no volume on this host")
            xml = volume_xml(name=want.name, capacity=want.capacity or 0,
                             format=want.format, backing=want.backing)
            with translate_storage(f"cannot create volume {want.name!r} in pool "
                                   f"{want.pool!r}"):
                handle.createXML(xml, 0)
            dones.append(done)

        def keep() -> None:
            for done in dones:
                done()

        yield keep
        keep()


def clear_partial(conn: libvirt.virConnect, *, pool: str, name: str) -> bool:
    """Delete the partial marker of volume `name` (not the volume): a live move's copy
    whose migration finished. True if there was one."""
    check_volume_name(name)
    handle = active_pool(conn, pool)
    if lookup_volume(handle, name) is None:
        return False
    marker = lookup_volume(handle, marker_name(name))
    if marker is None:
        return False
    delete_raw(marker, f"the partial marker of volume {name!r} in pool {pool!r}")
    return True
