"""The storage the storage benchmark makes: dir pools of its own, and their cleanup.

`storage_bench.py` and its sections (`sections/storage_*.py`) call `make_pool` for each
pool they need (named `<prefix>...`, at /var/lib/libvirt/images/<name>), `volumes` to see
what a run left, `delete_volumes` between runs, and `remove_pools` in the command's
`finally` (on errors, Ctrl-C and SIGTERM too): every pool whose name starts with the
benchmark's prefix loses its volumes, is stopped and undefined, and its folder goes.
Pools of other users are never touched. Domains are `harness.host.Host`'s job and must
be gone first (a running guest holds its volumes).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libvirt

from harness.runs import BenchError

IMAGES = Path("/var/lib/libvirt/images")


def make_pool(conn: Any, name: str) -> Any:
    """A started dir pool `name` at /var/lib/libvirt/images/`name` (folder made 0711)."""
    path = IMAGES / name
    path.mkdir(mode=0o711)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0)
    pool.create(0)
    return pool


def volumes(conn: Any, pool: str) -> list[str]:
    handle = conn.storagePoolLookupByName(pool)
    handle.refresh(0)
    return sorted(str(name) for name in handle.listVolumes())


def delete_volumes(conn: Any, pool: str, names: Iterable[str]) -> None:
    """Delete these volumes of `pool` (missing ones are fine). libvirt refuses to delete a
    volume it is still writing (a refresh of the pool after an upload): retried briefly."""
    handle = conn.storagePoolLookupByName(pool)
    for name in names:
        deadline = time.monotonic() + 60
        while True:
            try:
                handle.storageVolLookupByName(name).delete(0)
                break
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"cannot delete {pool}/{name}: {exc}") from exc
                time.sleep(0.2)


def remove_pools(conn: Any, prefix: str) -> int:
    """Delete every volume of our pools, stop and undefine them, remove their folders."""
    removed = 0
    for pool in conn.listAllStoragePools(0):
        name = pool.name()
        if not name.startswith(prefix):
            continue
        try:
            if pool.isActive():
                pool.refresh(0)
                delete_volumes(conn, name, pool.listVolumes())
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
        except libvirt.libvirtError as exc:
            print(f"cleanup: pool {name}: {exc}")
        shutil.rmtree(IMAGES / name, ignore_errors=True)
        removed += 1
    return removed
