"""Domain XML: a VMSpec to libvirt XML, and libvirt XML to a DomainConfig. Pure.

Built and parsed with ElementTree only, never by pasting strings, so no name
or path can inject XML. A redefinition starts from the domain's saved XML and
edits only what the manifest models (memory, vCPUs, type, arch, machine, the
disks and interfaces a manifest can describe, the ownership marker), and only
where the value differs; everything else, from consoles to PCI addresses,
startupPolicy, vCPU hot-plug state, tuning and security labels, is kept as
libvirt wrote it.

Which devices a manifest describes is decided here, from the XML alone, so
the parser, the builder, the planner and `export` agree:

- a disk is *modelled* when it is a `file` disk of device `disk` with an
  absolute source, on the virtio, sata, scsi or ide bus, in qcow2 or raw
  format, on a whole-disk target (`vda`, `sdb`, `hdc`, ...), whose image no
  other disk of the domain uses. Every other disk (block, network, volume,
  nvme, vhost-user, usb or sd bus, vmdk, partition targets, shared images) is
  *kept*: left out of `DomainConfig.disks`, never edited, and named in
  `DomainConfig.kept` so `export` can say so. cdroms and floppies are always
  left alone and not named;
- an interface is modelled when it is of type `network` or `bridge` with a
  source and a model; direct (macvtap), user, vhost-user, hostdev, ethernet
  and the others are kept the same way.

The NUMA rule: with `<cpu><numa><cell memory=...>`, libvirt derives `<memory>`
from the cells (plus hot-plugged memory devices). A memory change scales the
cells proportionally (aligned to the domain's hugepage size or 1 MiB where they
all were), so the new memory lands; see `scale_cells`.
"""

from __future__ import annotations

import html
import math
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from .model import Disk, DomainConfig, Interface, VMSpec

#: Namespace of the ownership marker in <metadata>.
MANAGED_NS = "urn:reconcile-libvirt:managed:1"
_MANAGED_TAG = f"{{{MANAGED_NS}}}managed"

ET.register_namespace("reconcile", MANAGED_NS)
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")

#: What a manifest disk can be (schemas/virtualmachine.schema.json says the same;
#: tests/unit/test_domainxml_fidelity.py checks that the two agree).
DISK_BUSES = ("virtio", "sata", "scsi", "ide")
DISK_FORMATS = ("qcow2", "raw")
DISK_TARGET = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,2}\Z")
#: Buses on which QEMU has no read-only disks (libvirt refuses them).
NO_READONLY_BUSES = ("sata", "ide")

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
    disk_elements: list[ET.Element] = []
    interface_elements: list[ET.Element] = []
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
                    disk_elements.append(device)
                elif device.tag == "interface":
                    interface_elements.append(device)
    disks, kept = _read_disks(disk_elements)
    interfaces, kept_interfaces = _read_interfaces(interface_elements)
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
        disks=tuple(disk for _, disk in disks),
        interfaces=tuple(interface for _, interface in interfaces),
        managed=mark is not None,
        active=root.get("id", "-1") != "-1",
        owner=mark.get("host") if mark is not None else None,
        source=mark.get("source") if mark is not None else None,
        kept=tuple(kept + kept_interfaces),
    )


def _text(element: ET.Element | None) -> str:
    """As Element.findtext(tag, default=""): the text, "" when empty or absent."""
    return (element.text or "") if element is not None else ""


def build_domain(spec: VMSpec, base_xml: str | None = None) -> str:
    """The XML to define for `spec`: `base_xml` (the saved definition) edited, or a new domain.

    The base keeps its UUID unless the spec pins one, and its interfaces keep
    their MACs unless the spec pins them. Only values that differ are written.
    """
    root = ET.fromstring(base_xml) if base_xml else _skeleton(spec)
    if root.get("type") != spec.type:
        root.set("type", spec.type)
    name = _child(root, "name")
    if name.text != spec.name:
        name.text = spec.name
    if spec.uuid:
        uuid = _child(root, "uuid")
        if (uuid.text or "").strip().lower() != spec.uuid.lower():
            uuid.text = spec.uuid
    _mark_managed(root, spec.host, spec.source)
    _apply_memory(root, spec.memory_kib)
    current = _child(root, "currentMemory")
    if current.text is None or _memory_kib(current) != spec.current_memory_kib:
        _set_memory(current, spec.current_memory_kib)
    _apply_vcpus(root, spec.vcpus)
    os_type = _child(_child(root, "os"), "type")
    if os_type.text is None:
        os_type.text = "hvm"
    if spec.arch and os_type.get("arch") != spec.arch:
        os_type.set("arch", spec.arch)
    if spec.machine and os_type.get("machine") != spec.machine:
        os_type.set("machine", spec.machine)
    devices = _child(root, "devices")
    _apply_disks(devices, spec.disks)
    _apply_interfaces(devices, spec.interfaces)
    return _serialize(root, base_xml)


def mark_owner(xml: str, host: str | None, source: str | None) -> str:
    """`xml` with the ownership mark naming `host` and the manifest file `source`: a
    definition arriving on a new host."""
    root = ET.fromstring(xml)
    _mark_managed(root, host, source)
    return _serialize(root, xml)


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


# --- namespaces: prefixes survive a redefinition ------------------------------------

_PREFIX_LOCK = threading.Lock()
_DECLARATION = re.compile(r"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_GENERATED_PREFIX = re.compile(r"ns\d+\Z")


def _serialize(root: ET.Element, source: str | None) -> str:
    """`root` as text, with the namespace prefixes `source` declared ("nova:", "qemu:").

    ElementTree forgets prefixes when it parses, and writes `ns0:` for a namespace
    no prefix is registered for (globally, in its private `_namespace_map`); libvirt
    keeps metadata as written, so a redefinition would rename `nova:instance` to
    `ns0:instance`. The document's own prefixes are registered for the one write,
    under a lock, and the registry is put back as it was.
    """
    if not source or "xmlns:" not in source:
        return ET.tostring(root, encoding="unicode")
    declared = {}
    for prefix, double, single in _DECLARATION.findall(source):
        if prefix != "xml" and not _GENERATED_PREFIX.match(prefix):
            declared[html.unescape(double or single)] = prefix
    registry: dict[str, str] = getattr(ET, "_namespace_map")  # noqa: B009
    with _PREFIX_LOCK:
        if all(registry.get(uri) == prefix for uri, prefix in declared.items()):
            return ET.tostring(root, encoding="unicode")
        before = dict(registry)
        try:
            for uri, prefix in declared.items():
                ET.register_namespace(prefix, uri)
            return ET.tostring(root, encoding="unicode")
        finally:
            registry.clear()
            registry.update(before)


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


# --- memory and vCPUs ----------------------------------------------------------------

def _set_memory(element: ET.Element, kib: int) -> None:
    """Write `kib` in KiB, keeping the element's other attributes (dumpCore, ...)."""
    element.set("unit", "KiB")
    element.text = str(kib)


def _memory_kib(element: ET.Element | None) -> int:
    text = (element.text or "").strip() if element is not None else ""
    if element is None or not text:
        return 0
    factor = _UNIT_KIB.get(element.get("unit", "KiB"), 1)
    return math.ceil(int(text) * factor)


def _cell_kib(cell: ET.Element) -> int:
    factor = _UNIT_KIB.get(cell.get("unit", "KiB"), 1)
    return math.ceil(int((cell.get("memory") or "0").strip()) * factor)


def _apply_memory(root: ET.Element, kib: int) -> None:
    """Set `<memory>`; with NUMA cells, scale the cells so libvirt derives `kib` from them."""
    memory = _child(root, "memory")
    have = _memory_kib(memory)
    if memory.text is not None and have == kib:
        return
    cells = [cell for cell in root.findall("cpu/numa/cell") if cell.get("memory")]
    if cells and memory.text is not None:
        sizes = [_cell_kib(cell) for cell in cells]
        hotplugged = max(0, have - sum(sizes))  # memory devices (DIMMs) count on top of the cells
        scaled = scale_cells(sizes, kib - hotplugged, _page_sizes_kib(root))
        if scaled is not None:
            for cell, size in zip(cells, scaled):
                if size != _cell_kib(cell):
                    cell.set("unit", "KiB")
                    cell.set("memory", str(size))
    _set_memory(memory, kib)


def _page_sizes_kib(root: ET.Element) -> list[int]:
    sizes = []
    for page in root.findall("memoryBacking/hugepages/page"):
        try:
            factor = _UNIT_KIB.get(page.get("unit", "KiB"), 1)
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
    if any(size > 0 and new == 0 for size, new in zip(sizes, scaled)):
        return None
    return [new * unit for new in scaled]


def _apply_vcpus(root: ET.Element, count: int) -> None:
    """Set the maximum vCPU count, keeping placement, cpuset and the online count.

    `current` (vCPUs online at boot) stays while it is below the new maximum; the
    per-vCPU `<vcpus>` list, which must name every vCPU, goes when the count changes,
    and a CPU topology whose sockets can absorb the change follows it.
    """
    vcpu = _child(root, "vcpu")
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


# --- disks -------------------------------------------------------------------

def _read_disks(elements: list[ET.Element]) -> tuple[list[tuple[ET.Element, Disk]], list[str]]:
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
        uses[disk.source] = uses.get(disk.source, 0) + 1
    modelled = []
    for element, disk in candidates:
        if uses[disk.source] > 1:
            kept.append(f"disk {disk.target} ({disk.source}): its image is used by "
                        f"{uses[disk.source]} disks of this domain")
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
    if kind != "file":
        source = element.find("source")
        detail = ""
        if source is not None:
            detail = (source.get("dev") or source.get("name") or source.get("path")
                      or source.get("volume") or source.get("dir") or "")
        return f"{where}: a {kind} disk" + (f" ({detail})" if detail else "")
    if not disk.source.startswith("/"):
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
    """Make the modelled disks those of `disks`, by target; kept disks stay as they are.

    A kept disk whose image the manifest names (an image shared by two disks) is
    the manifest's to place: it is edited when it sits on a wanted target, else removed.
    """
    elements = devices.findall("disk")
    modelled, _ = _read_disks(elements)
    wanted = {disk.target for disk in disks}
    wanted_sources = {disk.source for disk in disks}
    existing: dict[str, tuple[ET.Element, Disk | None]] = {
        disk.target: (element, disk) for element, disk in modelled}
    modelled_elements = {id(element) for element, _ in modelled}
    for element in elements:
        if id(element) in modelled_elements:
            continue
        verdict = _disk_verdict(element)
        if not isinstance(verdict, Disk) or verdict.source not in wanted_sources:
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
            element, have = ET.SubElement(devices, "disk", type="file", device="disk"), None
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
    if element.get("type") != "file":
        element.set("type", "file")
    if element.get("device", "disk") != "disk":
        element.set("device", "disk")
    if have is None or have.format != disk.format:
        driver = _child(element, "driver")
        driver.set("name", driver.get("name", "qemu"))
        driver.set("type", disk.format)
    if have is None or have.source != disk.source:
        source = _child(element, "source")
        if source.get("file") != disk.source:
            policy = source.get("startupPolicy")
            source.attrib.clear()
            for grandchild in list(source):
                source.remove(grandchild)
            source.set("file", disk.source)
            if policy:
                source.set("startupPolicy", policy)
    if have is None or (have.target, have.bus) != (disk.target, disk.bus):
        target = _child(element, "target")
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


# --- interfaces --------------------------------------------------------------

def _read_interfaces(
    elements: list[ET.Element],
) -> tuple[list[tuple[ET.Element, Interface]], list[str]]:
    """The modelled interfaces (with their elements) in order, and a note for each kept one."""
    modelled: list[tuple[ET.Element, Interface]] = []
    kept: list[str] = []
    for index, element in enumerate(elements):
        verdict = _interface_verdict(element, index)
        if isinstance(verdict, Interface):
            modelled.append((element, verdict))
        else:
            kept.append(verdict)
    return modelled, kept


def _interface_verdict(element: ET.Element, index: int) -> Interface | str:
    kind = element.get("type") or "?"
    interface = _parse_interface(element)
    mac = f", {interface.mac}" if interface.mac else ""
    if kind not in ("network", "bridge"):
        return f"interface {index} ({kind}{mac}): a {kind} interface"
    if interface.network is None and interface.bridge is None:
        return f"interface {index} ({kind}{mac}): no {kind} source"
    if not interface.model:
        return f"interface {index} ({interface.attachment}{mac}): no model"
    return interface


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
    """Make the modelled interfaces those of `interfaces`, by position; kept ones stay."""
    modelled, _ = _read_interfaces(devices.findall("interface"))
    for element, _ in modelled[len(interfaces):]:
        devices.remove(element)
    for index, interface in enumerate(interfaces):
        if index < len(modelled):
            element, have = modelled[index]
            _edit_interface(element, interface, have)
        else:
            _edit_interface(ET.SubElement(devices, "interface"), interface, None)


def _edit_interface(element: ET.Element, interface: Interface, have: Interface | None) -> None:
    """Write what differs between `have` (None: a new interface) and `interface`."""
    kind = "network" if interface.network is not None else "bridge"
    value = interface.network if interface.network is not None else interface.bridge or ""
    if element.get("type") != kind:
        for stale in element.findall("target") + element.findall("alias"):
            element.remove(stale)
        element.set("type", kind)
    if interface.mac and (have is None or have.mac != interface.mac.lower()):
        _child(element, "mac").set("address", interface.mac.lower())
    source = _child(element, "source")
    if source.get(kind) != value or any(key in source.attrib for key in
                                         ({"network", "bridge"} - {kind})):
        source.attrib.clear()  # a portgroup belongs to the old network
        source.set(kind, value)
    model = _child(element, "model")
    if model.get("type") != interface.model:
        model.set("type", interface.model)
