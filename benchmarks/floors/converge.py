"""Floor of a converge pass: only the libvirt calls that create or restart the guests.

    python benchmarks/floors/converge.py URI cold   WORKERS CONNECTIONS MEMORY_MIB TYPE NAME...
    python benchmarks/floors/converge.py URI change WORKERS CONNECTIONS MEMORY_MIB TYPE NAME...

`cold`: defineXML + create per guest. `change`: lookupByName, destroy, defineXML (with the
domain's UUID, as a redefinition needs) + create per guest. A thread pool of WORKERS runs
the guests in parallel, like `reconcile --workers WORKERS`, its threads spread over
CONNECTIONS connections (reconcile opens one per 4 workers: libvirtd stops reading a
connection with 5 calls in flight). The domain is the same tiny guest that reconcile
defines for the benchmark's manifests. Run as its own process with the same interpreter
as `reconcile`.
"""

from __future__ import annotations

import itertools
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import libvirt

T = TypeVar("T")


def domain_xml(name: str, *, memory_mib: int, virt_type: str, uuid: str | None = None) -> str:
    root = ET.Element("domain", type=virt_type)
    ET.SubElement(root, "name").text = name
    if uuid:
        ET.SubElement(root, "uuid").text = uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(memory_mib * 1024)
    ET.SubElement(root, "currentMemory", unit="KiB").text = str(memory_mib * 1024)
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    devices = ET.SubElement(root, "devices")
    ET.SubElement(devices, "console", type="pty")
    return ET.tostring(root, encoding="unicode")


def in_pool(uri: str, *, workers: int, connections: int,
            job: Callable[[libvirt.virConnect, T], None], items: Sequence[T]) -> None:
    """`job(conn, item)` for every item, in a pool of `workers` threads, each thread
    keeping one of `connections` connections (also used by floors/storage.py)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conns = [libvirt.open(uri) for _ in range(connections)]
    turn = itertools.cycle(conns)
    mine = threading.local()

    def run(item: T) -> None:
        if not hasattr(mine, "conn"):  # each thread keeps one connection
            mine.conn = next(turn)
        job(mine.conn, item)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, items))
    for each in conns:
        each.close()


def main(argv: list[str]) -> int:
    uri, mode, workers, connections, memory_mib, virt_type, *names = argv

    def cold(conn: libvirt.virConnect, name: str) -> None:
        xml = domain_xml(name, memory_mib=int(memory_mib), virt_type=virt_type)
        conn.defineXML(xml).create()

    def change(conn: libvirt.virConnect, name: str) -> None:
        dom = conn.lookupByName(name)
        uuid = dom.UUIDString()  # kept in the handle: no call to libvirtd
        dom.destroy()
        xml = domain_xml(name, memory_mib=int(memory_mib), virt_type=virt_type, uuid=uuid)
        conn.defineXML(xml).create()

    job = {"cold": cold, "change": change}[mode]
    in_pool(uri, workers=int(workers), connections=int(connections), job=job, items=names)
    print(len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
