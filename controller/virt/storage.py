"""Storage through libvirt's storage API (contract section 6): `Storage`, a host's pools
and volumes as the reconciler and the executor use them (`Hypervisor.storage`), and the
functions behind it by job, which take a raw connection:

    pools.py       find, create (a dir pool, as virt-install does), refresh
    volumes.py     read, create (empty, overlay), copy, grow, delete; who uses a volume;
                   the partial rule (an interrupted write is never attached)
    transfer.py    streams: upload a local file, download, host to host, sha256
    carry.py       volumes that move with a VM: a cold move's copy, a live move's targets
    storagexml.py  pool and volume XML, names (pure)

Everything goes through libvirt (pools, volumes, upload/download streams), never
through local file commands on the host's files, so a `qemu+ssh://` host works as
the local one does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..model import Backing, PoolInfo, VolumeInfo, VolumeWant
from . import carry, pools, transfer, volume_reads, volumes
from .connection import Connection
from .errors import translate
from .pools import DEFAULT_POOL, DEFAULT_POOL_PATH, ensure_default_pool, ensure_pool, pool_info
from .storage_errors import InvalidName, PoolNotFound, PoolUnusable, translate_storage
from .storagexml import Ensured
from .transfer import Check, download_volume, transfer_volume, upload_volume, volume_sha256
from .volume_reads import (
    list_volumes,
    require_complete,
    volume_by_path,
    volume_info,
    volume_users,
    volumes_backed_by,
)
from .volumes import copy_volume, create_volume, delete_volume, grow_live, resize_volume

__all__ = ["DEFAULT_POOL", "DEFAULT_POOL_PATH", "Check", "Ensured", "Storage", "copy_volume",
           "create_volume", "delete_volume", "download_volume", "ensure_default_pool",
           "ensure_pool", "grow_live", "list_volumes", "pool_info", "pools",
           "require_complete", "resize_volume", "transfer", "transfer_volume",
           "upload_volume", "volume_by_path", "volume_info", "volume_sha256", "volume_users",
           "volumes", "volumes_backed_by"]


class Storage:
    """One host's pools and volumes, through its connection (one call slot a call)."""

    def __init__(self, connection: Connection):
        self._c = connection

    def _conn(self) -> Any:
        return self._c.slot()

    # --- reading ---------------------------------------------------------------------

    def pool(self, name: str) -> PoolInfo | None:
        with self._conn() as conn:
            self._c.calls += 2
            return pools.pool_info(conn, name=name)

    def volume(self, pool: str, name: str) -> VolumeInfo | None:
        """The volume, None if it (or its pool) does not exist or the pool is inactive:
        creating it is where a missing pool is made (`default`) or reported."""
        with self._conn() as conn:
            self._c.calls += 5
            try:
                return volume_reads.volume_info(conn, pool=pool, name=name)
            except (PoolNotFound, PoolUnusable, InvalidName):
                return None  # InvalidName: a name of someone else's that we never use

    def volume_at(self, path: str) -> VolumeInfo | None:
        """The volume whose file is `path` in any active pool of this host, or None."""
        with self._conn() as conn:
            self._c.calls += 4
            return volume_reads.volume_by_path(conn, path=path)

    def volume_names(self, pool: str) -> list[str]:
        """The names of the pool's volumes (one call), [] when the pool is missing or
        inactive."""
        with self._conn() as conn:
            self._c.calls += 3
            try:
                handle = pools.active_pool(conn, pool)
            except (PoolNotFound, PoolUnusable):
                return []
            with translate_storage(f"cannot list the volumes of pool {pool!r}"):
                return list(handle.listVolumes())

    def users(self, path: str) -> list[str]:
        """The domains with a disk on the volume at `path` (by file or pool/volume)."""
        with self._conn() as conn:
            self._c.calls += 1
            return volume_reads.volume_users(conn, path=path)

    # --- steps: each one safe to repeat ---------------------------------------------------

    def ensure_pool(self, name: str) -> PoolInfo:
        """The pool, active; a missing `default` is made as virt-install makes it."""
        with self._conn() as conn:
            self._c.calls += 2
            if name == DEFAULT_POOL:
                info = pools.pool_info(conn, name=name)
                if info is None or not info.active:
                    return pools.ensure_default_pool(conn)
                return info
            found = pools.pool_info(conn, name=name)
            if found is None:
                from .storage_errors import PoolNotFound

                raise PoolNotFound(f"storage pool {name!r} does not exist on "
                                   f"{self._c.uri or 'this host'}")
            return found

    def require_pool(self, name: str) -> None:
        """What a step needs before it writes into pool `name`: `ensure_pool`'s outcome
        (a missing `default` made, another missing pool PoolNotFound) without reading the
        pool's definition, which no step uses: one call for a pool other than `default`
        (the write itself then finds an inactive pool unusable)."""
        if name == DEFAULT_POOL:
            self.ensure_pool(name)
            return
        with self._conn() as conn:
            self._c.calls += 1
            try:
                pools.lookup_pool(conn, name)
            except PoolNotFound as error:
                raise PoolNotFound(f"storage pool {name!r} does not exist on "
                                   f"{self._c.uri or 'this host'}") from error

    def create(self, pool: str, name: str, *, capacity: int | None, format: str,
               backing: Backing | None, mode: int | None = None) -> Ensured:
        with self._conn() as conn:
            self._c.calls += 4
            return volumes.create_volume(conn, pool=pool, name=name, capacity=capacity,
                                         format=format, backing=backing, mode=mode)

    def copy(self, pool: str, name: str, *, source_pool: str, source_name: str,
             capacity: int | None, format: str = "qcow2") -> Ensured:
        with self._conn() as conn:
            self._c.calls += 4
            return volumes.copy_volume(conn, pool=pool, name=name, source_pool=source_pool,
                                       source_name=source_name, capacity=capacity,
                                       format=format)

    def upload(self, pool: str, name: str, *, path: str, format: str, sha256: str | None,
               check: Check, mode: int | None = None) -> Ensured:
        with self._conn() as conn:
            self._c.calls += 4
            return transfer.upload_volume(conn, pool=pool, name=name, path=path,
                                          format=format, sha256=sha256, check=check,
                                          mode=mode)

    def carry_to(self, target: Storage, pool: str, name: str, *,
                 where: str | None = None) -> Ensured:
        """A cold move: this host's complete volume on `target` (named `where` in
        messages), in the same pool, copied and verified (carry.py); one call slot on
        each host meanwhile."""
        with self._conn() as conn, target._conn() as there:
            self._c.calls += 12
            return carry.carry_volume(source=conn, target=there, pool=pool, name=name,
                                      where=where or target._c.uri or "the target host")

    @contextmanager
    def receiving(self, wants: Sequence[VolumeWant]) -> Iterator[Callable[[], None]]:
        """A live move to this host: `wants` made here, partial until the body calls the
        yielded `keep` or ends without an error (carry.py)."""
        with self._conn() as conn, carry.receiving(conn, wants) as keep:
            self._c.calls += 4 * len(wants)
            yield keep

    def clear_partial(self, pool: str, name: str) -> bool:
        """Only the partial marker of a volume a running domain uses goes (carry.py)."""
        with self._conn() as conn:
            self._c.calls += 4
            return carry.clear_partial(conn, pool=pool, name=name)

    def grow(self, pool: str, name: str, capacity: int) -> bool:
        """Offline: the volume grows to `capacity` bytes."""
        with self._conn() as conn:
            self._c.calls += 3
            return volumes.resize_volume(conn, pool=pool, name=name, capacity=capacity)

    def grow_live(self, domain: str, target: str, capacity: int) -> bool:
        """Running: the domain's disk `target` grows (block resize; the guest sees it)."""
        with self._conn() as conn:
            self._c.calls += 3
            with translate(f"cannot find domain '{domain}'"):
                dom = conn.lookupByName(domain)
            return volumes.grow_live(dom, target_dev=target, capacity=capacity)

    def delete(self, pool: str, name: str) -> bool:
        with self._conn() as conn:
            self._c.calls += 2
            return volumes.delete_volume(conn, pool=pool, name=name)
