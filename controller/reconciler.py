"""`Reconciler.reconcile(name) -> Outcome`: the one reconcile function of every mode.

Called by `passes.run_pass` (`--once`, `status`) for every manifest and orphan, and by
the service's workers for each name its triggers queue. It reads the newest manifests,
takes the VM's lock, observes the name afresh on its host (and, with several hosts,
on the others), lets the planner decide (update, create, remove, move, prune, or why
nothing may be done), executes the steps, and observes again: `converged` only when
that fresh look plans nothing more. Each outcome carries a typed cause (retry later,
terminal, host unreachable) that the service's queue acts on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from .errors import AlreadyExists, ConnectionLost, DomainNotFound, HypervisorError, LockTimeout
from .executor import RetryPolicy, StepFailed, StepObserver, execute
from .hosts import Host, Hosts
from .images_reconcile import reconcile_image
from .locks import Held, VMLocks
from .manifests import LoadResult
from .model import (
    Action,
    Cause,
    Change,
    DesiredState,
    Observed,
    Outcome,
    Plan,
    Result,
    Step,
    VMSpec,
)
from .observing import machines_of, observe
from .planner import Situation, plan, plan_placement, preview_arrival
from .planner.disks import disk_clash, disks_to_check, volumes_to_check
from .resourcekinds import ResourceStates, kind_of_key
from .resources_reconcile import reconcile_resource
from .storage_steps import StepContext
from .unnamed import reconcile_unnamed
from .virt import Listing

log = logging.getLogger(__name__)

#: Observations of one VM in one reconcile: the first, after each round of steps (a move
#: takes two rounds), and the last one that verifies nothing more is planned.
ROUNDS = 4


class ManifestSource(Protocol):
    """Where the reconciler reads the manifests: a pass's one load, or the service's set."""

    def current(self) -> LoadResult: ...

    def unsettled_for(self) -> float:
        """Seconds until the directory has been quiet long enough to prune (0: now)."""
        ...

    def confirm(self) -> LoadResult:
        """The manifests read afresh, before a domain is removed for lack of one."""
        ...


@dataclass(frozen=True)
class FixedManifests:
    """One load for a whole pass (`--once`, `status`)."""

    load: LoadResult

    def current(self) -> LoadResult:
        return self.load

    def unsettled_for(self) -> float:
        return 0.0

    def confirm(self) -> LoadResult:
        return self.load


class PlanMemo:
    """The last plan made for each name, with the spec and situation it was made from:
    planning is pure, and the service plans converged VMs again at every resync. Only an
    equal situation, read afresh, and the very same spec (the manifests keep a file's
    spec while its text is unchanged) get the remembered plan."""

    MAX = 100_000

    def __init__(self) -> None:
        self._last: dict[str, tuple[VMSpec, Situation, Plan]] = {}

    def plan(self, spec: VMSpec, situation: Situation) -> Plan:
        last = self._last.get(spec.name)
        if last is not None and last[0] is spec and last[1] == situation:
            return last[2]
        made = plan_placement(spec, situation)
        if len(self._last) >= self.MAX:
            self._last.clear()
        self._last[spec.name] = (spec, situation, made)
        return made


@dataclass
class Reconciler:
    """Reconciles one name at a time, on the hosts of `hosts` (see the module)."""

    hosts: Hosts
    manifests: ManifestSource
    locks: VMLocks | None  # None only for dry runs, which take no locks
    scope: Callable[[], set[str]]  # the hosts this run handles
    dry_run: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    observer: StepObserver | None = None
    prune: bool = False
    max_prune: int = 5
    #: --once reconnects inline when a VM finds the connection lost; the service leaves
    #: that to its connection supervisor and requeues the VM once the host is back.
    recover_inline: bool = True
    #: A pass's count of orphans; None: count them afresh on each host (the service).
    orphans_in_pass: int | None = None
    step_context: StepContext = field(default_factory=StepContext)
    #: what the last reconcile of each network and pool found (shared by copies)
    resources: ResourceStates = field(default_factory=ResourceStates)
    plans: PlanMemo = field(default_factory=PlanMemo)

    def reconcile_image(self, name: str) -> list[Outcome]:
        """Import the Image `name` on each host this run handles that needs it."""
        return reconcile_image(self, name)

    def reconcile_resource(self, key: str) -> list[Outcome]:
        """The network or storage pool of a key ("network:lab", "pool:vmstore"): on its
        host, and as an orphan wherever else it is managed."""
        found = kind_of_key(key)
        return reconcile_resource(self, *found) if found is not None else []

    # --- one name ----------------------------------------------------------------------

    def reconcile(self, name: str) -> Outcome:
        """Take `name` to what the newest manifests say, under its lock."""
        load = self.manifests.current()
        spec = load.specs.get(name)
        if spec is None:
            return reconcile_unnamed(self, name, load)
        return self.reconcile_spec(spec)

    def reconcile_spec(self, spec: VMSpec) -> Outcome:
        host = self.hosts[self.hosts.host_of(spec)]
        if not host.usable and not (self.recover_inline and host.error is None
                                    and host.recover(ConnectionLost("not connected"),
                                                         who=spec.name)):
            outcome = Outcome(spec.name, spec.source, Result.FAILED,
                              error=self.unreachable(host), cause=Cause.HOST_UNREACHABLE)
        else:
            try:
                with self.holding(spec.name, stamp=False) as held:
                    outcome = self._converge(spec, host, host.listing_for(spec.name, held),
                                             held)
            except LockTimeout as error:
                outcome = Outcome(spec.name, spec.source, Result.FAILED, error=str(error),
                                  cause=Cause.RETRY)
            if outcome.result is Result.FAILED and not host.hypervisor.connection.alive():
                outcome.cause = Cause.HOST_UNREACHABLE
                if not self.recover_inline:  # the connection supervisor takes it from here
                    host.error = host.error or f"lost the connection: {outcome.error}"
            elif (any(step.action is Action.DEFINE for step in outcome.steps)
                  and spec.state is not DesiredState.ABSENT and not self.dry_run):
                self.hosts.inventory.add(host.name, spec.name)
        outcome.spec = spec
        return self.tag(outcome, host.name)

    def unreachable(self, host: Host) -> str:
        if self.hosts.several:
            return f"host {host.label} is unreachable: {host.error or 'not connected'}"
        return (host.error or host.lost_error
                or f"not connected to {host.hypervisor.uri or 'libvirt'}")

    def tag(self, outcome: Outcome, host: str) -> Outcome:
        outcome.host = host or None
        outcome.multi_host = self.hosts.several
        return outcome

    @contextmanager
    def holding(self, name: str, *, stamp: bool = True) -> Iterator[Held | None]:
        """Hold `name`'s lock (none in a dry run). Raises LockTimeout. With `stamp`
        False the holder stamps the lock itself before it changes anything (a VM's
        reconcile: one that finds nothing to do leaves the lock's stamp as it was)."""
        if self.dry_run:
            yield None
            return
        assert self.locks is not None, "only a dry run may go without locks"
        with self.locks.hold(name) as held:
            if held.waited:
                log.info("%s: waited for another run's lock; observing afresh", name)
            if stamp:
                held.stamp()
            yield held

    # --- converging a VM ------------------------------------------------------------------

    def _converge(self, spec: VMSpec, host: Host, listing: Listing | None,
                  held: Held | None) -> Outcome:
        done: list[Step] = []
        shown: list[Change] = []  # the changes of the plans executed, for the outcome
        said: list[str] = []  # the notes of the plans executed (a move's kept volumes)
        last_error: HypervisorError | None = None
        first: Observed | None = None  # as seen before any step ran: what outcomes show

        def failed(error: object, cause: Cause = Cause.RETRY, **extra: object) -> Outcome:
            return Outcome(spec.name, spec.source, Result.FAILED, steps=done, error=str(error),
                           cause=cause, observed=first, **extra)  # type: ignore[arg-type]

        for _ in range(ROUNDS):
            try:
                load = self.manifests.current()
                situation = observe(spec, host, self.hosts, listing, images=load.images,
                                    dry_run=self.dry_run, load=load, resources=self.resources)
                listing = None  # later rounds look the domain up afresh
                if first is None:
                    first = situation.copies[0].observed if situation.copies else situation.here
                the_plan = self.plans.plan(spec, situation)
                shown += [change for change in the_plan.changes if change not in shown]
                outcome = self._settled(spec, the_plan, situation, done, first, tuple(shown),
                                        said)
                if outcome is not None:
                    return outcome
                kept = _kept(the_plan, done)
                if kept:
                    return failed(kept, changes=tuple(shown))
                clash = self._disk_clash(spec, host, situation.here, the_plan)
                if clash:
                    return Outcome(spec.name, spec.source, Result.CONFLICT, steps=done,
                                   error=clash, changes=tuple(shown), observed=first,
                                   cause=Cause.TERMINAL)
                if the_plan.note and the_plan.note not in said:
                    said.append(the_plan.note)
                if held is not None:
                    held.stamp()  # before the first change: the next holder's listing
                    # and the no-op proof then know this VM was changed
                done += self.execute(spec.name, host, the_plan.steps)
                if the_plan.moves:
                    done += self._arrive(spec, host, situation)
                    done += self.execute(spec.name, host, the_plan.after)
                    if spec.state is not DesiredState.ABSENT and situation.copies:
                        self.hosts.inventory.moved(spec.name, situation.copies[0].host,
                                                   host.name)
            except (AlreadyExists, DomainNotFound) as error:
                log.info("%s: the domain changed while being reconciled (%s); observing afresh",
                         spec.name, error)
                last_error, listing = error, None
            except StepFailed as failure:
                done += failure.done
                return failed(failure.error, changes=tuple(shown))
            except ConnectionLost as error:
                if not (self.recover_inline and host.recover(error, who=spec.name)):
                    return failed(error, Cause.HOST_UNREACHABLE)
                last_error, listing = error, None
            except HypervisorError as error:  # reading the domain failed: unknown, not absent
                return failed(error)
        return failed(last_error or "the domain kept changing while being reconciled")

    def _settled(self, spec: VMSpec, the_plan: Plan, situation: Situation, done: list[Step],
                 first: Observed, shown: tuple[Change, ...],
                 said: list[str]) -> Outcome | None:
        """The outcome when the plan is not to be executed: a conflict, a refusal,
        nothing (more) to do, suspended, or a dry run. None when the steps should run.
        `shown`: the changes of this plan and of the plans already executed; `said`:
        the notes of those executed (said with a converged or unchanged outcome)."""
        def outcome(result: Result, cause: Cause = Cause.NONE, **extra: object) -> Outcome:
            return Outcome(spec.name, spec.source, result, changes=shown, observed=first,
                           cause=cause, **extra)  # type: ignore[arg-type]

        if the_plan.conflict:
            return outcome(Result.CONFLICT, Cause.TERMINAL, steps=done, error=the_plan.conflict)
        if the_plan.failure:
            cause = Cause.TERMINAL if the_plan.terminal else Cause.RETRY
            return outcome(Result.FAILED, cause, steps=done, error=the_plan.failure)
        if not the_plan.steps:
            if the_plan.restart_pending:
                return outcome(Result.RESTART_PENDING, steps=done, note=the_plan.restart_pending)
            notes = dict.fromkeys([*said, *([the_plan.note] if the_plan.note else [])])
            return outcome(Result.CONVERGED if done else Result.UNCHANGED, steps=done,
                           note="; ".join(notes) or None)
        if not (spec.suspend or self.dry_run):
            return None
        steps = list(the_plan.steps)
        if the_plan.moves:
            steps += preview_arrival(spec, situation, the_plan) + the_plan.after
        if spec.suspend:
            return outcome(Result.SUSPENDED, steps=steps,
                           note="drift found; spec.suspend is set, nothing was changed")
        return outcome(Result.PLANNED, steps=steps,
                       note="; ".join(note for note in (the_plan.restart_pending,
                                                        the_plan.note) if note) or None)

    def _disk_clash(self, spec: VMSpec, host: Host, here: Observed, the_plan: Plan) -> (
            str | None):
        paths = disks_to_check(spec, here, the_plan)
        users = host.hypervisor.domains.disk_users(paths, exclude=spec.name) if paths else {}
        storage = host.hypervisor.storage
        for pool, name in sorted(volumes_to_check(spec, here, the_plan)):
            volume = storage.volume(pool, name)
            others = [user for user in storage.users(volume.path) if user != spec.name] \
                if volume is not None else []
            if others:
                users[f"volume {pool}/{name}"] = others[0]
        return disk_clash(users)

    def execute(self, name: str, host: Host, steps: tuple[Step, ...]) -> list[Step]:
        if not steps:
            return []
        hosts = {other.name: other.hypervisor for other in self.hosts.all()}
        return execute(host.hypervisor, name, steps, retry=self.retry, observer=self.observer,
                       hosts=hosts, context=self.step_context)

    def _arrive(self, spec: VMSpec, host: Host, situation: Situation) -> list[Step]:
        """After a move's own steps: converge the VM where it arrived, observed afresh."""
        here = host.hypervisor.domains.observe(spec.name)
        there = plan(spec, here, machines=machines_of(spec, host, [here]))
        if there.conflict:  # the move's own define made it ours: not expected
            raise StepFailed(Step(Action.DEFINE, "move"), HypervisorError(there.conflict), [])
        return self.execute(spec.name, host, there.steps)

def _kept(the_plan: Plan, done: list[Step]) -> str | None:
    """Why libvirt kept what the steps already done should have changed, if a fresh plan
    wants a step this reconcile already made: converged means verified."""
    repeated = [step for step in the_plan.steps
                if any((step.action, step.reason, step.host) == (old.action, old.reason, old.host)
                       for old in done)]
    if not repeated:
        return None
    if the_plan.changes:
        kept = ", ".join(f"{change.field} at {change.old} (wanted {change.new})"
                         for change in the_plan.changes)
        return f"libvirt kept {kept} after {', '.join(step.action.value for step in done)}"
    return (f"after {', '.join(step.action.value for step in done)}, libvirt still needs "
            f"{repeated[0].action.value}: {repeated[0].reason}")
