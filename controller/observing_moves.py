"""Observing a moving VM's storage on both hosts for the planner (planner/moves.py): its
volumes on the source and the target, the pools they are in on each (to tell a shared
pool from a local one), and where the backing files of overlays resolve on each.

Called by observing.observe when a managed copy of the VM is on another host, under the
VM's lock; nothing is read for a VM without volume disks or a cloud-init seed.
"""

from __future__ import annotations

from collections.abc import Mapping

from .hosts import Host
from .model import ImageSpec, Observed, PoolInfo, VMSpec, VolumeInfo
from .planner.moves import MoveView
from .planner.storage import StorageView, VolumeKey


def move_storage_of(spec: VMSpec, *, source: Host, target: Host, src: Observed,
                    target_view: StorageView | None,
                    images: Mapping[str, ImageSpec]) -> MoveView | None:
    """What a move of `spec` from `source` (where it is `src`) to `target` needs to know
    of storage; `target_view`: the VM's storage on the target (observing.storage_of)."""
    configs = [config for config in (src.saved, src.live) if config is not None]
    keys: list[VolumeKey] = [(disk.pool, disk.volume) for disk in spec.disks
                             if disk.volume and disk.pool]
    keys += [(disk.pool, disk.volume) for config in configs for disk in config.disks
             if disk.volume and disk.pool]
    if not keys and spec.cloud_init is None:
        return None
    keys = list(dict.fromkeys(keys))
    here, there = source.hypervisor.storage, target.hypervisor.storage
    source_volumes = {key: here.volume(*key) for key in keys}
    target_volumes = {key: there.volume(*key) for key in keys}
    pools = sorted({pool for pool, _ in keys})
    source_pools: dict[str, PoolInfo | None] = {pool: here.pool(pool) for pool in pools}
    target_pools: dict[str, PoolInfo | None] = {pool: there.pool(pool) for pool in pools}
    backings: dict[str, tuple[VolumeInfo | None, VolumeInfo | None]] = {}
    for volume in source_volumes.values():
        if volume is not None and volume.backing is not None \
                and volume.backing.path not in backings:
            path = volume.backing.path
            backings[path] = (here.volume_at(path), there.volume_at(path))
    view = target_view or StorageView(volumes={}, images={}, image_volumes={})
    planned = frozenset(images[name].volume for name in view.planned_imports
                        if name in images)
    return MoveView(target=view, source_volumes=source_volumes,
                    target_volumes=target_volumes, source_pools=source_pools,
                    target_pools=target_pools, backings=backings,
                    image_volumes=frozenset(image.volume for image in images.values()),
                    planned_imports=planned)
