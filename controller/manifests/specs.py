"""Documents to specs: the checks a schema cannot make, and defaults applied.

Names defined twice (both documents invalid), `currentMemory` above `memory`,
two disks on one target, one image in two VMs, a placement on a host nobody
named, and disk sources confined to the allowed roots (symlinks followed).
Section 8 (firmware, CPU, boot, consoles) is hardware.py's.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..domainxml import disk_target_name
from ..model import (
    DesiredState,
    Disk,
    Interface,
    MoveStrategy,
    Readiness,
    UpdatePolicy,
    VMSpec,
)
from ..units import parse_memory_kib
from .cloudinit import CloudInitError, to_cloud_init
from .files import Memo
from .hardware import FieldError as _FieldError
from .hardware import section8
from .resources import vm_resource_problem
from .result import Invalid, LoadResult, printable
from .validation import shown

HOSTS_FILE = "hosts.yaml"


def cross_check(
    candidates: list[tuple[str, int, dict[str, Any]]],
    result: LoadResult,
    disk_roots: Sequence[str],
    memos: Mapping[tuple[str, int], Memo] | None = None,
) -> None:
    """Checks that span documents or need more than the schema: names, sizes, disks.
    `memos`: the Memo of candidates whose file's text is cached (files.documents)."""
    by_name: dict[str, list[tuple[str, int]]] = {}
    for relative, index, document in candidates:
        by_name.setdefault(document["metadata"]["name"], []).append((relative, index))
    roots = [os.path.realpath(root) for root in disk_roots]
    disk_owner: dict[str, tuple[str, str, int]] = {}
    specs: list[VMSpec] = []
    for relative, index, document in candidates:
        name = document["metadata"]["name"]
        places = by_name[name]
        if len(places) > 1 or name in result.invalid_names:
            others = ", ".join(f"{printable(f)}[{i}]" for f, i in places
                               if (f, i) != (relative, index))
            result.invalid.append(Invalid(
                relative, index, "metadata.name",
                f"name '{name}' is also defined in {others or 'an invalid document'}"))
            result.refuse_name(name, relative)
            continue
        result.disk_sources.update(disk["source"] for disk in (document.get("spec") or {})
                                   .get("disks") or () if "source" in disk)
        try:
            spec = _spec_of(document, relative, roots, (memos or {}).get((relative, index)))
            _check_images(spec, result)
            _check_resources(spec, result)
            cloud = to_cloud_init((document.get("spec") or {}).get("cloudInit"),
                                  root=result.directory, relative=relative,
                                  warnings=result.warnings)
            if cloud is not None:
                spec = replace(spec, cloud_init=cloud)
        except CloudInitError as exc:
            result.invalid.append(Invalid(relative, index, exc.path, exc.reason))
            result.refuse_name(name, relative)
            continue
        except _FieldError as exc:
            result.invalid.append(Invalid(relative, index, exc.path, exc.reason))
            result.refuse_name(name, relative)
            continue
        if spec.host is not None and spec.host not in result.hosts:
            result.invalid.append(Invalid(relative, index, "spec.host",
                                          f"host '{spec.host}' is not named in {HOSTS_FILE} "
                                          "nor by --host NAME=URI"))
            result.refuse_name(name, relative)
            continue
        clash = None
        for disk_index, disk in enumerate(spec.disks):
            owner = disk_owner.get(disk.where)
            if owner and owner[0] != name:
                clash = (disk_index, disk, owner)
                break
        if clash:
            disk_index, disk, (other, other_file, other_index) = clash
            field = "volume" if disk.volume else "source"
            what = f"volume {disk.where}" if disk.volume else printable(disk.source)
            result.invalid.append(Invalid(
                relative, index, f"spec.disks[{disk_index}].{field}",
                f"{what} is already the disk of '{other}' "
                f"({printable(other_file)}[{other_index}])"))
            result.refuse_name(name, relative)
            continue
        for disk in spec.disks:
            disk_owner[disk.where] = (name, relative, index)
        specs.append(spec)
    for spec in specs:
        result.specs[spec.name] = spec


def _spec_of(document: dict[str, Any], relative: str, roots: list[str],
             memo: Memo | None) -> VMSpec:
    """_to_spec's VMSpec, made once per text, file and roots when it reads nothing but
    the document: no disk `source` nor kernel, whose files are looked at every time."""
    spec = document.get("spec") or {}
    if memo is None or spec.get("kernel") or any(
            "source" in disk for disk in spec.get("disks") or ()):
        return _to_spec(document, relative, roots)
    key = (relative, *roots)
    made: VMSpec | None = memo.specs.get(key)
    if made is None:
        made = memo.specs[key] = _to_spec(document, relative, roots)
    return made


def _to_spec(document: dict[str, Any], relative: str, roots: list[str]) -> VMSpec:
    metadata = document["metadata"]
    spec = document.get("spec") or {}
    state = DesiredState(spec.get("state", "running"))
    memory_kib = current_kib = 0
    if "memory" in spec:
        memory_kib = _memory(spec, "memory")
        current_kib = _memory(spec, "currentMemory") if "currentMemory" in spec else memory_kib
        if current_kib > memory_kib:
            raise _FieldError("spec.currentMemory",
                              f"currentMemory {shown(spec['currentMemory'])} is more than "
                              f"memory {shown(spec['memory'])}")
    uuid = metadata.get("uuid")
    if uuid:
        compact = uuid.replace("-", "").lower()
        uuid = f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"
    return VMSpec(
        name=metadata["name"],
        source=relative,
        state=state,
        uuid=uuid,
        labels=tuple(sorted((metadata.get("labels") or {}).items())),
        memory_kib=memory_kib,
        current_memory_kib=current_kib,
        vcpus=spec.get("vcpus", 0),
        type=spec.get("type", "kvm"),
        arch=spec.get("arch"),
        machine=spec.get("machine"),
        autostart=spec.get("autostart", False),
        update_policy=UpdatePolicy(spec.get("updatePolicy", "restart")),
        stop_timeout=spec.get("stopTimeout", 60),
        adopt=spec.get("adopt", False),
        suspend=spec.get("suspend", False),
        disks=_disks(spec.get("disks") or [], roots),
        interfaces=tuple(
            Interface(network=i.get("network"), bridge=i.get("bridge"),
                      mac=i["mac"].lower() if i.get("mac") else None,
                      model=i.get("model", "virtio"))
            for i in spec.get("interfaces") or []
        ),
        host=spec.get("host"),
        move_strategy=MoveStrategy(spec.get("moveStrategy", "cold")),
        **section8(spec, roots),
        readiness=Readiness(spec.get("readiness", "running")),
    )


def _memory(spec: dict[str, Any], key: str) -> int:
    try:
        kib = parse_memory_kib(spec[key])
    except ValueError:  # past the schema, only for numbers of thousands of digits
        raise _FieldError(f"spec.{key}", f"{shown(spec[key])} is not a memory size") from None
    if kib > 2**40:
        raise _FieldError(f"spec.{key}", f"{shown(spec[key])} is larger than 1 PiB")
    return kib


_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


def _disks(items: list[dict[str, Any]], roots: list[str]) -> tuple[Disk, ...]:
    used: set[str] = {item["target"] for item in items if "target" in item}
    next_index: dict[str, int] = {}
    disks: list[Disk] = []
    for position, item in enumerate(items):
        path = f"spec.disks[{position}]"
        volume = _volume_fields(item, path)
        source = ""
        if not volume:
            source = _confined_source(item["source"], roots, f"{path}.source")
            if any(disk.source == source for disk in disks):
                raise _FieldError(f"{path}.source", f"{item['source']} is listed twice")
        elif any((disk.pool, disk.volume) == (volume["pool"], volume["volume"])
                 for disk in disks):
            raise _FieldError(f"{path}.volume", f"volume {volume['pool']}/{volume['volume']} "
                                                "is listed twice")
        bus = item.get("bus", "virtio")
        if bus in ("sata", "ide") and item.get("readonly"):
            raise _FieldError(f"{path}.readonly", f"QEMU has no read-only {bus.upper()} "
                                                  "disks; use bus: virtio or scsi")
        target = item.get("target")
        if target is None:
            prefix = _BUS_PREFIX[bus]
            while True:
                index = next_index.get(prefix, 0)
                next_index[prefix] = index + 1
                target = disk_target_name(prefix, index)
                if target not in used:
                    break
            used.add(target)
        elif any(other.get("target") == target for other in items[:position]):
            raise _FieldError(f"{path}.target", f"target {target} is used by two disks")
        disks.append(Disk(source=source, target=target, format=item.get("format", "qcow2"),
                          bus=bus, readonly=item.get("readonly", False), **volume))
    return tuple(disks)


def _volume_fields(item: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume part of a disk: {} for a file disk."""
    if "volume" not in item:
        return {}
    size = None
    if "size" in item:
        try:
            size = parse_memory_kib(item["size"]) * 1024
        except ValueError:
            raise _FieldError(f"{path}.size", f"{shown(item['size'])} is not a size") from None
    if item.get("copy") and "image" not in item:
        raise _FieldError(f"{path}.copy", "copy: true needs an image: to copy")
    if size is None and "image" not in item:
        raise _FieldError(f"{path}.size", "a volume without an image needs a size")
    if item.get("format", "qcow2") == "raw" and "image" in item and not item.get("copy"):
        raise _FieldError(f"{path}.format", "an overlay on an image is qcow2; use copy: true "
                                            "for a raw volume")
    return {"volume": item["volume"], "pool": item.get("pool", "default"),
            "image": item.get("image"), "copy": item.get("copy", False), "size": size,
            "on_remove": item.get("onRemove", "keep")}


def _check_images(spec: VMSpec, result: LoadResult) -> None:
    """Every disk's image: names a valid Image document."""
    for position, disk in enumerate(spec.disks):
        if disk.image is None:
            continue
        path = f"spec.disks[{position}].image"
        if disk.image in result.invalid_images:
            raise _FieldError(path, f"image '{disk.image}' is invalid (see its document)")
        if disk.image not in result.images:
            raise _FieldError(path, f"image '{disk.image}' names no Image document")
        image = result.images[disk.image]
        if disk.volume == image.volume and disk.pool == image.pool:
            raise _FieldError(f"spec.disks[{position}].volume",
                              f"volume {disk.where} is the image's own volume")


def _check_resources(spec: VMSpec, result: LoadResult) -> None:
    """Every declared network and pool the VM names: valid, on its host, present."""
    problem = vm_resource_problem(spec, result)
    if problem:
        raise _FieldError(*problem)


def _confined_source(source: str, roots: list[str], path: str) -> str:
    resolved = os.path.realpath(source)
    if not any(resolved == root or resolved.startswith(root.rstrip("/") + "/") for root in roots):
        shown = source if resolved == source else f"{source} (resolves to {printable(resolved)})"
        raise _FieldError(path, f"{shown} is outside the allowed disk roots "
                                f"({', '.join(roots)}); see --disk-root")
    if resolved in roots:
        raise _FieldError(path, f"{source} is a disk root, not a disk image")
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        return resolved  # not created yet: libvirt will say so when the domain starts
    except OSError as exc:  # a symlink loop, a file used as a folder: never a disk image
        raise _FieldError(path, f"{source} is not usable: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise _FieldError(path, f"{source} is not a regular file")
    return resolved
