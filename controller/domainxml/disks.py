"""Disks in domain XML: which a manifest describes (modelled) and which it keeps, reading
them, and editing only what differs.

A disk is *modelled* when it is a `file` disk of device `disk` with an absolute
source, or a `volume` disk (a pool and a volume), on the virtio, sata, scsi or ide
bus, in qcow2 or raw format, on a whole-disk target (`vda`, `sdb`, `hdc`, ...),
whose image no other disk of the domain uses. Every other disk is *kept*: never edited, and named in
`DomainConfig.kept` so `export` can say so. cdroms and floppies are left alone.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..model import Disk
from .xmlutil import child

#: What a manifest disk can be (schemas/virtualmachine.schema.json says the same;
#: tests/unit/test_domainxml_fidelity.py checks that the two agree).
DISK_BUSES = ("virtio", "sata", "scsi", "ide")
DISK_FORMATS = ("qcow2", "raw")
DISK_TARGET = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,2}\Z")
#: Buses on which QEMU has no read-only disks (libvirt refuses them).
NO_READONLY_BUSES = ("sata", "ide")


def read_disks(elements: list[ET.Element]) -> tuple[list[tuple[ET.Element, Disk]], list[str]]:
    """The modelled disks (with their elements) in order, and a note for each kept disk."""
    candidates: list[tuple[ET.Element, Disk]] = []
    kept: list[str] = []
    for element in elements:
        verdict = _disk_verdict(element)
        if isinstance(verdict, Disk):
            candidates.append((element, verdict))
        elif verdict:
            kept.append(verdict)
    uses: dict[str, int] = {}
    for _, disk in candidates:
        uses[disk.where] = uses.get(disk.where, 0) + 1
    modelled = []
    for element, disk in candidates:
        if uses[disk.where] > 1:
            kept.append(f"disk {disk.target} ({disk.where}): its image is used by "
                        f"{uses[disk.where]} disks of this domain")
        else:
            modelled.append((element, disk))
    return modelled, kept


def _disk_verdict(element: ET.Element) -> Disk | str:
    """The Disk a manifest describes for `element`, or why it is kept ("" for a cdrom)."""
    device = element.get("device", "disk")
    if device in ("cdrom", "floppy"):
        return ""
    disk = _parse_disk(element)
    kind = element.get("type", "file")
    where = f"disk {disk.target or '(no target)'}"
    if device != "disk":
        return f"{where}: a {device} device"
    if kind == "volume":
        if not (disk.volume and disk.pool):
            return f"{where}: a volume disk without a pool and a volume"
    elif kind != "file":
        source = element.find("source")
        detail = ""
        if source is not None:
            detail = (source.get("dev") or source.get("name") or source.get("path")
                      or source.get("volume") or source.get("dir") or "")
        return f"{where}: a {kind} disk" + (f" ({detail})" if detail else "")
    elif not disk.source.startswith("/"):
        return f"{where}: no absolute image path"
    if disk.bus not in DISK_BUSES:
        return f"{where}: on the {disk.bus or 'unknown'} bus"
    if disk.format not in DISK_FORMATS:
        return f"{where}: in {disk.format} format"
    if not DISK_TARGET.match(disk.target):
        return f"{where}: not a whole-disk target name"
    if disk.readonly and disk.bus in NO_READONLY_BUSES:
        return f"{where}: read-only on the {disk.bus} bus"
    return disk


def _parse_disk(element: ET.Element) -> Disk:
    source = element.find("source")
    target = element.find("target")
    driver = element.find("driver")
    path = ""
    volume = pool = None
    if source is not None and element.get("type") == "volume":
        volume, pool = source.get("volume"), source.get("pool")
    elif source is not None:
        path = source.get("file") or source.get("dev") or source.get("name") or ""
    return Disk(
        source=path,
        volume=volume,
        pool=pool,
        target=target.get("dev", "") if target is not None else "",
        format=(driver.get("type") if driver is not None else None) or "raw",
        bus=(target.get("bus") if target is not None else None) or "",
        readonly=element.find("readonly") is not None,
    )


def apply_disks(devices: ET.Element, disks: tuple[Disk, ...]) -> None:
    """Make the modelled disks those of `disks`, by target; kept disks stay as they are.

    A kept disk whose image the manifest names (an image shared by two disks) is
    the manifest's to place: it is edited when it sits on a wanted target, else removed.
    """
    elements = devices.findall("disk")
    modelled, _ = read_disks(elements)
    wanted = {disk.target for disk in disks}
    wanted_sources = {disk.where for disk in disks}
    existing: dict[str, tuple[ET.Element, Disk | None]] = {
        disk.target: (element, disk) for element, disk in modelled}
    modelled_elements = {id(element) for element, _ in modelled}
    for element in elements:
        if id(element) in modelled_elements:
            continue
        verdict = _disk_verdict(element)
        if not isinstance(verdict, Disk) or verdict.where not in wanted_sources:
            continue
        if verdict.target in wanted and verdict.target not in existing:
            existing[verdict.target] = (element, None)  # a shared image: the manifest's now
        else:
            devices.remove(element)
    for target_dev, (element, _) in list(existing.items()):
        if target_dev not in wanted:
            devices.remove(element)
            del existing[target_dev]
    _move_other_devices_off(devices, wanted, {id(element) for element, _ in existing.values()})
    for disk in disks:
        if disk.target in existing:
            element, have = existing[disk.target]
        else:
            kind = "volume" if disk.volume else "file"
            element, have = ET.SubElement(devices, "disk", type=kind, device="disk"), None
        _edit_disk(element, disk, have)


def _move_other_devices_off(devices: ET.Element, wanted: set[str], mine: set[int]) -> None:
    """A kept cdrom, floppy or disk on a target the manifest gives a disk moves to a free one.

    Default targets are chosen without seeing the domain (sda for the first SATA
    disk), and libvirt refuses two devices on one target.
    """
    taken = {target.get("dev") for target in devices.findall("disk/target")} | wanted
    for element in devices.findall("disk"):
        target = element.find("target")
        dev = target.get("dev") if target is not None else None
        if id(element) in mine or target is None or dev not in wanted:
            continue
        match = re.match(r"xvd|[a-z]d", dev or "")
        prefix = match.group(0) if match else "sd"
        index = 0
        while disk_target_name(prefix, index) in taken:
            index += 1
        target.set("dev", disk_target_name(prefix, index))
        taken.add(disk_target_name(prefix, index))
        address = element.find("address")
        if address is not None:
            element.remove(address)


def disk_target_name(prefix: str, index: int) -> str:
    """('vd', 0) → 'vda', 25 → 'vdz', 26 → 'vdaa', as libvirt names disk targets."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("a") + remainder) + letters
    return prefix + letters


def _edit_disk(element: ET.Element, disk: Disk, have: Disk | None) -> None:
    """Write what differs between `have` (None: a new disk) and `disk`."""
    kind = "volume" if disk.volume else "file"
    if element.get("type") != kind:
        element.set("type", kind)
    if element.get("device", "disk") != "disk":
        element.set("device", "disk")
    if have is None or have.format != disk.format:
        driver = child(element, "driver")
        driver.set("name", driver.get("name", "qemu"))
        driver.set("type", disk.format)
    if have is None or have.where != disk.where or have.volume != disk.volume:
        source = child(element, "source")
        wanted = ({"pool": disk.pool or "", "volume": disk.volume} if disk.volume
                  else {"file": disk.source})
        if {key: source.get(key) for key in wanted} != wanted or (
                not disk.volume and source.get("volume")):
            policy = source.get("startupPolicy")
            source.attrib.clear()
            for grandchild in list(source):
                source.remove(grandchild)
            for key, value in wanted.items():
                source.set(key, value)
            if policy:
                source.set("startupPolicy", policy)
    if have is None or (have.target, have.bus) != (disk.target, disk.bus):
        target = child(element, "target")
        if target.get("bus") != disk.bus:
            address = element.find("address")
            if address is not None:  # an address of the old bus's kind would be rejected
                element.remove(address)
            target.attrib.pop("removable", None)  # usb and scsi only
        target.set("dev", disk.target)
        target.set("bus", disk.bus)
    readonly = element.find("readonly")
    if disk.readonly and readonly is None:
        ET.SubElement(element, "readonly")
    elif not disk.readonly and readonly is not None:
        element.remove(readonly)
