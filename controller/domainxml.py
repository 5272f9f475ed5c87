"""Domain XML: a VMSpec to libvirt XML, and libvirt XML to a DomainConfig. Pure.

Built and parsed with ElementTree only, never by pasting strings, so no name
or path can inject XML. A redefinition starts from the domain's saved XML and
edits only what the manifest models (memory, vCPUs, type, arch, machine,
disks of device 'disk', interfaces, the ownership marker); everything else,
from consoles to PCI addresses, is kept as libvirt wrote it.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

from .model import Disk, DomainConfig, Interface, VMSpec

#: Namespace of the ownership marker in <metadata>.
MANAGED_NS = "urn:reconcile-libvirt:managed:1"
_MANAGED_TAG = f"{{{MANAGED_NS}}}managed"

ET.register_namespace("reconcile", MANAGED_NS)
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")

_UNIT_KIB = {
    "b": 1 / 1024, "bytes": 1 / 1024,
    "KB": 1000 / 1024, "k": 1, "K": 1, "KiB": 1,
    "MB": 1000**2 / 1024, "M": 1024, "MiB": 1024,
    "GB": 1000**3 / 1024, "G": 1024**2, "GiB": 1024**2,
    "TB": 1000**4 / 1024, "T": 1024**3, "TiB": 1024**3,
}


def parse_domain(xml: str) -> DomainConfig:
    """Read the fields reconcile models from a domain's XML.

    One walk over the root's children instead of ElementPath searches ("os/type",
    "devices/disk", ...), which cost more than parsing the XML; it finds the same
    elements: the first of each tag, and every disk and interface in order.
    """
    root = ET.fromstring(xml)
    first: dict[str, ET.Element] = {}
    os_type = mark = None
    disks: list[Disk] = []
    interfaces: list[Interface] = []
    for child in root:
        tag = child.tag
        if tag not in first:
            first[tag] = child
        if tag == "os":
            if os_type is None:
                os_type = child.find("type")
        elif tag == "metadata":
            if mark is None:
                mark = child.find(_MANAGED_TAG)
        elif tag == "devices":
            for device in child:
                if device.tag == "disk":
                    if device.get("device", "disk") == "disk":
                        disks.append(_parse_disk(device))
                elif device.tag == "interface":
                    interfaces.append(_parse_interface(device))
    memory = _memory_kib(first.get("memory"))
    current = first.get("currentMemory")
    vcpu = first.get("vcpu")
    return DomainConfig(
        name=_text(first.get("name")),
        uuid=_text(first.get("uuid")).lower(),
        type=root.get("type", ""),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        memory_kib=memory,
        current_memory_kib=_memory_kib(current) if current is not None else memory,
        vcpus=int(((vcpu.text if vcpu is not None else None) or "1").strip()),
        disks=tuple(disks),
        interfaces=tuple(interfaces),
        managed=mark is not None,
        active=root.get("id", "-1") != "-1",
        owner=mark.get("host") if mark is not None else None,
        source=mark.get("source") if mark is not None else None,
    )


def _text(element: ET.Element | None) -> str:
    """As Element.findtext(tag, default=""): the text, "" when empty or absent."""
    return (element.text or "") if element is not None else ""


def build_domain(spec: VMSpec, base_xml: str | None = None) -> str:
    """The XML to define for `spec`: `base_xml` (the saved definition) edited, or a new domain.

    The base keeps its UUID unless the spec pins one, and its interfaces keep
    their MACs unless the spec pins them.
    """
    root = ET.fromstring(base_xml) if base_xml else _skeleton(spec)
    root.set("type", spec.type)
    _child(root, "name").text = spec.name
    if spec.uuid:
        _child(root, "uuid").text = spec.uuid
    _mark_managed(root, spec.host, spec.source)
    _set_memory(_child(root, "memory"), spec.memory_kib)
    _set_memory(_child(root, "currentMemory"), spec.current_memory_kib)
    vcpu = _child(root, "vcpu")
    vcpu.text = str(spec.vcpus)
    vcpu.attrib.pop("current", None)
    os_type = _child(_child(root, "os"), "type")
    if os_type.text is None:
        os_type.text = "hvm"
    if spec.arch:
        os_type.set("arch", spec.arch)
    if spec.machine:
        os_type.set("machine", spec.machine)
    devices = _child(root, "devices")
    _apply_disks(devices, spec.disks)
    _apply_interfaces(devices, spec.interfaces)
    return ET.tostring(root, encoding="unicode")


def mark_owner(xml: str, host: str | None, source: str | None) -> str:
    """`xml` with the ownership mark naming `host` and the manifest file `source`: a
    definition arriving on a new host."""
    root = ET.fromstring(xml)
    _mark_managed(root, host, source)
    return ET.tostring(root, encoding="unicode")


def _skeleton(spec: VMSpec) -> ET.Element:
    root = ET.Element("domain", type=spec.type)
    ET.SubElement(root, "name").text = spec.name
    # empty, in libvirt's own order, for build_domain to fill: the output reads like dumpxml
    for tag in ("uuid", "metadata", "memory", "currentMemory", "vcpu"):
        if tag != "uuid" or spec.uuid:
            ET.SubElement(root, tag)
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type").text = "hvm"
    ET.SubElement(os_el, "boot", dev="hd")
    if spec.arch in (None, "x86_64", "i686"):
        features = ET.SubElement(root, "features")
        ET.SubElement(features, "acpi")
        ET.SubElement(features, "apic")
    devices = ET.SubElement(root, "devices")
    ET.SubElement(devices, "console", type="pty")
    return root


def _child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    return found if found is not None else ET.SubElement(parent, tag)


def _mark_managed(root: ET.Element, host: str | None, source: str | None) -> None:
    """The ownership mark: the manifest file the domain comes from and, with several
    hosts, the host that owns the VM now."""
    metadata = _child(root, "metadata")
    mark = metadata.find(_MANAGED_TAG)
    if mark is None:
        mark = ET.SubElement(metadata, _MANAGED_TAG)
    for key, value in (("host", host), ("source", source)):
        if value:
            mark.set(key, value)
        else:
            mark.attrib.pop(key, None)


def _set_memory(element: ET.Element, kib: int) -> None:
    element.attrib.clear()
    element.set("unit", "KiB")
    element.text = str(kib)


def _memory_kib(element: ET.Element | None) -> int:
    text = (element.text or "").strip() if element is not None else ""
    if element is None or not text:
        return 0
    factor = _UNIT_KIB.get(element.get("unit", "KiB"), 1)
    return math.ceil(int(text) * factor)


# --- disks -------------------------------------------------------------------

def _disk_elements(root: ET.Element) -> list[ET.Element]:
    return [el for el in root.findall("devices/disk") if el.get("device", "disk") == "disk"]


def _parse_disk(element: ET.Element) -> Disk:
    source = element.find("source")
    target = element.find("target")
    driver = element.find("driver")
    path = ""
    if source is not None:
        path = source.get("file") or source.get("dev") or source.get("name") or ""
    return Disk(
        source=path,
        target=target.get("dev", "") if target is not None else "",
        format=(driver.get("type") if driver is not None else None) or "raw",
        bus=(target.get("bus") if target is not None else None) or "",
        readonly=element.find("readonly") is not None,
    )


def _apply_disks(devices: ET.Element, disks: tuple[Disk, ...]) -> None:
    existing = {}
    for element in devices.findall("disk"):
        if element.get("device", "disk") != "disk":
            continue
        target = element.find("target")
        existing[target.get("dev") if target is not None else None] = element
    wanted = {disk.target for disk in disks}
    for target_dev, element in existing.items():
        if target_dev not in wanted:
            devices.remove(element)
    _move_other_devices_off(devices, wanted)
    for disk in disks:
        found = existing.get(disk.target)
        if found is None:
            found = ET.SubElement(devices, "disk", type="file", device="disk")
        _edit_disk(found, disk)


def _move_other_devices_off(devices: ET.Element, wanted: set[str]) -> None:
    """A kept cdrom or floppy on a target the manifest gives a disk moves to a free one.

    Default targets are chosen without seeing the domain (sda for the first SATA
    disk), and libvirt refuses two devices on one target.
    """
    taken = {target.get("dev") for target in devices.findall("disk/target")} | wanted
    for element in devices.findall("disk"):
        target = element.find("target")
        dev = target.get("dev") if target is not None else None
        if element.get("device", "disk") == "disk" or target is None or dev not in wanted:
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


def _edit_disk(element: ET.Element, disk: Disk) -> None:
    element.set("type", "file")
    element.set("device", "disk")
    driver = _child(element, "driver")
    driver.set("name", driver.get("name", "qemu"))
    driver.set("type", disk.format)
    source = _child(element, "source")
    if source.get("file") != disk.source:
        source.attrib.clear()
        for grandchild in list(source):
            source.remove(grandchild)
        source.set("file", disk.source)
    target = _child(element, "target")
    if target.get("bus") != disk.bus:
        address = element.find("address")
        if address is not None:  # an address of the old bus's kind would be rejected
            element.remove(address)
    target.attrib.clear()
    target.set("dev", disk.target)
    target.set("bus", disk.bus)
    readonly = element.find("readonly")
    if disk.readonly and readonly is None:
        ET.SubElement(element, "readonly")
    elif not disk.readonly and readonly is not None:
        element.remove(readonly)


# --- interfaces --------------------------------------------------------------

def _parse_interface(element: ET.Element) -> Interface:
    kind = element.get("type")
    source = element.find("source")
    mac = element.find("mac")
    model = element.find("model")
    return Interface(
        network=source.get("network") if kind == "network" and source is not None else None,
        bridge=source.get("bridge") if kind == "bridge" and source is not None else None,
        mac=mac.get("address", "").lower() or None if mac is not None else None,
        model=(model.get("type") if model is not None else None) or "",
    )


def _apply_interfaces(devices: ET.Element, interfaces: tuple[Interface, ...]) -> None:
    existing = devices.findall("interface")
    for element in existing[len(interfaces):]:
        devices.remove(element)
    for index, interface in enumerate(interfaces):
        if index < len(existing):
            element = existing[index]
        else:
            element = ET.SubElement(devices, "interface")
        _edit_interface(element, interface)


def _edit_interface(element: ET.Element, interface: Interface) -> None:
    kind = "network" if interface.network is not None else "bridge"
    if element.get("type") != kind:
        for stale in element.findall("target") + element.findall("alias"):
            element.remove(stale)
    element.set("type", kind)
    if interface.mac:
        _child(element, "mac").set("address", interface.mac.lower())
    source = _child(element, "source")
    source.attrib.clear()
    source.set(kind, interface.network if interface.network is not None else interface.bridge or "")
    model = _child(element, "model")
    model.attrib.clear()
    model.set("type", interface.model)
