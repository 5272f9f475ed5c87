"""Network and StoragePool documents to specs, with the checks a schema cannot make.

Called by the loader after the schema check and before the VMs are cross-checked (a
VM's `network:` and a disk's `pool:` may name them). Invalid, each with its field:

- a name defined twice (both documents), a host nobody named;
- networks: a reservation or DHCP range outside the subnet (or on the host's own
  address), two reservations with one MAC, address or name, a `bridge` network with
  an address or without its bridge, a `nat` network without an address; per host, two
  networks whose subnets overlap, or that name one bridge (both documents);
- pools: a path that is not normalised, resolves (symlinks followed) outside the
  allowed roots (/var/lib/libvirt/images or --disk-root) or is not a folder; per host,
  two pools on one path (both documents).

`vm_resource_problem` is the VM's side: a declared network or pool must be on the VM's
host, valid and present.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Any

from ..model import VMSpec
from ..resourcemodel import DhcpHost, NetworkMode, NetworkSpec, PoolSpec, Presence
from .result import Invalid, LoadResult, printable

Candidates = list[tuple[str, int, dict[str, Any]]]
HOSTS_FILE = "hosts.yaml"  # as specs.HOSTS_FILE (which imports this module)


class _Problem(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _unique(candidates: Candidates, result: LoadResult, kind: str,
            taken: set[str]) -> list[tuple[str, int, dict[str, Any]]]:
    """The documents whose name no other document of `kind` defines; the others are
    invalid (both of them), and their names go into `taken` (the kind's invalid set)."""
    places: dict[str, list[tuple[str, int]]] = {}
    for relative, index, document in candidates:
        places.setdefault(document["metadata"]["name"], []).append((relative, index))
    unique = []
    for relative, index, document in candidates:
        name = document["metadata"]["name"]
        if len(places[name]) > 1 or name in taken:
            others = ", ".join(f"{printable(f)}[{i}]" for f, i in places[name]
                               if (f, i) != (relative, index))
            result.invalid.append(Invalid(relative, index, "metadata.name",
                                          f"{kind} '{name}' is also defined in "
                                          f"{others or 'an invalid document'}"))
            taken.add(name)
            continue
        host = (document.get("spec") or {}).get("host")
        if host is not None and host not in result.hosts:
            result.invalid.append(Invalid(relative, index, "spec.host",
                                          f"host '{host}' is not named in {HOSTS_FILE} "
                                          "nor by --host NAME=URI"))
            taken.add(name)
            continue
        unique.append((relative, index, document))
    return unique


# --- networks ---------------------------------------------------------------------------

def read_networks(candidates: Candidates, result: LoadResult) -> None:
    """The schema-valid Network documents into `result.networks`."""
    specs: list[tuple[str, int, NetworkSpec]] = []
    for relative, index, document in _unique(candidates, result, "network",
                                             result.invalid_networks):
        try:
            specs.append((relative, index, _network(document, relative)))
        except _Problem as problem:
            result.invalid.append(Invalid(relative, index, problem.path, problem.reason))
            result.invalid_networks.add(document["metadata"]["name"])
    clashes = _network_clashes(specs)
    for relative, index, spec in specs:
        if spec.name in clashes:
            path, reason = clashes[spec.name]
            result.invalid.append(Invalid(relative, index, path, reason))
            result.invalid_networks.add(spec.name)
        else:
            result.networks[spec.name] = spec


def _network(document: dict[str, Any], relative: str) -> NetworkSpec:
    name = document["metadata"]["name"]
    spec = document.get("spec") or {}
    state = Presence(spec.get("state", "present"))
    mode = NetworkMode(spec.get("mode", "nat"))
    common = {"name": name, "source": relative, "state": state, "mode": mode,
              "bridge": spec.get("bridge"), "autostart": spec.get("autostart", False),
              "adopt": spec.get("adopt", False), "host": spec.get("host")}
    if state is Presence.ABSENT:
        return NetworkSpec(**common)
    ipv4 = spec.get("ipv4")
    reservations = spec.get("dhcpHosts") or []
    if mode is NetworkMode.BRIDGE:
        if "bridge" not in spec:
            raise _Problem("spec.bridge", "mode bridge needs the host bridge to attach to")
        if ipv4 is not None:
            raise _Problem("spec.ipv4", "a bridge network has no address of libvirt's: the "
                                        "host bridge's own network gives guests theirs")
        if reservations:
            raise _Problem("spec.dhcpHosts", "a bridge network has no DHCP of libvirt's")
        return NetworkSpec(**common)
    if ipv4 is None:
        if mode is NetworkMode.NAT:
            raise _Problem("spec.ipv4", "a nat network needs an address (ipv4.address)")
        if reservations:
            raise _Problem("spec.dhcpHosts", "DHCP reservations need ipv4.address")
        return NetworkSpec(**common)
    interface = ipaddress.IPv4Interface(ipv4["address"])
    subnet = interface.network
    if subnet.prefixlen > 30:
        raise _Problem("spec.ipv4.address", f"/{subnet.prefixlen} leaves no address for "
                                            "guests; at most /30")
    own = interface.ip
    if own in (subnet.network_address, subnet.broadcast_address):
        raise _Problem("spec.ipv4.address", f"{own} is the {_edge(own, subnet)} of {subnet}, "
                                            "not a host address")
    dhcp = None
    if "dhcp" in ipv4:
        start = _inside(ipv4["dhcp"]["start"], subnet, "spec.ipv4.dhcp.start")
        end = _inside(ipv4["dhcp"]["end"], subnet, "spec.ipv4.dhcp.end")
        if start > end:
            raise _Problem("spec.ipv4.dhcp", f"the range starts at {start}, after its end {end}")
        if start <= own <= end:
            raise _Problem("spec.ipv4.dhcp", f"the range {start}-{end} holds the host's own "
                                             f"address {own}")
        dhcp = (str(start), str(end))
    return NetworkSpec(**common, address=str(own), prefix=subnet.prefixlen,
                       dhcp=dhcp, hosts=_reservations(reservations, subnet, own))


def _edge(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> str:
    return "network address" if address == subnet.network_address else "broadcast address"


def _inside(text: str, subnet: ipaddress.IPv4Network, path: str, *,
            own: ipaddress.IPv4Address | None = None) -> ipaddress.IPv4Address:
    """The address `text`, a host address of `subnet` other than `own`."""
    address = ipaddress.IPv4Address(text)
    if address not in subnet:
        raise _Problem(path, f"{address} is outside the subnet {subnet}")
    if address in (subnet.network_address, subnet.broadcast_address):
        raise _Problem(path, f"{address} is the {_edge(address, subnet)} of {subnet}")
    if address == own:
        raise _Problem(path, f"{address} is the host's own address on the network")
    return address


def _reservations(items: list[dict[str, Any]], subnet: ipaddress.IPv4Network,
                  own: ipaddress.IPv4Address) -> tuple[DhcpHost, ...]:
    hosts: list[DhcpHost] = []
    seen: dict[tuple[str, str], int] = {}
    for position, item in enumerate(items):
        path = f"spec.dhcpHosts[{position}]"
        address = _inside(item["ip"], subnet, f"{path}.ip", own=own)
        host = DhcpHost(mac=item["mac"].lower(), ip=str(address), name=item.get("name"))
        for field, value in (("mac", host.mac), ("ip", host.ip), ("name", host.name)):
            if value is None:
                continue
            key = (field, value.lower())
            if key in seen:
                raise _Problem(f"{path}.{field}", f"{field} {value} is already reserved by "
                                                  f"dhcpHosts[{seen[key]}]")
            seen[key] = position
        hosts.append(host)
    return tuple(hosts)


def _network_clashes(specs: list[tuple[str, int, NetworkSpec]]) -> dict[str, tuple[str, str]]:
    """Networks that share a host with another whose subnet overlaps theirs, or that
    names the same bridge: name → (field path, reason), for both of each pair."""
    clashes: dict[str, tuple[str, str]] = {}
    present = [(relative, index, spec) for relative, index, spec in specs
               if spec.state is Presence.PRESENT]
    for position, (relative, index, one) in enumerate(present):
        for other_file, other_index, other in present[position + 1:]:
            if one.host != other.host:
                continue
            where = f"{printable(other_file)}[{other_index}]"
            here = f"{printable(relative)}[{index}]"
            if one.cidr and other.cidr:
                mine = ipaddress.IPv4Network(one.cidr, strict=False)
                theirs = ipaddress.IPv4Network(other.cidr, strict=False)
                if mine.overlaps(theirs):
                    clashes.setdefault(one.name, ("spec.ipv4.address", (
                        f"{mine} overlaps {theirs} of network '{other.name}' ({where}) "
                        "on the same host")))
                    clashes.setdefault(other.name, ("spec.ipv4.address", (
                        f"{theirs} overlaps {mine} of network '{one.name}' ({here}) "
                        "on the same host")))
            if one.bridge and one.bridge == other.bridge and NetworkMode.BRIDGE not in (
                    one.mode, other.mode):
                for spec, peer, place in ((one, other, where), (other, one, here)):
                    clashes.setdefault(spec.name, ("spec.bridge", (
                        f"bridge {spec.bridge} is also network '{peer.name}''s ({place}) "
                        "on the same host")))
    return clashes


# --- pools ---------------------------------------------------------------------------------

def read_pools(candidates: Candidates, result: LoadResult, disk_roots: Sequence[str]) -> None:
    """The schema-valid StoragePool documents into `result.pools`."""
    roots = [os.path.realpath(root) for root in disk_roots]
    specs: list[tuple[str, int, PoolSpec]] = []
    for relative, index, document in _unique(candidates, result, "pool",
                                             result.invalid_pools):
        try:
            specs.append((relative, index, _pool(document, relative, roots)))
        except _Problem as problem:
            result.invalid.append(Invalid(relative, index, problem.path, problem.reason))
            result.invalid_pools.add(document["metadata"]["name"])
    paths: dict[tuple[str | None, str], list[tuple[str, int, PoolSpec]]] = {}
    for entry in specs:
        if entry[2].state is Presence.PRESENT:
            paths.setdefault((entry[2].host, entry[2].path), []).append(entry)
    for relative, index, spec in specs:
        sharing = paths.get((spec.host, spec.path), [])
        others = [f"'{other.name}' ({printable(f)}[{i}])" for f, i, other in sharing
                  if other is not spec]
        if spec.state is Presence.PRESENT and others:
            result.invalid.append(Invalid(relative, index, "spec.path",
                                          f"{spec.path} is also the path of pool "
                                          f"{', '.join(others)} on the same host"))
            result.invalid_pools.add(spec.name)
        else:
            result.pools[spec.name] = spec


def _pool(document: dict[str, Any], relative: str, roots: list[str]) -> PoolSpec:
    spec = document.get("spec") or {}
    state = Presence(spec.get("state", "present"))
    common = {"name": document["metadata"]["name"], "source": relative, "state": state,
              "type": spec.get("type", "dir"), "autostart": spec.get("autostart", False),
              "adopt": spec.get("adopt", False), "host": spec.get("host")}
    if state is Presence.ABSENT:
        return PoolSpec(**common, path=spec.get("path", ""))
    if "path" not in spec:
        raise _Problem("spec.path", "a dir pool needs its folder (path)")
    return PoolSpec(**common, path=confined_folder(spec["path"], roots))


def confined_folder(path: str, roots: list[str]) -> str:
    """`path` if it is a normalised absolute folder path that resolves inside `roots`."""
    if path != os.path.normpath(path) or path == "/":
        raise _Problem("spec.path", f"{printable(path)} is not a normalised folder path "
                                    "(no '..', '.', '//' or trailing '/')")
    resolved = os.path.realpath(path)
    if not any(resolved == root or resolved.startswith(root.rstrip("/") + "/")
               for root in roots):
        shown = path if resolved == path else f"{path} (resolves to {printable(resolved)})"
        raise _Problem("spec.path", f"{printable(shown)} is outside the allowed roots "
                                    f"({', '.join(roots)}); see --disk-root")
    if os.path.exists(resolved) and not os.path.isdir(resolved):
        raise _Problem("spec.path", f"{printable(path)} exists and is not a folder")
    return path


# --- the VMs' side ---------------------------------------------------------------------------

def vm_resource_problem(spec: VMSpec, result: LoadResult) -> tuple[str, str] | None:
    """Why a VM's interface network or volume pool makes it invalid, as (field, reason):
    it names a declared one that is invalid, placed on another host, or to be removed.
    A name no document declares is checked at run time (it may exist on the host)."""
    wanted: list[tuple[str, str, str]] = [
        (f"spec.interfaces[{i}].network", "network", interface.network)
        for i, interface in enumerate(spec.interfaces) if interface.network is not None]
    wanted += [(f"spec.disks[{i}].pool", "pool", disk.pool)
               for i, disk in enumerate(spec.disks) if disk.volume and disk.pool]
    absent = spec.state.value == "absent"
    for path, kind, name in wanted:
        invalid = result.invalid_networks if kind == "network" else result.invalid_pools
        declared: NetworkSpec | PoolSpec | None = (
            result.networks.get(name) if kind == "network" else result.pools.get(name))
        if name in invalid:
            return path, f"{kind} '{name}' is invalid (see its document)"
        if declared is None:
            continue
        if declared.host != spec.host:
            return path, (f"{kind} '{name}' is declared for host "
                          f"{declared.host or '(-c)'}, the VM is on {spec.host or '(-c)'}")
        if declared.state is Presence.ABSENT and not absent:
            return path, f"{kind} '{name}' is to be removed (state: absent)"
    return None
