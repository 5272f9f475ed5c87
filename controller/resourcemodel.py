"""Value types of the host resources beside VMs: `kind: Network` and `kind: StoragePool`.

Frozen dataclasses only; no I/O. The manifest loader builds `NetworkSpec` and `PoolSpec`,
controller/netxml.py and controller/poolxml.py parse libvirt's XML into `NetworkConfig`
and `PoolConfig`, the libvirt edge (controller/virt/networks.py, pools.py) fills
`NetworkState` and `PoolState`, and the planners (controller/planner/networks.py,
pools.py) turn a (spec, state) pair into a plan. `DhcpChange` is what a live network
update step carries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Presence(enum.Enum):
    PRESENT = "present"
    ABSENT = "absent"


class NetworkMode(enum.Enum):
    NAT = "nat"
    ISOLATED = "isolated"
    BRIDGE = "bridge"


@dataclass(frozen=True)
class DhcpHost:
    """One DHCP reservation: this MAC gets this address (and host name)."""

    mac: str  # lower case
    ip: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.mac} → {self.ip}{f' ({self.name})' if self.name else ''}"


@dataclass(frozen=True)
class NetworkSpec:
    """One valid Network manifest document, defaults applied."""

    name: str
    source: str  # manifest file, relative to the manifest directory
    state: Presence = Presence.PRESENT
    mode: NetworkMode = NetworkMode.NAT
    bridge: str | None = None  # None: libvirt picks (nat, isolated); required for bridge
    address: str | None = None  # the host's IPv4 address on the network
    prefix: int | None = None
    dhcp: tuple[str, str] | None = None  # (start, end)
    hosts: tuple[DhcpHost, ...] = ()
    autostart: bool = False
    adopt: bool = False
    host: str | None = None  # a named host; None: the -c connection

    @property
    def cidr(self) -> str | None:
        return f"{self.address}/{self.prefix}" if self.address else None


@dataclass(frozen=True)
class PoolSpec:
    """One valid StoragePool manifest document, defaults applied."""

    name: str
    source: str
    state: Presence = Presence.PRESENT
    type: str = "dir"
    path: str = ""  # absolute, normalised; "" only with state absent
    autostart: bool = False
    adopt: bool = False
    host: str | None = None


@dataclass(frozen=True)
class Mark:
    """reconcile's ownership mark on a network or pool: the host that owns it (with
    several hosts) and the manifest file it was defined from."""

    host: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class NetworkConfig:
    """What reconcile models of one libvirt network definition (saved or live)."""

    name: str
    uuid: str
    mode: str  # nat | isolated | bridge, or what libvirt calls another mode (route, open, ...)
    bridge: str | None
    address: str | None  # the first IPv4 <ip>
    prefix: int | None
    ranges: tuple[tuple[str, str], ...]  # its DHCP ranges
    hosts: tuple[DhcpHost, ...]  # its DHCP reservations
    mark: Mark | None  # None: not managed by reconcile
    #: what a manifest cannot describe, kept as it is: "an IPv6 address", "2 more IPv4 ..."
    kept: tuple[str, ...] = ()

    @property
    def managed(self) -> bool:
        return self.mark is not None

    @property
    def cidr(self) -> str | None:
        return f"{self.address}/{self.prefix}" if self.address else None


@dataclass(frozen=True)
class NetworkState:
    """A network as libvirt reported it at one moment. `saved` is the persistent
    definition (the live one where the driver cannot tell them apart), `live` the
    running one. `users`: the running domains attached to it (None: not read)."""

    name: str
    exists: bool
    active: bool = False
    persistent: bool = False
    autostart: bool = False
    saved: NetworkConfig | None = None
    live: NetworkConfig | None = None
    saved_xml: str | None = None
    users: tuple[str, ...] | None = None
    #: mode bridge: whether the host bridge exists (None: the host cannot tell)
    bridge_exists: bool | None = None

    @property
    def managed(self) -> bool:
        return self.saved is not None and self.saved.managed


@dataclass(frozen=True)
class PoolConfig:
    """What reconcile models of one libvirt storage pool definition."""

    name: str
    uuid: str
    type: str
    path: str | None
    mark: Mark | None

    @property
    def managed(self) -> bool:
        return self.mark is not None


@dataclass(frozen=True)
class PoolState:
    """A storage pool as libvirt reported it. `volumes`: how many it holds, read after a
    refresh (None: unknown, e.g. inactive)."""

    name: str
    exists: bool
    active: bool = False
    persistent: bool = False
    autostart: bool = False
    saved: PoolConfig | None = None
    saved_xml: str | None = None
    volumes: int | None = None

    @property
    def managed(self) -> bool:
        return self.saved is not None and self.saved.managed


@dataclass(frozen=True)
class DhcpChange:
    """One live network update (virNetworkUpdate, LIVE only; the saved definition is
    written by a define): `section` "host" or "range", `command` "add", "modify" or
    "delete", `xml` the <host/> or <range/> element."""

    section: str
    command: str
    xml: str
