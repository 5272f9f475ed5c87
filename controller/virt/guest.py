"""A running guest seen from outside: its addresses, and whether its guest agent answers.

Used through `Hypervisor.guest` by `controller.readiness` (`--once -o json`, `--wait`,
`status`) and by the service's guest watch. Reads only; never waits long:

- addresses come from the DHCP leases of libvirt's networks
  (`virDomainInterfaceAddresses`, source LEASE), and for the interfaces without a lease
  (a host bridge, a static address) from the guest agent (source AGENT), once it has
  answered guest-ping;
- the agent answers when `guest-ping` (`libvirt_qemu.qemuAgentCommand`) returns within
  `ping_timeout` seconds; a domain without the `org.qemu.guest_agent.0` channel has no
  agent (None). libvirt forbids agent commands on a read-only connection: there the
  channel's own state (`connected` once the agent opened its port) stands in for a ping,
  and the agent's addresses are unknown (`controller.readiness.GuestReaders` gives
  `status` a read-write connection for the guests where it can).

Loopback and link-local addresses are left out: nobody can reach a guest on them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import libvirt

from ..errors import ConnectionLost, DomainNotFound, HypervisorError
from ..model import GuestAddress, GuestInfo
from .connection import Connection
from .errors import code

log = logging.getLogger(__name__)

AGENT_CHANNEL = "org.qemu.guest_agent.0"
#: Seconds libvirt waits for the agent's answer to guest-ping.
PING_TIMEOUT = 2
_RUNNING = {code("VIR_DOMAIN_RUNNING"), code("VIR_DOMAIN_BLOCKED")}
_LEASE = int(getattr(libvirt, "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE", 0))
_AGENT = int(getattr(libvirt, "VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT", 1))
_NOT_CONFIGURED = "not configured"  # "QEMU guest agent is not configured"
_DENIED = code("VIR_ERR_OPERATION_DENIED")


@dataclass(frozen=True)
class Devices:
    """What the live definition says about how the guest can be seen."""

    macs: tuple[str, ...]  # the interfaces' MACs, in order
    channel: bool  # the guest agent channel is there
    channel_connected: bool  # ... and libvirt says the agent has opened it


def devices_of(xml: str) -> Devices:
    """The interfaces' MACs and the agent channel of a domain's live XML. Pure."""
    root = ET.fromstring(xml)
    macs = tuple((mac.get("address") or "").lower()
                 for mac in root.iterfind("devices/interface/mac") if mac.get("address"))
    channel = connected = False
    for target in root.iterfind("devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            channel = True
            connected = target.get("state") == "connected"
    return Devices(macs=macs, channel=channel, channel_connected=connected)


def usable(address: str) -> bool:
    """Whether another machine could reach the guest on `address`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def addresses_from(reply: dict[str, Any], source: str) -> dict[str, list[GuestAddress]]:
    """libvirt's interfaceAddresses() answer, by MAC, reachable addresses only. Pure."""
    found: dict[str, list[GuestAddress]] = {}
    for interface in reply.values():
        mac = str(interface.get("hwaddr") or "").lower()
        for entry in interface.get("addrs") or []:
            address = str(entry.get("addr") or "")
            if not usable(address):
                continue
            found.setdefault(mac, []).append(GuestAddress(
                address=address, prefix=int(entry.get("prefix") or 0), mac=mac,
                source=source))
    return found


def merge(macs: tuple[str, ...], leases: dict[str, list[GuestAddress]],
          agent: dict[str, list[GuestAddress]]) -> tuple[GuestAddress, ...]:
    """Each interface's lease addresses, else the agent's; interfaces in the domain's
    order (then any the agent knows that the definition does not list), IPv4 first. Pure."""
    order = list(macs) + sorted((set(leases) | set(agent)) - set(macs))
    result: list[GuestAddress] = []
    for mac in order:
        chosen = leases.get(mac) or agent.get(mac) or []
        result += sorted(chosen, key=_ipv6_last)
    return tuple(result)


def _ipv6_last(address: GuestAddress) -> bool:
    return ":" in address.address


class Guests:
    """The guests of one host's running domains, read through its connection."""

    def __init__(self, connection: Connection):
        self._c = connection

    def look(self, name: str, *, ping_timeout: int = PING_TIMEOUT) -> GuestInfo:
        """The guest of domain `name` now. Never raises for a libvirt error: a domain
        that is gone or not running is `running=False`; a failed read is `error`."""
        try:
            return self._look(name, max(1, ping_timeout))
        except DomainNotFound:
            return GuestInfo(running=False)
        except HypervisorError as error:
            return GuestInfo(running=False, error=str(error))

    def _look(self, name: str, ping_timeout: int) -> GuestInfo:
        with self._c.call(f"cannot read domain '{name}'") as conn:
            self._c.calls += 2
            dom = conn.lookupByName(name)
            if dom.state()[0] not in _RUNNING:
                return GuestInfo(running=False)
            self._c.calls += 1
            devices = devices_of(dom.XMLDesc(0))
        leases = self._addresses(dom, name, _LEASE, "lease")
        agent: bool | None = None
        agent_error: str | None = None
        pinged = False
        if devices.channel and not self._c.readonly:
            agent, agent_error, pinged = self._ping(dom, name, ping_timeout)
        if devices.channel and not pinged:  # agent commands refused: the channel's state
            agent = devices.channel_connected
            if not agent:
                agent_error = "the guest agent has not connected its channel"
        from_agent: dict[str, list[GuestAddress]] = {}
        lacking = [mac for mac in devices.macs if mac not in leases]
        if agent and pinged and (lacking or not devices.macs):
            from_agent = self._addresses(dom, name, _AGENT, "agent")
        return GuestInfo(running=True, addresses=merge(devices.macs, leases, from_agent),
                         channel=devices.channel, agent=agent, agent_error=agent_error)

    def _addresses(self, dom: Any, name: str, source: int,
                   label: str) -> dict[str, list[GuestAddress]]:
        """One source's addresses by MAC; none when that source cannot say (no network
        lease support, the agent refused): then the other source may."""
        try:
            with self._c.call(f"cannot read the addresses of '{name}' ({label})",
                              on=dom.connect()):
                self._c.calls += 1
                reply = dom.interfaceAddresses(source, 0)
        except (DomainNotFound, ConnectionLost):
            raise
        except HypervisorError as error:
            log.debug("%s", error)
            return {}
        return addresses_from(reply or {}, label)

    def _ping(self, dom: Any, name: str,
              timeout: int) -> tuple[bool | None, str | None, bool]:
        """(answered, why not, pinged): (True, None, True) when guest-ping answered;
        (False, why, True) when not; (None, None, True) when libvirt says the domain has
        no agent after all; (None, why, False) when libvirt refused to ask (a connection
        that is read-only on the daemon's side)."""
        try:
            with self._c.call(f"guest agent of '{name}'", on=dom.connect()):
                self._c.calls += 1
                import libvirt_qemu  # only to ping an agent: not for every pass

                reply = libvirt_qemu.qemuAgentCommand(
                    dom, json.dumps({"execute": "guest-ping"}), timeout, 0)
        except (DomainNotFound, ConnectionLost):
            raise
        except HypervisorError as error:
            if error.code == _DENIED:
                return None, str(error), False
            if _NOT_CONFIGURED in str(error):
                return None, None, True
            return False, str(error), True
        try:
            decoded = json.loads(reply)
        except (TypeError, ValueError):
            decoded = None
        if isinstance(decoded, dict) and "return" in decoded:
            return True, None, True
        return False, f"unexpected reply to guest-ping: {reply}", True
