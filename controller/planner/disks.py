"""Whether a define would give a VM a disk that another domain already uses. Pure.

The manifest loader refuses one image in two manifests; this catches an image
held by a domain without a manifest (an orphan, an unmanaged domain). The
reconciler asks libvirt who uses the paths `disks_to_check` names, and only
when a define brings disks the domain does not have yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model import Action, Observed, Plan, VMSpec


def disks_to_check(spec: VMSpec, observed: Observed, the_plan: Plan) -> set[str]:
    """The disk files of `spec` that the plan's define would newly attach."""
    if not any(step.action is Action.DEFINE for step in the_plan.steps):
        return set()
    have = {disk.source for disk in observed.saved.disks} if observed.saved else set()
    return {disk.source for disk in spec.disks if disk.source} - have


def volumes_to_check(spec: VMSpec, observed: Observed, the_plan: Plan) -> set[tuple[str, str]]:
    """The existing volumes (pool, name) the plan's define would newly attach (a volume
    the plan creates has no other user)."""
    if not any(step.action is Action.DEFINE for step in the_plan.steps):
        return set()
    have = {disk.where for disk in observed.saved.disks} if observed.saved else set()
    created = {(step.volume.pool, step.volume.name) for step in the_plan.steps
               if step.action is Action.CREATE_VOLUME and step.volume is not None}
    return {(disk.pool, disk.volume) for disk in spec.disks
            if disk.volume and disk.pool and disk.where not in have
            and (disk.pool, disk.volume) not in created}


def disk_clash(users: Mapping[str, str]) -> str | None:
    """Why the plan may not run, given which other domain uses which of those disks
    (a file's path, or 'volume pool/name')."""
    if not users:
        return None
    path, other = min(users.items())
    return f"disk {path} is already used by domain '{other}'"
