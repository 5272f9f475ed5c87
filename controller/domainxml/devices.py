"""Devices of section 8 in domain XML: the guest agent channel, the serial console, the
TPM and the graphics. Reading them, and editing only what differs (a domain that already
has what the manifest asks for is not touched, so adoption stays byte-for-byte). Pure.

Called by `document.parse_domain` / `build_domain`; the device XML of a hot-plug comes
from `agent_channel_xml` (the planner puts it in an attach step).

- The guest agent is a `<channel>` whose target is `type='virtio'
  name='org.qemu.guest_agent.0'`, of any source type (unix, as virt-install writes it,
  or pty); reconcile adds a `unix` one and lets libvirt choose its socket path. Turning
  it off removes every such channel. Hot-plug needs a virtio-serial controller in the
  running domain (libvirt 9.0 cannot hot-plug the controller itself).
- `serial` is a `<serial>` of any type, or a `<console>` on a serial target (libvirt
  adds the serial port behind it); reconcile adds a pty serial port and console, and
  `serial: false` removes the serial ports and serial consoles (virtio consoles stay).
- `tpm` is any `<tpm>`; reconcile adds an emulated TPM 2.0 (swtpm) in libvirt's default
  model. Removing it leaves its state on disk (libvirt keeps it; undefine keeps it too).
- `graphics` is `none` (no `<graphics>`), or `vnc` / `spice` when there is exactly one
  of those; anything else (several, sdl, egl-headless, rdp, dbus) is left as it is. A
  display reconcile adds listens on 127.0.0.1 unless the manifest names an address. It
  is *exposed* when it listens beyond loopback: an address that is not (0.0.0.0, ::, a
  host address) or a libvirt network's address.
"""

from __future__ import annotations

import ipaddress
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


# --- serial console -----------------------------------------------------------------

def is_serial_console(element: ET.Element) -> bool:
    """A <serial>, or a <console> on a serial target (or with no target: serial on x86)."""
    if element.tag == "serial":
        return True
    target = element.find("target")
    return element.tag == "console" and (target is None or target.get("type") in
                                         (None, "serial"))


def apply_serial(devices: ET.Element, wanted: bool | None) -> None:
    """Add a pty serial port and console (`True`), remove them (`False`), or keep."""
    if wanted is None:
        return
    present = [element for element in devices
               if element.tag in ("serial", "console") and is_serial_console(element)]
    if wanted and not present:
        serial = ET.Element("serial", type="pty")
        ET.SubElement(serial, "target", port="0")
        _insert_device(devices, serial)
        console = ET.Element("console", type="pty")
        ET.SubElement(console, "target", type="serial", port="0")
        others = devices.findall("console")  # virtio ones: libvirt wants the serial first
        if others:
            devices.insert(list(devices).index(others[0]), console)
            console.tail = others[0].tail
        else:
            _insert_device(devices, console)
    elif not wanted:
        for element in present:
            devices.remove(element)


# --- TPM -----------------------------------------------------------------------------

def apply_tpm(devices: ET.Element, wanted: bool | None) -> None:
    """Add an emulated TPM 2.0 (`True`), remove every TPM (`False`), or keep."""
    if wanted is None:
        return
    present = devices.findall("tpm")
    if wanted and not present:
        tpm = ET.Element("tpm")
        ET.SubElement(tpm, "backend", type="emulator", version="2.0")
        _insert_device(devices, tpm)
    elif not wanted:
        for element in present:
            devices.remove(element)


# --- graphics ------------------------------------------------------------------------

GRAPHICS = ("vnc", "spice")
DEFAULT_LISTEN = "127.0.0.1"


def read_graphics(elements: list[ET.Element]) -> tuple[str | None, str | None, bool]:
    """(none | vnc | spice, or None for what a manifest cannot describe; the address it
    listens on, if written; whether any display listens beyond loopback)."""
    exposed = any(_exposed(element) for element in elements)
    if not elements:
        return "none", None, False
    if len(elements) > 1 or elements[0].get("type") not in GRAPHICS:
        return None, None, exposed
    return elements[0].get("type"), _listen_address(elements[0]), exposed


def _listen_address(element: ET.Element) -> str | None:
    listens = element.findall("listen")
    for listen in listens:
        if listen.get("type", "address") == "address" and listen.get("address"):
            return listen.get("address")
    if listens and all(listen.get("type", "address") != "address" for listen in listens):
        return None  # a socket, a network, or none
    return element.get("listen") or None


def _exposed(element: ET.Element) -> bool:
    listens = element.findall("listen")
    if not listens:
        return not is_loopback(element.get("listen"))
    for listen in listens:
        kind = listen.get("type", "address")
        if kind == "network" or (kind == "address" and not is_loopback(listen.get("address"))):
            return True
    return False


#: The usual answers, without parsing (parse_domain reads every domain of a pass).
_LOOPBACK = {"127.0.0.1": True, "::1": True, "localhost": True, "0.0.0.0": False, "::": False}


def is_loopback(address: str | None) -> bool:
    """Whether a display listening on `address` is reachable from this host only; no
    address means QEMU's configured default (127.0.0.1 unless qemu.conf says otherwise)."""
    if not address:
        return True
    text = address.strip().lower()
    if text in _LOOPBACK:
        return _LOOPBACK[text]
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name


def apply_graphics(devices: ET.Element, wanted: str | None, listen: str | None) -> None:
    """Make the display `wanted` (none | vnc | spice; None: keep) listening on `listen`
    (None: keep the address, or 127.0.0.1 for a display reconcile adds)."""
    if wanted is None:
        return
    elements = devices.findall("graphics")
    have, have_listen, _ = read_graphics(elements)
    if wanted == "none":
        for element in elements:
            devices.remove(element)
        return
    if have == wanted:
        if listen is not None and have_listen != listen:
            _set_listen(elements[0], listen)
        return
    for element in elements:
        devices.remove(element)
    graphics = ET.Element("graphics", type=wanted, autoport="yes")
    if wanted == "vnc":
        graphics.set("port", "-1")
    _set_listen(graphics, listen or DEFAULT_LISTEN)
    _insert_device(devices, graphics)


def _set_listen(element: ET.Element, address: str) -> None:
    element.set("listen", address)
    for old in element.findall("listen"):
        element.remove(old)
    ET.SubElement(element, "listen", type="address", address=address)


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
