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

import xml.etree.ElementTree as ET

from ..model import DomainConfig, VMSpec
from .cpu import apply_cpu, read_cpu
from .devices import (
    apply_graphics,
    apply_guest_agent,
    apply_serial,
    apply_tpm,
    is_agent_channel,
    is_serial_console,
    is_virtio_serial,
    read_graphics,
)
from .disks import apply_disks, read_disks
from .firmware import (
    BOOTABLE_DEVICES,
    apply_boot,
    apply_firmware,
    apply_kernel,
    read_boot,
    read_firmware,
    read_kernel,
)
from .interfaces import apply_interfaces, read_interfaces
from .memory import apply_memory, apply_vcpus, memory_kib, set_memory
from .seed import apply_seed, is_efi, read_seed
from .xmlutil import MANAGED_TAG, child, created_volumes, mark_managed, serialize, text_of

#: parse_domain's answers by the XML text itself, read afresh from libvirt every time:
#: the service's resyncs read the same definitions again and again, and a definition
#: changed in any way (`virsh setmem --config`, an edit) is another text, parsed anew.
#: Bounded: a full cache starts over.
_PARSED: dict[str, DomainConfig] = {}
PARSED_MAX = 4096


def parse_domain(xml: str) -> DomainConfig:
    """Read the fields reconcile models from a domain's XML (a pure function of the
    text: remembered by it, see _PARSED)."""
    config = _PARSED.get(xml)
    if config is None:
        config = _parse_domain(xml)
        if len(_PARSED) >= PARSED_MAX:
            _PARSED.clear()
        _PARSED[xml] = config
    return config


def _parse_domain(xml: str) -> DomainConfig:
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
    graphics: list[ET.Element] = []
    guest_agent = virtio_serial = serial = tpm = device_boot = False
    for element in root:
        tag = element.tag
        if tag not in first:
            first[tag] = element
        if tag == "os":
            if os_type is None:
                os_type = element.find("type")
        elif tag == "metadata":
            if mark is None:
                mark = element.find(MANAGED_TAG)
        elif tag == "devices":
            for device in element:
                kind = device.tag
                if kind in BOOTABLE_DEVICES and not device_boot:
                    device_boot = device.find("boot") is not None
                if kind == "disk":
                    disk_elements.append(device)
                elif kind == "interface":
                    interface_elements.append(device)
                elif kind == "channel":
                    guest_agent = guest_agent or is_agent_channel(device)
                elif kind == "controller":
                    virtio_serial = virtio_serial or is_virtio_serial(device)
                elif kind in ("serial", "console"):
                    serial = serial or is_serial_console(device)
                elif kind == "graphics":
                    graphics.append(device)
                elif kind == "tpm":
                    tpm = True
    devices = first.get("devices")
    disks, kept = read_disks(disk_elements)
    interfaces, kept_interfaces = read_interfaces(interface_elements)
    memory = memory_kib(first.get("memory"))
    current = first.get("currentMemory")
    vcpu = first.get("vcpu")
    os_el = first.get("os")
    firmware, secure_boot = read_firmware(os_el)
    display, listen, exposed = read_graphics(graphics)
    return DomainConfig(
        name=text_of(first.get("name")),
        uuid=text_of(first.get("uuid")).lower(),
        type=root.get("type", ""),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        memory_kib=memory,
        current_memory_kib=memory_kib(current) if current is not None else memory,
        vcpus=int(((vcpu.text if vcpu is not None else None) or "1").strip()),
        disks=tuple(disk for _, disk in disks),
        interfaces=tuple(interface for _, interface in interfaces),
        managed=mark is not None,
        active=root.get("id", "-1") != "-1",
        owner=mark.get("host") if mark is not None else None,
        source=mark.get("source") if mark is not None else None,
        created_volumes=created_volumes(mark),
        seed=read_seed(list(devices)) if devices is not None else None,
        efi=is_efi(root),
        kept=tuple(kept + kept_interfaces),
        firmware=firmware,
        secure_boot=secure_boot,
        tpm=tpm,
        cpu=read_cpu(first.get("cpu")),
        boot=read_boot(os_el, device_boot),
        kernel=read_kernel(os_el),
        graphics=display,
        graphics_listen=listen,
        graphics_exposed=exposed,
        serial=serial,
        guest_agent=guest_agent,
        virtio_serial=virtio_serial,
    )


def build_domain(spec: VMSpec, base_xml: str | None = None, *,
                 created: tuple[tuple[str, str], ...] = (),
                 seed: tuple[str, str] | None = None) -> str:
    """The XML to define for `spec`: `base_xml` (the saved definition) edited, or a new domain.

    The base keeps its UUID unless the spec pins one, and its interfaces keep
    their MACs unless the spec pins them. Only values that differ are written.
    `created` are volumes reconcile made for the domain (recorded in its mark);
    `seed` is the cloud-init seed cdrom's (pool, volume).
    """
    root = ET.fromstring(base_xml) if base_xml else _skeleton(spec)
    if root.get("type") != spec.type:
        root.set("type", spec.type)
    name = child(root, "name")
    if name.text != spec.name:
        name.text = spec.name
    if spec.uuid:
        uuid = child(root, "uuid")
        if (uuid.text or "").strip().lower() != spec.uuid.lower():
            uuid.text = spec.uuid
    mark_managed(root, spec.host, spec.source, created)
    apply_memory(root, spec.memory_kib)
    current = child(root, "currentMemory")
    if current.text is None or memory_kib(current) != spec.current_memory_kib:
        set_memory(current, spec.current_memory_kib)
    apply_vcpus(root, spec.vcpus)
    os_type = child(child(root, "os"), "type")
    if os_type.text is None:
        os_type.text = "hvm"
    if spec.arch and os_type.get("arch") != spec.arch:
        os_type.set("arch", spec.arch)
    machine = spec.machine or ("q35" if base_xml is None and spec.firmware == "efi" else None)
    if machine and os_type.get("machine") != machine:
        os_type.set("machine", machine)
    apply_firmware(root, spec.firmware, spec.secure_boot)
    apply_kernel(root, spec.kernel)
    apply_boot(root, spec.boot)
    apply_cpu(root, spec.cpu)
    devices = child(root, "devices")
    apply_disks(devices, spec.disks)
    apply_interfaces(devices, spec.interfaces)
    if seed is not None or spec.cloud_init is None:
        apply_seed(root, seed)  # None with cloudInit set: keep the seed cdrom as it is
    serial = spec.serial
    if serial is None and base_xml is None:
        serial = True  # a new domain's default; the other defaults are "absent" anyway
    apply_serial(devices, serial)
    apply_tpm(devices, spec.tpm)
    apply_graphics(devices, spec.graphics, spec.graphics_listen)
    apply_guest_agent(devices, spec.guest_agent)
    return serialize(root, base_xml)


def mark_owner(xml: str, host: str | None, source: str | None, *,
               created: tuple[tuple[str, str], ...] = (),
               seed: tuple[str, str] | None = None) -> str:
    """`xml` with the ownership mark naming `host` and the manifest file `source`: a
    definition arriving on a new host. `created`: volumes the move creates there (added
    to the mark); `seed`: the cloud-init seed cdrom it attaches there, if not None."""
    root = ET.fromstring(xml)
    mark_managed(root, host, source, created)
    if seed is not None:
        apply_seed(root, seed)
    return serialize(root, xml)


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
    ET.SubElement(root, "devices")
    return root
