"""A whole pass: every manifest and every managed domain no manifest names, each through
`Reconciler.reconcile`, each host's VMs on that host's own pool of workers.

Used by `--once` and `status` (the service queues names instead, see service/).
The hosts are connected and listed first, in parallel and within the connect
deadline; the listing lets a VM whose lock nobody touched since be read without a
lookup, and shows the managed domains no manifest names: left as they are when
their manifest is invalid, else orphans, pruned only when the planner allows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from .images_reconcile import hosts_needing
from .manifests import LoadResult
from .model import Cause, Outcome, Result
from .planner.orphans import left_as_is, prune_verdict
from .reconciler import Reconciler
from .resourcekinds import KINDS, NETWORK, POOL, ResourceKind, placed_on
from .resourcemodel import Presence
from .resources_reconcile import converge, listed_orphans, reconcile_orphan
from .unnamed import manifests_view

#: How output orders the outcomes of one host: what VMs need first, as a pass makes them.
KIND_ORDER = {"pool": 0, "image": 1, "network": 2, "vm": 3}


@dataclass
class PassReport:
    """One pass's outcomes, its orphans (and the prune's note), the unreachable hosts."""

    outcomes: list[Outcome] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    prune_note: str | None = None
    unreachable: dict[str, str] = field(default_factory=dict)  # host label → why


def run_pass(reconciler: Reconciler, load: LoadResult, *, workers: int,
             only_host: str | None = None,
             progress: Callable[[Outcome], None] | None = None) -> PassReport:
    """Reconcile every valid manifest placed on a host in scope; report orphans there, and
    prune them when the reconciler prunes and the planner allows it."""
    hosts = reconciler.hosts
    hosts.forget_listings()
    own = hosts.scope(load, only_host)
    specs = [spec for _, spec in sorted(load.specs.items()) if hosts.host_of(spec) in own]
    named = frozenset(load.specs)
    placed: dict[str, list[str]] = {}
    for spec in specs:
        placed.setdefault(hosts.host_of(spec), []).append(spec.name)
    hosts.open(own, named=named, locks=reconciler.locks, placed=placed)
    own_listing = hosts[only_host].listed if only_host is not None else None
    if hosts.several and (only_host is None or (own_listing is not None and any(
            spec.name not in own_listing.listing.names for spec in specs))):
        # A VM missing from its own host may be on another one (a move), or held by one
        # that is unreachable: look at the other hosts too.
        hosts.open(set(hosts.named) - own, named=named, locks=reconciler.locks, placed={})

    report = PassReport()
    report.unreachable = {hosts[name].label: hosts[name].error or "not listed"
                          for name in sorted(own) if not hosts[name].is_listed}
    view = manifests_view(load)
    left: dict[str, str] = {}  # name → host: managed, its manifest invalid
    orphans: dict[str, str] = {}  # name → host
    for name in sorted(own):
        listed = hosts[name].listed
        if listed is None or not hosts[name].is_listed:
            continue
        for domain, mark in sorted(listed.unnamed.items()):
            chosen = left if left_as_is(domain, mark.source, view) else orphans
            chosen.setdefault(domain, name)
    report.orphans = sorted(orphans)
    reconciler.resources.begin_pass()
    spare, kept, unlisted = listed_orphans(
        reconciler, load, [hosts[name] for name in sorted(own) if hosts[name].is_listed])
    orphan_count = len(orphans) + len(spare)

    def resources(kind: ResourceKind, state: Presence) -> None:
        specs = [spec for _, spec in sorted(kind.specs(load).items())
                 if spec.state is state and placed_on(spec, hosts.default_name) in own]
        report.outcomes.extend(run_all([partial(converge, reconciler, kind, spec)
                                        for spec in specs], workers, progress))

    def resource_orphans(kind: ResourceKind) -> None:
        jobs: list[Callable[[], Outcome | None]] = [
            partial(reconcile_orphan, reconciler, kind, name, host, count=orphan_count)
            for orphan_kind, name, host in spare + kept if orphan_kind is kind]
        found = run_all(jobs, workers, None)
        for outcome in found:
            if outcome is not None:
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome)

    # Pools, images, networks, then VMs: every VM finds what it needs on its host.
    resources(POOL, Presence.PRESENT)
    images = [name for name in sorted(load.images) if hosts_needing(name, load, reconciler)]
    for found in run_all([partial(reconciler.reconcile_image, name) for name in images],
                         workers, None):
        report.outcomes += found
        for outcome in found:
            if progress:
                progress(outcome)
    resources(NETWORK, Presence.PRESENT)

    jobs: list[tuple[str, Callable[[], Outcome]]] = [
        (hosts.host_of(spec), partial(reconciler.reconcile_spec, spec)) for spec in specs]
    jobs += [(host, partial(reconciler.reconcile, name)) for name, host in left.items()]
    if report.unreachable and reconciler.prune:
        report.prune_note = f"host(s) {', '.join(report.unreachable)} unreachable: not pruned"
    if unlisted and reconciler.prune:
        report.prune_note = (f"networks and pools of {', '.join(unlisted)} unknown: "
                             "not pruned there")
    if reconciler.prune and orphan_count:  # --max-prune counts every kind together
        verdict = prune_verdict(view, orphans=orphan_count, max_prune=reconciler.max_prune)
        report.prune_note = verdict.refusal or report.prune_note
        if verdict.fails:
            for name, host in orphans.items():
                outcome = Outcome(name, None, Result.FAILED, error=verdict.refusal,
                                  cause=Cause.TERMINAL, orphan=True, host=host or None,
                                  multi_host=hosts.several)
                report.outcomes.append(outcome)
        elif verdict.allowed:
            pruner = replace(reconciler, orphans_in_pass=orphan_count)
            jobs += [(host, partial(pruner.reconcile, name)) for name, host in orphans.items()]
    outcomes = run_per_host(jobs, workers, progress)
    report.outcomes += [outcome for outcome in outcomes
                        if not (outcome.result is Result.UNCHANGED and outcome.spec is None)]
    # Removal goes in reverse: networks once no VM of this pass needs them, pools last.
    for kind in reversed(KINDS):
        resources(kind, Presence.ABSENT)
        resource_orphans(kind)
    report.outcomes.sort(key=lambda outcome: (outcome.host or "",
                                              KIND_ORDER.get(outcome.kind, 9), outcome.name))
    return report


def run_per_host(jobs: list[tuple[str, Callable[[], Outcome]]], workers: int,
                 progress: Callable[[Outcome], None] | None) -> list[Outcome]:
    """Each host's jobs on that host's own `workers` threads: a slow host never holds up
    another."""
    by_host: dict[str, list[Callable[[], Outcome]]] = {}
    for name, job in jobs:
        by_host.setdefault(name, []).append(job)
    if len(by_host) <= 1:
        return run_all([job for _, job in jobs], workers, progress)
    reported = threading.Lock()

    def report(outcome: Outcome) -> None:
        if progress:
            with reported:
                progress(outcome)

    def host_jobs(name: str) -> tuple[str, list[Outcome]]:
        return name, run_all(by_host[name], workers, report)

    results = dict(run_all([partial(host_jobs, name) for name in by_host], len(by_host), None))
    return [outcome for name in by_host for outcome in results[name]]


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
