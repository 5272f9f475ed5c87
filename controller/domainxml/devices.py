"""Devices of section 8 in domain XML: the guest agent channel. Reading them, and
editing only what differs (a domain that already has what the manifest asks for is
not touched, so adoption stays byte-for-byte).

Called by `document.parse_domain` / `build_domain`; the device XML of a hot-plug comes
from `agent_channel` (the planner puts it in an attach step).

- The guest agent is a `<channel>` whose target is `type='virtio'
  name='org.qemu.guest_agent.0'`, of any source type (unix, as virt-install writes it,
  or pty); reconcile adds a `unix` one and lets libvirt choose its socket path. Turning
  it off removes every such channel. Hot-plug needs a virtio-serial controller in the
  running domain (libvirt 9.0 cannot hot-plug the controller itself).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

AGENT_NAME = "org.qemu.guest_agent.0"


def is_agent_channel(element: ET.Element) -> bool:
    """Whether a `<channel>` element is the guest agent's."""
    target = element.find("target")
    return (target is not None and target.get("type") == "virtio"
            and target.get("name") == AGENT_NAME)


def is_virtio_serial(element: ET.Element) -> bool:
    """Whether a `<controller>` element is a virtio-serial controller."""
    return element.get("type") == "virtio-serial"


def agent_channel() -> ET.Element:
    """A new guest agent channel, as reconcile adds it (define and hot-plug)."""
    channel = ET.Element("channel", type="unix")
    ET.SubElement(channel, "target", type="virtio", name=AGENT_NAME)
    return channel


def agent_channel_xml() -> str:
    return ET.tostring(agent_channel(), encoding="unicode")


def apply_guest_agent(devices: ET.Element, wanted: bool | None) -> None:
    """Add the agent channel (`True`), remove every one (`False`), or keep (`None`)."""
    if wanted is None:
        return
    channels = [element for element in devices.findall("channel") if is_agent_channel(element)]
    if wanted and not channels:
        _insert_device(devices, agent_channel())
    elif not wanted:
        for element in channels:
            devices.remove(element)


#: libvirt's order of device elements in its own XML; a new device goes after the last
#: one of its kind or of the kinds before it, so a built definition reads like dumpxml.
DEVICE_ORDER = ("emulator", "disk", "controller", "lease", "filesystem", "interface",
                "smartcard", "serial", "parallel", "console", "channel", "input", "tpm",
                "graphics", "sound", "audio", "video", "hostdev", "redirdev", "redirfilter",
                "hub", "watchdog", "memballoon", "rng", "panic", "shmem", "memory", "iommu",
                "vsock", "crypto")


def _insert_device(devices: ET.Element, element: ET.Element) -> None:
    """Insert `element` where libvirt would write it (libvirt reorders them anyway)."""
    rank = DEVICE_ORDER.index(element.tag) if element.tag in DEVICE_ORDER else len(DEVICE_ORDER)
    position = 0
    for index, existing in enumerate(devices):
        existing_rank = (DEVICE_ORDER.index(existing.tag) if existing.tag in DEVICE_ORDER
                         else -1)
        if existing_rank <= rank:
            position = index + 1
    _indent_like_siblings(devices, element, position)
    devices.insert(position, element)


def _indent_like_siblings(devices: ET.Element, element: ET.Element, position: int) -> None:
    """Give a new element the whitespace its siblings have, so the output stays readable."""
    if len(devices) == 0:
        return
    before = devices[position - 1] if position > 0 else None
    element.tail = (before.tail if before is not None else devices.text) or None
    if before is not None and position == len(devices):
        # the last sibling's tail closes </devices>; the new last one takes it over
        element.tail, before.tail = before.tail, devices.text
