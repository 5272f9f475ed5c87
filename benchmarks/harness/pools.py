"""The storage the storage benchmark makes: dir pools of its own, and their cleanup.

`storage_bench.py` and its sections (`sections/storage_*.py`) call `make_pool` for each
pool they need (named `<prefix>...`, at /var/lib/libvirt/images/<name>), `volumes` to see
what a run left, `delete_volumes` between runs, and `remove_pools` in the command's
`finally` (on errors, Ctrl-C and SIGTERM too): every pool whose name starts with the
benchmark's prefix loses its volumes, is stopped and undefined, and its folder goes.
Pools of other users are never touched. Domains are `harness.host.Host`'s job and must
be gone first (a running guest holds its volumes): `clean_up`, the storage benchmark's
`finally`, does it all in that order and then lists what of the prefix is still there.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import libvirt

from harness.host import Host
from harness.runs import BenchError, stop_children

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
        except (libvirt.libvirtError, BenchError) as exc:
            print(f"cleanup: pool {name}: {exc}")
        shutil.rmtree(IMAGES / name, ignore_errors=True)
        removed += 1
    return removed


def clean_up(*, host: Host | None, prefix: str, tmp: Path) -> list[str]:
    """Whatever ended the run, remove all it made: stop our children (and what they
    started), destroy and undefine our domains, remove our pools with their volumes and
    folders, delete `tmp`. SIGINT, SIGTERM and SIGHUP are ignored meanwhile so that it
    finishes; a step that fails is reported and the next ones still run. Returns (and
    prints) what of `prefix` is still there: nothing, unless a step failed."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        stop_children()
        if host is not None:
            try:
                removed = host.remove()
                print(f"cleanup: removed {removed} domain(s) named {prefix}*")
            except (BenchError, libvirt.libvirtError) as error:
                print(f"cleanup: domains: {error}")
            try:
                print(f"cleanup: removed {remove_pools(host.conn, prefix)} pool(s) "
                      f"named {prefix}*")
            except libvirt.libvirtError as error:
                print(f"cleanup: pools: {error}")
        for folder in [*IMAGES.glob(f"{prefix}*"), tmp]:  # a pool's folder made, not defined
            shutil.rmtree(folder, ignore_errors=True)
        left = leftovers(host, prefix) + ([f"folder {tmp}"] if tmp.exists() else [])
        print(f"cleanup: left behind: {', '.join(left)}" if left
              else f"cleanup: nothing named {prefix}* is left")
        if host is not None:
            host.close()
        return left
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def leftovers(host: Host | None, prefix: str) -> list[str]:
    """Domains, pools and folders under /var/lib/libvirt/images named `prefix`*."""
    left = [f"folder {path}" for path in IMAGES.glob(f"{prefix}*")]
    if host is None:
        return left
    try:
        left += [f"domain {name}" for name in host.names() if name.startswith(prefix)]
        left += [f"pool {pool.name()}" for pool in host.conn.listAllStoragePools(0)
                 if pool.name().startswith(prefix)]
    except libvirt.libvirtError as error:
        left.append(f"(libvirt could not list: {error})")
    return left
