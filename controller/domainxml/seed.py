"""The cloud-init seed cdrom in domain XML: a read-only `volume` cdrom whose volume is a
seed reconcile made (named `VM.cidata-<12 hex>.iso`), on a bus both the firmware and a
stock cloud kernel can see: IDE on a BIOS `pc` machine; virtio-scsi under UEFI and on
q35 (OVMF leaves the PIIX IDE channels disabled, and Debian's cloud kernel has no AHCI
driver for SATA). Other cdroms are never touched.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .disks import disk_target_name
from .xmlutil import child

SEED_VOLUME = re.compile(r"\.cidata-[0-9a-f]{12}\.iso\Z")


def seed_volume_name(vm: str, content_sha256: str) -> str:
    return f"{vm}.cidata-{content_sha256[:12]}.iso"


def _is_seed(element: ET.Element) -> bool:
    source = element.find("source")
    return (element.get("device") == "cdrom" and element.get("type") == "volume"
            and source is not None and bool(SEED_VOLUME.search(source.get("volume") or "")))


def read_seed(devices: list[ET.Element]) -> tuple[str, str] | None:
    """(pool, volume) of the domain's seed cdrom, if it has one."""
    for element in devices:
        if element.tag == "disk" and _is_seed(element):
            source = element.find("source")
            assert source is not None
            return (source.get("pool") or "", source.get("volume") or "")
    return None


def is_efi(root: ET.Element) -> bool:
    os_el = root.find("os")
    if os_el is None:
        return False
    loader = os_el.find("loader")
    return os_el.get("firmware") == "efi" or (loader is not None
                                              and loader.get("type") == "pflash")


def apply_seed(root: ET.Element, seed: tuple[str, str] | None) -> None:
    """Make the domain's seed cdrom `seed` (None: no seed cdrom)."""
    devices = child(root, "devices")
    existing = [element for element in devices.findall("disk") if _is_seed(element)]
    if seed is None:
        for element in existing:
            devices.remove(element)
        return
    pool, volume = seed
    if existing:
        source = child(existing[0], "source")
        if (source.get("pool"), source.get("volume")) != (pool, volume):
            source.set("pool", pool)
            source.set("volume", volume)
        for extra in existing[1:]:
            devices.remove(extra)
        return
    os_type = root.find("os/type")
    machine = (os_type.get("machine") if os_type is not None else None) or ""
    scsi = is_efi(root) or "q35" in machine
    prefix, bus = ("sd", "scsi") if scsi else ("hd", "ide")
    taken = {target.get("dev") for target in devices.findall("disk/target")}
    index = 2 if bus == "ide" else 0  # hdc: the secondary master, as virt-install's cdrom
    while disk_target_name(prefix, index) in taken:
        index += 1
    disk = ET.SubElement(devices, "disk", type="volume", device="cdrom")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", pool=pool, volume=volume)
    ET.SubElement(disk, "target", dev=disk_target_name(prefix, index), bus=bus)
    ET.SubElement(disk, "readonly")
    if scsi and not any(controller.get("type") == "scsi"
                        for controller in devices.findall("controller")):
        ET.SubElement(devices, "controller", type="scsi", model="virtio-scsi")
