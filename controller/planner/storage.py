"""The storage steps of one VM: volumes to create or grow before its domain is defined.
Pure. Called by placement.py with what was observed of the VM's volumes and images on
its host.

- A missing volume (or one whose creation was interrupted: the partial rule) is
  created (but never one the running domain has: that is a finished live move's copy,
  whose marker is cleared): empty of `size`, a qcow2 overlay on its image, or a full copy of it.
  Its image must be imported on this host first (the image's own plan does that,
  before any VM's in a pass): until then the VM waits, and nothing of its plan runs.
- An existing volume is used as it is: a different `image` or `copy` is a note.
- A larger `size` grows the volume: live (block resize) when the running domain has
  the disk, else offline. A smaller one is refused: the VM fails, nothing runs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from ..model import Action, Backing, Disk, ImageSpec, Step, VMSpec, VolumeInfo, VolumeWant
from ..units import format_kib

#: (pool, volume)
VolumeKey = tuple[str, str]


@dataclass(frozen=True)
class StorageView:
    """What was observed of a VM's storage on its host."""

    volumes: Mapping[VolumeKey, VolumeInfo | None]  # the VM's volume disks; None: absent
    images: Mapping[str, ImageSpec]  # the Images its disks name
    image_volumes: Mapping[str, VolumeInfo | None]  # image name → its volume on the host
    live_targets: frozenset[str] = frozenset()  # disks the running domain has now
    #: a dry run: the images whose import this pass plans (not there yet; shown as if)
    planned_imports: frozenset[str] = frozenset()
    seeds: frozenset[str] = frozenset()  # the VM's complete seed volumes in its seed pool
    #: the volumes the running domain has as disks now (its live definition)
    in_use: frozenset[VolumeKey] = frozenset()


@dataclass(frozen=True)
class StoragePlan:
    """A VM's storage steps, the volumes they create, or why none may run; notes."""

    steps: tuple[Step, ...] = ()
    created: tuple[VolumeKey, ...] = ()  # the volumes these steps create
    failure: str | None = None  # nothing of the VM's plan may run
    terminal: bool = False  # the failure needs a manifest change (a shrink), not a retry
    notes: tuple[str, ...] = ()


def size(nbytes: int) -> str:
    return format_kib(-(-nbytes // 1024))


def plan_storage(spec: VMSpec, view: StorageView) -> StoragePlan:
    """Create-volume and grow-volume steps for `spec`'s volume disks, in disk order."""
    creates: list[Step] = []
    grows: list[Step] = []
    created: list[VolumeKey] = []
    notes: list[str] = []
    for disk in spec.disks:
        if disk.volume is None or disk.pool is None:
            continue
        have = view.volumes.get((disk.pool, disk.volume))
        if have is not None and have.partial and (disk.pool, disk.volume) in view.in_use:
            # only a live move's copy is partial under a running domain: the migration
            # finished (the guest runs on it) and the marker was not cleared yet
            creates.append(Step(Action.CREATE_VOLUME, f"{disk.where}: the running domain "
                                                      "has it (a live move copied it): its "
                                                      "partial marker is cleared",
                                volume=VolumeWant(disk.pool, disk.volume, format=disk.format,
                                                  finish=True)))
            continue
        if have is None or have.partial:
            step = _create(disk, have, view)
            if isinstance(step, StoragePlan):
                return step
            creates.append(step)
            created.append((disk.pool, disk.volume))
            continue
        if disk.size is not None:
            if disk.size < have.capacity:
                return StoragePlan(terminal=True, failure=(
                    f"volume {disk.where} is {size(have.capacity)}; size {size(disk.size)} "
                    "would shrink it: disks grow, never shrink"))
            if disk.size > have.capacity:
                live = disk.target in view.live_targets
                grows.append(Step(
                    Action.GROW_VOLUME, f"{disk.where} {size(have.capacity)} → "
                    f"{size(disk.size)} ({'live' if live else 'offline'})",
                    volume=VolumeWant(disk.pool, disk.volume, format=disk.format,
                                      capacity=disk.size, target=disk.target, live=live)))
        note = _not_applied(disk, have, view)
        if note:
            notes.append(note)
    return StoragePlan(steps=tuple(creates + grows), created=tuple(created),
                       notes=tuple(notes))


def _create(disk: Disk, have: VolumeInfo | None, view: StorageView) -> Step | StoragePlan:
    assert disk.volume is not None and disk.pool is not None
    again = " (its creation was interrupted: made again)" if have is not None else ""
    if disk.image is None:
        assert disk.size is not None  # the loader requires a size without an image
        return Step(Action.CREATE_VOLUME, f"{disk.where}: {size(disk.size)}, empty{again}",
                    volume=VolumeWant(disk.pool, disk.volume, format=disk.format,
                                      capacity=disk.size))
    image = view.images[disk.image]
    base = view.image_volumes.get(disk.image)
    if (base is None or base.partial) and disk.image in view.planned_imports:
        how = "a copy of" if disk.copy else "an overlay on"
        shown = f"{size(disk.size)}, " if disk.size is not None else ""
        return Step(Action.CREATE_VOLUME, f"{disk.where}: {shown}{how} image {disk.image} "
                                          "once it is imported",
                    volume=VolumeWant(disk.pool, disk.volume, format=disk.format,
                                      capacity=disk.size))
    if base is None or base.partial:
        return StoragePlan(failure=(
            f"image {disk.image} is not imported into pool {image.pool} on this host yet; "
            f"volume {disk.where} waits for it"))
    if disk.size is not None and disk.size < base.capacity:
        return StoragePlan(terminal=True, failure=(
            f"volume {disk.where}: size {size(disk.size)} is smaller than image "
            f"{disk.image} ({size(base.capacity)})"))
    capacity = disk.size if disk.size is not None else base.capacity
    if disk.copy:
        return Step(Action.CREATE_VOLUME, f"{disk.where}: {size(capacity)}, a copy of image "
                                          f"{disk.image}{again}",
                    volume=VolumeWant(disk.pool, disk.volume, format=disk.format,
                                      capacity=capacity, copy_of=(image.pool, image.volume)))
    return Step(Action.CREATE_VOLUME, f"{disk.where}: {size(capacity)}, an overlay on image "
                                      f"{disk.image}{again}",
                volume=VolumeWant(disk.pool, disk.volume, format="qcow2", capacity=capacity,
                                  backing=Backing(base.path, image.format)))


def _not_applied(disk: Disk, have: VolumeInfo, view: StorageView) -> str | None:
    """What the manifest says of how to create `disk` that the existing volume differs
    from: reported, never applied (a volume is created once, never overwritten)."""
    if disk.image is None:
        return None
    base = view.image_volumes.get(disk.image)
    image = view.images.get(disk.image)
    if base is None and image is not None:  # not looked up (the volume exists): by name
        backed_by_image = (have.backing is not None
                           and posixpath.basename(have.backing.path) == image.volume)
    else:
        backed_by_image = (have.backing is not None and base is not None
                           and have.backing.path == base.path)
    if disk.copy and have.backing is not None:
        how = "is an overlay, not a copy of image " + disk.image
    elif not disk.copy and not backed_by_image:
        how = f"is not an overlay on image {disk.image}" + (
            " (as imported now)" if have.backing is not None else "")
    else:
        return None
    return (f"volume {disk.where} {how}: an existing volume is used as it is, never "
            "overwritten")


def delete_steps(spec: VMSpec, created: tuple[VolumeKey, ...]) -> tuple[Step, ...]:
    """`state: absent`: the volumes marked `onRemove: delete` that reconcile created
    (the domain's mark says which), after the undefine."""
    return tuple(
        Step(Action.DELETE_VOLUME, f"{disk.where}: onRemove is delete",
             volume=VolumeWant(disk.pool, disk.volume, format=disk.format))
        for disk in spec.disks
        if disk.volume and disk.pool and disk.on_remove == "delete"
        and (disk.pool, disk.volume) in created)
