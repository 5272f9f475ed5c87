"""The soak's view of libvirt and its hand in it: reading every domain at once (the
monitor), judging whether a VM is as its manifest says, and the faults that act on
domains behind the service's back (destroy, undefine, a changed definition).

Talks to the private libvirtd (tests/service/support.Sandbox) over a connection of its
own, opened again whenever a daemon restart broke it. Used by tests/soak/run.py.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from tests.support.domains import MIB
from tests.support.libvirtd import VIRT_TYPE

from .schedule import FOREIGN_MEMORY, Want
from .timeline import Desire

MANAGED = "{urn:reconcile-libvirt:managed:1}managed"


@dataclass(frozen=True)
class Seen:
    """One domain as the monitor read it."""

    name: str
    uuid: str
    running: bool
    shut_off: bool
    persistent: bool
    managed: bool
    memory_mib: int  # of the saved definition
    autostart: bool
    xml_sha256: str  # of the saved definition


def _memory_mib(root: ET.Element) -> int:
    memory = root.find("memory")
    assert memory is not None and memory.text is not None
    factor = {"KiB": 1, "MiB": MIB, "GiB": MIB * MIB}[memory.get("unit", "KiB")]
    return int(memory.text) * factor // MIB


class Libvirt:
    """A connection to the sandbox that survives its restarts (each call may raise
    libvirt.libvirtError while the daemon is down)."""

    def __init__(self, uri: str):
        self.uri = uri
        self._conn: libvirt.virConnect | None = None

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            self.close()
            self._conn = libvirt.open(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def read_all(self, prefix: str) -> dict[str, Seen]:
        """Every domain whose name starts with `prefix`; a domain that vanishes while
        being read is left out (it is gone)."""
        seen = {}
        for dom in self.conn.listAllDomains(0):
            name = dom.name()
            if not name.startswith(prefix):
                continue
            try:
                state = dom.state()[0]
                persistent = bool(dom.isPersistent())
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                autostart = bool(dom.autostart()) if persistent else False
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise
            root = ET.fromstring(xml)
            metadata = root.find("metadata")
            seen[name] = Seen(
                name=name, uuid=dom.UUIDString(), running=state == libvirt.VIR_DOMAIN_RUNNING,
                shut_off=state == libvirt.VIR_DOMAIN_SHUTOFF, persistent=persistent,
                managed=metadata is not None and metadata.find(MANAGED) is not None,
                memory_mib=_memory_mib(root), autostart=autostart,
                xml_sha256=hashlib.sha256(xml.encode()).hexdigest())
        return seen

    # --- faults behind the service's back -----------------------------------------------

    def destroy(self, name: str) -> bool:
        """virsh destroy; False when there was nothing to destroy."""
        try:
            dom = self.conn.lookupByName(name)
            if not dom.isActive():
                return False
            dom.destroy()
        except libvirt.libvirtError:
            return False
        return True

    def undefine(self, name: str) -> bool:
        """virsh undefine (a running domain stays, transient); False when not defined."""
        try:
            dom = self.conn.lookupByName(name)
            if not dom.isPersistent():
                return False
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        except libvirt.libvirtError:
            return False
        return True

    def redefine(self, name: str) -> bool:
        """Define the domain again with memory no manifest asks for (the saved definition
        changes; a running domain keeps running as it was)."""
        try:
            dom = self.conn.lookupByName(name)
            if not dom.isPersistent():
                return False
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            root = ET.fromstring(xml)
            for tag in ("memory", "currentMemory"):
                element = root.find(tag)
                if element is not None:
                    element.set("unit", "MiB")
                    element.text = str(FOREIGN_MEMORY)
            self.conn.defineXML(ET.tostring(root, encoding="unicode"))
        except libvirt.libvirtError:
            return False
        return True

    def define_foreign(self, name: str, *, start: bool) -> None:
        """A domain defined the way an operator would: no reconcile marker in it."""
        xml = (f"<domain type='{VIRT_TYPE}'><name>{name}</name><memory unit='MiB'>64</memory>"
               "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
               "<devices><console type='pty'/></devices></domain>")
        assert re.fullmatch(r"[a-z0-9-]+", name)
        dom = self.conn.defineXML(xml)
        if start:
            dom.create()


def matches(seen: Seen | None, desire: Desire | None) -> bool:
    """Whether the domain is as a valid manifest says (never for an invalid one)."""
    if not isinstance(desire, Want):
        return desire == "removed" and seen is None
    if desire.state == "absent":
        return seen is None
    if seen is None or not (seen.persistent and seen.managed):
        return False
    if seen.memory_mib != desire.memory:
        return False
    return seen.running if desire.state == "running" else seen.shut_off
