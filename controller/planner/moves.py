"""The storage of a move: which volumes go with a VM to its new host, and how. Pure.
Called by placement.plan_move with what was observed of the VM's volumes on both hosts.

- A volume of a shared pool (the same shared pool type and source on both hosts: netfs,
  rbd, iscsi, ...) is the same storage on both: nothing is copied.
- Cold: every other volume of the manifest's disks is copied (copy-volume, after the
  source's stop and before the target's define) when the target lacks it or holds an
  interrupted copy (the partial rule). A complete volume of that name already on the
  target may be an old copy kept by an earlier move: with the source stopped, the step
  compares the two (sha256) and uses it only when they are the same; with the source
  running, the move is refused before anything is stopped. Never overwritten.
- Live: libvirt copies the running domain's writable volume disks during the migration,
  into volumes made on the target first under the partial rule (measured on libvirt 9.0:
  an incremental copy, VIR_MIGRATE_NON_SHARED_INC, refuses volume disks, so every disk is
  copied whole, VIR_MIGRATE_NON_SHARED_DISK). Readonly volumes, which the migration does
  not copy, and volumes the running domain does not have are copied as in a cold move.
- An overlay (a qcow2 volume with a backing file) is copied as it is, a few MiB of its
  own clusters, and only when its backing file is an Image's volume (content-addressed,
  verified at import) that the target holds complete at the same path, in the same pool
  under the same name. Otherwise it would arrive with a broken backing chain: the move
  waits for the image (images are imported first in a pass, on the VM's new host too)
  or, for a backing file that is no Image's volume, is refused.
- A volume neither host has is created on the target before the define (storage.py).
- The cloud-init seed is derived data: it is made on the target (create-seed), never
  copied; a live move needs the seed the guest runs with to be the manifest's.
- The source's volumes are kept; the plan's note names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..model import (
    Action,
    Observed,
    PoolInfo,
    Step,
    VMSpec,
    VolumeInfo,
    VolumeWant,
)
from .seed import domain_uuid, wanted_seed
from .storage import StorageView, VolumeKey, plan_storage, size

DEFAULT_POOL = "default"  # made on a host that lacks it (contract section 6)


@dataclass(frozen=True)
class MoveView:
    """What was observed of a moving VM's storage on the source and the target host."""

    target: StorageView  # the VM's storage on the target, as plan_here sees it
    source_volumes: Mapping[VolumeKey, VolumeInfo | None]  # None: not on the source
    target_volumes: Mapping[VolumeKey, VolumeInfo | None]  # the same keys, on the target
    source_pools: Mapping[str, PoolInfo | None]
    target_pools: Mapping[str, PoolInfo | None]
    #: a backing file's path → the volume at that path on the source, on the target
    backings: Mapping[str, tuple[VolumeInfo | None, VolumeInfo | None]]
    image_volumes: frozenset[str] = frozenset()  # the volume name of every Image
    #: a dry run: the image volumes this pass imports on the target first (shown as if)
    planned_imports: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MoveStorage:
    before: tuple[Step, ...] = ()  # on the target before the source stops: create-*
    copies: tuple[Step, ...] = ()  # copy-volume: cold, after the stop; live, before
    #: copy-volume of volumes the target holds complete already: compared, never written
    compare: tuple[Step, ...] = ()
    migrate: tuple[VolumeWant, ...] = ()  # live: the target volumes the migration fills
    created: tuple[VolumeKey, ...] = ()  # what `before` creates (for the mark)
    seed: tuple[str, str] | None = None  # the seed cdrom the arriving definition attaches
    failure: str | None = None  # nothing of the move may run
    terminal: bool = False
    kept: tuple[str, ...] = ()  # the source's volumes that stay there ("pool/name")
    notes: tuple[str, ...] = ()


def shared(source: PoolInfo | None, target: PoolInfo | None) -> bool:
    """Whether two hosts' pools of one name are the same storage."""
    return (source is not None and target is not None and source.shared
            and (source.type, source.source) == (target.type, target.source))


def _complete(volume: VolumeInfo | None) -> bool:
    return volume is not None and not volume.partial


def plan_move_storage(spec: VMSpec, src: Observed, view: MoveView, *, source: str,
                      target: str, live: bool) -> MoveStorage:
    """The storage steps of moving `spec` from `source` (observed as `src`) to `target`.
    `live`: the move is a migration of the running domain."""
    running = {(disk.pool, disk.volume): disk for disk in (src.live.disks if src.live else ())
               if disk.volume and disk.pool}
    seed_key = src.live.seed if live and src.live else None
    wanted = {(disk.pool, disk.volume): disk for disk in spec.disks
              if disk.volume and disk.pool}
    keys = [key for key in wanted if key not in running or not live] + (
        [key for key in running if key != seed_key] if live else [])
    copies: list[Step] = []
    compare: list[Step] = []
    migrate: list[VolumeWant] = []
    landed: dict[VolumeKey, VolumeInfo | None] = {}  # what the target has once they ran
    kept: list[str] = []
    move = f"move {source} → {target}"
    for key in dict.fromkeys(keys):
        pool, name = key
        where = f"{pool}/{name}"
        have, there = view.source_volumes.get(key), view.target_volumes.get(key)
        landed[key] = there
        src_pool, tgt_pool = view.source_pools.get(pool), view.target_pools.get(pool)
        if shared(src_pool, tgt_pool):
            if _complete(have) and there is None:
                return MoveStorage(failure=(
                    f"volume {where} is on shared pool {pool}, but {target} does not see "
                    f"it: refresh the pool there"))
            continue
        if tgt_pool is None and pool != DEFAULT_POOL:
            return MoveStorage(failure=(f"storage pool {pool!r} does not exist on {target}; "
                                        f"volume {where} cannot move there"))
        if not _complete(have):
            if live and key in running:
                return MoveStorage(failure=(f"volume {where} of the running domain is not "
                                            f"a complete volume on {source}"))
            continue  # nothing to carry: made on the target as a new VM's would be
        assert have is not None
        kept.append(where)
        if _complete(there):
            if live or src.power.active:
                return MoveStorage(failure=(
                    f"volume {where} already exists on {target} (an old copy kept by an "
                    f"earlier move?): a move never overwrites it; delete it there, or stop "
                    f"the VM to have the two compared"))
            compare.append(Step(Action.COPY_VOLUME, f"{move}: {where} is on {target} "
                                                   f"already: compared with {source}'s "
                                                   "before use",
                               volume=VolumeWant(pool, name, format=have.format or "raw",
                                                 capacity=have.capacity,
                                                 backing=have.backing)))
            continue
        refused = _broken_chain(have, view, where=where, target=target)
        if refused is not None:
            return refused
        landed[key] = have
        disk = running.get(key)
        again = " (an interrupted copy is made again)" if there is not None else ""
        if live and disk is not None and not disk.readonly:
            migrate.append(VolumeWant(pool, name, format=disk.format, capacity=have.capacity,
                                      backing=have.backing, target=disk.target))
            continue
        copies.append(Step(Action.COPY_VOLUME,
                           f"{move}: {where}, {_shape(have)}{again}",
                           volume=VolumeWant(pool, name, format=have.format or "raw",
                                             capacity=have.capacity, backing=have.backing)))
    seed, seed_steps, refused_seed = _seed(spec, src, view, live=live, target=target)
    if refused_seed is not None:
        return MoveStorage(failure=refused_seed)
    creates = plan_storage(spec, replace(view.target, volumes={
        key: landed.get(key, view.target.volumes.get(key)) for key in wanted},
        live_targets=frozenset()))
    if creates.failure:
        return MoveStorage(failure=creates.failure, terminal=creates.terminal)
    made = tuple(step for step in creates.steps if step.action is Action.CREATE_VOLUME)
    return MoveStorage(before=made + seed_steps, copies=tuple(copies), compare=tuple(compare),
                       migrate=tuple(migrate),
                       created=creates.created, seed=seed, kept=tuple(kept),
                       notes=creates.notes)


def _shape(volume: VolumeInfo) -> str:
    what = f"{volume.format or 'raw'}, {size(volume.capacity)}"
    if volume.backing is not None:
        what += f", an overlay on {volume.backing.path} (its own clusters only)"
    return what + ", copied and verified"


def _broken_chain(volume: VolumeInfo, view: MoveView, *, where: str,
                  target: str) -> MoveStorage | None:
    """Why copying overlay `volume` as it is would break its backing chain on `target`."""
    if volume.backing is None:
        return None
    path = volume.backing.path
    on_source, on_target = view.backings.get(path, (None, None))
    if on_source is None or on_source.name not in view.image_volumes:
        return MoveStorage(terminal=True, failure=(
            f"volume {where} is an overlay on {path}, which is no Image's volume: a move "
            "carries an overlay only onto its image (flatten it into a copy first)"))
    if (on_target is None or on_target.partial) and on_source.name in view.planned_imports:
        return None
    if on_target is None or on_target.partial:
        return MoveStorage(failure=(
            f"volume {where} is an overlay on image volume {on_source.pool}/"
            f"{on_source.name}, which {target} does not hold complete at {path}; copying "
            "the overlay before it is there would break its backing chain: the move waits "
            "for the image's import"))
    if (on_target.pool, on_target.name) != (on_source.pool, on_source.name):
        return MoveStorage(terminal=True, failure=(
            f"volume {where} is an overlay on {path}, which on {target} is volume "
            f"{on_target.pool}/{on_target.name}, not image volume {on_source.pool}/"
            f"{on_source.name}: copying it would give it another backing file"))
    return None


def _seed(spec: VMSpec, src: Observed, view: MoveView, *, live: bool, target: str) -> (
        tuple[tuple[str, str] | None, tuple[Step, ...], str | None]):
    """The seed the arriving definition attaches, the create-seed for it, or why a live
    move cannot take the guest's seed along."""
    running = src.live.seed if live and src.live else None
    if spec.cloud_init is None:
        if running is not None:
            return None, (), (f"the running guest has a cloud-init seed cdrom "
                              f"{running[0]}/{running[1]} and the manifest no cloudInit: "
                              f"{target} cannot have that seed; move it cold")
        return None, (), None
    want = wanted_seed(spec, domain_uuid(spec, src))
    seed = (want.pool, want.volume)
    if running is not None and running != seed:
        return None, (), (f"the running guest's cloud-init seed {running[1]} is not the one "
                          f"the manifest makes now ({want.volume}); seeds are made from the "
                          f"manifest, so {target} cannot have the guest's: move it cold, or "
                          "restart it first")
    steps: tuple[Step, ...] = ()
    if want.volume not in view.target.seeds:
        steps = (Step(Action.CREATE_SEED, f"{want.pool}/{want.volume}: cloud-init content "
                                          f"sha256:{want.content_sha256[:12]}, made on "
                                          f"{target} (never copied)", seed=want),)
    return seed, steps, None
