"""Networks through libvirt: read one (saved and live definitions, the running domains
attached to it, whether a host bridge exists), list the managed ones, and the network
steps, each tolerating being already done.

Used through `Hypervisor.networks` by the network reconcile and its steps
(controller/resource_steps.py). XML goes through controller/netxml.py (pure).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from ..errors import PermanentError
from ..netxml import parse_network
from ..resourcemodel import DhcpChange, Mark, NetworkState
from .connection import Connection
from .errors import code

_NO_NETWORK = code("VIR_ERR_NO_NETWORK")
_INVALID = code("VIR_ERR_OPERATION_INVALID")
_UNSUPPORTED = {code("VIR_ERR_NO_SUPPORT"), code("VIR_ERR_INVALID_ARG")}

_COMMANDS = {"add": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
             "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
             "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE}
_SECTIONS = {"host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
             "range": libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE}


def _error_code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code())


class Networks:
    """The networks of one host, through its connection."""

    def __init__(self, connection: Connection):
        self._c = connection

    def _lookup(self, conn: Any, name: str) -> Any | None:
        self._c.calls += 1
        try:
            return conn.networkLookupByName(name)
        except libvirt.libvirtError as exc:
            if _error_code(exc) == _NO_NETWORK:
                return None
            raise

    # --- reading ------------------------------------------------------------------------

    def state(self, name: str, *, users: bool = False, bridge: str | None = None
              ) -> NetworkState:
        """The network `name` now; with `users`, the running domains attached to it; with
        `bridge` (mode bridge), whether that host bridge exists."""
        with self._c.call(f"cannot read network '{name}'") as conn:
            network = self._lookup(conn, name)
            bridge_exists = self._bridge_exists(conn, bridge) if bridge else None
            if network is None:
                return NetworkState(name=name, exists=False, bridge_exists=bridge_exists)
            self._c.calls += 4
            try:
                active = bool(network.isActive())
                persistent = bool(network.isPersistent())
                autostart = bool(network.autostart())
                live_xml = network.XMLDesc(0)
                saved_xml = _inactive_xml(network, live_xml, active=active)
            except libvirt.libvirtError as exc:
                if _error_code(exc) == _NO_NETWORK:
                    return NetworkState(name=name, exists=False, bridge_exists=bridge_exists)
                raise
            live = parse_network(live_xml) if active else None
            attached: tuple[str, ...] | None = None
            if users and active:
                attached = self._users(conn, name, live.bridge if live else None)
        return NetworkState(name=name, exists=True, active=active, persistent=persistent,
                            autostart=autostart, saved=parse_network(saved_xml), live=live,
                            saved_xml=saved_xml, users=attached,
                            bridge_exists=bridge_exists)

    def brief(self, name: str) -> tuple[bool, bool]:
        """(exists, active) of the network `name`: two calls, for a VM's check."""
        with self._c.call(f"cannot read network '{name}'") as conn:
            network = self._lookup(conn, name)
            if network is None:
                return False, False
            self._c.calls += 1
            try:
                return True, bool(network.isActive())
            except libvirt.libvirtError as exc:
                if _error_code(exc) == _NO_NETWORK:
                    return False, False
                raise

    def names(self) -> list[str]:
        """Every network's name."""
        with self._c.call("cannot list networks") as conn:
            self._c.calls += 1
            return sorted(network.name() for network in conn.listAllNetworks(0))

    def managed(self) -> dict[str, Mark]:
        """Every network of the host that carries reconcile's mark, with the mark."""
        marks: dict[str, Mark] = {}
        with self._c.call("cannot list networks") as conn:
            self._c.calls += 1
            for network in conn.listAllNetworks(0):
                self._c.calls += 2
                try:
                    active = bool(network.isActive())
                    xml = _inactive_xml(network, None, active=active)
                except libvirt.libvirtError as exc:
                    if _error_code(exc) == _NO_NETWORK:
                        continue
                    raise
                mark = parse_network(xml).mark
                if mark is not None:
                    marks[network.name()] = mark
        return marks

    def _users(self, conn: Any, name: str, bridge: str | None) -> tuple[str, ...]:
        """The running domains with an interface on network `name` (or on its bridge)."""
        self._c.calls += 1
        found = []
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            self._c.calls += 1
            try:
                root = ET.fromstring(dom.XMLDesc(0))
            except libvirt.libvirtError:
                continue  # gone meanwhile
            for interface in root.iterfind("devices/interface"):
                source = interface.find("source")
                if source is None:
                    continue
                if ((interface.get("type") == "network" and source.get("network") == name)
                        or (bridge and source.get("bridge") == bridge)):
                    found.append(dom.name())
                    break
        return tuple(sorted(found))

    def _bridge_exists(self, conn: Any, bridge: str) -> bool | None:
        """Whether the host has an interface named `bridge` (None: it cannot tell: no
        interface driver)."""
        self._c.calls += 1
        try:
            return bridge in {interface.name() for interface in conn.listAllInterfaces(0)}
        except libvirt.libvirtError as exc:
            if _error_code(exc) in _UNSUPPORTED:
                return None
            raise

    # --- steps: each safe to repeat ---------------------------------------------------------

    def define(self, xml: str) -> None:
        with self._c.call("cannot define network") as conn:
            self._c.calls += 1
            conn.networkDefineXML(xml)

    def start(self, name: str) -> None:
        with self._c.call(f"cannot start network '{name}'") as conn:
            network = self._require(conn, name)
            self._c.calls += 2
            if not network.isActive():
                try:
                    network.create()
                except libvirt.libvirtError:
                    if not network.isActive():  # started meanwhile: done
                        raise

    def stop(self, name: str) -> None:
        with self._c.call(f"cannot stop network '{name}'") as conn:
            network = self._lookup(conn, name)
            if network is None:
                return
            self._c.calls += 2
            if network.isActive():
                try:
                    network.destroy()
                except libvirt.libvirtError as exc:
                    if _error_code(exc) not in (_NO_NETWORK, _INVALID):
                        raise

    def undefine(self, name: str) -> None:
        with self._c.call(f"cannot undefine network '{name}'") as conn:
            network = self._lookup(conn, name)
            if network is None:
                return
            self._c.calls += 2
            if network.isPersistent():
                try:
                    network.undefine()
                except libvirt.libvirtError as exc:
                    if _error_code(exc) != _NO_NETWORK:
                        raise

    def set_autostart(self, name: str, autostart: bool) -> None:
        with self._c.call(f"cannot set autostart on network '{name}'") as conn:
            network = self._require(conn, name)
            self._c.calls += 1
            network.setAutostart(1 if autostart else 0)

    def update(self, name: str, change: DhcpChange) -> None:
        """One live DHCP change (the running network only: its saved definition is
        written by a define). An add of what is there, or a delete of what is not, is
        done already."""
        with self._c.call(f"cannot update network '{name}'") as conn:
            network = self._require(conn, name)
            self._c.calls += 1
            try:
                network.update(_COMMANDS[change.command], _SECTIONS[change.section], -1,
                               change.xml, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)
            except libvirt.libvirtError as exc:
                text = (exc.get_error_message() or "").lower()
                if change.command == "add" and "existing" in text:
                    return
                if change.command == "delete" and "couldn't locate" in text:
                    return
                raise

    def _require(self, conn: Any, name: str) -> Any:
        network = self._lookup(conn, name)
        if network is None:
            raise PermanentError(f"network '{name}' does not exist", code=_NO_NETWORK)
        return network


def _inactive_xml(network: Any, live_xml: str | None, *, active: bool) -> str:
    """The saved definition. Drivers without VIR_NETWORK_XML_INACTIVE (the test driver)
    show only the live one."""
    if not active:
        return live_xml if live_xml is not None else str(network.XMLDesc(0))
    try:
        return str(network.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    except libvirt.libvirtError as exc:
        if _error_code(exc) in _UNSUPPORTED:
            return live_xml if live_xml is not None else str(network.XMLDesc(0))
        raise
