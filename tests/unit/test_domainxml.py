"""Domain XML: golden files of what the builder writes, and what a redefinition keeps.

Every golden file was checked once by hand to be accepted by `virsh define`
on libvirt 9.0 (with a unique name, then undefined).

The saved definition in data/saved-domain.xml is real `virsh dumpxml --inactive`
output of libvirt 9.0 (renamed), with PCI addresses, controllers, a serial
console, VNC graphics, a SATA cdrom and metadata in a foreign namespace.

Golden files hold the builder's output re-indented (whitespace between
elements means nothing to libvirt). `UPDATE_GOLDEN=1` rewrites them.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from controller.domainxml import MANAGED_NS, build_domain, parse_domain
from controller.model import CPU, Disk, DomainConfig, Interface, VMSpec

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
SAVED = (HERE / "data" / "saved-domain.xml").read_text(encoding="utf-8")
SAVED_UUID = "efeb2802-667a-47f9-a68d-52471cc6024a"
IMAGES = "/var/lib/libvirt/images"
MARKER = f"{{{MANAGED_NS}}}managed"


def pretty(xml: str) -> str:
    root = ET.fromstring(xml)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def assert_golden(name: str, xml: str) -> None:
    path = GOLDEN / name
    text = pretty(xml)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs; UPDATE_GOLDEN=1 rewrites it"


def spec(**fields: object) -> VMSpec:
    base: dict[str, object] = {"name": "golden-vm", "source": "vm.yaml", "memory_kib": 65536,
                               "current_memory_kib": 65536, "vcpus": 1}
    base.update(fields)
    return VMSpec(**base)  # type: ignore[arg-type]


NEW = spec(
    name="web-1", memory_kib=1048576, current_memory_kib=524288, vcpus=2, arch="x86_64",
    machine="pc-q35-7.2",
    disks=(Disk(f"{IMAGES}/web-1.qcow2", "vda"),
           Disk(f"{IMAGES}/web-1-data.img", "sda", format="raw", bus="sata"),
           # libvirt 9.0 refuses a readonly disk on the sata bus; scsi and virtio take it
           Disk(f"{IMAGES}/web-1-seed.img", "sdb", format="raw", bus="scsi", readonly=True)),
    interfaces=(Interface(network="default"),
                Interface(bridge="br0", mac="52:54:00:AA:BB:CC", model="e1000")),
)

# The saved domain, changed: more memory and vCPUs; vda kept; vdb moves to the SCSI bus;
# vdc removed; vdd added; NIC 0 kept as it is; NIC 1 from bridge br0 to network isolated.
REDEFINED = spec(
    memory_kib=131072, current_memory_kib=98304, vcpus=2,
    disks=(Disk(f"{IMAGES}/golden-a.qcow2", "vda"),
           Disk(f"{IMAGES}/golden-b.img", "vdb", format="raw", bus="scsi"),
           Disk(f"{IMAGES}/golden-d.qcow2", "vdd")),
    interfaces=(Interface(network="default"), Interface(network="isolated", model="e1000")),
)


def devices(xml: str, tag: str) -> list[ET.Element]:
    return ET.fromstring(xml).findall(f"devices/{tag}")


def disk(xml: str, target: str) -> ET.Element:
    [found] = [d for d in devices(xml, "disk") if d.find(f"target[@dev='{target}']") is not None]
    return found


def address(element: ET.Element) -> dict[str, str] | None:
    found = element.find("address")
    return dict(found.attrib) if found is not None else None


def markers(xml: str) -> int:
    return len(ET.fromstring(xml).findall(f"metadata/{MARKER}"))


# --- golden files ---------------------------------------------------------------------------

def test_golden_new_domain() -> None:
    assert_golden("new-domain.xml", build_domain(NEW))


def test_golden_redefined_domain() -> None:
    assert_golden("redefined-domain.xml", build_domain(REDEFINED, SAVED))


def test_golden_pinned_identity() -> None:
    pinned = spec(
        uuid="6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5",
        disks=(Disk(f"{IMAGES}/golden-a.qcow2", "vda"),),
        interfaces=(Interface(network="default", mac="52:54:00:00:00:01"),
                    Interface(bridge="br0", model="e1000")),
    )
    assert_golden("pinned-identity.xml", build_domain(pinned, SAVED))


# --- a new domain ---------------------------------------------------------------------------

def test_new_domain_parses_back() -> None:
    assert parse_domain(build_domain(NEW)) == DomainConfig(
        name="web-1", uuid="", type="kvm", arch="x86_64", machine="pc-q35-7.2",
        memory_kib=1048576, current_memory_kib=524288, vcpus=2,
        disks=NEW.disks,
        interfaces=(Interface(network="default", model="virtio"),
                    Interface(bridge="br0", mac="52:54:00:aa:bb:cc", model="e1000")),
        managed=True, source="vm.yaml", serial=True,
    )


def test_new_domain_without_arch_or_machine_leaves_them_to_libvirt() -> None:
    os_type = ET.fromstring(build_domain(spec())).find("os/type")
    assert os_type is not None
    assert (os_type.text, os_type.attrib) == ("hvm", {})


def test_new_domain_with_a_pinned_uuid() -> None:
    built = build_domain(spec(uuid="6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"))
    assert parse_domain(built).uuid == "6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"


# --- a redefinition keeps what the manifest does not model ----------------------------------

def test_redefinition_keeps_uuid_and_macs() -> None:
    config = parse_domain(build_domain(REDEFINED, SAVED))
    assert config.uuid == SAVED_UUID
    assert [i.mac for i in config.interfaces] == ["52:54:00:13:a2:52", "52:54:00:f0:dc:8a"]
    assert config == DomainConfig(
        name="golden-vm", uuid=SAVED_UUID, type="kvm", arch="x86_64", machine="pc-i440fx-7.2",
        memory_kib=131072, current_memory_kib=98304, vcpus=2, disks=REDEFINED.disks,
        interfaces=(Interface(network="default", mac="52:54:00:13:a2:52", model="virtio"),
                    Interface(network="isolated", mac="52:54:00:f0:dc:8a", model="e1000")),
        managed=True, source="vm.yaml", **SAVED_SECTION_8,
    )


def test_pinned_uuid_and_macs_replace_the_saved_ones() -> None:
    pinned = spec(uuid="6C5D1E2F-3A4B-4C5D-8E9F-A0B1C2D3E4F5",
                  interfaces=(Interface(network="default", mac="52:54:00:00:00:01"),
                              Interface(bridge="br0", mac="52:54:00:00:00:02", model="e1000")))
    built = build_domain(pinned, SAVED)
    config = parse_domain(built)
    assert config.uuid == "6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"
    assert [i.mac for i in config.interfaces] == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    assert len(ET.fromstring(built).findall("uuid")) == 1
    assert [len(i.findall("mac")) for i in devices(built, "interface")] == [1, 1]


def test_pci_addresses_of_kept_disks_and_nics_are_kept() -> None:
    built = build_domain(REDEFINED, SAVED)
    assert address(disk(built, "vda")) == address(disk(SAVED, "vda")) == {
        "type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x06", "function": "0x0"}
    assert [address(i) for i in devices(built, "interface")] == [
        address(i) for i in devices(SAVED, "interface")]
    assert address(devices(built, "interface")[1]) == {
        "type": "pci", "domain": "0x0000", "bus": "0x00", "slot": "0x04", "function": "0x0"}


@pytest.mark.parametrize(
    "tag", ["emulator", "controller", "serial", "console", "input", "graphics", "audio",
            "video", "memballoon"],
)
def test_devices_the_manifest_does_not_model_are_kept_verbatim(tag: str) -> None:
    built = build_domain(REDEFINED, SAVED)
    kept = [ET.tostring(e) for e in devices(built, tag)]
    saved = [ET.tostring(e) for e in devices(SAVED, tag)]
    assert saved
    assert kept == saved


@pytest.mark.parametrize("path", ["cpu", "clock", "features", "on_poweroff", "on_reboot",
                                  "on_crash", "os/boot"])
def test_domain_settings_the_manifest_does_not_model_are_kept(path: str) -> None:
    built = ET.fromstring(build_domain(REDEFINED, SAVED))
    saved = ET.fromstring(SAVED)
    assert [ET.tostring(e) for e in built.findall(path)] == [
        ET.tostring(e) for e in saved.findall(path)]


def test_the_cdrom_is_kept() -> None:
    built = build_domain(REDEFINED, SAVED)
    [cdrom] = [d for d in devices(built, "disk") if d.get("device") == "cdrom"]
    [saved] = [d for d in devices(SAVED, "disk") if d.get("device") == "cdrom"]
    assert ET.tostring(cdrom) == ET.tostring(saved)


def test_foreign_metadata_is_kept() -> None:
    root = ET.fromstring(build_domain(REDEFINED, SAVED))
    note = root.find("metadata/{http://example.com/other/1}note")
    assert note is not None
    assert note.text == "keep me"


def test_a_disk_whose_bus_changes_loses_its_address() -> None:
    built = build_domain(REDEFINED, SAVED)
    assert address(disk(SAVED, "vdb")) is not None
    vdb = disk(built, "vdb")
    assert address(vdb) is None
    target = vdb.find("target")
    assert target is not None
    assert target.attrib == {"dev": "vdb", "bus": "scsi"}


def test_removed_disks_are_removed_and_new_ones_added() -> None:
    built = build_domain(REDEFINED, SAVED)
    targets = [(d.get("device"), d.find("target").get("dev"))  # type: ignore[union-attr]
               for d in devices(built, "disk")]
    assert sorted(targets) == [("cdrom", "sda"), ("disk", "vda"), ("disk", "vdb"),
                               ("disk", "vdd")]
    assert address(disk(built, "vdd")) is None


def test_no_disks_and_no_interfaces_remove_them_all_but_the_cdrom() -> None:
    built = build_domain(spec(), SAVED)
    assert [d.get("device") for d in devices(built, "disk")] == ["cdrom"]
    assert devices(built, "interface") == []
    assert parse_domain(built).disks == ()


def test_a_changed_source_replaces_the_whole_source_element() -> None:
    base = build_domain(spec(disks=(Disk(f"{IMAGES}/old.qcow2", "vda"),)))
    root = ET.fromstring(base)
    source = root.find("devices/disk/source")
    assert source is not None
    source.set("index", "1")
    ET.SubElement(source, "seclabel", model="dac", relabel="no")
    built = build_domain(spec(disks=(Disk(f"{IMAGES}/new.qcow2", "vda"),)),
                         ET.tostring(root, encoding="unicode"))
    new_source = ET.fromstring(built).find("devices/disk/source")
    assert new_source is not None
    assert (new_source.attrib, list(new_source)) == ({"file": f"{IMAGES}/new.qcow2"}, [])


def test_readonly_is_added_and_removed() -> None:
    readonly = build_domain(spec(disks=(Disk(f"{IMAGES}/a.img", "vda", readonly=True),)))
    assert len(disk(readonly, "vda").findall("readonly")) == 1
    again = build_domain(spec(disks=(Disk(f"{IMAGES}/a.img", "vda", readonly=True),)), readonly)
    assert len(disk(again, "vda").findall("readonly")) == 1
    writable = build_domain(spec(disks=(Disk(f"{IMAGES}/a.img", "vda"),)), readonly)
    assert disk(writable, "vda").findall("readonly") == []


def test_an_interface_changing_kind_drops_its_live_names() -> None:
    base = """<domain type='kvm'><name>golden-vm</name><memory>65536</memory><vcpu>1</vcpu>
      <os><type>hvm</type></os><devices>
        <interface type='bridge'><mac address='52:54:00:01:02:03'/><source bridge='br0'/>
          <target dev='vnet7'/><model type='virtio'/><alias name='net0'/>
          <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
        </interface></devices></domain>"""
    built = build_domain(spec(interfaces=(Interface(network="default"),)), base)
    [nic] = devices(built, "interface")
    assert nic.get("type") == "network"
    assert [child.tag for child in nic] == ["mac", "source", "model", "address"]
    assert nic.find("source").attrib == {"network": "default"}  # type: ignore[union-attr]
    assert nic.find("mac").attrib == {"address": "52:54:00:01:02:03"}  # type: ignore[union-attr]


@pytest.mark.parametrize(("current", "vcpus", "attributes"), [
    ("1", 2, {"placement": "static", "current": "1"}),  # still below the new maximum: kept
    ("2", 2, {"placement": "static"}),  # all of them online: no current
    ("3", 2, {"placement": "static"}),
])
def test_vcpu_current_is_kept_below_the_new_count_and_placement_kept(
        current: str, vcpus: int, attributes: dict[str, str]) -> None:
    base = SAVED.replace("<vcpu placement='static'>1</vcpu>",
                         f"<vcpu placement='static' current='{current}'>4</vcpu>")
    vcpu = ET.fromstring(build_domain(spec(vcpus=vcpus), base)).find("vcpu")
    assert vcpu is not None
    assert (vcpu.text, vcpu.attrib) == (str(vcpus), attributes)


def test_memory_is_written_in_kib_whatever_the_base_said() -> None:
    base = SAVED.replace("<memory unit='KiB'>65536</memory>", "<memory unit='GiB'>1</memory>")
    root = ET.fromstring(build_domain(spec(memory_kib=97657, current_memory_kib=97657), base))
    assert [(e.tag, e.text, e.attrib) for e in root if "emory" in e.tag] == [
        ("memory", "97657", {"unit": "KiB"}), ("currentMemory", "97657", {"unit": "KiB"})]


def test_type_arch_and_machine_from_the_spec_win() -> None:
    built = build_domain(spec(type="qemu", arch="i686", machine="pc-q35-7.2"), SAVED)
    config = parse_domain(built)
    assert (config.type, config.arch, config.machine) == ("qemu", "i686", "pc-q35-7.2")


# --- escaping and the ownership marker --------------------------------------------------------

NASTY = "a&b<c>'d\"e ]]> &amp; <!-- x --> <?pi?>"


def test_xml_metacharacters_round_trip() -> None:
    nasty = spec(
        name=NASTY,
        disks=(Disk(f"{IMAGES}/{NASTY}.qcow2", "vda"),
               Disk(f"{IMAGES}/</source><source file='/etc/shadow'/>", "vdb")),
        interfaces=(Interface(network=NASTY), Interface(bridge="br'0\"")),
    )
    for base in (None, SAVED):
        built = build_domain(nasty, base)
        config = parse_domain(built)
        assert config.name == NASTY
        assert config.disks == nasty.disks
        assert [(i.network, i.bridge) for i in config.interfaces] == [
            (NASTY, None), (None, "br'0\"")]
        root = ET.fromstring(built)
        assert len(root.findall("name")) == 1
        assert len([d for d in root.findall("devices/disk") if d.get("device") == "disk"]) == 2
        assert all(len(d.findall("source")) == 1 for d in root.findall("devices/disk"))
        assert "&lt;c&gt;" in built
        assert "&amp;amp;" in built


def test_the_marker_is_present_exactly_once() -> None:
    new = build_domain(NEW)
    assert markers(new) == 1
    assert markers(build_domain(NEW, new)) == 1
    redefined = build_domain(REDEFINED, SAVED)
    assert markers(SAVED) == 0
    assert markers(redefined) == 1
    twice = build_domain(REDEFINED, redefined)
    assert markers(twice) == 1
    assert twice == redefined


def test_building_twice_changes_nothing() -> None:
    for desired, base in ((NEW, None), (REDEFINED, SAVED)):
        first = build_domain(desired, base)
        assert build_domain(desired, first) == first


# --- parsing what libvirt writes ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("element", "kib"),
    [
        ("<memory>65536</memory>", 65536),
        ("<memory unit='KiB'>97657</memory>", 97657),
        ("<memory unit='k'>10</memory>", 10),
        ("<memory unit='KB'>100000</memory>", 97657),
        ("<memory unit='b'>1048576</memory>", 1024),
        ("<memory unit='bytes'>1025</memory>", 2),
        ("<memory unit='MiB'>64</memory>", 65536),
        ("<memory unit='M'>64</memory>", 65536),
        ("<memory unit='MB'>1</memory>", 977),
        ("<memory unit='GiB'>2</memory>", 2097152),
        ("<memory unit='GB'>1</memory>", 976563),
        ("<memory unit='TiB'>1</memory>", 1073741824),
        ("<memory unit='TB'>1</memory>", 976562500),
        ("<memory unit='KiB'> 512 </memory>", 512),
    ],
)
def test_memory_units_libvirt_may_write(element: str, kib: int) -> None:
    config = parse_domain(f"<domain type='kvm'><name>x</name>{element}<vcpu>1</vcpu></domain>")
    assert (config.memory_kib, config.current_memory_kib) == (kib, kib)


#: What section 8 reads of data/saved-domain.xml: libvirt's qemu64 CPU, a pty serial
#: console, VNC on 127.0.0.1, BIOS, boot from hd.
SAVED_SECTION_8: dict[str, Any] = {
    "cpu": CPU(mode="custom", model="qemu64"), "serial": True, "graphics": "vnc",
    "graphics_listen": "127.0.0.1"}


def test_parse_the_real_saved_definition() -> None:
    assert parse_domain(SAVED) == DomainConfig(
        name="golden-vm", uuid=SAVED_UUID, type="kvm", arch="x86_64", machine="pc-i440fx-7.2",
        memory_kib=65536, current_memory_kib=65536, vcpus=1,
        disks=(Disk(f"{IMAGES}/golden-a.qcow2", "vda", "qcow2", "virtio"),
               Disk(f"{IMAGES}/golden-b.img", "vdb", "raw", "virtio"),
               Disk(f"{IMAGES}/golden-c.img", "vdc", "raw", "virtio")),
        interfaces=(Interface(network="default", mac="52:54:00:13:a2:52", model="virtio"),
                    Interface(bridge="br0", mac="52:54:00:f0:dc:8a", model="e1000")),
        managed=False, **SAVED_SECTION_8,
    )


def test_parse_sparse_definitions() -> None:
    config = parse_domain("""<domain type='qemu'><name>bare</name>
        <uuid>EFEB2802-667A-47F9-A68D-52471CC6024A</uuid><memory unit='MiB'>64</memory>
        <currentMemory unit='MiB'>32</currentMemory><vcpu current='1'>2</vcpu>
        <devices>
          <disk type='block' device='disk'><source dev='/dev/vg/lv'/><target dev='vda'/></disk>
          <disk type='file' device='disk'><readonly/></disk>
          <interface type='direct'><source dev='eth0' mode='bridge'/></interface>
          <interface type='network'><source network='default'/></interface>
        </devices></domain>""")
    assert config == DomainConfig(
        name="bare", uuid=SAVED_UUID, type="qemu", arch=None, machine=None,
        memory_kib=65536, current_memory_kib=32768, vcpus=2, disks=(), interfaces=(),
        managed=False, boot=None,
        kept=("disk vda: a block disk (/dev/vg/lv)", "disk (no target): no absolute image path",
              "interface 0 (direct): a direct interface",
              "interface 1 (network default): no model"),
    )


def test_a_kept_cdrom_moves_off_a_target_the_manifest_gives_a_disk() -> None:
    """The first SATA disk defaults to sda, where the saved domain has its cdrom."""
    sata = spec(disks=(Disk(f"{IMAGES}/golden-a.qcow2", "sda", bus="sata"),))
    built = build_domain(sata, SAVED)
    targets = {d.get("device"): d.find("target").get("dev")  # type: ignore[union-attr]
               for d in devices(built, "disk")}
    assert targets == {"disk": "sda", "cdrom": "sdb"}
    [cdrom] = [d for d in devices(built, "disk") if d.get("device") == "cdrom"]
    assert cdrom.find("address") is None
    assert parse_domain(built).disks == sata.disks
