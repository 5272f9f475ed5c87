"""Memory sizes: manifest values to KiB, KiB to the words people read.

Used by the manifest loader (parsing) and by the planner and renderers
(formatting). Units follow libvirt: K/KiB, M/MiB, G/GiB, T/TiB are powers of
1024, KB/MB/GB/TB powers of 1000; the result is rounded up to whole KiB as
libvirt does. A bare integer means MiB.
"""

from __future__ import annotations

import math
import re

_FACTORS_BYTES = {
    "K": 1024, "KiB": 1024,
    "M": 1024**2, "MiB": 1024**2,
    "G": 1024**3, "GiB": 1024**3,
    "T": 1024**4, "TiB": 1024**4,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
}
_SIZE = re.compile(r"^\s*([0-9]+)\s*([A-Za-z]*)\s*$")


def parse_memory_kib(value: int | str) -> int:
    """Return a manifest memory size in KiB; raise ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")  # noqa: TRY004 (callers catch ValueError)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"memory size must be positive: {value}")
        return value * 1024
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a memory size: {value!r}")
    number, unit = int(match.group(1)), match.group(2)
    if not unit:
        factor = 1024**2
    elif unit in _FACTORS_BYTES:
        factor = _FACTORS_BYTES[unit]
    else:
        raise ValueError(f"unknown memory unit {unit!r} in {value!r}")
    if number < 1:
        raise ValueError(f"memory size must be positive: {value!r}")
    return -(-number * factor // 1024)  # integer ceiling: no float rounding on large sizes


def round_up_mib(kib: int) -> int:
    """KiB rounded up to whole MiB, as a running QEMU domain reports memory."""
    return math.ceil(kib / 1024) * 1024


def format_kib(kib: int) -> str:
    """Render KiB in the largest binary unit that divides it: '1 GiB', '1536 MiB'."""
    for unit, factor in (("TiB", 1024**3), ("GiB", 1024**2), ("MiB", 1024)):
        if kib and kib % factor == 0:
            return f"{kib // factor} {unit}"
    return f"{kib} KiB"
