"""Networks and storage pools of one test on a real libvirt host: a private IPv4 subnet
that nothing on the machine uses, the test's documents, reading libvirt back (the saved
and live definitions, dnsmasq's PID and hosts file), and removing everything the test's
prefix names afterwards (networks, pools, and the pools' folders).

Used by tests/e2e/test_networks_pools.py (the system libvirtd) and
tests/multihost/test_networks_guest.py (a host in its own network namespace). Nothing
here sends a packet anywhere: subnets are chosen by reading `ip` and libvirt.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import libvirt

from controller.netxml import parse_network
from controller.poolxml import parse_pool_config
from controller.resourcemodel import NetworkConfig, PoolConfig


def used_subnets(conn: libvirt.virConnect, *, netns: str | None = None
                 ) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine (or namespace) has an address or route in, and
    every one a libvirt network of `conn` declares."""
    ns = ["-n", netns] if netns else []
    text = ""
    for args in (["-4", "-o", "addr"], ["-4", "route", "show", "table", "all"]):
        text += subprocess.run(["ip", *ns, *args], capture_output=True, text=True,
                               timeout=30, check=True).stdout
    used = []
    for word in text.split():
        with contextlib.suppress(ValueError):
            if "." in word and word[0].isdigit():
                used.append(ipaddress.IPv4Network(word, strict=False))
    for network in conn.listAllNetworks(0):
        with contextlib.suppress(libvirt.libvirtError):
            config = parse_network(network.XMLDesc(0))
            if config.cidr:
                used.append(ipaddress.IPv4Network(config.cidr, strict=False))
    return used


def free_subnet(conn: libvirt.virConnect, *, netns: str | None = None
                ) -> ipaddress.IPv4Network:
    """A random /24 in 10.200.0.0-10.254.255.0 that overlaps nothing in use."""
    used = used_subnets(conn, netns=netns)
    for _ in range(200):
        candidate = ipaddress.IPv4Network(
            f"10.{200 + secrets.randbelow(55)}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(other) for other in used if other.prefixlen > 0):
            return candidate
    raise AssertionError("no free 10.2xx.y.0/24 on this machine")


def host_address(subnet: ipaddress.IPv4Network, index: int) -> str:
    return str(subnet.network_address + index)


def network_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "Network", "metadata": {"name": name},
            "spec": spec}


def pool_doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "StoragePool", "metadata": {"name": name},
            "spec": spec}


def nat_spec(subnet: ipaddress.IPv4Network, bridge: str, *,
             hosts: Sequence[tuple[str, int]] = (), **more: Any) -> dict[str, Any]:
    """A NAT network on `subnet` (the host .1, DHCP .100-.199), with reservations
    (MAC, host index)."""
    spec: dict[str, Any] = {
        "mode": "nat", "bridge": bridge,
        "ipv4": {"address": f"{host_address(subnet, 1)}/{subnet.prefixlen}",
                 "dhcp": {"start": host_address(subnet, 100),
                          "end": host_address(subnet, 199)}}}
    if hosts:
        spec["dhcpHosts"] = [{"mac": mac, "ip": host_address(subnet, index)}
                             for mac, index in hosts]
    spec.update(more)
    return spec


# --- reading back ----------------------------------------------------------------------------

def network_xml(conn: libvirt.virConnect, name: str, *, saved: bool = False) -> str | None:
    try:
        network = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        return None
    flags = libvirt.VIR_NETWORK_XML_INACTIVE if saved else 0
    return str(network.XMLDesc(flags))


def network_config(conn: libvirt.virConnect, name: str, *, saved: bool = False
                   ) -> NetworkConfig | None:
    xml = network_xml(conn, name, saved=saved)
    return parse_network(xml) if xml is not None else None


def network_active(conn: libvirt.virConnect, name: str) -> bool:
    try:
        return bool(conn.networkLookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def pool_config(conn: libvirt.virConnect, name: str) -> PoolConfig | None:
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None
    return parse_pool_config(pool.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE))


def dnsmasq_pid(name: str, *, root: Path = Path("/")) -> int | None:
    """The PID of the network's dnsmasq, as libvirt recorded it (`root`: a test host's
    private root)."""
    path = root / "run/libvirt/network" / f"{name}.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def dnsmasq_hosts(name: str, *, root: Path = Path("/")) -> str:
    """The reservations dnsmasq reads (libvirt writes them on every change)."""
    path = root / "var/lib/libvirt/dnsmasq" / f"{name}.hostsfile"
    try:
        return path.read_text()
    except OSError:
        return ""


def bridge_index(bridge: str, *, netns: str | None = None) -> int | None:
    """The kernel's index of the bridge: a network restart makes a new one."""
    ns = ["-n", netns] if netns else []
    proc = subprocess.run(["ip", *ns, "-o", "link", "show", "dev", bridge],
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        return None
    return int(proc.stdout.split(":", 1)[0])


# --- cleaning up -------------------------------------------------------------------------------

def remove_networks(conn: libvirt.virConnect, prefix: str) -> list[str]:
    """Destroy and undefine every network whose name starts with `prefix`."""
    gone = []
    for network in conn.listAllNetworks(0):
        name = network.name()
        if not name.startswith(prefix):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if network.isActive():
                network.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            if network.isPersistent():
                network.undefine()
        gone.append(name)
    return gone


def remove_pools(conn: libvirt.virConnect, prefix: str, *, folders: Path | None = None
                 ) -> list[str]:
    """Delete the volumes of, stop and undefine every pool whose name starts with
    `prefix`, and remove `folders`/PREFIX* (the pools' folders)."""
    gone = []
    for pool in conn.listAllStoragePools(0):
        name = pool.name()
        if not name.startswith(prefix):
            continue
        with contextlib.suppress(libvirt.libvirtError):
            if pool.isActive():
                pool.refresh(0)
                for volume in pool.listAllVolumes(0):
                    volume.delete(0)
                pool.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            if pool.isPersistent():
                pool.undefine()
        gone.append(name)
    if folders is not None:
        for folder in folders.glob(f"{prefix}*"):
            shutil.rmtree(folder, ignore_errors=True)
    return gone


def define_network(conn: libvirt.virConnect, name: str, subnet: ipaddress.IPv4Network,
                   bridge: str, *, hosts: Sequence[tuple[str, int]] = ()) -> None:
    """A NAT network made by hand (as an operator would, no mark of reconcile's), started."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "forward", mode="nat")
    ET.SubElement(root, "bridge", name=bridge, stp="on", delay="0")
    ip = ET.SubElement(root, "ip", address=host_address(subnet, 1), prefix="24")
    dhcp = ET.SubElement(ip, "dhcp")
    ET.SubElement(dhcp, "range", start=host_address(subnet, 100),
                  end=host_address(subnet, 199))
    for mac, index in hosts:
        ET.SubElement(dhcp, "host", mac=mac, ip=host_address(subnet, index))
    conn.networkDefineXML(ET.tostring(root, encoding="unicode")).create()
