"""Storage pools through libvirt: find, create (a `dir` pool, as virt-install does for
`default`), refresh. Called through `Hypervisor.storage` (storage.py); errors are
classified by storage_errors.py.
"""

from __future__ import annotations

import logging
from typing import Any

import libvirt

from ..errors import HypervisorError
from .storage_errors import (
    PoolNotFound,
    PoolUnusable,
    classify_storage,
    translate_storage,
)
from .storagexml import (
    PoolInfo,
    check_pool_path,
    check_volume_name,
    dir_pool_xml,
    parse_pool,
)

log = logging.getLogger(__name__)

#: Where virt-install (and so reconcile) makes the `default` pool on qemu:///system.
DEFAULT_POOL = "default"
DEFAULT_POOL_PATH = "/var/lib/libvirt/images"


def lookup_pool(conn: libvirt.virConnect, name: str) -> Any:
    with translate_storage(f"cannot find storage pool {name!r}"):
        return conn.storagePoolLookupByName(name)


def read_pool_info(pool: Any) -> PoolInfo:
    name = pool.name()
    with translate_storage(f"cannot read storage pool {name!r}"):
        return parse_pool(pool.XMLDesc(0), active=bool(pool.isActive()),
                          autostart=bool(pool.autostart()),
                          persistent=bool(pool.isPersistent()))


def active_pool(conn: libvirt.virConnect, name: str) -> Any:
    pool = lookup_pool(conn, name)
    with translate_storage(f"cannot read storage pool {name!r}"):
        active = pool.isActive()
    if not active:
        raise PoolUnusable(f"storage pool {name!r} is not active")
    return pool


def pool_info(conn: libvirt.virConnect, *, name: str) -> PoolInfo | None:
    """The pool `name`, or None when the host has no such pool."""
    try:
        return read_pool_info(lookup_pool(conn, name))
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
        pool = lookup_pool(conn, name)
    except PoolNotFound:
        pool = _define_dir_pool(conn, name=name, path=path, autostart=autostart)
    with translate_storage(f"cannot start storage pool {name!r}"):
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
    return read_pool_info(pool)


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
        error = classify_storage(exc, f"cannot define storage pool {name!r} at {path}")
        if isinstance(error, HypervisorError) and "conflict" in text.lower():
            raise PoolUnusable(f"cannot define storage pool {name!r} at {path}: {text}",
                               code=error.code, domain=error.domain) from exc
        raise error from exc
    with translate_storage(f"cannot build storage pool {name!r} at {path}"):
        pool.build(0)  # a dir pool: make the folder (an existing one is kept)
    with translate_storage(f"cannot start storage pool {name!r}"):
        if not pool.isActive():
            pool.create(0)
    if autostart:
        with translate_storage(f"cannot set autostart on storage pool {name!r}"):
            pool.setAutostart(1)
    log.info("created storage pool %s (dir, %s)", name, path)
    return pool


def ensure_default_pool(conn: libvirt.virConnect) -> PoolInfo:
    """The `default` pool; when missing, a dir pool at /var/lib/libvirt/images, built,
    started and autostarted, as virt-install makes it."""
    return ensure_pool(conn, name=DEFAULT_POOL, path=DEFAULT_POOL_PATH)


def refresh_pool(conn: libvirt.virConnect, *, name: str) -> PoolInfo:
    """Rescan the pool (volumes made outside libvirt, free space) and return it."""
    pool = active_pool(conn, name)
    with translate_storage(f"cannot refresh storage pool {name!r}"):
        pool.refresh(0)
    return read_pool_info(pool)
