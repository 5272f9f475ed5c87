"""Many hosts: one engine per libvirt host, VMs placed by spec.host, moves between hosts.

Used instead of a lone `Engine` when the manifest tree names hosts (hosts.yaml or
`--host NAME=URI`). Every host has its own connection, engine and pool of
workers, so hosts converge in parallel, at most `workers` VMs at a time each.

An unreachable host (no answer within the connect deadline, or a failed
listing) fails only its own VMs, and the VMs it held at its last complete
listing (the inventory): those are never created or started elsewhere
meanwhile, and nothing on it is pruned.

A managed domain found on a host other than its manifest's is a move, run
under the VM's lock:
- live (`moveStrategy: live`, the guest running): libvirt migration,
  persistent on the target, undefined on the source;
- cold: autostart off and stop on the source, define the source's saved
  definition (same UUID, MACs) on the target, converge it there, then undefine
  it on the source.
Each step is safe to repeat, and the next pass finishes a move interrupted
anywhere: a target that already holds the VM while the source's copy is
stopped means "undefine the source". Copies running on two hosts are a
conflict, never guessed at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

from . import domainxml
from .engine import Engine, PassReport, PassSnapshot, prune_refusal, run_all
from .errors import AlreadyExists, DomainNotFound, HypervisorError, LockTimeout
from .executor import RetryPolicy, StepFailed, StepObserver, execute
from .hypervisor import Hypervisor, connections_for, start_event_loop
from .inventory import Inventory
from .locks import VMLocks
from .manifests import LoadResult
from .model import (
    Action,
    DesiredState,
    MoveStrategy,
    Observed,
    Outcome,
    Power,
    Result,
    Step,
    VMSpec,
)
from .planner import plan, removal_steps

log = logging.getLogger(__name__)

#: The key of the host behind `-c` (VMs without spec.host).
DEFAULT_HOST = ""
_REPLANS = 3


def host_label(name: str | None) -> str:
    return name or "(-c)"


@dataclass
class HostLink:
    """One host of the fleet and what this pass knows of it."""

    name: str
    uri: str | None  # as configured (None: libvirt's default)
    engine: Engine
    error: str | None = None  # why it is unreachable in this pass
    listing: PassSnapshot | None = None  # its domains, once listed in this pass
    orphans: list[str] = field(default_factory=list)
    opening: threading.Thread | None = None  # an open past its deadline, still running

    @property
    def hypervisor(self) -> Hypervisor:
        return self.engine.hypervisor

    @property
    def label(self) -> str:
        return host_label(self.name)

    @property
    def listed(self) -> bool:
        return self.error is None and self.listing is not None

    @property
    def usable(self) -> bool:
        """Reachable as far as we know: listed in this pass, or (the service) connected."""
        return self.error is None and self.hypervisor.connected


@dataclass
class Fleet:
    """The hosts of one manifest tree; see the module docstring."""

    hosts: Mapping[str, str]  # name -> libvirt URI
    default_uri: str | None  # -c
    locks: VMLocks | None
    inventory: Inventory
    dry_run: bool = False
    workers: int = 4  # per host
    connect_timeout: float = 10.0
    explicit_default: bool = False  # -c was given: its host is in scope even if no VM uses it
    observer: StepObserver | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keepalive: tuple[int, int] = (5, 3)
    #: (host name, URI) -> its Hypervisor; the service's watches events
    make_hypervisor: Callable[[str, str | None], Hypervisor] | None = None
    links: dict[str, HostLink] = field(init=False)

    def __post_init__(self) -> None:
        self.links = {}
        self._placed: dict[str, list[str]] = {}  # host -> names of the VMs placed there
        self.set_hosts(self.hosts)

    def set_hosts(self, hosts: Mapping[str, str]) -> list[HostLink]:
        """Take a new hosts.yaml: links for new or re-pointed hosts; return the links
        dropped (the caller closes them)."""
        self.hosts = dict(hosts)
        self.default_name = next((name for name, uri in self.hosts.items()
                                  if self.default_uri is not None and uri == self.default_uri),
                                 DEFAULT_HOST)
        wanted: dict[str, str | None] = dict(self.hosts)
        if self.default_name == DEFAULT_HOST:
            wanted[DEFAULT_HOST] = self.default_uri
        dropped = [link for name, link in self.links.items()
                   if name not in wanted or link.uri != wanted[name]]
        for link in dropped:
            del self.links[link.name]
        for name, uri in wanted.items():
            if name not in self.links:
                self.links[name] = self._link(name, uri)
        self.inventory.tracking = bool(self.hosts)  # one host: nothing can be elsewhere
        return dropped

    def _link(self, name: str, uri: str | None) -> HostLink:
        if self.make_hypervisor is not None:
            hypervisor = self.make_hypervisor(name, uri)
        else:
            hypervisor = Hypervisor(uri, readonly=self.dry_run, keepalive=self.keepalive,
                                    connections=connections_for(self.workers))
        engine = Engine(hypervisor, self.locks, dry_run=self.dry_run, workers=self.workers,
                        retry=self.retry, observer=self.observer, reconnects=0)
        return HostLink(name, uri, engine)

    def host_of(self, spec: VMSpec) -> str:
        return spec.host if spec.host is not None else self.default_name

    # --- connections -------------------------------------------------------------

    def open(self, names: Iterable[str], named: frozenset[str]) -> None:
        """Connect (in parallel, within the deadline) and list the hosts `names` that are
        not listed yet in this pass; record each complete listing in the inventory."""
        links = [self.links[name] for name in names if self.links[name].listing is None]
        if not links:
            return
        start_event_loop()  # keepalive: a host that stops answering fails calls in ~20 s
        threads = []
        for link in links:
            if link.opening is not None and link.opening.is_alive():
                link.error = "still connecting from an earlier attempt"
                continue
            link.error = None
            thread = threading.Thread(target=self._open_one, args=(link, named), daemon=True,
                                      name=f"open-{link.label}")
            thread.start()
            threads.append((link, thread))
        deadline = time.monotonic() + self.connect_timeout
        for link, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                link.opening = thread
                link.listing = None
                link.error = (f"no answer from {link.hypervisor.uri or 'libvirt'} within "
                              f"{self.connect_timeout:g}s")
                log.info("host %s is unreachable: %s", link.label, link.error)

    def _open_one(self, link: HostLink, named: frozenset[str]) -> None:
        try:
            if not link.hypervisor.alive():
                link.hypervisor.reconnect()
            # the lock probe, for the VMs placed here: the listing is trusted only for them
            listing = link.engine.take_snapshot(sorted(self._placed.get(link.name, ())))
            orphans = link.hypervisor.managed_domains(listing.hypervisor, skip=named)
        except HypervisorError as error:
            link.error = str(error)
            log.info("host %s is unreachable: %s", link.label, error)
            return
        if link.opening is not None and link.opening is threading.current_thread():
            return  # past the deadline: the pass has already given up on this host
        link.listing = listing
        link.orphans = sorted(orphans)
        held = (set(listing.hypervisor.domains) & named) | orphans
        self.inventory.record(link.name, held)

    def forget_listings(self) -> None:
        for link in self.links.values():
            link.listing = None
            link.orphans = []

    def close(self) -> None:
        for link in self.links.values():
            if link.opening is None or not link.opening.is_alive():
                link.hypervisor.close()  # an open still in flight holds the connection lock

    # --- a whole pass ------------------------------------------------------------

    def scope(self, load: LoadResult, only_host: str | None) -> set[str]:
        """The hosts whose VMs and orphans this run handles."""
        if only_host is not None:
            return {only_host}
        names = set(self.hosts) | {self.host_of(spec) for spec in load.specs.values()}
        if self.explicit_default:
            names.add(self.default_name)
        return names & set(self.links)

    def run_pass(self, load: LoadResult, *, prune: bool, max_prune: int,
                 only_host: str | None = None,
                 progress: Callable[[Outcome], None] | None = None) -> PassReport:
        """Reconcile every valid manifest placed on a host in scope; prune orphans there."""
        self.forget_listings()
        own = self.scope(load, only_host)
        specs = [spec for _, spec in sorted(load.specs.items()) if self.host_of(spec) in own]
        named = frozenset(load.specs) | frozenset(load.invalid_names)
        self._placed = {}
        for spec in specs:
            self._placed.setdefault(self.host_of(spec), []).append(spec.name)
        self.open(own, named)
        if only_host is None or (self.links[only_host].listed and any(
                not self._listed_on(spec, self.links[only_host]) for spec in specs)):
            # A VM missing from its own host may be on another one (a move), or held by
            # one that is unreachable: look at the other hosts too.
            others = set(self.hosts) - own
            self.open(others, named)

        report = PassReport()
        jobs: list[tuple[str, Callable[[], Outcome]]] = [
            (self.host_of(spec), partial(self.reconcile, spec)) for spec in specs]
        report.unreachable = {self.links[name].label: self.links[name].error or "not listed"
                              for name in sorted(own) if not self.links[name].listed}
        unreachable = sorted(report.unreachable)
        orphans = [(name, orphan) for name in sorted(own) if self.links[name].listed
                   for orphan in self.links[name].orphans]
        report.orphans = sorted(orphan for _, orphan in orphans)
        if unreachable and prune:
            report.prune_note = f"host(s) {', '.join(unreachable)} unreachable: not pruned"
        if prune and orphans:
            refusal, too_many = prune_refusal(load, len(orphans), max_prune)
            report.prune_note = refusal or report.prune_note
            if too_many:
                report.outcomes += [self._tag(Outcome(orphan, None, Result.FAILED,
                                                      error=refusal), name)
                                    for name, orphan in orphans]
            elif refusal is None:
                jobs += [(name, partial(self.prune, name, orphan)) for name, orphan in orphans]
        report.outcomes += self._run_jobs(jobs, progress)
        report.outcomes.sort(key=lambda outcome: (outcome.host or "", outcome.name))
        return report

    @staticmethod
    def _listed_on(spec: VMSpec, link: HostLink) -> bool:
        return link.listing is not None and spec.name in link.listing.hypervisor.domains

    def _run_jobs(self, jobs: list[tuple[str, Callable[[], Outcome]]],
                  progress: Callable[[Outcome], None] | None) -> list[Outcome]:
        """Each host's jobs on that host's own `workers` threads: a slow host never holds
        up another."""
        by_host: dict[str, list[Callable[[], Outcome]]] = {}
        for name, job in jobs:
            by_host.setdefault(name, []).append(job)
        reported = threading.Lock()

        def report(outcome: Outcome) -> None:
            if progress:
                with reported:
                    progress(outcome)

        def host_jobs(name: str) -> tuple[str, list[Outcome]]:
            return name, run_all(by_host[name], self.workers, report)

        results = dict(run_all([partial(host_jobs, name) for name in by_host],
                               len(by_host), None))
        return [outcome for name in by_host for outcome in results[name]]

    # --- one VM ------------------------------------------------------------------

    def reconcile(self, spec: VMSpec) -> Outcome:
        """Reconcile `spec` on its host, moving it there first if another host has it."""
        target = self.links[self.host_of(spec)]
        if not target.usable:
            outcome = Outcome(spec.name, spec.source, Result.FAILED,
                              error=f"host {target.label} is unreachable: {target.error}")
        else:
            try:
                with target.engine.holding(spec.name, target.listing) as listing:
                    outcome = self._reconcile_locked(spec, target, listing is not None)
            except LockTimeout as error:
                outcome = Outcome(spec.name, spec.source, Result.FAILED, error=str(error))
            if outcome.result is Result.FAILED and not target.hypervisor.alive():
                target.error = target.error or f"lost the connection: {outcome.error}"
            elif (any(step.action is Action.DEFINE for step in outcome.steps)
                  and spec.state is not DesiredState.ABSENT and not self.dry_run):
                self.inventory.add(target.name, spec.name)
        outcome.spec = spec
        return self._tag(outcome, target.name)

    def _tag(self, outcome: Outcome, host: str) -> Outcome:
        outcome.host = host or None
        outcome.multi_host = True
        return outcome

    def _reconcile_locked(self, spec: VMSpec, target: HostLink, use_listing: bool) -> Outcome:
        last: HypervisorError | None = None
        for _ in range(_REPLANS):
            unknown = [link.label for link in self.links.values()
                       if link is not target and link.error is not None
                       and self.inventory.held(link.name, spec.name)]
            unknown += [f"{host_label(host)} (no longer in hosts.yaml)"
                        for host in self.inventory.holders(spec.name)
                        if host not in self.links]
            if unknown:
                return Outcome(spec.name, spec.source, Result.FAILED, error=(
                    f"unknown: host {', '.join(unknown)} held this VM at its last listing and "
                    "is unreachable now; nothing is done until it answers"))
            try:
                copies = self._copies_elsewhere(spec, target)
                if not copies:
                    return target.engine.reconcile_locked(
                        spec, target.listing.hypervisor if use_listing and target.listing
                        else None)
                return self._move(spec, target, copies)
            except (AlreadyExists, DomainNotFound) as error:
                log.info("%s: a domain changed during the move (%s); observing afresh",
                         spec.name, error)
                last, use_listing = error, False
            except HypervisorError as error:
                return Outcome(spec.name, spec.source, Result.FAILED, error=str(error))
        return Outcome(spec.name, spec.source, Result.FAILED, error=str(last))

    def _copies_elsewhere(self, spec: VMSpec, target: HostLink) -> list[tuple[HostLink,
                                                                              Observed]]:
        """Managed domains named like `spec` on the other usable hosts, observed afresh
        (only where this pass's listing, if there is one, has the name)."""
        copies = []
        for link in self.links.values():
            if link is target or not link.usable:
                continue
            if link.listing is not None and spec.name not in link.listing.hypervisor.domains:
                continue
            observed = link.hypervisor.observe(spec.name)
            if observed.exists and observed.managed:
                copies.append((link, observed))
        return copies

    def _move(self, spec: VMSpec, target: HostLink,
              copies: list[tuple[HostLink, Observed]]) -> Outcome:
        def outcome(result: Result, **extra: object) -> Outcome:
            return Outcome(spec.name, spec.source, result, **extra)  # type: ignore[arg-type]

        if len(copies) > 1:
            where = ", ".join(link.label for link, _ in copies)
            return outcome(Result.CONFLICT, error=f"managed copies on hosts {where}; "
                                                  "keep one by hand")
        source, src = copies[0]
        tgt = target.hypervisor.observe(spec.name)
        move = f"move {source.label} → {target.label}"
        if tgt.exists and not tgt.managed and not spec.adopt:
            return target.engine.reconcile_locked(spec, None)  # the planner's conflict
        if tgt.exists and tgt.saved and src.saved and tgt.saved.uuid != src.saved.uuid:
            return outcome(Result.CONFLICT, error=(
                f"different domains named '{spec.name}' on {source.label} "
                f"({src.saved.uuid}) and {target.label} ({tgt.saved.uuid})"))
        if src.power.active and tgt.power.active:
            return outcome(Result.CONFLICT, error=(
                f"running on both {source.label} and {target.label}; stop one by hand"))

        before: list[Step] = []
        after: list[Step] = []
        if spec.state is DesiredState.ABSENT or (tgt.exists and not src.power.active):
            why = ("state is absent" if spec.state is DesiredState.ABSENT
                   else f"{move}: finish, {target.label} has the VM")
            before = [replace(step, host=source.name) for step in
                      removal_steps(src, why, stop_timeout=spec.stop_timeout)]
        elif (spec.move_strategy is MoveStrategy.LIVE and src.power is Power.RUNNING
              and spec.state is DesiredState.RUNNING):
            before = [Step(Action.MIGRATE, f"{move} (live)", host=source.name,
                           to_host=target.name,
                           xml=domainxml.mark_owner(src.saved_xml or "", spec.host))]
        else:
            if src.autostart:
                before.append(Step(Action.AUTOSTART, f"{move}: never boot on {source.label}",
                                   autostart=False, host=source.name))
            if src.power.active:
                stop = removal_steps(src, f"{move} (cold)", stop_timeout=spec.stop_timeout)[0]
                before.append(replace(stop, host=source.name))
            before.append(Step(Action.DEFINE, f"{move}: {source.label}'s definition, same UUID",
                               xml=domainxml.mark_owner(src.saved_xml or "", spec.host),
                               host=target.name))
            after = [Step(Action.UNDEFINE, f"{move}: done", host=source.name)]

        if self.dry_run or spec.suspend:
            planned = self._planned_move(spec, target, src, before, after)
            if spec.suspend:
                planned.result = Result.SUSPENDED
                planned.note = "drift found; spec.suspend is set, nothing was changed"
            return planned
        hosts = {name: link.hypervisor for name, link in self.links.items()}
        try:
            done = execute(target.hypervisor, spec.name, tuple(before), retry=self.retry,
                           observer=self.observer, hosts=hosts)
        except StepFailed as failure:
            return outcome(Result.FAILED, steps=failure.done, error=str(failure.error),
                           observed=src)
        there = target.engine.reconcile_locked(spec, None)
        there.steps = done + there.steps
        there.observed = src
        if there.result is Result.FAILED or there.result is Result.CONFLICT:
            return there
        try:
            there.steps += execute(target.hypervisor, spec.name, tuple(after), retry=self.retry,
                                   observer=self.observer, hosts=hosts)
        except StepFailed as failure:
            there.steps += failure.done
            there.result, there.error = Result.FAILED, str(failure.error)
            return there
        if there.result is Result.UNCHANGED:
            there.result = Result.CONVERGED
        if spec.state is not DesiredState.ABSENT:
            self.inventory.moved(spec.name, source.name, target.name)
        return there

    def _planned_move(self, spec: VMSpec, target: HostLink, src: Observed,
                      before: list[Step], after: list[Step]) -> Outcome:
        """A dry run's move: its own steps, then what converging on the target would add."""
        steps = list(before)
        arriving = next((step.xml for step in before if step.xml), None)
        if arriving is not None:
            saved = domainxml.parse_domain(arriving)
            there = Observed(spec.name, exists=True, power=src.power if any(
                step.action is Action.MIGRATE for step in before) else Power.STOPPED,
                persistent=True, saved=saved, live=src.live, saved_xml=arriving)
            steps += [step for step in plan(
                spec, there, canonical_machine=target.hypervisor.canonical_machine).steps]
        steps += after
        return Outcome(spec.name, spec.source, Result.PLANNED, steps=steps, observed=src)

    # --- orphans -----------------------------------------------------------------

    def prune(self, host: str, name: str) -> Outcome:
        return self._tag(self.links[host].engine.prune(name), host)
