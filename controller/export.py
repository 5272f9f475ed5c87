"""An observed domain as a manifest document, so an existing host can be adopted. Pure.

Called by `reconcile export`. The document carries what reconcile models
(memory, vCPUs, type, arch, machine, disks, interfaces with their MACs,
state, autostart, UUID; firmware, Secure Boot, TPM, CPU, boot order, kernel,
graphics, serial and guest agent where they differ from a new domain's
defaults) and `adopt: true` when the domain is not managed yet, so applying it
only marks the domain as managed.

A disk that is a pool volume is exported as `volume:`/`pool:` with its capacity
(`volume_sizes`, read by the caller), so adopting it neither creates nor grows it.
Devices a manifest cannot describe (block and network disks, shared
images, partition targets, direct/user/vhost-user/hostdev interfaces, ...; see
`domainxml`) are left out of the document with one warning each: adoption and
every later redefinition keep them exactly as they are. The document is then
checked as `validate` checks it, with the same disk roots; whatever would be
rejected makes the export fail with one line per field, so an export is never a
manifest that `validate` refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .manifests import DEFAULT_DISK_ROOTS, check_document
from .model import DomainConfig, Observed, Power
from .units import format_kib


class NotExportable(Exception):
    """The domain uses something a manifest cannot express: one line per reason."""

    def __init__(self, name: str, reasons: Sequence[str]):
        self.name = name
        self.reasons = tuple(reasons)
        super().__init__("\n".join(f"domain '{name}': {reason}" for reason in self.reasons))


def to_manifest(
    observed: Observed, *, disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS,
    volume_sizes: Mapping[tuple[str, str], int] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The manifest document for `observed`, and warnings about what it leaves out."""
    saved = observed.saved
    name = observed.name
    if saved is None:
        raise NotExportable(name, ["it has no definition to export"])
    if saved.type not in ("kvm", "qemu"):
        raise NotExportable(name, [(f"it is of type '{saved.type}'; manifests describe kvm "
                                   "and qemu domains")])
    warnings = [f"{name}: {note}: kept as it is, left out of the manifest"
                for note in saved.kept]
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
        warnings.append(f"{name}: the domain is paused; the manifest says running")
    if not observed.managed:
        spec["adopt"] = True
    spec.update(_section8(saved, warnings, name))
    disks = []
    unread = []
    for disk in saved.disks:
        entry: dict[str, Any]
        if disk.volume and disk.pool:
            capacity = (volume_sizes or {}).get((disk.pool, disk.volume))
            if capacity is None:  # left out, adoption would detach it: refuse instead
                unread.append(f"disk {disk.target}: volume {disk.where} cannot be read "
                              "(missing, or its pool is inactive)")
                continue
            entry = {"volume": disk.volume, "pool": disk.pool,
                     "size": _size(-(-capacity // 1024)), "format": disk.format,
                     "target": disk.target, "bus": disk.bus}
        else:
            entry = {"source": disk.source, "format": disk.format, "target": disk.target,
                     "bus": disk.bus}
        if disk.readonly:
            entry["readonly"] = True
        disks.append(entry)
    interfaces = []
    for interface in saved.interfaces:
        item: dict[str, Any] = {}
        if interface.network is not None:
            item["network"] = interface.network
        else:
            item["bridge"] = interface.bridge
        if interface.mac:
            item["mac"] = interface.mac
        item["model"] = interface.model
        interfaces.append(item)
    metadata: dict[str, Any] = {"name": name}
    if saved.uuid:
        metadata["uuid"] = saved.uuid
    document: dict[str, Any] = {
        "apiVersion": "reconcile/v1",
        "kind": "VirtualMachine",
        "metadata": metadata,
        "spec": spec,
    }
    problems = unread + _problems(document, disks, interfaces, disk_roots)
    if problems:
        raise NotExportable(name, problems)
    if disks:
        spec["disks"] = disks
    if interfaces:
        spec["interfaces"] = interfaces
    return document, warnings


def _problems(document: dict[str, Any], disks: list[dict[str, Any]],
              interfaces: list[dict[str, Any]], disk_roots: Sequence[str]) -> list[str]:
    """What `validate` would reject, one line per field: the document without its
    lists first, then each disk and interface on its own (in an otherwise minimal
    document, so that one bad field does not hide another), then the whole."""
    problems = [f"{entry.path}: {entry.error}"
                for entry in check_document(document, disk_roots=disk_roots)]
    for key, items in (("disks", disks), ("interfaces", interfaces)):
        for index, item in enumerate(items):
            alone = {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
                     "metadata": {"name": "export"}, "spec": {"memory": 1, "vcpus": 1,
                                                              key: [item]}}
            for entry in check_document(alone, disk_roots=disk_roots):
                if entry.path.startswith(f"spec.{key}[0]"):  # the rest: said above
                    path = entry.path.replace(f"spec.{key}[0]", f"spec.{key}[{index}]", 1)
                    problems.append(f"{path}: {entry.error}")
    if problems:
        return problems
    whole = {**document, "spec": {**document["spec"]}}
    if disks:
        whole["spec"]["disks"] = disks
    if interfaces:
        whole["spec"]["interfaces"] = interfaces
    return [f"{entry.path}: {entry.error}"
            for entry in check_document(whole, disk_roots=disk_roots)]


def _section8(saved: DomainConfig, warnings: list[str], name: str) -> dict[str, Any]:
    """Firmware, CPU, boot and consoles as the domain has them, where they differ from
    what a new domain gets (what a manifest leaves out, adoption keeps)."""
    fields: dict[str, Any] = {}
    if saved.firmware == "efi":
        fields["firmware"] = "efi"
        if saved.secure_boot is not None:
            fields["secureBoot"] = saved.secure_boot
    if saved.tpm:
        fields["tpm"] = True
    cpu = saved.cpu
    if cpu is not None:
        item: dict[str, Any] = {}
        if cpu.mode in ("host-passthrough", "host-model") or (cpu.mode == "custom"
                                                              and cpu.model):
            item["mode"] = cpu.mode
            if cpu.model:
                item["model"] = cpu.model
        if cpu.topology is not None:
            item.update(zip(("sockets", "cores", "threads"), cpu.topology, strict=True))
        if item:
            fields["cpu"] = item
    if saved.boot is not None and saved.boot != ("hd",):
        fields["boot"] = list(saved.boot)
    if saved.kernel.path:
        kernel: dict[str, Any] = {"path": saved.kernel.path}
        if saved.kernel.initrd:
            kernel["initrd"] = saved.kernel.initrd
        if saved.kernel.cmdline:
            kernel["cmdline"] = saved.kernel.cmdline
        fields["kernel"] = kernel
    if saved.graphics in ("vnc", "spice"):
        if saved.graphics_listen is not None:
            fields["graphics"] = saved.graphics
            fields["graphicsListen"] = saved.graphics_listen
        elif saved.graphics_exposed:
            warnings.append(f"{name}: graphics: {saved.graphics} on a libvirt network's "
                            "address: kept as it is, left out of the manifest")
        else:
            fields["graphics"] = saved.graphics
    elif saved.graphics is None:
        warnings.append(f"{name}: graphics: displays a manifest cannot describe (several, or "
                        "not vnc or spice): kept as they are, left out of the manifest")
    if not saved.serial:
        fields["serial"] = False
    if saved.guest_agent:
        fields["guestAgent"] = True
    return fields


def _size(kib: int) -> str:
    return format_kib(kib).replace(" ", "")
