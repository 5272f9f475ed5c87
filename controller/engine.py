"""The reconcile engine: one VM at a time under its lock, many VMs in parallel.

`Engine.reconcile(spec)` is the level-triggered contract: take the VM's lock,
observe the domain afresh, plan, execute, and report an `Outcome`. It never
acts on what an event said, only on what it observes. `Engine.run_pass` does
that for every manifest, finds orphans, and prunes them when that is safe.
Used by the CLI's `--once` and by the service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from .errors import (
    AlreadyExists,
    ConnectionLost,
    DomainNotFound,
    HypervisorError,
    LockTimeout,
)
from .executor import RetryPolicy, StepFailed, StepObserver, execute
from .hypervisor import Hypervisor, Snapshot
from .locks import VMLocks
from .manifests import LoadResult
from .model import Action, Observed, Outcome, Plan, Result, Step, VMSpec
from .planner import plan, removal_steps

log = logging.getLogger(__name__)

#: How often one VM is observed and planned again after its domain changed under us.
_REPLANS = 3
_RECONNECTS = 3
#: After a failed reconnect, how long other VMs fail at once instead of trying again.
_GIVE_UP_FOR = 5.0


@dataclass(frozen=True)
class PassSnapshot:
    """The hypervisor's listing at the start of a pass, and the VMs that were locked then."""

    hypervisor: Snapshot
    busy: frozenset[str]


@dataclass
class PassReport:
    outcomes: list[Outcome] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    prune_note: str | None = None
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why (several hosts)


@dataclass
class Engine:
    hypervisor: Hypervisor
    locks: VMLocks | None  # None only for dry runs, which take no locks
    dry_run: bool = False
    workers: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    observer: StepObserver | None = None
    reconnect_wait: float = 0.5
    reconnects: int = _RECONNECTS  # 0: a lost connection fails the VM at once (the fleet)
    _gave_up_at: float = field(default=-1e9, init=False, repr=False)

    # --- one VM ----------------------------------------------------------------

    def reconcile(self, spec: VMSpec, snapshot: PassSnapshot | None = None) -> Outcome:
        """Observe, plan and (unless a dry run) execute one VM under its lock.

        A pass's `snapshot` saves libvirt calls, but is used only when no run held
        the VM's lock at or after the moment it was taken; otherwise the domain is
        looked up afresh.
        """
        try:
            with self.holding(spec.name, snapshot) as usable:
                outcome = self.reconcile_locked(spec, usable)
        except LockTimeout as error:
            outcome = Outcome(spec.name, spec.source, Result.FAILED, error=str(error))
        outcome.spec = spec
        return outcome

    @contextmanager
    def holding(self, name: str, snapshot: PassSnapshot | None) -> Iterator[Snapshot | None]:
        """Hold `name`'s lock (none in a dry run); yield the pass's listing if it may still
        be trusted for this VM, else None. Raises LockTimeout."""
        if self.dry_run:
            yield snapshot.hypervisor if snapshot else None
            return
        assert self.locks is not None, "only a dry run may go without locks"
        with self.locks.hold(name) as held:
            if held.waited:
                log.info("%s: waited for another run's lock; observing afresh", name)
            usable = (snapshot is not None and name not in snapshot.busy
                      and held.untouched_since(snapshot.hypervisor.started_ns))
            yield snapshot.hypervisor if usable and snapshot else None

    def reconcile_locked(self, spec: VMSpec, snapshot: Snapshot | None) -> Outcome:
        """Observe, plan and execute one VM whose lock the caller holds."""
        done: list[Step] = []
        for attempt in range(_REPLANS + _RECONNECTS):
            try:
                observed = self.hypervisor.observe(spec.name, snapshot if attempt == 0 else None)
                the_plan = plan(spec, observed,
                                canonical_machine=self.hypervisor.canonical_machine)
                outcome = self._outcome_without_execution(spec, the_plan, observed)
                if outcome is not None:
                    if done:  # steps ran before a replan found nothing more to do
                        outcome.steps = done + outcome.steps
                        if outcome.result is Result.UNCHANGED:
                            outcome.result = Result.CONVERGED
                    return outcome
                clash = self._disk_in_use(spec, observed, the_plan)
                if clash:
                    return Outcome(spec.name, spec.source, Result.CONFLICT, steps=done,
                                   error=clash, changes=the_plan.changes, observed=observed)
                try:
                    done += execute(self.hypervisor, spec.name, the_plan.steps,
                                    retry=self.retry, observer=self.observer)
                except StepFailed as failure:
                    done += failure.done
                    return Outcome(spec.name, spec.source, Result.FAILED, steps=done,
                                   error=str(failure.error), changes=the_plan.changes)
                result = Result.RESTART_PENDING if the_plan.restart_pending else Result.CONVERGED
                return Outcome(spec.name, spec.source, result, steps=done,
                               changes=the_plan.changes, note=the_plan.restart_pending,
                               observed=observed)
            except (AlreadyExists, DomainNotFound) as error:
                log.info("%s: the domain changed while being reconciled (%s); observing afresh",
                         spec.name, error)
                last_error: HypervisorError = error
            except ConnectionLost as error:
                last_error = error
                if not self._reconnect(spec.name, error):
                    break
            except HypervisorError as error:  # reading the domain failed: unknown, not absent
                return Outcome(spec.name, spec.source, Result.FAILED, steps=done, error=str(error))
        return Outcome(spec.name, spec.source, Result.FAILED, steps=done, error=str(last_error))

    def _disk_in_use(self, spec: VMSpec, observed: Observed, the_plan: Plan) -> str | None:
        """Why a define would give this VM an image another domain uses, if it would.

        The loader already refuses one image in two manifests; this catches an image
        held by a domain without a manifest (an orphan, an unmanaged domain). Checked
        only when a define brings disks the domain does not have yet.
        """
        if not any(step.action is Action.DEFINE for step in the_plan.steps):
            return None
        have = {disk.source for disk in observed.saved.disks} if observed.saved else set()
        new = {disk.source for disk in spec.disks} - have
        if not new:
            return None
        users = self.hypervisor.disk_users(new, exclude=spec.name)
        if not users:
            return None
        path, other = min(users.items())
        return f"disk {path} is already used by domain '{other}'"

    def _outcome_without_execution(self, spec: VMSpec, the_plan: Plan,
                                   observed: Observed) -> Outcome | None:
        """The outcome when the plan is not to be executed: conflict, nothing to do,
        suspended or dry run. None when the steps should run."""
        def outcome(result: Result, **extra: object) -> Outcome:
            return Outcome(spec.name, spec.source, result, changes=the_plan.changes,
                           observed=observed, **extra)  # type: ignore[arg-type]

        if the_plan.conflict:
            return outcome(Result.CONFLICT, error=the_plan.conflict)
        if not the_plan.steps:
            if the_plan.restart_pending:
                return outcome(Result.RESTART_PENDING, note=the_plan.restart_pending)
            return outcome(Result.UNCHANGED)
        if spec.suspend:
            return outcome(Result.SUSPENDED, steps=list(the_plan.steps),
                           note="drift found; spec.suspend is set, nothing was changed")
        if self.dry_run:
            return outcome(Result.PLANNED, steps=list(the_plan.steps),
                           note=the_plan.restart_pending)
        return None

    def _reconnect(self, name: str, error: ConnectionLost) -> bool:
        """Reconnect with backoff. Once one VM has given up, the others give up at once
        for a while: a dead daemon must not cost every VM its own backoff."""
        if not self.reconnects or time.monotonic() - self._gave_up_at < _GIVE_UP_FOR:
            return False
        log.warning("%s: lost the libvirt connection (%s); reconnecting", name, error)
        for attempt in range(self.reconnects):
            time.sleep(self.reconnect_wait * (2 ** attempt))
            try:
                self.hypervisor.reconnect()
                return True
            except ConnectionLost as again:
                log.warning("reconnect failed: %s", again)
        self._gave_up_at = time.monotonic()
        return False

    # --- orphans -----------------------------------------------------------------

    def prune(self, name: str) -> Outcome:
        """Remove a managed domain that no manifest names, if it is still one."""
        try:
            if self.dry_run:
                return self._prune_locked(name)
            assert self.locks is not None, "only a dry run may go without locks"
            with self.locks.hold(name):
                return self._prune_locked(name)
        except LockTimeout as error:
            return Outcome(name, None, Result.FAILED, error=str(error))

    def _prune_locked(self, name: str) -> Outcome:
        try:
            observed = self.hypervisor.observe(name)
        except HypervisorError as error:
            return Outcome(name, None, Result.FAILED, error=str(error))
        if not observed.exists or not observed.managed:
            return Outcome(name, None, Result.UNCHANGED, note="no longer a managed domain")
        steps = list(removal_steps(observed, "orphan: no manifest names this managed domain",
                                   stop_timeout=0))
        if self.dry_run:
            return Outcome(name, None, Result.PLANNED, steps=steps, observed=observed)
        try:
            done = execute(self.hypervisor, name, tuple(steps), retry=self.retry,
                           observer=self.observer)
        except StepFailed as failure:
            return Outcome(name, None, Result.FAILED, steps=failure.done, error=str(failure.error))
        except HypervisorError as error:
            return Outcome(name, None, Result.FAILED, error=str(error))
        return Outcome(name, None, Result.PRUNED, steps=done)

    # --- a whole pass ------------------------------------------------------------

    def run_pass(self, load: LoadResult, *, prune: bool, max_prune: int,
                 only: Iterable[str] | None = None,
                 progress: Callable[[Outcome], None] | None = None) -> PassReport:
        """Reconcile every valid manifest; report orphans; prune them if asked and safe."""
        report = PassReport()
        wanted = set(only) if only is not None else None
        specs = [load.specs[name] for name in sorted(load.specs)
                 if wanted is None or name in wanted]
        orphans: list[str] = []
        snapshot = None
        try:
            snapshot = self.take_snapshot([spec.name for spec in specs])
            named = frozenset(load.specs) | frozenset(load.invalid_names)
            managed = self.hypervisor.managed_domains(snapshot.hypervisor, skip=named)
            orphans = sorted(managed - named)
        except HypervisorError as error:
            report.prune_note = f"orphans unknown: {error}"
            prune = False
        report.orphans = orphans

        jobs: list[Callable[[], Outcome]] = [
            partial(self.reconcile, spec, snapshot) for spec in specs]
        if prune and orphans:
            refusal, too_many = prune_refusal(load, len(orphans), max_prune)
            report.prune_note = refusal or report.prune_note
            if too_many:
                report.outcomes += [
                    Outcome(name, None, Result.FAILED, error=refusal) for name in orphans
                ]
            elif refusal is None:
                jobs += [partial(self.prune, name) for name in orphans]

        report.outcomes += run_all(jobs, self.workers, progress)
        report.outcomes.sort(key=lambda outcome: outcome.name)
        return report


    def take_snapshot(self, names: list[str]) -> PassSnapshot:
        # Probe the locks first: a VM whose lock is held now may change under the listing.
        busy = frozenset(self.locks.held_now(names)) if self.locks else frozenset()
        return PassSnapshot(self.hypervisor.snapshot(), busy)


def prune_refusal(load: LoadResult, orphans: int, max_prune: int) -> tuple[str | None, bool]:
    """Why `orphans` orphans may not be pruned now, if they may not; and whether that makes
    them failed (more than --max-prune) rather than left alone (an incomplete load)."""
    if not load.prune_safe:
        why = load.problem or f"{len(load.invalid)} invalid manifest(s)"
        return f"nothing pruned: {why}", False
    if orphans > max_prune:
        return f"nothing pruned: {orphans} orphans exceed --max-prune {max_prune}", True
    return None, False


T = TypeVar("T")


def run_all(jobs: list[Callable[[], T]], workers: int,
            progress: Callable[[T], None] | None) -> list[T]:
    """Run `jobs` on `workers` threads, each taking the next job when it is free; the
    results in the order the jobs finished.

    Not a ThreadPoolExecutor: a future, a queue hand-off and a wake-up of the waiting
    caller per VM cost more CPU than a no-op VM's own work at 1,000 VMs. A job that
    raises stops the others from taking new jobs, and is raised here.
    """
    outcomes: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    pending = iter(jobs)

    def work() -> None:
        while True:
            with lock:
                job = None if errors else next(pending, None)
            if job is None:
                return
            try:
                outcome = job()
            except BaseException as error:  # noqa: BLE001 - re-raised by the caller
                with lock:
                    errors.append(error)
                return
            with lock:
                outcomes.append(outcome)
                if progress:
                    progress(outcome)

    threads = [threading.Thread(target=work, name=f"reconcile-{index}")
               for index in range(min(max(1, workers), len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return outcomes
