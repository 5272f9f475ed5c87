"""The `<os>` element of section 8: firmware (BIOS or EFI), Secure Boot, the boot order and
a direct kernel boot. Reading them, and editing only what differs. Pure.

Called by `document.parse_domain` / `build_domain`.

- **EFI** is `<os firmware='efi'>` (libvirt's firmware auto-selection, which reconcile
  writes), or, as older virt-install and hand-written domains have it, a `pflash`
  loader or an `<nvram>` with explicit paths. Both read as `efi`; an explicit loader is
  kept as it is until a firmware change needs libvirt to choose again.
- **Secure Boot** is the `secure-boot` firmware feature, else the loader's `secure`
  attribute, else (auto-selection with no feature) unknown: libvirt 9.0 then picks the
  first matching firmware, which on Debian is the Secure Boot one with Microsoft's keys
  enrolled. So reconcile always writes the feature: `secure-boot` and `enrolled-keys`
  on (and SMM on, which Secure Boot needs) or `secure-boot` off.
- **NVRAM is kept.** A redefinition never drops an `<nvram>` path, and nothing here
  deletes a file; `firmware: bios` removes the element and leaves the file. libvirt
  refuses an NVRAM `template` together with auto-selection, so a switch to it drops
  the template and keeps the path (the variable store in use).
- The running domain's XML has no `firmware='efi'` but the loader and NVRAM libvirt
  chose, with `secure='yes'` for a Secure Boot firmware: it reads the same.
- **Boot order** is the `<os><boot dev=...>` list; a domain with per-device
  `<boot order=...>` (which libvirt does not allow together with it) has none a
  manifest can describe, until the manifest sets one: then the per-device ones go.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..hardware import NO_KERNEL, Kernel
from .xmlutil import child, text_of

BOOT_DEVICES = ("hd", "cdrom", "network")
#: Devices that may carry their own <boot order=...>.
BOOTABLE_DEVICES = ("disk", "interface", "hostdev", "redirdev", "filesystem")
#: <os> children in libvirt's order; a new one goes after those before it.
OS_ORDER = ("type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb",
            "acpi", "boot", "bootmenu", "smbios", "bios")


def read_firmware(os_el: ET.Element | None) -> tuple[str, bool | None]:
    """('bios' | 'efi', Secure Boot: True, False, or None when auto-selection decides)."""
    if os_el is None:
        return "bios", False
    attribute = os_el.get("firmware")
    loader = os_el.find("loader")
    if attribute == "efi" or (attribute is None and (
            os_el.find("nvram") is not None
            or (loader is not None and loader.get("type") == "pflash"))):
        firmware = "efi"
    else:
        return "bios", False
    for feature in os_el.iterfind("firmware/feature"):
        if feature.get("name") == "secure-boot":
            return firmware, feature.get("enabled") == "yes"
    if loader is not None and loader.get("secure") in ("yes", "no"):
        return firmware, loader.get("secure") == "yes"
    if loader is not None and text_of(loader).strip():
        return firmware, False  # an explicit loader without secure='yes' is not secure
    return firmware, None


def apply_firmware(root: ET.Element, firmware: str | None, secure_boot: bool | None) -> None:
    """Make the firmware `firmware` ('bios' | 'efi'; None: keep) with `secure_boot` (None:
    keep; False when the domain becomes EFI now), editing only what differs."""
    os_el = child(root, "os")
    have, have_secure = read_firmware(os_el)
    if firmware == "bios":
        if have != "bios":
            os_el.attrib.pop("firmware", None)
            for tag in ("loader", "nvram", "firmware"):
                for element in os_el.findall(tag):
                    os_el.remove(element)
        return
    switched = firmware == "efi" and have != "efi"
    if switched:
        for loader in os_el.findall("loader"):
            os_el.remove(loader)  # a BIOS (rom) loader
        _auto_select(os_el)
        have_secure = None
    if (firmware or have) != "efi":
        return
    wanted = secure_boot if secure_boot is not None else (False if switched else None)
    if wanted is None or wanted == have_secure:
        return
    _auto_select(os_el)
    features = child(os_el, "firmware")
    _set_feature(features, "secure-boot", wanted)
    if wanted:
        _set_feature(features, "enrolled-keys", True)
        smm = child(child(root, "features"), "smm")
        if smm.get("state") != "on":
            smm.set("state", "on")
    else:
        for feature in features.findall("feature"):
            if feature.get("name") == "enrolled-keys":
                features.remove(feature)


def _auto_select(os_el: ET.Element) -> None:
    """Hand the choice of firmware to libvirt: firmware='efi', no loader path, no NVRAM
    template (libvirt refuses one with auto-selection); the NVRAM path stays."""
    if os_el.get("firmware") != "efi":
        os_el.set("firmware", "efi")
    for loader in os_el.findall("loader"):
        if text_of(loader).strip() or loader.get("type") or loader.get("secure"):
            os_el.remove(loader)
    for nvram in os_el.findall("nvram"):
        nvram.attrib.pop("template", None)
    if os_el.find("firmware") is None:
        _insert(os_el, ET.Element("firmware"))


def _set_feature(features: ET.Element, name: str, enabled: bool) -> None:
    value = "yes" if enabled else "no"
    for feature in features.findall("feature"):
        if feature.get("name") == name:
            if feature.get("enabled") != value:
                feature.set("enabled", value)
            return
    ET.SubElement(features, "feature", enabled=value, name=name)


def _insert(os_el: ET.Element, element: ET.Element) -> None:
    """Put a new <os> child after the children libvirt writes before it."""
    rank = OS_ORDER.index(element.tag)
    position = 0
    for index, existing in enumerate(os_el):
        if existing.tag in OS_ORDER and OS_ORDER.index(existing.tag) <= rank:
            position = index + 1
    os_el.insert(position, element)


# --- boot order ------------------------------------------------------------------------

def read_boot(os_el: ET.Element | None, per_device: bool) -> tuple[str, ...] | None:
    """The `<os><boot dev>` order, or None: per-device boot, none, or another device."""
    if per_device or os_el is None:
        return None
    order = tuple(boot.get("dev", "") for boot in os_el.findall("boot"))
    if not order or any(dev not in BOOT_DEVICES for dev in order) or len(set(order)) < len(order):
        return None
    return order


def has_device_boot(devices: ET.Element | None) -> bool:
    return devices is not None and any(
        device.tag in BOOTABLE_DEVICES and device.find("boot") is not None
        for device in devices)


def apply_boot(root: ET.Element, wanted: tuple[str, ...] | None) -> None:
    """Make the boot order `wanted` (None: keep); per-device boot orders go with it."""
    if wanted is None:
        return
    os_el = child(root, "os")
    devices = root.find("devices")
    if read_boot(os_el, has_device_boot(devices)) == wanted:
        return
    for device in devices if devices is not None else ():
        if device.tag in BOOTABLE_DEVICES:
            for boot in device.findall("boot"):
                device.remove(boot)
    old = os_el.findall("boot")
    position = list(os_el).index(old[0]) if old else None
    for boot in old:
        os_el.remove(boot)
    for offset, dev in enumerate(wanted):
        element = ET.Element("boot", dev=dev)
        if position is None:
            _insert(os_el, element)
            position = list(os_el).index(element) - offset
        else:
            os_el.insert(position + offset, element)


# --- direct kernel boot ----------------------------------------------------------------

def read_kernel(os_el: ET.Element | None) -> Kernel:
    if os_el is None:
        return NO_KERNEL
    path = text_of(os_el.find("kernel")).strip()
    if not path:
        return NO_KERNEL
    return Kernel(path=path, initrd=text_of(os_el.find("initrd")).strip() or None,
                  cmdline=text_of(os_el.find("cmdline")) or None)


def apply_kernel(root: ET.Element, wanted: Kernel | None) -> None:
    """Make the direct kernel boot `wanted` (NO_KERNEL: none; None: keep)."""
    if wanted is None:
        return
    os_el = child(root, "os")
    if read_kernel(os_el) == wanted:
        return
    values = {"kernel": wanted.path or None, "initrd": wanted.initrd,
              "cmdline": wanted.cmdline}
    if not wanted.path:
        values["dtb"] = None
    for tag, value in values.items():
        element = os_el.find(tag)
        if value is None:
            if element is not None:
                os_el.remove(element)
            continue
        if element is None:
            element = ET.Element(tag)
            _insert(os_el, element)
        if element.text != value:
            element.text = value
