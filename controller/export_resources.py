"""An observed network or storage pool as a manifest document, so that it can be adopted
with a pass that changes nothing. Pure.

Called by `reconcile export --network NAME` / `--pool NAME` (and `--all --kind`). The
document carries what a manifest models (a network's mode, bridge, first IPv4 address,
DHCP range and reservations, autostart; a dir pool's path and autostart), from the
saved definition, and `adopt: true` when reconcile does not manage it yet: applying it
only writes the ownership mark. What a manifest cannot describe (IPv6 addresses, more
IPv4 addresses, DNS entries, ...) is kept as it is and named in a warning. The document
is checked as `validate` checks it; whatever would be rejected (a route network, two
DHCP ranges, a pool path outside the disk roots, ...) makes the export fail with one
line per reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .manifests import DEFAULT_DISK_ROOTS, check_resource
from .resourcemodel import NetworkState, PoolState


class NotExportable(Exception):
    """The network or pool uses something a manifest cannot express: one line per reason."""

    def __init__(self, kind: str, name: str, reasons: Sequence[str]):
        self.name = name
        self.reasons = tuple(reasons)
        super().__init__("\n".join(f"{kind} '{name}': {reason}" for reason in self.reasons))


def network_manifest(state: NetworkState, *,
                     disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS
                     ) -> tuple[dict[str, Any], list[str]]:
    """The Network document for `state`, and warnings about what it leaves out."""
    name = state.name
    saved = state.saved
    if not state.exists or saved is None:
        raise NotExportable("network", name, ["it does not exist"])
    problems: list[str] = []
    if saved.mode not in ("nat", "isolated", "bridge"):
        problems.append(f"its forward mode is '{saved.mode}'; a manifest describes nat, "
                        "isolated and bridge networks")
    if len(saved.ranges) > 1:
        problems.append(f"it has {len(saved.ranges)} DHCP ranges; a manifest describes one")
    if any(not host.mac for host in saved.hosts):
        problems.append("a DHCP reservation without a MAC address (by name only)")
    if problems:
        raise NotExportable("network", name, problems)
    warnings = [f"network {name}: {note}: kept as it is, left out of the manifest"
                for note in saved.kept]
    if not state.active:
        warnings.append(f"network {name} is not active; the manifest makes it active")
    if state.live is not None and replace(state.live, mark=saved.mark) != saved:
        warnings.append(f"network {name}: the running network differs from its saved "
                        "definition (a restart is pending); the manifest is the saved one")
    spec: dict[str, Any] = {"mode": saved.mode}
    if saved.bridge:
        spec["bridge"] = saved.bridge
    if saved.address:
        ipv4: dict[str, Any] = {"address": f"{saved.address}/{saved.prefix}"}
        if saved.ranges:
            ipv4["dhcp"] = {"start": saved.ranges[0][0], "end": saved.ranges[0][1]}
        spec["ipv4"] = ipv4
    if saved.hosts:
        spec["dhcpHosts"] = [{"mac": host.mac, "ip": host.ip,
                              **({"name": host.name} if host.name else {})}
                             for host in saved.hosts]
    spec["autostart"] = state.autostart
    if not state.managed:
        spec["adopt"] = True
    return _checked(name, "Network", spec, disk_roots), warnings


def pool_manifest(state: PoolState, *, disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS
                  ) -> tuple[dict[str, Any], list[str]]:
    """The StoragePool document for `state`, and warnings about what it leaves out."""
    name = state.name
    saved = state.saved
    if not state.exists or saved is None:
        raise NotExportable("pool", name, ["it does not exist"])
    if saved.type != "dir":
        raise NotExportable("pool", name, [f"it is a {saved.type} pool; a manifest describes "
                                           "dir pools"])
    warnings = [] if state.active else [
        f"pool {name} is not active; the manifest makes it active"]
    spec: dict[str, Any] = {"type": "dir", "path": saved.path, "autostart": state.autostart}
    if not state.managed:
        spec["adopt"] = True
    return _checked(name, "StoragePool", spec, disk_roots), warnings


def _checked(name: str, kind: str, spec: dict[str, Any],
             disk_roots: Sequence[str]) -> dict[str, Any]:
    document: dict[str, Any] = {"apiVersion": "reconcile/v1", "kind": kind,
                                "metadata": {"name": name}, "spec": spec}
    problems = [f"{entry.path}: {entry.error}"
                for entry in check_resource(document, disk_roots=disk_roots)]
    if problems:
        raise NotExportable("network" if kind == "Network" else "pool", name, problems)
    return document
