"""Domains of one test, read and removed through libvirt: the one `Domain` shape every
suite checks (state, identity, the saved and the live definition), reading it back,
defining a tiny operator's domain, and removing a test's domains when it ends.

Called by the fixtures and tests of tests/e2e, tests/service, tests/reliability and
tests/multihost (and tests/multihost/measure.py). Everything here talks to real libvirt
over a connection the caller holds; nothing here picks which domains are the test's:
the caller names them, or gives its own prefix.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import libvirt

from controller.domainxml import MANAGED_NS
from tests.support.libvirtd import VIRT_TYPE
from tests.support.waiting import wait_until

MIB = 1024  # KiB

#: What `remove_domain` undefines with by default: the NVRAM is kept (as reconcile does).
KEEP_NVRAM = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM


def _error_code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code())


def lookup(connection: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain `name`, or None when the host has none of that name; any other libvirt
    error is raised."""
    try:
        return connection.lookupByName(name)
    except libvirt.libvirtError as exc:
        if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def domain_names(connection: libvirt.virConnect) -> list[str]:
    """The names of every domain on the host now (one that vanishes meanwhile is skipped)."""
    names = []
    for dom in connection.listAllDomains(0):
        try:
            names.append(dom.name())
        except libvirt.libvirtError:
            continue
    return names


# --- reading a domain back -------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """What a test checks of one domain definition."""

    uuid: str
    memory_kib: int
    current_memory_kib: int
    vcpus: int
    managed: bool
    disks: tuple[str, ...]


def parse_config(xml: str) -> Config:
    root = ET.fromstring(xml)

    def kib(tag: str) -> int:
        element = root.find(tag)
        assert element is not None and element.get("unit", "KiB") == "KiB", xml
        return int((element.text or "0").strip())

    metadata = root.find("metadata")
    managed = metadata is not None and metadata.find(f"{{{MANAGED_NS}}}managed") is not None
    disks = tuple(source.get("file", "") for source in root.findall("devices/disk/source"))
    return Config(uuid=root.findtext("uuid", "").strip(), memory_kib=kib("memory"),
                  current_memory_kib=kib("currentMemory"),
                  vcpus=int((root.findtext("vcpu") or "").strip()), managed=managed,
                  disks=disks)


@dataclass(frozen=True)
class Domain:
    """One domain as libvirt reports it at one moment."""

    name: str
    uuid: str
    id: int  # -1 when not running
    state: int  # libvirt.VIR_DOMAIN_*
    persistent: bool
    autostart: bool
    saved_xml: str
    live_xml: str | None

    @property
    def running(self) -> bool:
        return self.state == int(libvirt.VIR_DOMAIN_RUNNING)

    @property
    def shut_off(self) -> bool:
        return self.state == int(libvirt.VIR_DOMAIN_SHUTOFF)

    @property
    def saved(self) -> Config:
        return parse_config(self.saved_xml)

    @property
    def live(self) -> Config:
        assert self.live_xml is not None, f"{self.name} is not running"
        return parse_config(self.live_xml)

    @property
    def memory_mib(self) -> int:
        """The memory of the saved definition, in whole MiB."""
        return self.saved.memory_kib // MIB


def read_domain(connection: libvirt.virConnect, name: str) -> Domain | None:
    """The domain `name` now, or None when it does not exist."""
    try:
        dom = connection.lookupByName(name)
        state = dom.state()[0]
        active = bool(dom.isActive())
        persistent = bool(dom.isPersistent())
        return Domain(
            name=name,
            uuid=dom.UUIDString(),
            id=dom.ID() if active else -1,
            state=state,
            persistent=persistent,
            autostart=bool(dom.autostart()) if persistent else False,
            saved_xml=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
            live_xml=dom.XMLDesc(0) if active else None,
        )
    except libvirt.libvirtError as exc:
        if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def must_read(connection: libvirt.virConnect, name: str) -> Domain:
    found = read_domain(connection, name)
    assert found is not None, f"domain {name} does not exist"
    return found


def snapshot(connection: libvirt.virConnect, prefix: str) -> dict[str, Domain]:
    """Every domain of this test, to compare before and after a run that must change
    nothing."""
    snap = {}
    for name in domain_names(connection):
        if name.startswith(prefix):
            snap[name] = must_read(connection, name)
    return snap


# --- defining one ------------------------------------------------------------------------

def tiny_domain_xml(name: str, *, virt_type: str = VIRT_TYPE, memory_mib: int = 64,
                    domain_uuid: str | None = None, disk: Path | None = None) -> str:
    """A tiny guest the way an operator would define it, with no reconcile marker: 1 vCPU,
    `memory_mib`, a console, maybe one qcow2 disk (vda), no NIC. Without a bootable disk it
    boots into the BIOS and sits there."""
    root = ET.Element("domain", type=virt_type)
    ET.SubElement(root, "name").text = name
    if domain_uuid:
        ET.SubElement(root, "uuid").text = domain_uuid
    ET.SubElement(root, "memory", unit="MiB").text = str(memory_mib)
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    devices = ET.SubElement(root, "devices")
    if disk is not None:
        element = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(element, "driver", name="qemu", type="qcow2")
        ET.SubElement(element, "source", file=str(disk))
        ET.SubElement(element, "target", dev="vda", bus="virtio")
    ET.SubElement(devices, "console", type="pty")
    return ET.tostring(root, encoding="unicode")


def define_unmanaged(connection: libvirt.virConnect, name: str, virt_type: str, *,
                     memory_mib: int = 64, start: bool = False,
                     disk: Path | None = None) -> Domain:
    """Define (and maybe start) a tiny domain the way an operator would: no reconcile
    marker in it (see `tiny_domain_xml`)."""
    dom = connection.defineXML(tiny_domain_xml(name, virt_type=virt_type,
                                               memory_mib=memory_mib, disk=disk))
    if start:
        dom.create()
    return must_read(connection, name)


# --- removing a test's domains -------------------------------------------------------------

def remove_domain(connection: libvirt.virConnect, name: str, *, flags: int = KEEP_NVRAM,
                  timeout: float = 60.0) -> None:
    """Destroy and undefine `name` (with `flags`: by default the NVRAM is kept) and wait
    until it is gone, tolerating every 'already done' and a busy domain (after a kill -9
    of a client, libvirtd may still hold the domain's job lock). A domain that is still
    there after `timeout` seconds fails, with the last libvirt error."""
    last: list[str] = []

    def gone() -> bool:
        try:
            dom = connection.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(flags)
            connection.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
                return True
            last[:] = [str(exc)]
        return False

    try:
        wait_until(gone, timeout=timeout, interval=0.2, what=f"domain {name} to be removed")
    except AssertionError as error:
        raise AssertionError(f"{error}; last libvirt error: {last}") from None


def remove_domains(connection: libvirt.virConnect, prefix: str) -> list[str]:
    """Destroy and undefine every domain whose name starts with `prefix`, in parallel
    (a hard destroy of a tiny guest takes ~2 s), and check that none is left; returns the
    names removed."""
    names = [name for name in domain_names(connection) if name.startswith(prefix)]
    if names:
        # at most 4 calls in flight: libvirtd stops reading a connection that has 5
        with ThreadPoolExecutor(max_workers=min(len(names), 4)) as pool:
            list(pool.map(lambda name: remove_domain(connection, name), names))
    left = [name for name in domain_names(connection) if name.startswith(prefix)]
    assert not left, f"domains left behind: {left}"
    return names
