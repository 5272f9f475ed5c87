"""Storage XML: pool and volume definitions to libvirt XML and back, volume names,
and the disks a domain's XML points at. Pure: no libvirt, no I/O.

Called by `controller.virt.storage` (the libvirt edge). Built and parsed with
ElementTree only, never by pasting strings, so no name or path can inject XML.
"""

from __future__ import annotations

import os.path
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..model import Backing, PoolInfo, VolumeInfo
from .storage_errors import InvalidName, InvalidRequest

__all__ = ["Backing", "PoolInfo", "VolumeInfo"]  # values of the model, used here

#: A volume name as the contract allows it: no '/', never '.' or '..', at most 128 characters.
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: The marker of an interrupted write: volume `NAME` is partial while `NAME + PARTIAL_SUFFIX`
#: exists in the same pool. Created before NAME is, deleted after NAME is complete (and
#: verified), so no moment exists at which an incomplete NAME is without its marker.
PARTIAL_SUFFIX = ".reconcile-partial"

#: The volume formats reconcile creates.
FORMATS = ("qcow2", "raw")

_UNITS = {
    "b": 1, "bytes": 1,
    "kb": 1000, "k": 1024, "kib": 1024,
    "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3,
    "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
    "pb": 1000**5, "p": 1024**5, "pib": 1024**5,
    "eb": 1000**6, "e": 1024**6, "eib": 1024**6,
}


@dataclass(frozen=True)
class DiskSource:
    """Where one disk of a domain reads from: a path, or a pool and volume."""

    target: str | None  # the disk's target dev (vda, hdc)
    path: str | None
    pool: str | None
    volume: str | None
    depth: int = 0  # 0: the disk's own source; 1, 2, ...: its backing chain


def check_volume_name(name: str, *, what: str = "volume name") -> str:
    """`name` if reconcile may create or touch a volume of that name, else InvalidName.

    Refused: anything with '/', '.' and '..', a leading '.', '-' or '_', more than 128
    characters, and the names of partial markers."""
    if not isinstance(name, str) or not VOLUME_NAME.fullmatch(name):
        raise InvalidName(f"invalid {what} {name!r}: must match {VOLUME_NAME.pattern} "
                          "(letters, digits, '_', '.', '-'; no '/')")
    if name.endswith(PARTIAL_SUFFIX):
        raise InvalidName(f"invalid {what} {name!r}: names ending in {PARTIAL_SUFFIX!r} "
                          "are reconcile's markers of interrupted writes")
    return name


def check_pool_path(path: str) -> str:
    """`path` if it is an absolute, normalised folder path, else InvalidName."""
    if (not isinstance(path, str) or not path.startswith("/") or path != os.path.normpath(path)
            or "\x00" in path or path == "/"):
        raise InvalidName(f"invalid pool path {path!r}: must be an absolute, normalised "
                          "folder path other than '/'")
    return path


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidRequest(f"invalid volume format {fmt!r}: must be one of {', '.join(FORMATS)}")
    return fmt


def whole_sectors(capacity: int) -> int:
    """`capacity` rounded up to whole 512-byte sectors: what QEMU makes of a qcow2 size and
    of a live block resize (seen: 33554433 bytes became 33554944), so reconcile asks for
    that in the first place and a rerun compares like with like."""
    return -(-capacity // 512) * 512


def marker_name(name: str) -> str:
    """The name of `name`'s partial marker."""
    return name + PARTIAL_SUFFIX


def dir_pool_xml(*, name: str, path: str) -> str:
    """A `dir` pool named `name` at `path` (as virt-install makes its default pool)."""
    root = ET.Element("pool", type="dir")
    ET.SubElement(root, "name").text = name
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(root, encoding="unicode")


def volume_xml(*, name: str, capacity: int, format: str, allocation: int | None = 0,
               backing: Backing | None = None, mode: int | None = None) -> str:
    """A volume definition. `allocation=0` keeps raw volumes sparse (libvirt's dir pools
    otherwise allocate all of a raw volume at once); qcow2 volumes get compat 1.1
    (libvirt 9.0 makes 0.10 without it). `mode` sets the file's permissions (root-owned)."""
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    if allocation is not None:
        ET.SubElement(root, "allocation", unit="bytes").text = str(allocation)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=format)
    if mode is not None:
        permissions = ET.SubElement(target, "permissions")
        ET.SubElement(permissions, "mode").text = f"{mode:04o}"
        ET.SubElement(permissions, "owner").text = "0"
        ET.SubElement(permissions, "group").text = "0"
    if format == "qcow2":
        ET.SubElement(target, "compat").text = "1.1"
    if backing is not None:
        store = ET.SubElement(root, "backingStore")
        ET.SubElement(store, "path").text = backing.path
        ET.SubElement(store, "format", type=backing.format)
    return ET.tostring(root, encoding="unicode")


def _bytes(element: ET.Element | None) -> int:
    if element is None or not (element.text or "").strip():
        return 0
    unit = (element.get("unit") or "bytes").lower()
    return int((element.text or "0").strip()) * _UNITS.get(unit, 1)


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def parse_pool(xml: str, *, active: bool, autostart: bool, persistent: bool) -> PoolInfo:
    root = ET.fromstring(xml)
    source = root.find("source")
    where: str | None = None
    if source is not None:
        host = source.find("host")
        directory = source.find("dir")
        device = source.find("device")
        source_name = _text(source.find("name"))
        if host is not None and directory is not None:
            where = f"{host.get('name')}:{directory.get('path')}"
        elif host is not None:
            where = f"{host.get('name')}:{source_name or ''}"
        elif device is not None:
            where = device.get("path")
        else:
            where = source_name
    return PoolInfo(
        name=_text(root.find("name")) or "",
        type=root.get("type") or "",
        path=_text(root.find("target/path")),
        source=where,
        active=active, autostart=autostart, persistent=persistent,
        capacity=_bytes(root.find("capacity")),
        allocation=_bytes(root.find("allocation")),
        available=_bytes(root.find("available")),
    )


def parse_volume(xml: str, *, pool: str, partial: bool) -> VolumeInfo:
    root = ET.fromstring(xml)
    fmt = root.find("target/format")
    backing: Backing | None = None
    store_path = _text(root.find("backingStore/path"))
    if store_path:
        store_format = root.find("backingStore/format")
        backing = Backing(path=store_path,
                          format=(store_format.get("type") or "") if store_format is not None
                          else "")
    mode_text = _text(root.find("target/permissions/mode"))
    path = _text(root.find("target/path")) or ""
    return VolumeInfo(
        name=_text(root.find("name")) or "",
        pool=pool,
        path=path,
        key=_text(root.find("key")) or path,
        capacity=_bytes(root.find("capacity")),
        allocation=_bytes(root.find("allocation")),
        format=fmt.get("type") if fmt is not None else None,
        backing=backing,
        mode=int(mode_text, 8) if mode_text else None,
        partial=partial,
    )


def disk_sources(domain_xml: str) -> list[DiskSource]:
    """Every disk (any device: disk, cdrom, floppy, lun) of a domain and where it reads
    from, including each disk's backing chain as libvirt reports it in the live XML."""
    root = ET.fromstring(domain_xml)
    found: list[DiskSource] = []
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        node: ET.Element | None = disk
        depth = 0
        while node is not None:
            source = node.find("source")
            if source is not None:
                path = source.get("file") or source.get("dev")
                pool, volume = source.get("pool"), source.get("volume")
                if path or (pool and volume):
                    found.append(DiskSource(target=dev, path=path, pool=pool, volume=volume,
                                            depth=depth))
            node = node.find("backingStore")
            depth += 1
    return found


def same_path(one: str, other: str) -> bool:
    """Two paths on the host libvirt runs on name the same file (textually; symlinks
    cannot be resolved from here on a remote host)."""
    return os.path.normpath(one) == os.path.normpath(other)


def differences(existing: VolumeInfo, *, format: str, capacity: int | None,
                backing: Backing | None) -> tuple[str, ...]:
    """How an existing volume differs from the one a caller wanted, one note each
    ("format raw, wanted qcow2"). Empty when it is the one wanted. A larger existing
    capacity than wanted is not a difference (disks never shrink)."""
    notes: list[str] = []
    if existing.format != format:
        notes.append(f"format {existing.format}, wanted {format}")
    if capacity is not None and existing.capacity < capacity:
        notes.append(f"capacity {existing.capacity} bytes, wanted {capacity}")
    have = existing.backing
    if backing is None and have is not None:
        notes.append(f"backed by {have.path}, wanted no backing file")
    elif backing is not None and (have is None or not same_path(have.path, backing.path)):
        notes.append(f"backed by {have.path if have else 'nothing'}, wanted {backing.path}")
    return tuple(notes)


@dataclass(frozen=True)
class Ensured:
    """What a create/copy/upload/transfer left: the volume, whether this call wrote it
    (False: it existed, complete, and was left as it is), how the existing one differs
    from what was asked, and the sha256 of what was written when it was streamed."""

    volume: VolumeInfo
    created: bool
    notes: tuple[str, ...] = ()
    sha256: str | None = None
