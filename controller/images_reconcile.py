"""Reconciling an Image: on each host that needs it (a VM placed there has a disk made
from it), import it into its pool once, under the image's lock, and verify it landed.

Called by `Reconciler.reconcile_image`: by `passes.run_pass` before any VM (so that
the VMs find their images), and by the service's workers for `image:NAME` keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConnectionLost, HypervisorError, LockTimeout
from .executor import StepFailed
from .hosts import Host
from .manifests import LoadResult
from .model import Cause, DesiredState, ImageSpec, Outcome, Result, Step
from .planner.images import plan_image

if TYPE_CHECKING:
    from .reconciler import Reconciler

#: The key of an Image on the work queue and in the lock folder.
KEY_PREFIX = "image:"


def hosts_needing(image: str, load: LoadResult, r: Reconciler) -> list[str]:
    """The hosts this run handles where a VM's disk is made from `image`."""
    scope = r.scope()
    names = {r.hosts.host_of(spec) for spec in load.specs.values()
             if spec.state is not DesiredState.ABSENT
             and any(disk.image == image for disk in spec.disks)}
    return sorted(names & scope)


def reconcile_image(r: Reconciler, name: str) -> list[Outcome]:
    load = r.manifests.current()
    image = load.images.get(name)
    if image is None:
        return []
    outcomes = []
    for host_name in hosts_needing(name, load, r):
        host = r.hosts.get(host_name)
        if host is None:
            continue
        outcome = _on_host(r, image, host)
        outcomes.append(r.tag(outcome, host.name))
    return outcomes


def _on_host(r: Reconciler, image: ImageSpec, host: Host) -> Outcome:
    def outcome(result: Result, cause: Cause = Cause.NONE, **extra: object) -> Outcome:
        steps = extra.pop("steps", done)
        return Outcome(image.name, image.source, result, steps=steps,  # type: ignore[arg-type]
                       cause=cause, kind="image", **extra)  # type: ignore[arg-type]

    done: list[Step] = []
    if not host.usable:
        return outcome(Result.FAILED, Cause.HOST_UNREACHABLE, error=r.unreachable(host))
    try:
        with r.holding(KEY_PREFIX + image.name):
            for _ in range(2):  # the import, then the look that verifies it
                have = host.hypervisor.storage.volume(image.pool, image.volume)
                the_plan = plan_image(image, have)
                if not the_plan.steps:
                    return outcome(Result.CONVERGED if done else Result.UNCHANGED)
                if done:
                    return outcome(Result.FAILED, Cause.RETRY, error=(
                        f"libvirt kept {image.pool}/{image.volume} incomplete after the "
                        "import"))
                if r.dry_run:
                    return outcome(Result.PLANNED, steps=list(the_plan.steps))
                done += r.execute(image.name, host, the_plan.steps)
    except LockTimeout as error:
        return outcome(Result.FAILED, Cause.RETRY, error=str(error))
    except StepFailed as failure:
        done += failure.done
        return outcome(Result.FAILED, Cause.RETRY, error=str(failure.error))
    except ConnectionLost as error:
        return outcome(Result.FAILED, Cause.HOST_UNREACHABLE, error=str(error))
    except HypervisorError as error:
        return outcome(Result.FAILED, Cause.RETRY, error=str(error))
    return outcome(Result.FAILED, Cause.RETRY, error="the image kept changing")
