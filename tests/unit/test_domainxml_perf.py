"""parse_domain's single walk finds exactly what the ElementPath searches it replaced
found, on ordinary and on odd (repeated, missing, namespaced) elements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domainxml import MANAGED_NS, parse_domain
from controller.domainxml.cpu import read_cpu
from controller.domainxml.devices import (
    is_agent_channel,
    is_serial_console,
    is_virtio_serial,
    read_graphics,
)
from controller.domainxml.disks import read_disks as _read_disks
from controller.domainxml.firmware import BOOTABLE_DEVICES, read_boot, read_firmware, read_kernel
from controller.domainxml.interfaces import read_interfaces as _read_interfaces
from controller.domainxml.memory import memory_kib as _memory_kib
from controller.domainxml.seed import is_efi
from controller.domainxml.xmlutil import MANAGED_TAG as _MANAGED_TAG
from controller.model import DomainConfig


def reference(xml: str) -> DomainConfig:
    """parse_domain as it was, with ElementPath."""
    root = ET.fromstring(xml)
    os_type = root.find("os/type")
    memory = _memory_kib(root.find("memory"))
    current = root.find("currentMemory")
    mark = root.find(f"metadata/{_MANAGED_TAG}")
    disks, kept_disks = _read_disks(root.findall("devices/disk"))
    interfaces, kept_interfaces = _read_interfaces(root.findall("devices/interface"))
    os_el = root.find("os")
    firmware, secure_boot = read_firmware(os_el)
    every = root.findall("devices/*")
    display, listen, exposed = read_graphics(root.findall("devices/graphics"))
    return DomainConfig(
        name=root.findtext("name", default=""),
        uuid=root.findtext("uuid", default="").lower(),
        type=root.get("type", ""),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        memory_kib=memory,
        current_memory_kib=_memory_kib(current) if current is not None else memory,
        vcpus=int((root.findtext("vcpu") or "1").strip()),
        disks=tuple(disk for _, disk in disks),
        interfaces=tuple(interface for _, interface in interfaces),
        managed=mark is not None,
        active=root.get("id", "-1") != "-1",
        owner=mark.get("host") if mark is not None else None,
        source=mark.get("source") if mark is not None else None,
        kept=tuple(kept_disks + kept_interfaces),
        efi=is_efi(root),
        firmware=firmware,
        secure_boot=secure_boot,
        tpm=bool(root.findall("devices/tpm")),
        cpu=read_cpu(root.find("cpu")),
        boot=read_boot(os_el, any(device.tag in BOOTABLE_DEVICES and device.find("boot")
                                  is not None for device in every)),
        kernel=read_kernel(os_el),
        graphics=display,
        graphics_listen=listen,
        graphics_exposed=exposed,
        serial=any(is_serial_console(d) for d in every if d.tag in ("serial", "console")),
        guest_agent=any(is_agent_channel(c) for c in root.findall("devices/channel")),
        virtio_serial=any(is_virtio_serial(c) for c in root.findall("devices/controller")),
    )


MARK = f"<r:managed xmlns:r='{MANAGED_NS}' host='h1'/>"
DISK = ("<disk type='file' device='{device}'><driver name='qemu' type='qcow2'/>"
        "<source file='/var/lib/libvirt/images/{n}.qcow2'/><target dev='vd{n}' bus='virtio'/>"
        "{ro}</disk>")
NIC = ("<interface type='{kind}'><mac address='52:54:00:00:00:0{n}'/>"
       "<source {kind}='net{n}'/><model type='virtio'/></interface>")

PARTS = {
    "name": ["<name>web-1</name>", "<name/>", "<name>second</name>"],
    "uuid": ["<uuid>ABCDEF00-0000-4000-8000-000000000000</uuid>", "<uuid></uuid>"],
    "metadata": ["<metadata/>", f"<metadata>{MARK}</metadata>",
                 "<metadata><other xmlns='urn:x'/></metadata>",
                 f"<metadata><managed xmlns='{MANAGED_NS}'/></metadata>",
                 f"<metadata><x>{MARK}</x></metadata>"],
    "memory": ["<memory unit='KiB'>65536</memory>", "<memory unit='MiB'>64</memory>",
               "<memory>1024</memory>", "<memory unit='GiB'> 2 </memory>"],
    "currentMemory": ["<currentMemory unit='KiB'>32768</currentMemory>"],
    "vcpu": ["<vcpu placement='static'>2</vcpu>", "<vcpu/>", "<vcpu> 4 </vcpu>"],
    "os": ["<os><type arch='x86_64' machine='pc'>hvm</type></os>", "<os><boot dev='hd'/></os>",
           "<os><type>hvm</type><type arch='i686'>hvm</type></os>",
           "<os firmware='efi'><firmware><feature enabled='yes' name='secure-boot'/></firmware>"
           "<kernel>/boot/k</kernel><boot dev='cdrom'/><boot dev='hd'/></os>"],
    "cpu": ["<cpu mode='host-model'/>", "<cpu><model>qemu64</model>"
            "<topology sockets='1' cores='2' threads='1'/></cpu>"],
    "devices": ["<devices/>",
                "<devices>" + DISK.format(device="disk", n="a", ro="") + "</devices>",
                "<devices>" + DISK.format(device="cdrom", n="b", ro="<readonly/>")
                + DISK.format(device="disk", n="c", ro="<readonly/>")
                + NIC.format(kind="network", n=1) + "</devices>",
                "<devices>" + NIC.format(kind="bridge", n=2) + "<disk/></devices>",
                "<devices><console type='pty'/><graphics type='vnc' listen='0.0.0.0'/>"
                "<tpm/><controller type='virtio-serial'/><channel type='unix'>"
                "<target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices>",
                "<devices><serial type='pty'/><graphics type='spice'/><graphics type='sdl'/>"
                "<interface type='network'><boot order='1'/></interface></devices>"],
}


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(picks=st.lists(st.tuples(st.sampled_from(sorted(PARTS)), st.integers(0, 10)),
                      max_size=12),
       domain_type=st.sampled_from(["kvm", "qemu", None]),
       domain_id=st.sampled_from([None, "-1", "7"]))
def test_same_as_elementpath(picks: list[tuple[str, int]], domain_type: str | None,
                             domain_id: str | None) -> None:
    body = "".join(PARTS[tag][index % len(PARTS[tag])] for tag, index in picks)
    attributes = "".join(f" {key}='{value}'" for key, value in
                         (("type", domain_type), ("id", domain_id)) if value is not None)
    xml = f"<domain{attributes}>{body}</domain>"
    assert parse_domain(xml) == reference(xml)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.xml")) or [None])
def test_example_hosts(path: Path | None) -> None:
    if path is None:
        pytest.skip("no example XML")
    root = ET.parse(path).getroot()
    domains = [root] if root.tag == "domain" else list(root.iter("domain"))
    for element in domains:
        xml = ET.tostring(element, encoding="unicode")
        assert parse_domain(xml) == reference(xml)
