"""Reading domains: listings, one domain's state, ownership marks, disk users, machines.

Used through `Hypervisor.domains`. A domain can vanish between any two calls:
DomainNotFound anywhere in reading one domain means it is absent.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from .. import domainxml
from ..errors import DomainNotFound
from ..model import Observed, Power
from .connection import Connection
from .errors import code
from .listing import Listing, Marker

STATES = {
    code("VIR_DOMAIN_RUNNING"): Power.RUNNING,
    code("VIR_DOMAIN_BLOCKED"): Power.RUNNING,
    code("VIR_DOMAIN_PAUSED"): Power.PAUSED,
    code("VIR_DOMAIN_SHUTOFF"): Power.STOPPED,
}
_tokens = itertools.count(1)


class Domains:
    """The domains of one host, read through its connection."""

    def __init__(self, connection: Connection):
        self._c = connection
        self._handles: dict[int, dict[str, Any]] = {}  # listing token → name → virDomain
        self._handles_lock = threading.Lock()
        self._machines: dict[tuple[str, str | None, str], str] = {}
        self._cpu_models: dict[tuple[str, str | None, str], frozenset[str] | None] = {}
        connection.on_reset.append(self._drop_handles)

    def _drop_handles(self) -> None:
        with self._handles_lock:
            self._handles.clear()

    # --- listings ---------------------------------------------------------------------

    def list_all(self) -> Listing:
        """Every domain, with its autostart and persistence, in three bulk calls."""
        started = time.time_ns()
        with self._c.call("cannot list domains") as conn:
            self._c.calls += 3
            domains = conn.listAllDomains(0)
            autostart = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
            persistent = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
        handles = {dom.name(): dom for dom in domains}  # name() needs no round trip
        token = next(_tokens)
        with self._handles_lock:  # the newest two: a pass's listing outlives a resync's
            self._handles[token] = handles
            for stale in sorted(self._handles)[:-2]:
                del self._handles[stale]
        return Listing(started_ns=started, names=frozenset(handles),
                       autostart=frozenset(dom.name() for dom in autostart),
                       persistent=frozenset(dom.name() for dom in persistent), token=token)

    def holds(self, listing: Listing) -> bool:
        """Whether the handles of `listing` are still kept: not after the connection was
        reset, nor once two newer listings were taken."""
        with self._handles_lock:
            return listing.token in self._handles

    def _handle(self, listing: Listing, name: str) -> Any:
        with self._handles_lock:
            return self._handles.get(listing.token, {}).get(name)

    def names(self, *, unmanaged_only: bool = False) -> list[str]:
        """Every domain's name, or those without reconcile's ownership mark."""
        listing = self.list_all()
        names = sorted(listing.names)
        if unmanaged_only:
            managed = self.managed(listing)
            names = [name for name in names if name not in managed]
        return names

    def managed(self, listing: Listing | None = None,
                skip: frozenset[str] = frozenset()) -> dict[str, Marker]:
        """The domains that carry reconcile's ownership mark, with the mark, leaving out
        (not reading) the names in `skip`."""
        if listing is None:
            listing = self.list_all()
        managed = {}
        for name in listing.names:
            if name in skip:
                continue
            dom = self._handle(listing, name)
            try:
                if dom is None:
                    with self._c.call(f"cannot read domain '{name}'") as conn:
                        self._c.calls += 2
                        xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                else:
                    with self._c.call("cannot read a domain", on=dom.connect()):
                        self._c.calls += 1
                        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            except DomainNotFound:
                continue  # vanished since the listing
            config = domainxml.parse_domain(xml)
            if config.managed:
                managed[name] = Marker(host=config.owner, source=config.source)
        return managed

    # --- one domain -----------------------------------------------------------------------

    def observe(self, name: str, listing: Listing | None = None) -> Observed:
        """The domain as libvirt has it now. DomainNotFound anywhere means absent.

        With a `listing`, existence, autostart and persistence come from it and only
        the definitions and power state are read: one call for a stopped domain, three
        for a running one. The caller passes a listing only when no reconcile run can
        have changed the domain since it was taken.
        """
        if listing is not None:
            if name not in listing.names:
                return Observed(name=name, exists=False)
            dom = self._handle(listing, name)
            if dom is not None:
                try:
                    return self._observe_listed(name, dom, listing)
                except DomainNotFound:
                    pass  # gone, or replaced by another domain of that name: look it up
        try:
            return self._observe(name)
        except DomainNotFound:
            return Observed(name=name, exists=False)

    def _xml_flags(self, inactive: bool) -> int:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        if not self._c.readonly:
            flags |= libvirt.VIR_DOMAIN_XML_SECURE
        return flags

    def _observe_listed(self, name: str, dom: Any, listing: Listing) -> Observed:
        with self._c.call(f"cannot read domain '{name}'", on=dom.connect()):
            self._c.calls += 1
            current_xml = dom.XMLDesc(self._xml_flags(inactive=False))
        current = domainxml.parse_domain(current_xml)
        if not current.active:  # an inactive domain's current XML is its saved one
            return Observed(name=name, exists=True, power=Power.STOPPED, persistent=True,
                            autostart=name in listing.autostart, saved=current,
                            live=None, saved_xml=current_xml)
        with self._c.call(f"cannot read domain '{name}'", on=dom.connect()):
            self._c.calls += 2
            power = STATES.get(dom.state()[0], Power.OTHER)
            saved_xml = dom.XMLDesc(self._xml_flags(inactive=True))
        return Observed(name=name, exists=True, power=power,
                        persistent=name in listing.persistent,
                        autostart=name in listing.autostart,
                        saved=domainxml.parse_domain(saved_xml), live=current,
                        saved_xml=saved_xml)

    def _observe(self, name: str) -> Observed:
        with self._c.call(f"cannot read domain '{name}'") as conn:
            self._c.calls += 1
            dom = conn.lookupByName(name)
            self._c.calls += 2
            state = dom.state()[0]
            persistent = bool(dom.isPersistent())
            power = STATES.get(state, Power.OTHER)
            self._c.calls += 1
            saved_xml = dom.XMLDesc(self._xml_flags(inactive=True))
            live_xml = None
            if power.active:
                self._c.calls += 1
                live_xml = dom.XMLDesc(self._xml_flags(inactive=False))
            autostart = False
            if persistent:
                self._c.calls += 1
                autostart = bool(dom.autostart())
        return Observed(
            name=name,
            exists=True,
            power=power,
            persistent=persistent,
            autostart=autostart,
            saved=domainxml.parse_domain(saved_xml),
            live=domainxml.parse_domain(live_xml) if live_xml else None,
            saved_xml=saved_xml,
        )

    def disk_users(self, paths: set[str], *, exclude: str) -> dict[str, str]:
        """Which of `paths` (resolved) a domain other than `exclude` has as a disk."""
        users: dict[str, str] = {}
        with self._c.call("cannot list domains") as conn:
            self._c.calls += 1
            domains = conn.listAllDomains(0)
        for dom in domains:
            name = dom.name()
            if name == exclude:
                continue
            try:
                with self._c.call(f"cannot read domain '{name}'", on=dom.connect()):
                    self._c.calls += 1
                    xml = dom.XMLDesc(0)
                config = domainxml.parse_domain(xml)
            except DomainNotFound:
                continue
            for disk in config.disks:
                if disk.source and os.path.realpath(disk.source) in paths:
                    users.setdefault(os.path.realpath(disk.source), name)
        return users

    # --- machines ---------------------------------------------------------------------------

    def canonical_machine(self, virt_type: str, arch: str | None, machine: str) -> str:
        """libvirt's canonical name for a machine alias ('pc' → 'pc-i440fx-7.2')."""
        key = (virt_type, arch, machine)
        if key not in self._machines:
            try:
                self._c.calls += 1
                with self._c.slot() as conn:
                    caps = conn.getDomainCapabilities(None, arch, machine, virt_type, 0)
                canonical = ET.fromstring(caps).findtext("machine") or machine
            except (libvirt.libvirtError, ET.ParseError):
                # Refused on a read-only connection (--dry-run); absent from test:///.
                canonical = self._canonical_from_capabilities(virt_type, arch, machine)
            self._machines[key] = canonical
        return self._machines[key]

    def cpu_models(self, virt_type: str, arch: str | None,
                   machine: str | None) -> frozenset[str] | None:
        """The custom CPU models libvirt knows for such a domain (its domain capabilities),
        or None when it cannot say (a read-only connection, the test driver)."""
        key = (virt_type, arch, machine or "")
        if key in self._cpu_models:
            return self._cpu_models[key]
        try:
            self._c.calls += 1
            with self._c.slot() as conn:
                caps = conn.getDomainCapabilities(None, arch, machine, virt_type, 0)
            root = ET.fromstring(caps)
        except (libvirt.libvirtError, ET.ParseError):
            return None  # asked again next time: the connection may come back
        mode = next((m for m in root.iterfind("cpu/mode") if m.get("name") == "custom"), None)
        models = None if mode is None else frozenset(
            (model.text or "").strip() for model in mode.iterfind("model"))
        self._cpu_models[key] = models
        return models

    def _canonical_from_capabilities(self, virt_type: str, arch: str | None,
                                     machine: str) -> str:
        """The same answer from the host capabilities, which read-only connections may read."""
        try:
            self._c.calls += 1
            with self._c.slot() as conn:
                caps = conn.getCapabilities()
            root = ET.fromstring(caps)
        except (libvirt.libvirtError, ET.ParseError):
            return machine
        arch = arch or root.findtext("host/cpu/arch")
        for arch_el in root.iterfind("guest/arch"):
            if arch_el.get("name") != arch:
                continue
            typed = [m for d in arch_el.iterfind("domain") if d.get("type") == virt_type
                     for m in d.iterfind("machine")]
            for candidate in typed + arch_el.findall("machine"):
                if (candidate.text or "").strip() == machine:
                    return candidate.get("canonical") or machine
        return machine
