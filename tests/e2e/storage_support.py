"""Helpers of the storage tests (tests/e2e/test_storage.py and
tests/reliability/test_storage_faults.py): dir pools of a test's own, small images,
manifests with Images, volume disks and cloud-init, reading pools and domain disks back,
and killing a run at the moment a file in a pool is written (inotify).

Every pool is `<prefix>pool` (prefix `t-<8 hex>-`) under /var/lib/libvirt/images (or that
folder of a private libvirtd), and `Pools.cleanup` removes the test's domains, then every
volume of its pools, the pools, any tmpfs mounted on their folders, and the folders,
pass or fail. Nothing of anyone else's is touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from tests.support.command import clean_env, command
from tests.support.disks import IMAGES
from tests.support.domains import remove_domains
from tests.support.manifests import Document

MIB = 1 << 20
PARTIAL = ".reconcile-partial"


# --- pools of a test's own -------------------------------------------------------------

class Pools:
    """Dir pools named `<prefix><suffix>`, made through libvirt and removed with all their
    volumes by `cleanup` (after the test's domains). `folder_of(name)` is where a pool's
    folder is seen from this process (a private libvirtd has its own /var/lib/libvirt)."""

    def __init__(self, connect: Callable[[], libvirt.virConnect], prefix: str, *,
                 folder_of: Callable[[str], Path] = lambda name: IMAGES / name):
        self._connect = connect
        self.prefix = prefix
        self.folder_of = folder_of
        self.made: list[str] = []

    def make(self, suffix: str = "pool", *, tmpfs_size: str | None = None,
             autostart: bool = False) -> str:
        """A new active dir pool; with `tmpfs_size`, its folder is a tmpfs of that size;
        with `autostart`, active again after a daemon restart."""
        name = self.prefix + suffix
        path = f"/var/lib/libvirt/images/{name}"
        self.made.append(name)
        if tmpfs_size is not None:
            folder = self.folder_of(name)
            folder.mkdir(mode=0o711)
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size},mode=0711",
                            "tmpfs", str(folder)], check=True, timeout=60)
        xml = (f"<pool type='dir'><name>{name}</name><target><path>{path}</path>"
               "</target></pool>")
        conn = self._connect()
        pool = conn.storagePoolDefineXML(xml, 0)
        pool.build(0)
        pool.create(0)
        if autostart:
            pool.setAutostart(1)
        return name

    def cleanup(self) -> None:
        conn = self._connect()
        remove_domains(conn, self.prefix)
        problems = []
        for name in reversed(self.made):
            try:
                _remove_pool(conn, name)
            except libvirt.libvirtError as exc:
                problems.append(f"pool {name}: {exc}")
            folder = self.folder_of(name)
            if folder.is_mount():
                subprocess.run(["umount", str(folder)], check=False, timeout=60)
            if folder.is_mount():
                problems.append(f"{folder} is still mounted")
            shutil.rmtree(folder, ignore_errors=True)
        assert not problems, "; ".join(problems)


def _remove_pool(conn: libvirt.virConnect, name: str) -> None:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return
        raise
    try:
        if not pool.isActive():
            pool.create(0)
        _when_built(lambda: pool.refresh(0))
        for vol in pool.listAllVolumes(0):
            try:
                _when_built(lambda: vol.delete(0))  # noqa: B023 - called at once
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
    finally:  # never leave the pool defined, even if a volume could not be deleted
        if pool.isActive():
            pool.destroy()
        pool.undefine()


def _when_built(call: Callable[[], object], patience: float = 120.0) -> None:
    """`call()`, retried while libvirtd still builds a volume in the pool (a copy it goes
    on making for a killed client): "still being allocated", "asynchronous jobs"."""
    deadline = time.monotonic() + patience
    while True:
        try:
            call()
        except libvirt.libvirtError as exc:
            text = str(exc)
            if ("still being allocated" not in text and "asynchronous jobs" not in text
                    or time.monotonic() > deadline):
                raise
        else:
            return
        time.sleep(0.2)


def building(conn: libvirt.virConnect, pool: str) -> bool:
    """Whether libvirtd is building a volume in `pool` now (a copy): it then refuses to
    refresh the pool."""
    try:
        conn.storagePoolLookupByName(pool).refresh(0)
    except libvirt.libvirtError as exc:
        if "asynchronous jobs" in str(exc):
            return True
        raise
    return False


def pool_exists(conn: libvirt.virConnect, name: str) -> bool:
    try:
        conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return False
        raise
    return True


# --- reading pools and domains back ----------------------------------------------------

@dataclass(frozen=True)
class Vol:
    """One volume as libvirt reports it."""

    name: str
    path: str
    capacity: int
    format: str
    backing: str | None


def pool_volumes(conn: libvirt.virConnect, pool: str, *, refresh: bool = True) -> dict[str, Vol]:
    """Every volume of `pool` (partial markers included), read afresh (without `refresh`,
    as libvirtd lists them: a pool cannot be refreshed while libvirtd copies a volume)."""
    handle = conn.storagePoolLookupByName(pool)
    if refresh:
        handle.refresh(0)
    found = {}
    for vol in handle.listAllVolumes(0):
        root = ET.fromstring(vol.XMLDesc(0))
        fmt = root.find("target/format")
        found[vol.name()] = Vol(
            name=vol.name(), path=root.findtext("target/path", ""),
            capacity=int(root.findtext("capacity", "0")),
            format=fmt.get("type", "") if fmt is not None else "",
            backing=root.findtext("backingStore/path"))
    return found


def volume_names(conn: libvirt.virConnect, pool: str, *, refresh: bool = True) -> list[str]:
    if not refresh:
        return sorted(conn.storagePoolLookupByName(pool).listVolumes())
    return sorted(pool_volumes(conn, pool))


@dataclass(frozen=True)
class DiskRef:
    """One disk of a domain definition."""

    target: str
    device: str
    type: str
    pool: str | None
    volume: str | None
    file: str | None
    readonly: bool


def domain_xml(conn: libvirt.virConnect, name: str, *, live: bool = False) -> str:
    dom = conn.lookupByName(name)
    return str(dom.XMLDesc(0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE))


def domain_disks(conn: libvirt.virConnect, name: str, *, live: bool = False) -> list[DiskRef]:
    root = ET.fromstring(domain_xml(conn, name, live=live))
    disks = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        disks.append(DiskRef(
            target=target.get("dev", "") if target is not None else "",
            device=disk.get("device", "disk"), type=disk.get("type", ""),
            pool=source.get("pool") if source is not None else None,
            volume=source.get("volume") if source is not None else None,
            file=source.get("file") if source is not None else None,
            readonly=disk.find("readonly") is not None))
    return disks


def marked_volumes(conn: libvirt.virConnect, name: str) -> set[tuple[str, str]]:
    """The volumes the ownership mark of the domain's saved definition says reconcile
    created: (pool, volume)."""
    root = ET.fromstring(domain_xml(conn, name))
    return {(element.get("pool", ""), element.get("name", ""))
            for element in root.iter() if element.tag.endswith("}volume")
            and element.get("pool") is not None}


def assert_sound(conn: libvirt.virConnect, pool: str, *domains: str) -> dict[str, Vol]:
    """No partial marker in `pool`, and every volume disk of each existing domain in
    `domains` (saved and live definitions) is a complete volume that exists. Returns the
    pool's volumes."""
    volumes = pool_volumes(conn, pool)
    markers = [name for name in volumes if name.endswith(PARTIAL)]
    assert not markers, f"partial markers left in {pool}: {markers}"
    for name in domains:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        for live in (False, True) if dom.isActive() else (False,):
            for disk in domain_disks(conn, name, live=live):
                if disk.type != "volume":
                    continue
                assert disk.pool is not None and disk.volume is not None
                here = volumes if disk.pool == pool else pool_volumes(conn, disk.pool)
                assert disk.volume in here, (
                    f"{name} ({'live' if live else 'saved'}) has disk {disk.target} on "
                    f"{disk.pool}/{disk.volume}, which does not exist")
                assert disk.volume + PARTIAL not in here, (
                    f"{name} has disk {disk.target} on a partial volume "
                    f"{disk.pool}/{disk.volume}")
    return volumes


# --- images ------------------------------------------------------------------------------

def sha256_of(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def small_qcow2(path: Path, size: str = "8M") -> Path:
    """An empty qcow2 of virtual size `size` (a file of ~200 KiB)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size],
                   check=True, capture_output=True, timeout=60)
    return path


def dense_qcow2(path: Path, mib: int) -> Path:
    """A qcow2 holding `mib` MiB of random data: it takes time to upload and to copy."""
    raw = path.with_name(path.name + ".raw")
    dense_raw(raw, mib)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
                   check=True, capture_output=True, timeout=300)
    raw.unlink()
    return path


def dense_raw(path: Path, mib: int) -> Path:
    with open(path, "wb") as file:
        for _ in range(mib):
            file.write(os.urandom(MIB))
    return path


def image_volume(name: str, sha256: str, fmt: str = "qcow2") -> str:
    """The volume name an Image is imported under (docs/MANIFEST.md, kind: Image)."""
    return f"{name}.sha256-{sha256[:12]}.{fmt}"


# --- manifests ---------------------------------------------------------------------------

def image_doc(name: str, *, url: str, sha256: str, pool: str, fmt: str = "qcow2") -> Document:
    return {"apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": name},
            "spec": {"url": url, "sha256": sha256, "format": fmt, "pool": pool}}


def volume_disk(volume: str, pool: str, **more: Any) -> dict[str, Any]:
    return {"volume": volume, "pool": pool, **more}


# --- processes -----------------------------------------------------------------------------

def start_reconcile(*args: str, manifests: Path, lock_dir: Path,
                    stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """`reconcile ARGS` in the background, with the test's -m, -c and --lock-dir."""
    argv = command(args, manifests=manifests, lock_dir=lock_dir)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=clean_env())


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL by PID, and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"it ended by itself first: {proc.returncode}"


def wait_line(proc: subprocess.Popen[str], needle: str, *, timeout: float) -> str:
    """Read the process's stderr until a line holds `needle`; that line. The rest of its
    stderr is left to be read (e.g. by `kill9`'s communicate)."""
    assert proc.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    stream = proc.stderr

    def read() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)
            if needle in line:
                return
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no line with {needle!r} within {timeout:g} s; "
                                 f"saw {seen[-5:]}") from None
        if line is None:
            raise AssertionError(f"stderr ended without {needle!r}; saw {seen[-5:]}")
        seen.append(line)
        if needle in line:
            return line


# --- inotify: reacting within a millisecond to a write into a pool --------------------

IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
_EVENT = struct.Struct("iIII")


class Inotify:
    """Events of one folder (no recursion). `wait` returns as soon as an entry that
    `match`es is written (and, with `written`, once that many bytes of it are allocated);
    the caller then acts at once: a kill -9 of a client in the middle of a write, which
    polling through libvirt could miss."""

    def __init__(self, folder: Path, mask: int = IN_CREATE | IN_MODIFY):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.folder = folder
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self._fd, os.fsencode(folder), mask) < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
        self.seen: list[tuple[str, int]] = []

    def wait(self, match: Callable[[str], bool], *, mask: int = IN_MODIFY, written: int = 0,
             timeout: float, alive: Callable[[], bool] = lambda: True) -> str:
        """The name of the entry, once it is written as asked."""
        deadline = time.monotonic() + timeout
        while True:
            for seen, event in self._read():
                self.seen.append((seen, event))
                if match(seen) and event & mask and self._allocated(seen) >= written:
                    return seen
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:g} s waiting for a write in "
                                     f"{self.folder}; saw {self.seen[-10:]}")
            if not alive():
                raise AssertionError(f"the process ended before the write; saw "
                                     f"{self.seen[-10:]}")
            select.select([self._fd], [], [], min(left, 0.2))

    def _allocated(self, name: str) -> int:
        try:
            return os.stat(self.folder / name).st_blocks * 512
        except FileNotFoundError:
            return -1

    def _read(self) -> list[tuple[str, int]]:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return []
        except OSError as exc:  # pragma: no cover - not seen
            if exc.errno == errno.EINTR:
                return []
            raise
        events, offset = [], 0
        while offset < len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size:offset + _EVENT.size + length]
            events.append((raw.rstrip(b"\0").decode(errors="replace"), mask))
            offset += _EVENT.size + length
        return events

    def close(self) -> None:
        os.close(self._fd)
