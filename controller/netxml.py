"""Network XML: a `NetworkSpec` to libvirt's network XML and back. Pure.

Called by the network planner (controller/planner/networks.py), which builds the XML
to define, and by the libvirt edge (controller/virt/networks.py), which parses what a
host reports. Built and parsed with ElementTree only, never by pasting strings.

A redefinition starts from the saved definition and writes only what the manifest
models and what differs (mode, bridge, the first IPv4 address, its DHCP range and
reservations, the ownership mark); everything else stays as libvirt wrote it: the
UUID, the bridge's MAC, `<domain>`, `<dns>`, `<mtu>`, IPv6 addresses, foreign
metadata. A change of mode to or from `bridge` keeps only the UUID and metadata (a
bridge network has no address, DHCP or bridge options of libvirt's).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET

from .domainxml.xmlutil import MANAGED_TAG, child, serialize, text_of
from .resourcemodel import DhcpHost, Mark, NetworkConfig, NetworkMode, NetworkSpec

__all__ = ["build_network", "host_xml", "parse_network", "range_xml"]


# --- parsing ----------------------------------------------------------------------------

def parse_network(xml: str) -> NetworkConfig:
    root = ET.fromstring(xml)
    forward = root.find("forward")
    bridge = root.find("bridge")
    mode = _mode(forward, bridge)
    ipv4s, kept = [], []
    for ip in root.iterfind("ip"):
        if _is_ipv4(ip):
            ipv4s.append(ip)
        else:
            kept.append(f"an IPv6 address ({ip.get('address')})")
    if len(ipv4s) > 1:
        kept.append(f"{len(ipv4s) - 1} more IPv4 address(es) after the first")
    address = prefix = None
    ranges: list[tuple[str, str]] = []
    hosts: list[DhcpHost] = []
    if ipv4s:
        first = ipv4s[0]
        address, prefix = first.get("address"), _prefix(first)
        dhcp = first.find("dhcp")
        if dhcp is not None:
            ranges = [(item.get("start", ""), item.get("end", ""))
                      for item in dhcp.iterfind("range")]
            hosts = [DhcpHost(mac=(item.get("mac") or "").lower(), ip=item.get("ip", ""),
                              name=item.get("name"))
                     for item in dhcp.iterfind("host")]
    mark_element = root.find(f"metadata/{MANAGED_TAG}")
    mark = (Mark(host=mark_element.get("host"), source=mark_element.get("source"))
            if mark_element is not None else None)
    return NetworkConfig(name=text_of(root.find("name")),
                         uuid=text_of(root.find("uuid")).lower(), mode=mode,
                         bridge=bridge.get("name") if bridge is not None else None,
                         address=address, prefix=prefix, ranges=tuple(ranges),
                         hosts=tuple(hosts), mark=mark, kept=tuple(kept))


def _mode(forward: ET.Element | None, bridge: ET.Element | None) -> str:
    if forward is None:
        return NetworkMode.ISOLATED.value
    mode = forward.get("mode", "nat")
    if mode == "bridge" and (bridge is None or not bridge.get("name")):
        return "macvtap"  # forward mode='bridge' over <interface dev>: not a host bridge
    return mode


def _is_ipv4(ip: ET.Element) -> bool:
    family = ip.get("family")
    return family == "ipv4" or (family is None and ":" not in ip.get("address", ""))


def _prefix(ip: ET.Element) -> int | None:
    if ip.get("prefix"):
        return int(ip.get("prefix", "0"))
    netmask = ip.get("netmask")
    if netmask:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    address = ip.get("address", "")
    if address:  # libvirt's default: the address's class
        first = int(address.split(".")[0])
        return 8 if first < 128 else 16 if first < 192 else 24
    return None


# --- building ------------------------------------------------------------------------------

def build_network(spec: NetworkSpec, base_xml: str | None = None) -> str:
    """The XML to define for `spec`: `base_xml` (the saved definition) edited, or a new
    network."""
    base = ET.fromstring(base_xml) if base_xml else None
    crossing = base is not None and (
        (_mode(base.find("forward"), base.find("bridge")) == NetworkMode.BRIDGE.value)
        != (spec.mode is NetworkMode.BRIDGE))
    if base is None or crossing:
        root = _skeleton(spec, base)
    else:
        root = base
    child(root, "name").text = spec.name
    _mark(root, spec)
    if spec.mode is NetworkMode.BRIDGE:
        forward = child(root, "forward")
        forward.attrib.clear()
        forward.set("mode", "bridge")
        child(root, "bridge").set("name", spec.bridge or "")
        return serialize(root, base_xml)
    _apply_forward(root, spec.mode)
    if spec.bridge:
        bridge = root.find("bridge")
        if bridge is None:
            bridge = _insert_after(root, ET.Element("bridge", name=spec.bridge, stp="on",
                                                    delay="0"), ("forward", "metadata", "uuid"))
        bridge.set("name", spec.bridge)
    _apply_ipv4(root, spec)
    return serialize(root, base_xml)


def _skeleton(spec: NetworkSpec, base: ET.Element | None) -> ET.Element:
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if base is not None:  # a change of mode to or from bridge: identity and metadata kept
        for tag in ("uuid", "metadata"):
            found = base.find(tag)
            if found is not None:
                root.append(found)
    return root  # build_network adds forward, bridge and ip in libvirt's order


def _mark(root: ET.Element, spec: NetworkSpec) -> None:
    metadata = root.find("metadata")
    if metadata is None:
        metadata = _insert_after(root, ET.Element("metadata"), ("uuid", "name"))
    mark = metadata.find(MANAGED_TAG)
    if mark is None:
        mark = ET.SubElement(metadata, MANAGED_TAG)
    for key, value in (("host", spec.host), ("source", spec.source)):
        if value:
            mark.set(key, value)
        else:
            mark.attrib.pop(key, None)


def _apply_forward(root: ET.Element, mode: NetworkMode) -> None:
    forward = root.find("forward")
    if mode is NetworkMode.ISOLATED:
        if forward is not None:
            root.remove(forward)
        return
    if forward is None:
        _insert_after(root, ET.Element("forward", mode="nat"), ("metadata", "uuid", "name"))
    elif forward.get("mode", "nat") != "nat":
        forward.attrib.clear()
        for item in list(forward):
            forward.remove(item)
        forward.set("mode", "nat")


def _apply_ipv4(root: ET.Element, spec: NetworkSpec) -> None:
    ipv4s = [ip for ip in root.iterfind("ip") if _is_ipv4(ip)]
    if spec.address is None:
        for ip in ipv4s:
            root.remove(ip)
        return
    if ipv4s:
        ip = ipv4s[0]
    else:
        ip = ET.SubElement(root, "ip")
    if ip.get("address") != spec.address or _prefix(ip) != spec.prefix:
        ip.set("address", spec.address)
        ip.attrib.pop("netmask", None)
        ip.set("prefix", str(spec.prefix))
    dhcp = ip.find("dhcp")
    ranges = tuple((item.get("start", ""), item.get("end", ""))
                   for item in (dhcp.iterfind("range") if dhcp is not None else ()))
    hosts = {DhcpHost(mac=(item.get("mac") or "").lower(), ip=item.get("ip", ""),
                      name=item.get("name"))
             for item in (dhcp.iterfind("host") if dhcp is not None else ())}
    wanted_ranges = (spec.dhcp,) if spec.dhcp else ()
    if ranges == wanted_ranges and hosts == set(spec.hosts):
        return
    if dhcp is None:
        dhcp = ET.SubElement(ip, "dhcp")
    for item in list(dhcp):
        if item.tag in ("range", "host"):
            dhcp.remove(item)
    position = 0
    for start, end in wanted_ranges:
        dhcp.insert(position, ET.Element("range", start=start, end=end))
        position += 1
    for host in spec.hosts:
        dhcp.insert(position, _host_element(host))
        position += 1
    if len(dhcp) == 0:
        ip.remove(dhcp)


def _insert_after(root: ET.Element, element: ET.Element, after: tuple[str, ...]) -> ET.Element:
    """Insert `element` after the first of `after` that `root` has (else first)."""
    for tag in after:
        found = root.find(tag)
        if found is not None:
            root.insert(list(root).index(found) + 1, element)
            return element
    root.insert(0, element)
    return element


def _host_element(host: DhcpHost) -> ET.Element:
    element = ET.Element("host", mac=host.mac, ip=host.ip)
    if host.name:
        element.set("name", host.name)
    return element


def host_xml(host: DhcpHost) -> str:
    """The <host/> element of a live network update."""
    return ET.tostring(_host_element(host), encoding="unicode")


def range_xml(start: str, end: str) -> str:
    """The <range/> element of a live network update."""
    return ET.tostring(ET.Element("range", start=start, end=end), encoding="unicode")
