"""Domain XML: a VMSpec to libvirt XML, and libvirt XML to a DomainConfig. Pure.

    document.py    parse_domain and build_domain: the whole definition, the mark
    memory.py      memory, vCPUs, NUMA cells
    disks.py       which disks a manifest describes; reading and editing them
    interfaces.py  the same for interfaces
    firmware.py    <os>: BIOS or EFI, Secure Boot, boot order, direct kernel boot
    cpu.py         <cpu>: mode, model, topology
    devices.py     the guest agent channel, serial console, TPM, graphics
    xmlutil.py     ElementTree helpers, the ownership mark, namespace prefixes

Built and parsed with ElementTree only, never by pasting strings, so no name or
path can inject XML.
"""

from .disks import DISK_BUSES, DISK_FORMATS, DISK_TARGET, NO_READONLY_BUSES, disk_target_name
from .document import build_domain, mark_owner, parse_domain
from .memory import scale_cells
from .xmlutil import MANAGED_NS

__all__ = ["DISK_BUSES", "DISK_FORMATS", "DISK_TARGET", "MANAGED_NS", "NO_READONLY_BUSES",
           "build_domain", "disk_target_name", "mark_owner", "parse_domain", "scale_cells"]
