"""Memory and vCPUs in domain XML: reading sizes in libvirt's units, writing them, and
the NUMA rule (with `<cpu><numa><cell memory=...>` libvirt derives `<memory>` from the
cells, so a memory change scales them: `scale_cells`)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from .xmlutil import child

UNIT_KIB = {
    "b": 1 / 1024, "bytes": 1 / 1024,
    "KB": 1000 / 1024, "k": 1, "K": 1, "KiB": 1,
    "MB": 1000**2 / 1024, "M": 1024, "MiB": 1024,
    "GB": 1000**3 / 1024, "G": 1024**2, "GiB": 1024**2,
    "TB": 1000**4 / 1024, "T": 1024**3, "TiB": 1024**3,
}


def set_memory(element: ET.Element, kib: int) -> None:
    """Write `kib` in KiB, keeping the element's other attributes (dumpCore, ...)."""
    element.set("unit", "KiB")
    element.text = str(kib)


def memory_kib(element: ET.Element | None) -> int:
    text = (element.text or "").strip() if element is not None else ""
    if element is None or not text:
        return 0
    factor = UNIT_KIB.get(element.get("unit", "KiB"), 1)
    return math.ceil(int(text) * factor)


def _cell_kib(cell: ET.Element) -> int:
    factor = UNIT_KIB.get(cell.get("unit", "KiB"), 1)
    return math.ceil(int((cell.get("memory") or "0").strip()) * factor)


def apply_memory(root: ET.Element, kib: int) -> None:
    """Set `<memory>`; with NUMA cells, scale the cells so libvirt derives `kib` from them."""
    memory = child(root, "memory")
    have = memory_kib(memory)
    if memory.text is not None and have == kib:
        return
    cells = [cell for cell in root.findall("cpu/numa/cell") if cell.get("memory")]
    if cells and memory.text is not None:
        sizes = [_cell_kib(cell) for cell in cells]
        hotplugged = max(0, have - sum(sizes))  # memory devices (DIMMs) count on top of the cells
        scaled = scale_cells(sizes, kib - hotplugged, _page_sizes_kib(root))
        if scaled is not None:
            for cell, size in zip(cells, scaled, strict=True):
                if size != _cell_kib(cell):
                    cell.set("unit", "KiB")
                    cell.set("memory", str(size))
    set_memory(memory, kib)


def _page_sizes_kib(root: ET.Element) -> list[int]:
    sizes = []
    for page in root.findall("memoryBacking/hugepages/page"):
        try:
            factor = UNIT_KIB.get(page.get("unit", "KiB"), 1)
            sizes.append(math.ceil(int(page.get("size") or "0") * factor))
        except ValueError:
            continue
    return [size for size in sizes if size > 0]


def scale_cells(sizes: Sequence[int], total: int,
                page_sizes: Sequence[int] = ()) -> list[int] | None:
    """NUMA cell sizes (KiB) scaled proportionally to sum to exactly `total`, or None.

    The cells keep the largest alignment they all had (a hugepage size of the
    domain, else 1 MiB, else 1 KiB) when `total` is a multiple of it; the units left
    over by rounding down go to the cells with the largest remainders, first
    cell first on ties. None when `total` cannot give every non-empty cell at
    least one unit (libvirt would refuse or keep the old memory).
    """
    old_total = sum(sizes)
    if old_total <= 0 or total <= 0:
        return None
    unit = 1
    for candidate in sorted({*page_sizes, 1024}, reverse=True):
        if total % candidate == 0 and all(size % candidate == 0 for size in sizes):
            unit = candidate
            break
    units = total // unit
    shares = [size * units / old_total for size in sizes]
    scaled = [int(share) for share in shares]
    left = units - sum(scaled)
    order = sorted(range(len(sizes)), key=lambda i: (-(shares[i] - scaled[i]), i))
    for index in order[:left]:
        scaled[index] += 1
    if any(size > 0 and new == 0 for size, new in zip(sizes, scaled, strict=True)):
        return None
    return [new * unit for new in scaled]


def apply_vcpus(root: ET.Element, count: int) -> None:
    """Set the maximum vCPU count, keeping placement, cpuset and the online count.

    `current` (vCPUs online at boot) stays while it is below the new maximum; the
    per-vCPU `<vcpus>` list, which must name every vCPU, goes when the count changes,
    and a CPU topology whose sockets can absorb the change follows it.
    """
    vcpu = child(root, "vcpu")
    try:
        have = int((vcpu.text or "").strip()) if vcpu.text is not None else None
    except ValueError:
        have = None
    if have == count:
        return
    vcpu.text = str(count)
    current = vcpu.get("current")
    if current is not None and (not current.strip().isdigit() or int(current) >= count):
        vcpu.attrib.pop("current")
    listed = root.find("vcpus")
    if listed is not None:
        root.remove(listed)
    topology = root.find("cpu/topology")
    if topology is not None:
        per_socket = 1
        for attribute in ("dies", "clusters", "cores", "threads"):
            value = topology.get(attribute)
            per_socket *= int(value) if value and value.isdigit() else 1
        if count % per_socket == 0:
            topology.set("sockets", str(count // per_socket))
