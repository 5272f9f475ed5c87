"""Observing one VM name for the planner: the domain on its host, the managed copies on
the other reachable hosts, the hosts that may hold it and cannot be asked, and the
machine aliases involved, resolved on the VM's host. Called by the reconciler under
the VM's lock; everything read afresh (or from a listing the caller may trust).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .hosts import Host, Hosts
from .manifests import LoadResult
from .model import DesiredState, ImageSpec, Observed, VMSpec, VolumeInfo
from .planner import Copy, Machines, Situation
from .resourcekinds import ResourceStates, vm_blocker
from .virt import Listing
from .virt.storagexml import marker_name

if TYPE_CHECKING:
    from .planner.storage import StorageView


def observe(spec: VMSpec, host: Host, hosts: Hosts, listing: Listing | None, *,
            images: Mapping[str, ImageSpec], dry_run: bool = False,
            load: LoadResult | None = None,
            resources: ResourceStates | None = None) -> Situation:
    """`load` and `resources` (the manifests, what the networks' and pools' own
    reconciles found): whether a network or pool the VM needs stands in the way."""
    here = host.hypervisor.domains.observe(spec.name, listing)
    blocked = None
    if load is not None and resources is not None:
        where = f" on host {host.label}" if hosts.several else ""
        blocked = vm_blocker(spec, host.hypervisor, host=host.name, where=where, load=load,
                             states=resources, exists=here.exists)
    copies: list[Copy] = []
    unknown: tuple[str, ...] = ()
    if hosts.several:
        unknown = tuple(hosts.unknown_holders(spec.name, host.name))
        if not unknown:
            copies = copies_elsewhere(spec.name, host, hosts)
    observed = [here] + [copy.observed for copy in copies]
    storage = storage_of(spec, host, here, images, dry_run=dry_run)
    moving = None
    if len(copies) == 1 and spec.state is not DesiredState.ABSENT:
        from .observing_moves import move_storage_of  # moves only

        moving = move_storage_of(spec, source=hosts[copies[0].host], target=host,
                                 src=copies[0].observed, target_view=storage, images=images)
    return Situation(host=host.name, here=here, copies=tuple(copies), unknown=unknown,
                     machines=machines_of(spec, host, observed),
                     cpu_models=cpu_models_of(spec, host, here),
                     storage=storage if not copies else None, move_storage=moving,
                     blocked=blocked)


def storage_of(spec: VMSpec, host: Host, here: Observed, images: Mapping[str, ImageSpec], *,
               dry_run: bool = False) -> StorageView | None:
    """The VM's volumes on its host and, for those to be created, their images' volumes;
    None for a VM without volume disks (no storage call at all). In a dry run, an image
    not imported yet is one this pass plans to import (images go first)."""
    keyed = [((disk.pool, disk.volume), disk.image) for disk in spec.disks
             if disk.volume and disk.pool]
    if not keyed and spec.cloud_init is None:
        return None
    from .planner.storage import StorageView  # VMs with volumes or a seed only

    storage = host.hypervisor.storage
    volumes: dict[tuple[str, str], VolumeInfo | None] = {
        key: storage.volume(*key) for key, _ in keyed}
    wanted = {image for _, image in keyed if image and image in images}
    missing = set()
    for key, image in keyed:
        have = volumes[key]
        if image and (have is None or have.partial):
            missing.add(image)
    image_volumes = {name: storage.volume(images[name].pool, images[name].volume)
                     for name in sorted(wanted & missing)}
    live = frozenset(disk.target for disk in here.live.disks) if here.live else frozenset()
    in_use = frozenset((disk.pool, disk.volume) for disk in here.live.disks
                       if disk.pool and disk.volume) if here.live and here.persistent \
        else frozenset()
    planned = frozenset(name for name, volume in image_volumes.items()
                        if dry_run and (volume is None or volume.partial))
    seeds: frozenset[str] = frozenset()
    if spec.cloud_init is not None:
        names = set(storage.volume_names(spec.cloud_init.pool))
        mine = re.compile(re.escape(spec.name) + r"\.cidata-[0-9a-f]{12}\.iso\Z")
        seeds = frozenset(name for name in names if mine.match(name)
                          and marker_name(name) not in names)
    return StorageView(volumes=volumes, images={name: images[name] for name in wanted},
                       image_volumes=image_volumes, live_targets=live,
                       planned_imports=planned, seeds=seeds, in_use=in_use)


def copies_elsewhere(name: str, target: Host, hosts: Hosts) -> list[Copy]:
    """Managed domains named `name` on the other usable hosts, observed afresh (only
    where this pass's listing, if there is one, has the name)."""
    copies = []
    for other in hosts.all():
        if other is target or not other.usable:
            continue
        if other.listed is not None and name not in other.listed.listing.names:
            continue
        observed = other.hypervisor.domains.observe(name)
        if observed.exists and observed.managed:
            copies.append(Copy(other.name, observed))
    return copies


def machines_of(spec: VMSpec, host: Host, observed: list[Observed]) -> Machines | None:
    """The machine aliases involved, resolved on the VM's host (cached there): only
    when the manifest names a machine, the only case the planner compares them."""
    if not spec.machine:
        return None
    configs = [config for seen in observed for config in (seen.saved, seen.live)
               if config is not None and config.machine]
    if not configs:
        return None
    canonical = host.hypervisor.domains.canonical_machine
    machines = {spec.machine: canonical(spec.type, spec.arch or configs[0].arch,
                                        spec.machine)}
    for config in configs:
        assert config.machine is not None
        machines[config.machine] = canonical(config.type, config.arch, config.machine)
    return machines


def cpu_models_of(spec: VMSpec, host: Host, here: Observed) -> frozenset[str] | None:
    """The CPU models the VM's host knows for its type, arch and machine (cached there):
    only when the manifest names a model, the only case the planner checks them."""
    if spec.cpu is None or not spec.cpu.model:
        return None
    saved = here.saved
    machine = spec.machine or (saved.machine if saved else None) or (
        "q35" if spec.firmware == "efi" else None)
    return host.hypervisor.domains.cpu_models(spec.type, spec.arch or (saved.arch if saved
                                                                       else None), machine)
