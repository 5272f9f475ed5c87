"""Storage pools through libvirt: find, create (a `dir` pool, as virt-install does for
`default`), refresh. Called through `Hypervisor.storage` (storage.py); errors are
classified by storage_errors.py. `Pools` is the declared pools' side (kind:
StoragePool): read a pool with its ownership mark (controller/poolxml.py) and its
volume count, list the managed ones, and the pool steps (`Hypervisor.pools`).
"""

from __future__ import annotations

import logging
from typing import Any

import libvirt

from ..errors import HypervisorError, PermanentError
from ..poolxml import parse_pool_config
from ..resourcemodel import Mark, PoolState
from .connection import Connection
from .errors import code
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
    require_active(pool, name)
    return pool


def require_active(pool: Any, name: str) -> None:
    """PoolUnusable unless the pool (a handle) is active now."""
    with translate_storage(f"cannot read storage pool {name!r}"):
        active = pool.isActive()
    if not active:
        raise PoolUnusable(f"storage pool {name!r} is not active")


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


# --- declared pools (kind: StoragePool): read, list the managed ones, steps -------------

_NO_POOL = code("VIR_ERR_NO_STORAGE_POOL")
_UNSUPPORTED = {code("VIR_ERR_NO_SUPPORT"), code("VIR_ERR_INVALID_ARG")}


class Pools:
    """The storage pools of one host as `kind: StoragePool` sees them, through its
    connection (`Hypervisor.pools`); each step tolerates being already done. A pool is
    never deleted: `undefine` leaves its folder and whatever is in it."""

    def __init__(self, connection: Connection):
        self._c = connection

    def _lookup(self, conn: Any, name: str) -> Any | None:
        self._c.calls += 1
        try:
            return conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == _NO_POOL:
                return None
            raise

    def state(self, name: str, *, count: bool = False) -> PoolState:
        """The pool `name` now; with `count`, how many volumes an active one holds (after
        a refresh, so that files made outside libvirt count too; a read-only connection
        counts what libvirt last saw)."""
        with self._c.call(f"cannot read storage pool '{name}'") as conn:
            pool = self._lookup(conn, name)
            if pool is None:
                return PoolState(name=name, exists=False)
            self._c.calls += 4
            try:
                active = bool(pool.isActive())
                persistent = bool(pool.isPersistent())
                autostart = bool(pool.autostart())
                xml = _inactive_pool_xml(pool)
                volumes = None
                if count and active:
                    if not self._c.readonly:  # a dry run's read-only connection may not
                        self._c.calls += 1
                        pool.refresh(0)
                    self._c.calls += 1
                    volumes = int(pool.numOfVolumes())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == _NO_POOL:
                    return PoolState(name=name, exists=False)
                raise
        return PoolState(name=name, exists=True, active=active, persistent=persistent,
                         autostart=autostart, saved=parse_pool_config(xml), saved_xml=xml,
                         volumes=volumes)

    def brief(self, name: str) -> tuple[bool, bool]:
        """(exists, active) of the pool `name`: two calls, for a VM's check."""
        with self._c.call(f"cannot read storage pool '{name}'") as conn:
            pool = self._lookup(conn, name)
            if pool is None:
                return False, False
            self._c.calls += 1
            try:
                return True, bool(pool.isActive())
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == _NO_POOL:
                    return False, False
                raise

    def names(self) -> list[str]:
        """Every pool's name."""
        with self._c.call("cannot list storage pools") as conn:
            self._c.calls += 1
            return sorted(pool.name() for pool in conn.listAllStoragePools(0))

    def managed(self) -> dict[str, Mark]:
        """Every pool of the host that carries reconcile's mark, with the mark."""
        marks: dict[str, Mark] = {}
        with self._c.call("cannot list storage pools") as conn:
            self._c.calls += 1
            for pool in conn.listAllStoragePools(0):
                self._c.calls += 1
                try:
                    mark = parse_pool_config(_inactive_pool_xml(pool)).mark
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() == _NO_POOL:
                        continue
                    raise
                if mark is not None:
                    marks[pool.name()] = mark
        return marks

    def define(self, xml: str) -> None:
        with self._c.call("cannot define storage pool") as conn:
            self._c.calls += 1
            conn.storagePoolDefineXML(xml, 0)

    def build(self, name: str) -> None:
        """Make the pool's folder; an existing folder (and what is in it) is kept."""
        with self._c.call(f"cannot build storage pool '{name}'") as conn:
            pool = self._require(conn, name)
            self._c.calls += 2
            if not pool.isActive():
                pool.build(0)

    def start(self, name: str) -> None:
        with self._c.call(f"cannot start storage pool '{name}'") as conn:
            pool = self._require(conn, name)
            self._c.calls += 2
            if not pool.isActive():
                try:
                    pool.create(0)
                except libvirt.libvirtError:
                    if not pool.isActive():
                        raise

    def stop(self, name: str) -> None:
        with self._c.call(f"cannot stop storage pool '{name}'") as conn:
            pool = self._lookup(conn, name)
            if pool is None:
                return
            self._c.calls += 2
            if pool.isActive():
                pool.destroy()

    def undefine(self, name: str) -> None:
        """Forget the pool's definition; its folder stays (never virStoragePoolDelete)."""
        with self._c.call(f"cannot undefine storage pool '{name}'") as conn:
            pool = self._lookup(conn, name)
            if pool is None:
                return
            self._c.calls += 2
            if pool.isPersistent():
                pool.undefine()

    def set_autostart(self, name: str, autostart: bool) -> None:
        with self._c.call(f"cannot set autostart on storage pool '{name}'") as conn:
            pool = self._require(conn, name)
            self._c.calls += 1
            pool.setAutostart(1 if autostart else 0)

    def _require(self, conn: Any, name: str) -> Any:
        pool = self._lookup(conn, name)
        if pool is None:
            raise PermanentError(f"storage pool '{name}' does not exist", code=_NO_POOL)
        return pool


def _inactive_pool_xml(pool: Any) -> str:
    """The saved definition; drivers without VIR_STORAGE_XML_INACTIVE (the test driver)
    show only the live one."""
    try:
        return str(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _UNSUPPORTED:
            return str(pool.XMLDesc(0))
        raise
