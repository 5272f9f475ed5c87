"""Interfaces in domain XML: a `network` or `bridge` interface with a model is modelled;
direct (macvtap), user, vhost-user, hostdev, ethernet and the others are kept as they
are."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..model import Interface
from .xmlutil import child


def read_interfaces(
    elements: list[ET.Element],
) -> tuple[list[tuple[ET.Element, Interface]], list[str]]:
    """The modelled interfaces (with their elements) in order, and a note for each kept one."""
    modelled: list[tuple[ET.Element, Interface]] = []
    kept: list[str] = []
    for index, element in enumerate(elements):
        verdict = _interface_verdict(element, index)
        if isinstance(verdict, Interface):
            modelled.append((element, verdict))
        else:
            kept.append(verdict)
    return modelled, kept


def _interface_verdict(element: ET.Element, index: int) -> Interface | str:
    kind = element.get("type") or "?"
    interface = _parse_interface(element)
    mac = f", {interface.mac}" if interface.mac else ""
    if kind not in ("network", "bridge"):
        return f"interface {index} ({kind}{mac}): a {kind} interface"
    if interface.network is None and interface.bridge is None:
        return f"interface {index} ({kind}{mac}): no {kind} source"
    if not interface.model:
        return f"interface {index} ({interface.attachment}{mac}): no model"
    return interface


def _parse_interface(element: ET.Element) -> Interface:
    kind = element.get("type")
    source = element.find("source")
    mac = element.find("mac")
    model = element.find("model")
    return Interface(
        network=source.get("network") if kind == "network" and source is not None else None,
        bridge=source.get("bridge") if kind == "bridge" and source is not None else None,
        mac=mac.get("address", "").lower() or None if mac is not None else None,
        model=(model.get("type") if model is not None else None) or "",
    )


def apply_interfaces(devices: ET.Element, interfaces: tuple[Interface, ...]) -> None:
    """Make the modelled interfaces those of `interfaces`, by position; kept ones stay."""
    modelled, _ = read_interfaces(devices.findall("interface"))
    for element, _ in modelled[len(interfaces):]:
        devices.remove(element)
    for index, interface in enumerate(interfaces):
        if index < len(modelled):
            element, have = modelled[index]
            _edit_interface(element, interface, have)
        else:
            _edit_interface(ET.SubElement(devices, "interface"), interface, None)


def _edit_interface(element: ET.Element, interface: Interface, have: Interface | None) -> None:
    """Write what differs between `have` (None: a new interface) and `interface`."""
    kind = "network" if interface.network is not None else "bridge"
    value = interface.network if interface.network is not None else interface.bridge or ""
    if element.get("type") != kind:
        for stale in element.findall("target") + element.findall("alias"):
            element.remove(stale)
        element.set("type", kind)
    if interface.mac and (have is None or have.mac != interface.mac.lower()):
        child(element, "mac").set("address", interface.mac.lower())
    source = child(element, "source")
    if source.get(kind) != value or any(key in source.attrib for key in
                                         ({"network", "bridge"} - {kind})):
        source.attrib.clear()  # a portgroup belongs to the old network
        source.set(kind, value)
    model = child(element, "model")
    if model.get("type") != interface.model:
        model.set("type", interface.model)
