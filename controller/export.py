"""An observed domain as a manifest document, so an existing host can be adopted. Pure.

Called by `reconcile export`. The document carries what reconcile models
(memory, vCPUs, type, arch, machine, disks, interfaces with their MACs,
state, autostart, UUID) and `adopt: true` when the domain is not managed yet,
so applying it only marks the domain as managed.
"""

from __future__ import annotations

from typing import Any

from .model import Observed, Power
from .units import format_kib


class NotExportable(Exception):
    """The domain uses something a manifest cannot express."""


def to_manifest(observed: Observed) -> tuple[dict[str, Any], list[str]]:
    """The manifest document for `observed`, and warnings about what it cannot carry."""
    saved = observed.saved
    if saved is None:
        raise NotExportable(f"domain '{observed.name}' has no definition to export")
    warnings: list[str] = []
    if saved.type not in ("kvm", "qemu"):
        raise NotExportable(f"domain '{observed.name}' is of type '{saved.type}'; "
                            "manifests describe kvm and qemu domains")
    spec: dict[str, Any] = {
        "state": "running" if observed.power.active else "stopped",
        "memory": _size(saved.memory_kib),
    }
    if saved.current_memory_kib != saved.memory_kib:
        spec["currentMemory"] = _size(saved.current_memory_kib)
    spec["vcpus"] = saved.vcpus
    spec["type"] = saved.type
    if saved.arch:
        spec["arch"] = saved.arch
    if saved.machine:
        spec["machine"] = saved.machine
    spec["autostart"] = observed.autostart
    if observed.power is Power.PAUSED:
        warnings.append(f"{observed.name}: the domain is paused; the manifest says running")
    if not observed.managed:
        spec["adopt"] = True
    disks = []
    for disk in saved.disks:
        if not disk.source:
            raise NotExportable(f"domain '{observed.name}': disk {disk.target} has no file "
                                "source; a manifest cannot describe it")
        if disk.format not in ("qcow2", "raw") or disk.bus not in ("virtio", "sata", "scsi"):
            raise NotExportable(f"domain '{observed.name}': disk {disk.target} "
                                f"({disk.format or '?'} on {disk.bus or '?'} bus) cannot be "
                                "described by a manifest")
        entry: dict[str, Any] = {"source": disk.source, "format": disk.format,
                                 "target": disk.target}
        if disk.bus:
            entry["bus"] = disk.bus
        if disk.readonly:
            entry["readonly"] = True
        disks.append(entry)
    if disks:
        spec["disks"] = disks
    interfaces = []
    for index, interface in enumerate(saved.interfaces):
        entry = {}
        if interface.network is not None:
            entry["network"] = interface.network
        elif interface.bridge is not None:
            entry["bridge"] = interface.bridge
        else:
            raise NotExportable(f"domain '{observed.name}': interface {index} is neither on a "
                                "network nor on a bridge; a manifest cannot describe it")
        if interface.mac:
            entry["mac"] = interface.mac
        if not interface.model:
            raise NotExportable(f"domain '{observed.name}': interface {index} has no model; "
                                "set one (virsh edit) before exporting")
        entry["model"] = interface.model
        interfaces.append(entry)
    if interfaces:
        spec["interfaces"] = interfaces
    document = {
        "apiVersion": "reconcile/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": observed.name, "uuid": saved.uuid},
        "spec": spec,
    }
    return document, warnings


def _size(kib: int) -> str:
    return format_kib(kib).replace(" ", "")
