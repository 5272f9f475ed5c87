"""Fuzzing Network and StoragePool documents: near-valid documents with random addresses,
prefixes, ranges, reservations, bridges and paths (and fields of the wrong type) never
make the loader raise, every problem is one Invalid line, and whatever is accepted keeps
the contract's rules: reservations and ranges inside the subnet and off the host's own
address, one reservation per MAC, no two networks of one host on overlapping subnets,
pool folders inside the disk roots."""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controller.manifests import load_directory
from controller.resourcemodel import Presence

from .checks import check_load
from .conftest import count, fuzz_settings
from .strategies import DISK_ROOT, Entry, dump, multi, write_entries

octet = st.integers(min_value=0, max_value=255)
address = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", st.sampled_from([10, 192, 172]),
                    st.sampled_from([0, 168, 200, 201]), st.integers(0, 3), octet)
anything = st.one_of(st.none(), st.integers(), st.text(max_size=12), st.lists(st.integers(),
                                                                             max_size=2))


@st.composite
def network_document(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["mode"] = draw(st.sampled_from(["nat", "isolated", "bridge", "route"]))
    if draw(st.booleans()):
        spec["bridge"] = draw(st.sampled_from(["virbr-a", "virbr-b", "br0", "a/b"]))
    # mostly one /24 (so that some ranges and reservations fit), sometimes anywhere
    base = draw(address).rsplit(".", 1)[0]
    near = st.builds(lambda last: f"{base}.{last}", octet)
    somewhere = st.one_of(near, near, near, address)
    if draw(st.integers(0, 4)):
        prefix = draw(st.one_of(st.sampled_from([24, 24, 16, 25, 30]), st.integers(0, 33)))
        ipv4: dict[str, Any] = {"address": f"{base}.{draw(octet)}/{prefix}"}
        if draw(st.booleans()):
            ipv4["dhcp"] = {"start": draw(somewhere), "end": draw(somewhere)}
        spec["ipv4"] = ipv4
    if draw(st.booleans()):
        spec["dhcpHosts"] = [
            {"mac": draw(st.sampled_from(["52:54:00:00:00:01", "52:54:00:00:00:02",
                                          "52:54:00:00:00:0A", "52:54:00:00:00:0a"])),
             "ip": draw(somewhere),
             **({"name": draw(st.sampled_from(["web", "db", "-x"]))}
                if draw(st.booleans()) else {})}
            for _ in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(["mode", "ipv4", "dhcpHosts", "autostart", "state"]))] = \
            draw(anything)
    if draw(st.integers(0, 4)) == 0:
        spec["state"] = "absent"
    return {"apiVersion": "reconcile/v1", "kind": "Network",
            "metadata": {"name": draw(st.sampled_from("abcdefghij"))}, "spec": spec}


@st.composite
def pool_document(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from([f"{DISK_ROOT}/p", f"{DISK_ROOT}/q", DISK_ROOT, "/srv/x",
                                 f"{DISK_ROOT}/../x", f"{DISK_ROOT}/p/", "relative", "/"]))
    spec: dict[str, Any] = {"path": path} if draw(st.integers(0, 5)) else {}
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(["path", "type", "autostart"]))] = draw(anything)
    return {"apiVersion": "reconcile/v1", "kind": "StoragePool",
            "metadata": {"name": draw(st.sampled_from(["p", "q", "r"]))}, "spec": spec}


@fuzz_settings()
@given(documents=st.lists(st.one_of(network_document(), pool_document()), min_size=1,
                          max_size=6), flow=st.booleans())
def test_networks_and_pools_load_without_raising_and_keep_the_rules(
        tmp_path: Path, documents: list[dict[str, Any]], flow: bool) -> None:
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    write_entries(directory, [Entry("all.yaml", "text",
                                    multi([dump(document, flow=flow) for document in documents]))])
    result = load_directory(str(directory), disk_roots=[DISK_ROOT])
    check_load(result, directory, [DISK_ROOT])
    subnets: list[ipaddress.IPv4Network] = []
    for name, network in result.networks.items():
        assert name not in result.invalid_networks
        if network.state is Presence.ABSENT or network.address is None:
            continue
        subnet = ipaddress.IPv4Network(network.cidr or "", strict=False)
        own = ipaddress.IPv4Address(network.address)
        assert own not in (subnet.network_address, subnet.broadcast_address)
        if network.dhcp:
            start, end = map(ipaddress.IPv4Address, network.dhcp)
            assert start in subnet and end in subnet and start <= end
            assert not start <= own <= end
        macs = [host.mac for host in network.hosts]
        assert len(macs) == len(set(macs)) and all(mac == mac.lower() for mac in macs)
        for host in network.hosts:
            assert ipaddress.IPv4Address(host.ip) in subnet and host.ip != network.address
        assert not any(subnet.overlaps(other) for other in subnets), result.networks
        subnets.append(subnet)
    for name, pool in result.pools.items():
        assert name not in result.invalid_pools
        if pool.state is Presence.PRESENT:
            real = os.path.realpath(pool.path)
            assert real == DISK_ROOT or real.startswith(DISK_ROOT + "/"), pool
    count("loader: Network and StoragePool documents near their schemas")
    count("  of them accepted: networks with an address", len(subnets))
    count("  of them accepted: reservations", sum(len(n.hosts) for n in result.networks.values()))
    count("  of them accepted: pools", len(result.pools))
