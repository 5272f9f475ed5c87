"""Reconciling a name no valid manifest defines: a managed domain left as it is (its
manifest is invalid: an unreadable manifest is not a missing one), or an orphan,
removed only when pruning is asked for and the planner allows it (orphans.py).

Called by `Reconciler.reconcile` for such a name, on each usable host the run handles.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import HypervisorError, LockTimeout
from .executor import StepFailed
from .hosts import Host
from .manifests import LoadResult
from .model import Cause, Observed, Outcome, Result
from .planner.orphans import Manifests, left_as_is, plan_orphan, prune_verdict
from .resourcekinds import count_orphans

if TYPE_CHECKING:
    from .reconciler import Reconciler


def manifests_view(load: LoadResult) -> Manifests:
    """What the planner needs to know of a load."""
    return Manifests(
        complete=load.prune_safe,
        problem=load.problem or f"{len(load.invalid)} invalid manifest(s)",
        invalid_files=frozenset(entry.file for entry in load.invalid),
        invalid_names=frozenset(load.invalid_names),
        invalid_sources=dict(load.invalid_sources),
    )


def reconcile_unnamed(r: Reconciler, name: str, load: LoadResult) -> Outcome:
    """A managed domain without a manifest, on each usable host this run handles: left
    as it is (its manifest is invalid), or an orphan to prune when that is safe."""
    outcomes = []
    for host_name in sorted(r.scope()):
        host = r.hosts.get(host_name)
        if host is None or not host.usable:
            continue
        if host.listed is not None and name not in host.listed.listing.names:
            continue
        outcomes.append(r.tag(_unnamed_on(r, name, host, load), host.name))
    real = [outcome for outcome in outcomes if outcome.orphan or outcome.error]
    if not real:
        return Outcome(name, None, Result.UNCHANGED, note="no longer a managed domain")
    first = real[0]
    for other in real[1:]:  # the same orphan on several hosts: one outcome for the name
        first.steps += [replace(step, host=other.host or "") for step in other.steps]
    return first

def _unnamed_on(r: Reconciler, name: str, host: Host, load: LoadResult) -> Outcome:
    try:
        with r.holding(name) as held:
            observed = host.hypervisor.domains.observe(name, host.listing_for(name, held))
            if not observed.exists or not observed.managed:
                return Outcome(name, None, Result.UNCHANGED, observed=observed,
                               note="no longer a managed domain")
            view = manifests_view(load)
            why = left_as_is(name, observed.saved.source if observed.saved else None, view)
            if why:
                return Outcome(name, observed.saved.source if observed.saved else None,
                               Result.FAILED, error=why, observed=observed,
                               cause=Cause.TERMINAL)
            return _orphan(r, name, host, observed)
    except LockTimeout as error:
        return Outcome(name, None, Result.FAILED, error=str(error), cause=Cause.RETRY,
                       orphan=True)
    except HypervisorError as error:
        cause = Cause.RETRY if host.hypervisor.connection.alive() else Cause.HOST_UNREACHABLE
        return Outcome(name, None, Result.FAILED, error=str(error), cause=cause,
                       orphan=True)

def _orphan(r: Reconciler, name: str, host: Host, observed: Observed) -> Outcome:
    def outcome(result: Result, cause: Cause = Cause.NONE, **extra: object) -> Outcome:
        return Outcome(name, None, result, observed=observed, cause=cause, orphan=True,
                       **extra)  # type: ignore[arg-type]

    if not r.prune:
        return outcome(Result.UNCHANGED, note="orphan: a managed domain that no manifest "
                                              "names (not pruned; --prune removes it)")
    settle = r.manifests.unsettled_for()
    if settle > 0:
        return outcome(Result.UNCHANGED, Cause.RETRY, retry_after=settle,
                       note="the manifests changed a moment ago")
    fresh = r.manifests.confirm()
    if name in fresh.specs or name in fresh.invalid_names:
        return outcome(Result.UNCHANGED, note="a manifest names it again")
    view = manifests_view(fresh)
    count = r.orphans_in_pass
    if count is None and view.complete:
        count = count_all_orphans(r, fresh, view)
    verdict = prune_verdict(view, orphans=count or 0, max_prune=r.max_prune)
    the_plan = plan_orphan(observed, verdict)
    if the_plan.failure:
        return outcome(Result.FAILED, Cause.TERMINAL, error=the_plan.failure)
    if not the_plan.steps:
        return outcome(Result.UNCHANGED, note=the_plan.note)
    if r.dry_run:
        return outcome(Result.PLANNED, steps=list(the_plan.steps))
    try:
        done = r.execute(name, host, the_plan.steps)
    except StepFailed as failure:
        return outcome(Result.FAILED, Cause.RETRY, steps=failure.done,
                       error=str(failure.error))
    return outcome(Result.PRUNED, steps=done)

def count_all_orphans(r: Reconciler, load: LoadResult, view: Manifests) -> int:
    """The orphans of every kind (domains, networks, pools) on every usable host this run
    handles, counted afresh: --max-prune counts them together."""
    named = frozenset(load.specs) | frozenset(load.invalid_names)
    count = 0
    usable = {}
    for host_name in r.scope():
        host = r.hosts.get(host_name)
        if host is None or not host.usable:
            continue
        usable[host.name] = host.hypervisor
        marks = host.hypervisor.domains.managed(skip=named)
        count += sum(1 for name, mark in marks.items()
                     if not left_as_is(name, mark.source, view))
    return count + count_orphans(usable, load, view, default=r.hosts.default_name)
