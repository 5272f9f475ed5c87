"""The seed's ISO 9660 image: the deterministic writer and the reader, with pycdlib.

Pure: bytes in, bytes out; no files, no libvirt. Called by controller.cloudinit.seed
(`iso_bytes`) and by the code that checks a seed volume read back from libvirt
(`read_seed`, `seed_content_sha256`).

The volume is labelled ``cidata`` and holds ``user-data``, ``meta-data`` and, when given,
``network-config``, with Joliet and Rock Ridge so that Linux sees exactly these lowercase
names, as ``cloud-localds`` makes it. The same files give the same bytes on every run and
machine: every timestamp in the ISO is pinned to ``SEED_EPOCH``, whatever the clock or time
zone.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from .content import META_DATA, NETWORK_CONFIG, USER_DATA, content_sha256
from .errors import SeedError

if TYPE_CHECKING:  # imported when a seed is written or read: ~30 ms that no pass without
    import pycdlib  # cloudInit needs (the manifest loader imports this package)

__all__ = ["SEED_EPOCH", "VOLUME_LABEL", "iso_bytes", "read_seed", "seed_content_sha256"]

VOLUME_LABEL: Final = "cidata"

# Every date in the ISO: 2000-01-01T00:00:00Z (a plain date that no reader
# takes for "unset", unlike all zeros).
SEED_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

# The ISO 9660 level-1 names beside the Rock Ridge and Joliet ones: the names
# genisoimage gives these files when cloud-localds runs it.
_ISO_NAMES: Final = {
    USER_DATA: "/USER_DAT.;1",
    META_DATA: "/META_DAT.;1",
    NETWORK_CONFIG: "/NETWORK_.;1",
}
_APPLICATION_ID: Final = "RECONCILE NOCLOUD SEED"  # not pycdlib's default, which may change
_FILE_MODE: Final = 0o100444  # Rock Ridge: a regular file, read-only for all


def read_seed(data: bytes) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names; raise SeedError if it is none."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
        try:
            if not iso.has_rock_ridge():
                raise SeedError("not a seed: the ISO has no Rock Ridge names")
            files: dict[str, bytes] = {}
            for child in iso.list_children(rr_path="/"):
                if child.is_dot() or child.is_dotdot() or not child.is_file():
                    continue
                name = child.rock_ridge.name().decode("utf-8")
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
                files[name] = out.getvalue()
            return files
        finally:
            iso.close()
    except (PyCdlibException, UnicodeDecodeError, struct.error) as exc:
        raise SeedError(f"not a seed: the ISO cannot be read ({type(exc).__name__})") from None


def seed_content_sha256(data: bytes) -> str | None:
    """content_sha256 of the files in an ISO (a seed volume read back), or None
    when the bytes are not a readable seed (e.g. an interrupted upload)."""
    try:
        files = read_seed(data)
    except SeedError:
        return None
    if USER_DATA not in files or META_DATA not in files:
        return None
    return content_sha256(files)


def iso_bytes(files: Mapping[str, bytes]) -> bytes:
    """The seed ISO of these files (by name), every date pinned to SEED_EPOCH."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=1,
        sys_ident="LINUX",
        vol_ident=VOLUME_LABEL,
        app_ident_str=_APPLICATION_ID,
        joliet=3,
        rock_ridge="1.09",
    )
    try:
        for name in (USER_DATA, META_DATA, NETWORK_CONFIG):
            if name not in files:
                continue
            content = files[name]
            iso.add_fp(
                io.BytesIO(content),
                len(content),
                iso_path=_ISO_NAMES[name],
                rr_name=name,
                joliet_path=f"/{name}",
                file_mode=_FILE_MODE,
            )
        _pin_dates(iso)
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    return _pin_modification_dates(out.getvalue())


def _pin_dates(iso: pycdlib.PyCdlib) -> None:
    """Set every date pycdlib keeps for this ISO to SEED_EPOCH: the volume
    descriptors' dates, every directory record's, and Rock Ridge TF entries."""
    from pycdlib import dates as pycdlib_dates

    for obj in _pycdlib_objects(iso):
        if isinstance(obj, pycdlib_dates.DirectoryRecordDate):
            obj.years_since_1900 = SEED_EPOCH.year - 1900
            obj.month, obj.day_of_month = SEED_EPOCH.month, SEED_EPOCH.day
            obj.hour, obj.minute, obj.second = SEED_EPOCH.hour, SEED_EPOCH.minute, SEED_EPOCH.second
            obj.gmtoffset = 0
        elif isinstance(obj, pycdlib_dates.VolumeDescriptorDate):
            if obj.date_str == pycdlib_dates.VolumeDescriptorDate.EMPTY_STRING:
                continue  # "not specified" (the expiration date) stays so
            obj.year, obj.month, obj.dayofmonth = SEED_EPOCH.year, SEED_EPOCH.month, SEED_EPOCH.day
            obj.hour, obj.minute, obj.second = SEED_EPOCH.hour, SEED_EPOCH.minute, SEED_EPOCH.second
            obj.hundredthsofsecond = 0
            obj.gmtoffset = 0
            obj.date_str = _VD_DATE


def _pycdlib_objects(root: object) -> Iterator[object]:
    """Every pycdlib object reachable from root (attributes, lists, dicts)."""
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
            continue
        if not type(obj).__module__.startswith("pycdlib"):
            continue
        yield obj
        names: set[str] = set(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            names.update((slots,) if isinstance(slots, str) else slots)
        for attr in names:
            value = getattr(obj, attr, None)
            if value is not None and not isinstance(value, str | bytes | int | float | bool):
                stack.append(value)


# ECMA-119 8.4.26.1: 16 digits and an offset from GMT in 15-minute units.
_VD_DATE: Final = SEED_EPOCH.strftime("%Y%m%d%H%M%S").encode() + b"00" + b"\x00"
_SECTOR: Final = 2048
_FIRST_DESCRIPTOR: Final = 16
_MODIFICATION_DATE: Final = slice(830, 847)  # ECMA-119 8.4.27, as a 0-based slice


def _pin_modification_dates(data: bytes) -> bytes:
    """Pin the volume modification date that pycdlib stamps with the clock as
    it writes each primary and supplementary (Joliet) volume descriptor."""
    buf = bytearray(data)
    sector = _FIRST_DESCRIPTOR
    while (sector + 1) * _SECTOR <= len(buf):
        base = sector * _SECTOR
        kind, ident = buf[base], bytes(buf[base + 1:base + 6])
        if ident != b"CD001" or kind == 255:  # 255: the set terminator
            break
        if kind in (1, 2):
            start, stop = base + _MODIFICATION_DATE.start, base + _MODIFICATION_DATE.stop
            buf[start:stop] = _VD_DATE
        sector += 1
    return bytes(buf)
