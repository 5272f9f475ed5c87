"""The cloud-init seed of one VM: which seed volume its definition should attach, and the
steps to make it and to clean up old ones. Pure. Called by placement.py.

The seed is content-addressed: its volume is named by the sha256 of its files
(`VM.cidata-<12 hex>.iso`), so it is built and uploaded only when its content
changes. A new seed is a next-boot change: the saved definition points at it at
once; the running guest is not restarted for it, and cloud-init acts on a new seed
only when its instance-id is new (cloud-init's rule, said in the plan). A seed no
definition (saved or live) points at any more is deleted; `state: absent` deletes
them all. The user data may hold secrets: reasons show content hashes only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from ..cloudinit import content_sha256, meta_data_for, seed_files
from ..domainxml.seed import SEED_VOLUME, seed_volume_name
from ..model import Action, Observed, SeedWant, Step, VMSpec, VolumeWant

#: Names the domain UUID reconcile pins for a new VM with a seed: its instance-id.
_UUIDS = "3a1c3e2e-5b1f-4b8e-9d5a-7f0c2b6e1d41"  # the namespace of uuid5 below


@dataclass(frozen=True)
class SeedPlan:
    seed: tuple[str, str]  # (pool, volume) the definition attaches
    uuid: str  # the domain UUID (instance-id unless metaData says otherwise)
    steps: tuple[Step, ...] = ()  # create-seed, before the domain steps
    reason: str | None = None  # why the definition changes, if it does
    cleanup: tuple[Step, ...] = ()  # delete-volume of unused seeds, after the domain steps


def domain_uuid(spec: VMSpec, observed: Observed) -> str:
    """The UUID the domain has, or will have: its own, the pinned one, or one derived
    from the name (so the seed's instance-id is known before the domain is defined)."""
    if observed.saved is not None and observed.saved.uuid:
        return observed.saved.uuid
    if spec.uuid:
        return spec.uuid.lower()
    import uuid as uuidlib  # with platform and hashlib: for VMs with cloudInit only

    return str(uuidlib.uuid5(uuidlib.UUID(_UUIDS), spec.name)).lower()


def wanted_seed(spec: VMSpec, uuid: str) -> SeedWant:
    cloud = spec.cloud_init
    assert cloud is not None
    overrides: Mapping[str, Any] = json.loads(cloud.meta_data)
    meta = meta_data_for(name=spec.name, uuid=uuid, overrides=overrides)
    network = json.loads(cloud.network_config) if cloud.network_config else None
    files = seed_files(user_data=cloud.user_data, meta_data=meta, network_config=network)
    content = content_sha256(files)
    return SeedWant(pool=cloud.pool, volume=seed_volume_name(spec.name, content),
                    content_sha256=content, user_data=cloud.user_data,
                    meta_data=json.dumps(meta, sort_keys=True), network_config=cloud.network_config)


def plan_seed(spec: VMSpec, observed: Observed, volumes: Set[str]) -> SeedPlan:
    """`volumes`: the names of the VM's seed volumes in the seed pool now (complete ones)."""
    uuid = domain_uuid(spec, observed)
    want = wanted_seed(spec, uuid)
    steps = []
    if want.volume not in volumes:
        steps.append(Step(Action.CREATE_SEED, f"{want.pool}/{want.volume}: cloud-init "
                                               f"content sha256:{want.content_sha256[:12]}",
                          seed=want))
    have = observed.saved.seed if observed.saved else None
    reason = None
    if have != (want.pool, want.volume):
        reason = _why(have, want, observed)
    in_use = {seed for config in (observed.saved, observed.live) if config is not None
              for seed in [config.seed] if seed is not None}
    cleanup = tuple(
        Step(Action.DELETE_VOLUME, f"{want.pool}/{name}: an old cloud-init seed",
             volume=VolumeWant(want.pool, name, format="raw"))
        for name in sorted(volumes)
        if name != want.volume and (want.pool, name) not in in_use and not steps)
    return SeedPlan(seed=(want.pool, want.volume), uuid=uuid, steps=tuple(steps),
                    reason=reason, cleanup=cleanup)


def _why(have: tuple[str, str] | None, want: SeedWant, observed: Observed) -> str:
    new = f"sha256:{want.content_sha256[:12]}"
    if have is None:
        return f"cloud-init seed {new}" if observed.exists else ""
    old = SEED_VOLUME.search(have[1])
    was = f"sha256:{have[1][old.start() + 8:old.start() + 20]}" if old else have[1]
    instance = json.loads(want.meta_data).get("instance-id")
    return (f"cloud-init seed {was} → {new} (next boot; cloud-init runs it again only "
            f"for a new instance-id, now {instance})")


def seed_cleanup_on_removal(spec: VMSpec, volumes: Set[str]) -> tuple[Step, ...]:
    """`state: absent`: every seed volume of the VM goes, after the undefine."""
    pool = spec.cloud_init.pool if spec.cloud_init else "default"
    return tuple(Step(Action.DELETE_VOLUME, f"{pool}/{name}: the VM's cloud-init seed",
                      volume=VolumeWant(pool, name, format="raw"))
                 for name in sorted(volumes))
