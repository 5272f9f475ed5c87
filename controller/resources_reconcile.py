"""Reconciling a network or a storage pool (the kinds of controller/resourcekinds.py):
on its host (`spec.host`, like a VM), under its own lock ("network:lab", "pool:vmstore"),
observed afresh, planned (controller/planner/networks.py, pools.py), executed, and
observed again: `converged` only when that fresh look plans nothing more. A managed one
that no manifest declares is an orphan: reported, and removed only with --prune,
when every manifest loaded cleanly and all orphans of every kind together are within
--max-prune. Unknown is not absent: an unreachable host's resources are failed, never
recreated or pruned.

Called by `Reconciler.reconcile_resource` (the service's workers, for "network:" and
"pool:" keys) and by `passes.run_pass`: declared resources before the VMs (pools before
images, networks after them), removals and orphans after the VMs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import AlreadyExists, ConnectionLost, HypervisorError, LockTimeout
from .executor import StepFailed
from .hosts import Host
from .manifests import LoadResult
from .model import Cause, Change, Outcome, Plan, Result, Step
from .planner.orphans import prune_verdict
from .resourcekinds import KINDS, ResourceKind, Spec, State, left_alone, orphans_on, placed_on
from .unnamed import count_all_orphans, manifests_view

if TYPE_CHECKING:
    from .reconciler import Reconciler

#: Observations in one reconcile: the first, after each round of steps (removing an
#: inactive pool takes two: start it to count its volumes, then stop and undefine it),
#: and the last one that verifies nothing more is planned.
ROUNDS = 4


def orphan_reason(kind: ResourceKind) -> str:
    return f"orphan: no manifest declares this managed {kind.label}"


def reconcile_resource(r: Reconciler, kind: ResourceKind, name: str) -> list[Outcome]:
    """`name` of `kind` on every host this run handles: converged on the host its manifest
    places it on, and an orphan wherever else it is managed (the service's key)."""
    load = r.manifests.current()
    spec = kind.specs(load).get(name)
    home = placed_on(spec, r.hosts.default_name) if spec is not None else None
    outcomes = []
    if spec is not None and home in r.scope():
        outcomes.append(converge(r, kind, spec))
    for host_name in sorted(r.scope() - {home}):
        host = r.hosts.get(host_name)
        if host is None or not host.usable:
            continue
        orphan = reconcile_orphan(r, kind, name, host, count=None)
        if orphan is not None:
            outcomes.append(orphan)
    return outcomes


def converge(r: Reconciler, kind: ResourceKind, spec: Spec) -> Outcome:
    """Take the declared resource to its manifest on its host."""
    host = r.hosts.get(placed_on(spec, r.hosts.default_name))
    if host is None or (not host.usable and not (
            r.recover_inline and host.error is None
            and host.recover(ConnectionLost("not connected"), who=kind.key(spec.name)))):
        outcome = Outcome(spec.name, spec.source, Result.FAILED, kind=kind.name,
                          error=r.unreachable(host) if host else "no such host",
                          cause=Cause.HOST_UNREACHABLE)
    else:
        outcome = _drive(r, kind, spec.name, spec.source, host,
                         lambda state: kind.plan(spec, state), spec)
    r.resources.record(kind.name, host.name if host else "", outcome)
    return r.tag(outcome, host.name if host else "")


def reconcile_orphan(r: Reconciler, kind: ResourceKind, name: str, host: Host, *,
                     count: int | None) -> Outcome | None:
    """A managed `name` of `kind` on `host` that no valid manifest declares there: left as
    it is (its manifest is invalid), reported, or pruned when that is allowed. `count`:
    this pass's orphans of every kind (None: count them afresh). None when there is no
    such managed resource."""
    def outcome(result: Result, cause: Cause = Cause.NONE, **extra: object) -> Outcome:
        return r.tag(Outcome(name, None, result, kind=kind.name, cause=cause, orphan=True,
                             **extra), host.name)  # type: ignore[arg-type]

    try:
        with r.holding(kind.key(name)):
            state = kind.observe(host.hypervisor, name, None)
            mark = state.saved.mark if state.exists and state.saved else None
            if mark is None:
                return None
            load = r.manifests.current()
            why = left_alone(kind, name, mark, manifests_view(load), load)
            if why:
                return outcome(Result.FAILED, Cause.TERMINAL, error=why)
            note = f"{orphan_reason(kind)} (not pruned; --prune removes it)"
            if not r.prune:
                return outcome(Result.UNCHANGED, note=note)
            settle = r.manifests.unsettled_for()
            if settle > 0:
                return outcome(Result.UNCHANGED, Cause.RETRY, retry_after=settle,
                               note="the manifests changed a moment ago")
            fresh = r.manifests.confirm()
            declared = kind.specs(fresh).get(name)
            if (declared is not None and placed_on(declared, r.hosts.default_name)
                    == host.name) or name in kind.invalid(fresh):
                return outcome(Result.UNCHANGED, note="a manifest declares it again")
            view = manifests_view(fresh)
            if count is None and view.complete:
                count = count_all_orphans(r, fresh, view)
            verdict = prune_verdict(view, orphans=count or 0, max_prune=r.max_prune)
            if not verdict.allowed:
                if verdict.fails:
                    return outcome(Result.FAILED, Cause.TERMINAL, error=verdict.refusal)
                return outcome(Result.UNCHANGED, note=f"orphan not pruned: {verdict.reason}")
            found = _drive_held(r, kind, name, None, host,
                                lambda seen: kind.plan_removal(seen, orphan_reason(kind)),
                                None, first=state)
    except LockTimeout as error:
        return outcome(Result.FAILED, Cause.RETRY, error=str(error))
    except HypervisorError as error:
        cause = Cause.RETRY if host.hypervisor.connection.alive() else Cause.HOST_UNREACHABLE
        return outcome(Result.FAILED, cause, error=str(error))
    found.orphan = True
    if found.result is Result.CONVERGED:
        found.result = Result.PRUNED
    return r.tag(found, host.name)


def _drive(r: Reconciler, kind: ResourceKind, name: str, source: str | None, host: Host,
           planner: Callable[[State], Plan], spec: Spec | None) -> Outcome:
    """Under the resource's lock: `_drive_held`, with the lock's and the host's errors."""
    try:
        with r.holding(kind.key(name)):
            return _drive_held(r, kind, name, source, host, planner, spec)
    except LockTimeout as error:
        return Outcome(name, source, Result.FAILED, kind=kind.name, error=str(error),
                       cause=Cause.RETRY)


def _drive_held(r: Reconciler, kind: ResourceKind, name: str, source: str | None,
                host: Host, planner: Callable[[State], Plan], spec: Spec | None, *,
                first: State | None = None) -> Outcome:
    """Observe, plan, execute, observe again, until a plan has no steps (ROUNDS at most).
    `first`: an observation just made under the same lock."""
    done: list[Step] = []
    shown: list[Change] = []

    def outcome(result: Result, cause: Cause = Cause.NONE, **extra: object) -> Outcome:
        steps = extra.pop("steps", done)
        return Outcome(name, source, result, steps=steps, changes=tuple(shown),  # type: ignore[arg-type]
                       cause=cause, kind=kind.name, **extra)  # type: ignore[arg-type]

    last: HypervisorError | None = None
    for _ in range(ROUNDS):
        try:
            state = first if first is not None else kind.observe(host.hypervisor, name, spec)
            first = None
            the_plan = planner(state)
            shown += [change for change in the_plan.changes if change not in shown]
            if the_plan.conflict:
                return outcome(Result.CONFLICT, Cause.TERMINAL, error=the_plan.conflict)
            if the_plan.failure:
                return outcome(Result.FAILED, Cause.TERMINAL if the_plan.terminal
                               else Cause.RETRY, error=the_plan.failure)
            if not the_plan.steps:
                if the_plan.restart_pending:
                    return outcome(Result.RESTART_PENDING, note=the_plan.restart_pending)
                return outcome(Result.CONVERGED if done else Result.UNCHANGED)
            kept = _kept(the_plan, done)
            if kept:
                return outcome(Result.FAILED, Cause.RETRY, error=kept)
            if r.dry_run:
                return outcome(Result.PLANNED, steps=list(the_plan.steps),
                               note=the_plan.restart_pending or the_plan.note)
            done += r.execute(kind.key(name), host, the_plan.steps)
        except AlreadyExists as error:  # defined meanwhile by another client: look again
            last = error
        except StepFailed as failure:
            done += failure.done
            return outcome(Result.FAILED, Cause.RETRY, error=str(failure.error))
        except ConnectionLost as error:
            return outcome(Result.FAILED, Cause.HOST_UNREACHABLE, error=str(error))
        except HypervisorError as error:  # reading it failed: unknown, not absent
            return outcome(Result.FAILED, Cause.RETRY, error=str(error))
    return outcome(Result.FAILED, Cause.RETRY,
                   error=str(last or f"the {kind.label} kept changing while being reconciled"))


def _kept(the_plan: Plan, done: list[Step]) -> str | None:
    """Why libvirt kept what the steps already done should have changed: a fresh plan
    wants a step this reconcile already made."""
    repeated = [step for step in the_plan.steps
                if any((step.action, step.reason) == (old.action, old.reason) for old in done)]
    if not repeated:
        return None
    return (f"after {', '.join(step.action.value for step in done)}, libvirt still needs "
            f"{repeated[0].action.value}: {repeated[0].reason}")


# --- a pass ----------------------------------------------------------------------------------

def listed_orphans(r: Reconciler, load: LoadResult, hosts: list[Host]
                   ) -> tuple[list[tuple[ResourceKind, str, Host]],
                              list[tuple[ResourceKind, str, Host]], dict[str, str]]:
    """On `hosts` (listed ones): the orphan networks and pools, those left as they are
    (their manifest is invalid), and the hosts whose resources could not be listed
    (label → why): nothing of theirs is pruned."""
    view = manifests_view(load)
    orphans: list[tuple[ResourceKind, str, Host]] = []
    left: list[tuple[ResourceKind, str, Host]] = []
    unknown: dict[str, str] = {}
    for host in hosts:
        for kind in KINDS:
            try:
                marks = kind.managed(host.hypervisor)
            except HypervisorError as error:
                unknown[host.label] = str(error)
                continue
            for found, is_left in ((orphans, False), (left, True)):
                found += [(kind, name, host) for name in orphans_on(
                    kind, host.name, marks, load, view, default=r.hosts.default_name,
                    left=is_left)]
    return orphans, left, unknown
