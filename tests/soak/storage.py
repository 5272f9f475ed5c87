"""The soak's storage on its private libvirtd: two dir pools of its own (`<prefix>pool` under
the sandbox's /var/lib/libvirt/images, and `<prefix>tiny`, a 16 MiB tmpfs the full-pool
fault fills and then enlarges), the image files its Images are served from (file://
URLs, one small random raw image per version, made here), what is in the pools and
which volumes the domains use (the storage monitor's readings), a marker written into
each data volume once it is complete (and read back: its content is never replaced),
and the step log read as it grows (to kill a process at a step's start line).

Used by tests/soak/run.py; the invariants over these readings are storage_checks.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import libvirt

from .storage_checks import PARTIAL, ImageFile, Key

MIB = 1 << 20
IMAGE_MIB = 8  # each image version: small, but its upload takes a moment
BIG_MIB = 24  # the full pool's image: more than TINY_MIB
TINY_MIB = 16
ROOMY_MIB = 96  # the tiny pool once the full-pool fault is cleared
MARKER_AT = 4096  # offset of the marker in each data volume (raw)


def image_volume(name: str, sha256: str) -> str:
    """The volume name an Image is imported under (docs/MANIFEST.md, kind: Image)."""
    return f"{name}.sha256-{sha256[:12]}.raw"


def sha256_of(path: Path) -> ImageFile:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
            size += len(chunk)
    return ImageFile(digest.hexdigest(), size)


def image_document(name: str, *, path: Path, sha256: str, pool: str) -> dict[str, object]:
    return {"apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": name},
            "spec": {"url": path.as_uri(), "sha256": sha256, "format": "raw", "pool": pool}}


class Storage:
    """The soak's pools and images; see the module docstring. `root` is the sandbox's
    folder that its /var/lib/libvirt/images is (as seen from here)."""

    def __init__(self, *, prefix: str, base: Path, root: Path):
        self.prefix = prefix
        self.pool = f"{prefix}pool"
        self.tiny = f"{prefix}tiny"
        self.image = f"{prefix}img"
        self.big = f"{prefix}big"
        self.root = root
        self.images = base / "images"
        self.tiny_folder = base / "tiny"
        #: image volume name → the file it must hold (every version made so far)
        self.expected: dict[str, ImageFile] = {}
        self.hashed: dict[str, ImageFile] = {}  # complete image volumes, as read back
        self.marked: set[str] = set()  # data volumes with the marker written

    # --- set-up and clean-up ---------------------------------------------------------

    def mount_tiny(self) -> None:
        """Before the sandbox starts (its mount namespace copies the host's)."""
        self.images.mkdir()
        self.tiny_folder.mkdir(mode=0o711)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TINY_MIB}m,mode=0711", "tmpfs",
                        str(self.tiny_folder)], check=True, timeout=60)

    def enlarge_tiny(self) -> None:
        """Clear the full pool (a tmpfs's size is its superblock's: the sandbox sees it)."""
        subprocess.run(["mount", "-o", f"remount,size={ROOMY_MIB}m", str(self.tiny_folder)],
                       check=True, timeout=60)

    def define_pools(self, conn: libvirt.virConnect) -> None:
        for name, path in ((self.pool, f"/var/lib/libvirt/images/{self.pool}"),
                           (self.tiny, str(self.tiny_folder))):
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target>"
                "</pool>", 0)
            pool.build(0)
            pool.create(0)
            pool.setAutostart(1)  # active again after each daemon restart

    def remove_pools(self, conn: libvirt.virConnect) -> list[str]:
        """Every volume of the soak's pools, then the pools (its domains are gone)."""
        problems = []
        for name in (self.pool, self.tiny):
            try:
                pool = conn.storagePoolLookupByName(name)
            except libvirt.libvirtError:
                continue
            try:
                if not pool.isActive():
                    pool.create(0)
                _patiently(lambda: pool.refresh(0))  # noqa: B023 - called at once
                for vol in pool.listAllVolumes(0):
                    _patiently(vol.delete)
                pool.destroy()
                pool.undefine()
            except libvirt.libvirtError as exc:
                problems.append(f"pool {name}: {exc}")
        return problems

    def unmount_tiny(self) -> None:
        if self.tiny_folder.is_mount():
            subprocess.run(["umount", str(self.tiny_folder)], check=False, timeout=60)

    # --- images ---------------------------------------------------------------------------

    def make_image(self, version: int, mib: int = IMAGE_MIB) -> tuple[Path, ImageFile]:
        """A new raw image of random bytes, and the volume name it is imported under."""
        path = self.images / f"img-v{version}.raw"
        with open(path, "wb") as file:
            for _ in range(mib):
                file.write(os.urandom(MIB))
        found = sha256_of(path)
        name = self.big if version < 0 else self.image
        self.expected[image_volume(name, found.sha256)] = found
        return path, found

    # --- readings -----------------------------------------------------------------------

    def listing(self, conn: libvirt.virConnect) -> tuple[dict[Key, int], dict[Key, str]]:
        """Every volume of the soak's pools (key → capacity, -1 if it could not be read;
        key → its path), as libvirtd lists them (no refresh: reconcile creates volumes
        through libvirtd, and a refresh is refused while it builds one)."""
        capacities: dict[Key, int] = {}
        paths: dict[Key, str] = {}
        for name in (self.pool, self.tiny):
            for vol in conn.storagePoolLookupByName(name).listAllVolumes(0):
                key = (name, vol.name())
                try:
                    capacities[key] = int(vol.info()[1])
                    paths[key] = vol.path()
                except libvirt.libvirtError:
                    capacities[key] = -1
        return capacities, paths

    def host_path(self, path: str) -> Path:
        """A volume's path as seen from here."""
        inside = "/var/lib/libvirt/images/"
        return self.root / path[len(inside):] if path.startswith(inside) else Path(path)

    def hash_new_images(self, capacities: dict[Key, int], paths: dict[Key, str]) -> None:
        """Read back each complete image volume once (they are never written again)."""
        for (pool, name), path in paths.items():
            if (name.endswith(PARTIAL) or (pool, name + PARTIAL) in capacities
                    or name in self.hashed):
                continue
            if name.startswith((self.image + ".sha256-", self.big + ".sha256-")):
                self.hashed[name] = sha256_of(self.host_path(path))

    def marker(self, volume: str) -> bytes:
        return f"soak-marker {volume}".encode()

    def mark_and_check(self, capacities: dict[Key, int], paths: dict[Key, str],
                       data: set[str]) -> list[str]:
        """Write the marker into each complete data volume (`data`: their names) not yet
        marked; read it back from those marked before."""
        problems = []
        for (pool, name), path in paths.items():
            if name not in data or (pool, name + PARTIAL) in capacities:
                continue
            file = self.host_path(path)
            if name not in self.marked:
                with open(file, "r+b") as handle:
                    handle.seek(MARKER_AT)
                    handle.write(self.marker(name))
                self.marked.add(name)
                continue
            with open(file, "rb") as handle:
                handle.seek(MARKER_AT)
                found = handle.read(len(self.marker(name)))
            if found != self.marker(name):
                problems.append(f"data volume {pool}/{name}: its content was replaced (the "
                                f"marker at {MARKER_AT} reads {found!r})")
        return problems


def volume_disks(conn: libvirt.virConnect, names: list[str]) -> dict[str, set[Key]]:
    """The (pool, volume) disks of each existing domain of `names`: its saved definition
    and, when it runs, its live one."""
    disks: dict[str, set[Key]] = {}
    for name in names:
        try:
            dom = conn.lookupByName(name)
            xmls = [dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)]
            if dom.isActive():
                xmls.append(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        keys: set[Key] = set()
        for xml in xmls:
            for disk in ET.fromstring(xml).findall("devices/disk"):
                source = disk.find("source")
                if disk.get("type") == "volume" and source is not None:
                    keys.add((source.get("pool", ""), source.get("volume", "")))
        disks[name] = keys
    return disks


def _patiently(call: Callable[[], object], patience: float = 120.0) -> None:
    """`call()`, again while libvirtd still builds a volume of the pool."""
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


class StepTail:
    """The shared step log, read from where it ended when made: `find` the first start
    line of `action` on `name` that appears before a deadline."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def find(self, *, action: str, name: str, timeout: float) -> int | None:
        """The pid of that line, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        pending = b""
        while time.monotonic() < deadline:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                chunk = file.read()
            self.offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                entry = json.loads(line)
                if (entry.get("vm") == name and entry.get("action") == action
                        and entry.get("phase") == "start"):
                    return int(entry["pid"])
            time.sleep(0.01)
        return None
