"""NoCloud seeds for cloud-init: the pure part of CONTRACT section 7.

A seed is an ISO 9660 volume labelled ``cidata`` that holds ``user-data``,
``meta-data`` and, when given, ``network-config``, with Joliet and Rock Ridge
so that Linux sees exactly these lowercase names, as ``cloud-localds`` makes
it. This module turns a VM's ``cloudInit`` values into those bytes; it does no
I/O (no libvirt, no files, no network). The storage code uploads the bytes as
a volume through libvirt, so no ISO tool is needed on any host.

Who calls it: the manifest loader (``check_user_data``, ``check_meta_data``,
``check_network_config`` for one-line errors and warnings), and the code that
plans and uploads seed volumes (``meta_data_for``, ``build_seed``,
``seed_content_sha256``).

Seeds are deterministic: the same inputs give the same bytes on every run and
machine (every timestamp in the ISO is pinned to ``SEED_EPOCH``, whatever the
clock or time zone). Each seed carries two hashes:

- ``content_sha256`` names the seed: a sha256 over a canonical form of the
  three files (names, lengths, bytes), which is what a guest sees. It does not
  depend on how the ISO is laid out, so a pycdlib upgrade, or two controllers
  with different pycdlib versions, never shows a seed change that is not one
  (no spurious next-boot change, no two controllers replacing each other's
  seed). ``short_id`` (its first 12 hex) is meant for volume names; the full
  hash is what a plan shows instead of the user data.
- ``sha256`` is the hash of the ISO bytes themselves: what to compare a volume
  with right after uploading it. To check an existing volume whatever built
  it, read it back with ``seed_content_sha256`` and compare with
  ``content_sha256``.

User data may hold secrets: nothing here logs it, no message or warning quotes
it (warnings name a line and column), and ``Seed`` leaves ``data`` out of its
repr.

    ReconcileError
     └── SeedError            a seed cannot be built from these values
          ├── InvalidSeedInput  metaData not a mapping, bad networkConfig version, ...
          └── SeedTooLarge      the files add up to more than MAX_SEED_BYTES
"""

from __future__ import annotations

import copy
import hashlib
import io
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import pycdlib
import yaml
from pycdlib import dates as pycdlib_dates
from pycdlib.pycdlibexception import PyCdlibException

from controller.errors import ReconcileError

VOLUME_LABEL: Final = "cidata"
USER_DATA: Final = "user-data"
META_DATA: Final = "meta-data"
NETWORK_CONFIG: Final = "network-config"

# A seed carries configuration, not payloads: 16 MiB is 1000 times a typical
# cloud-config, and a 16 MiB seed builds in about 0.2 s (checking that much
# cloud-config YAML takes seconds, once per content: see _check_cloud_config).
# Compared with the three files' sizes added up, before anything is built.
MAX_SEED_BYTES: Final = 16 * 1024 * 1024

# Every date in the ISO: 2000-01-01T00:00:00Z (a plain date that no reader
# takes for "unset", unlike all zeros).
SEED_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)

SHORT_ID_LENGTH: Final = 12

# The ISO 9660 level-1 names beside the Rock Ridge and Joliet ones: the names
# genisoimage gives these files when cloud-localds runs it.
_ISO_NAMES: Final = {
    USER_DATA: "/USER_DAT.;1",
    META_DATA: "/META_DAT.;1",
    NETWORK_CONFIG: "/NETWORK_.;1",
}
_APPLICATION_ID: Final = "RECONCILE NOCLOUD SEED"  # not pycdlib's default, which may change
_FILE_MODE: Final = 0o100444  # Rock Ridge: a regular file, read-only for all

# cloud-init's own rule (cloudinit/handlers): the start of the user data,
# lowercased and without leading whitespace, names its format.
_CLOUD_CONFIG: Final = "#cloud-config"
_KNOWN_STARTS: Final = (
    "#cloud-config-archive",
    "#cloud-config-jsonp",
    "#cloud-config",
    "#cloud-boothook",
    "#include-once",
    "#include",
    "#part-handler",
    "#upstart-job",
    "## template: jinja",
    "#!",
)


# cloud-init reads user data with PyYAML's pure-Python safe loader; libyaml's
# takes the same documents but for rare edge cases, and was 3.5 times faster
# here (12 MiB of cloud-config: 12 s instead of 43 s on a busy 2-core machine).
_YAML_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CHECKED: dict[bytes, tuple[str, ...]] = {}  # sha256 of a #cloud-config -> its warnings
_CHECKED_MAX: Final = 256
_CHECKED_LOCK = threading.Lock()


class SeedError(ReconcileError):
    """A seed cannot be built from these values; the message is one line."""


class InvalidSeedInput(SeedError):
    """metaData or networkConfig is not of a form cloud-init reads."""


class SeedTooLarge(SeedError):
    """The seed's files add up to more than MAX_SEED_BYTES."""

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(
            f"cloudInit: the seed's files add up to {_format_size(size)}, "
            f"more than the limit of {_format_size(limit)}"
        )
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class Seed:
    """A built NoCloud seed: the ISO bytes, its two hashes, and the warnings."""

    data: bytes = field(repr=False)  # holds the user data: never in a repr
    sha256: str  # of `data`, the ISO bytes
    content_sha256: str  # of the files' canonical form: names the seed
    warnings: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The first 12 hex of content_sha256, for volume names."""
        return self.content_sha256[:SHORT_ID_LENGTH]


def meta_data_for(*, name: str, uuid: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The meta-data of a VM: instance-id (its domain UUID) and local-hostname
    (its name), with the manifest's metaData merged over them."""
    merged: dict[str, Any] = {"instance-id": uuid, "local-hostname": name}
    merged.update(copy.deepcopy(dict(check_meta_data(overrides))))
    return merged


def check_meta_data(value: object) -> Mapping[str, Any]:
    """Return metaData if cloud-init can read it; raise InvalidSeedInput if not."""
    if not isinstance(value, Mapping):
        raise InvalidSeedInput(f"cloudInit.metaData must be a mapping, not {_kind(value)}")
    _check_keys(value, where="cloudInit.metaData")
    return value


def check_network_config(value: object) -> Mapping[str, Any]:
    """Return networkConfig if its version is 1 or 2; raise InvalidSeedInput if not.

    The form with a top-level `network:` key, which cloud-init also reads, is
    checked inside that key.
    """
    if not isinstance(value, Mapping):
        raise InvalidSeedInput(f"cloudInit.networkConfig must be a mapping, not {_kind(value)}")
    where = "cloudInit.networkConfig"
    inner: Mapping[Any, Any] = value
    if set(value) == {"network"}:
        where, wrapped = f"{where}.network", value["network"]
        if not isinstance(wrapped, Mapping):
            raise InvalidSeedInput(f"{where} must be a mapping, not {_kind(wrapped)}")
        inner = wrapped
    version = inner.get("version")
    if isinstance(version, bool) or version not in (1, 2):
        shown = "missing" if version is None else f"{version!r}"
        raise InvalidSeedInput(f"{where}.version must be 1 or 2, not {shown}")
    _check_keys(value, where="cloudInit.networkConfig")
    return value


def check_user_data(text: str) -> list[str]:
    """Warnings about user data that cloud-init would ignore; never its content.

    User data that begins with #cloud-config but is not valid YAML, or is not
    a mapping, is ignored by cloud-init; so is text in no format cloud-init
    knows. These are warnings: the seed is still built, as cloud-init's rule is.
    """
    start = text[:4096].lower()
    head = start.lstrip()
    if not head:
        return []
    kind = next((prefix for prefix in _KNOWN_STARTS if head.startswith(prefix)), None)
    if kind is None:
        if "mime-version:" in start:
            return []
        return [(
            "cloudInit.userData is in no format cloud-init knows (it does not begin with "
            "#cloud-config, #! or another cloud-init header, and is not MIME multipart); "
            "cloud-init will ignore it"
        )]
    if kind != _CLOUD_CONFIG:
        return []
    return list(_check_cloud_config(text))


def _check_cloud_config(text: str) -> tuple[str, ...]:
    """The YAML check of #cloud-config, remembered by the text's sha256: parsing
    megabytes of YAML takes seconds, and every pass checks the same text again."""
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    with _CHECKED_LOCK:
        known = _CHECKED.get(key)
    if known is not None:
        return known
    found = tuple(_parse_cloud_config(text))
    with _CHECKED_LOCK:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def _parse_cloud_config(text: str) -> list[str]:
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        return [(
            "cloudInit.userData begins with #cloud-config but is not valid YAML"
            f"{_yaml_where(exc)}; cloud-init will ignore it"
        )]
    if document is not None and not isinstance(document, dict):
        return [(
            f"cloudInit.userData begins with #cloud-config but is {_kind(document)}, "
            "not a mapping; cloud-init will ignore it"
        )]
    return []


def build_seed(
    *,
    user_data: str,
    meta_data: Mapping[str, Any],
    network_config: Mapping[str, Any] | None,
) -> Seed:
    """Build the NoCloud seed ISO for these values.

    Raise InvalidSeedInput for metaData or networkConfig that cloud-init cannot
    read, and SeedTooLarge past MAX_SEED_BYTES; warnings about the user data
    (see check_user_data) are in the result.
    """
    files = seed_files(user_data=user_data, meta_data=meta_data, network_config=network_config)
    size = sum(len(content) for content in files.values())
    if size > MAX_SEED_BYTES:
        raise SeedTooLarge(size=size, limit=MAX_SEED_BYTES)
    data = _iso_bytes(files)
    return Seed(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_sha256=content_sha256(files),
        warnings=tuple(check_user_data(user_data)),
    )


def seed_files(
    *,
    user_data: str,
    meta_data: Mapping[str, Any],
    network_config: Mapping[str, Any] | None,
) -> dict[str, bytes]:
    """The files of a seed, by name, as they are written into the ISO."""
    if not isinstance(user_data, str):
        raise InvalidSeedInput(f"cloudInit.userData must be a string, not {_kind(user_data)}")
    try:
        user_bytes = user_data.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSeedInput("cloudInit.userData cannot be written as UTF-8") from None
    files = {
        USER_DATA: user_bytes,
        META_DATA: _stable_yaml(check_meta_data(meta_data), where="cloudInit.metaData"),
    }
    if network_config is not None:
        files[NETWORK_CONFIG] = _stable_yaml(
            check_network_config(network_config), where="cloudInit.networkConfig"
        )
    return files


def content_sha256(files: Mapping[str, bytes]) -> str:
    """sha256 of a canonical form of a seed's files: each name, length and bytes."""
    digest = hashlib.sha256(b"reconcile-nocloud-seed/1\n")
    for name in sorted(files):
        content = files[name]
        digest.update(f"{name}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


def read_seed(data: bytes) -> dict[str, bytes]:
    """The files of a seed ISO by their Rock Ridge names; raise SeedError if it is none."""
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


# --- the ISO ------------------------------------------------------------------


def _iso_bytes(files: Mapping[str, bytes]) -> bytes:
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


# --- helpers ------------------------------------------------------------------


def _stable_yaml(value: Mapping[str, Any], *, where: str) -> bytes:
    try:
        text = yaml.safe_dump(
            _plain(value), sort_keys=True, default_flow_style=False, allow_unicode=True
        )
    except yaml.YAMLError:
        raise InvalidSeedInput(f"{where} holds a value that cannot be written as YAML") from None
    return text.encode("utf-8")


def _plain(value: object) -> object:
    """Mappings as dicts, so that safe_dump takes any Mapping."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _check_keys(value: object, *, where: str) -> None:
    """Every mapping key must be a string: YAML keys of cloud-init's files are,
    and sorted output needs keys of one type."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSeedInput(f"{where} has a key that is not a string: {key!r}")
            _check_keys(item, where=f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, where=f"{where}[{index}]")


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    return f"a {type(value).__name__}"


def _format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB ({size} bytes)"
    return f"{size} bytes"
