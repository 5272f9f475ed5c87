"""The service's guest watch: readiness and addresses of each running VM, for the
Prometheus metrics (`reconcile_vm_ready`, `reconcile_vm_address_info`) and STATUS.

Event-driven, with no polling storm at 1,000 VMs:

- a VM is looked at when a reconcile leaves it running (the workers call `outcome`):
  at once when it is new here or steps ran, else only when what is known of it is
  older than REFRESH (the periodic resync reconciles every VM, so nothing of ours runs
  on a timer for a VM that is ready);
- at once on libvirt's events for it: the guest agent connecting or disconnecting its
  channel (VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE) and the domain starting or stopping;
- a running VM whose `spec.readiness` is not met yet is looked at again after a backoff
  of its own (BACKOFF: 1 s doubling to 60 s), and only such VMs are; a verdict that
  waiting cannot change (not running, no agent channel for readiness `agent`) waits
  for the next event or reconcile instead.

Looks run on LOOKERS threads of their own, never in libvirt's event thread or the
workers. Made and started by service.py.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..hosts import DEFAULT_HOST, Hosts
from ..model import DesiredState, GuestInfo, Outcome, Readiness, Result
from ..readiness import Verdict, judge

log = logging.getLogger("controller.service")

BACKOFF = (1.0, 60.0)
REFRESH = 300.0
LOOKERS = 2
_KEPT = (Result.UNCHANGED, Result.CONVERGED, Result.RESTART_PENDING, Result.SUSPENDED)


@dataclass
class Seen:
    """What the watch knows of one VM."""

    host: str
    readiness: Readiness
    info: GuestInfo | None = None
    verdict: Verdict | None = None
    looked_at: float = float("-inf")
    delay: float = BACKOFF[0]
    due: float | None = None  # when it is to be looked at next; None: on an event
    looking: bool = False  # a looker is reading it now
    generation: int = 0  # bumped on every change of plan, to drop stale heap entries

    @property
    def ready(self) -> bool:
        return self.verdict is not None and self.verdict.ready


@dataclass(frozen=True)
class VMReadiness:
    """One VM in a snapshot, for the metrics."""

    name: str
    host: str
    readiness: Readiness
    ready: bool
    info: GuestInfo | None
    missing: str | None


@dataclass
class GuestWatch:
    """See the module."""

    hosts: Hosts
    backoff: tuple[float, float] = BACKOFF
    refresh: float = REFRESH
    lookers: int = LOOKERS
    _seen: dict[str, Seen] = field(default_factory=dict)
    _heap: list[tuple[float, int, str, int]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: bool = False
    looks: Counter[str] = field(default_factory=Counter)  # looks per VM, for tests

    # --- what triggers a look ----------------------------------------------------------

    def outcome(self, outcome: Outcome) -> None:
        """A worker finished a reconcile of `outcome.name` (worker thread)."""
        spec = outcome.spec
        if (spec is None or spec.state is not DesiredState.RUNNING
                or outcome.result not in _KEPT):
            self.forget(outcome.name)
            return
        host = outcome.host or DEFAULT_HOST
        with self._cond:
            seen = self._seen.get(outcome.name)
            if seen is None or seen.host != host:
                seen = self._seen[outcome.name] = Seen(host=host, readiness=spec.readiness)
                self._schedule(outcome.name, seen, 0.0)
                return
            changed = seen.readiness is not spec.readiness
            seen.readiness = spec.readiness
            stale = time.monotonic() - seen.looked_at >= self.refresh
            if changed or outcome.steps or (stale and seen.due is None):
                seen.delay = self.backoff[0]
                self._schedule(outcome.name, seen, 0.0)

    def agent_event(self, host: str, name: str, connected: bool) -> None:
        """libvirt's event thread: the guest agent of `name` (dis)connected its channel."""
        log.debug("guest agent of %s %s", name, "connected" if connected else "disconnected")
        self._event(host, name)

    def lifecycle_event(self, host: str, name: str, event: str) -> None:
        """libvirt's event thread: a domain lifecycle event."""
        if event in ("started", "stopped", "resumed", "suspended", "crashed", "shutdown"):
            self._event(host, name)

    def _event(self, host: str, name: str) -> None:
        with self._cond:
            seen = self._seen.get(name)
            if seen is not None and seen.host == (host or DEFAULT_HOST):
                seen.delay = self.backoff[0]
                self._schedule(name, seen, 0.0)

    def forget(self, name: str) -> None:
        with self._cond:
            seen = self._seen.pop(name, None)
            if seen is not None:
                seen.generation += 1

    def _schedule(self, name: str, seen: Seen, after: float) -> None:
        """Look at `name` after `after` seconds (replacing what was planned). Locked."""
        seen.generation += 1
        seen.due = time.monotonic() + after
        heapq.heappush(self._heap, (seen.due, next(self._order), name, seen.generation))
        self._cond.notify()

    # --- looking -----------------------------------------------------------------------

    def start(self) -> None:
        for index in range(self.lookers):
            thread = threading.Thread(target=self._run, name=f"guest-watch-{index + 1}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _next(self) -> tuple[str, Seen, int] | None:
        """The next VM that is due, waiting for it; None when stopping."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._heap:
                    due, _, name, generation = self._heap[0]
                    seen = self._seen.get(name)
                    if seen is None or seen.generation != generation:
                        heapq.heappop(self._heap)  # forgotten or planned again since
                        continue
                    if due > now:
                        break
                    heapq.heappop(self._heap)
                    seen.due, seen.looking = None, True
                    return name, seen, generation
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while (task := self._next()) is not None:
            name, seen, generation = task
            try:
                self._look(name, seen, generation)
            except Exception:  # a bug must not end the watch: report it, try later
                log.exception("%s: reading the guest failed", name)
                with self._cond:
                    if self._seen.get(name) is seen and seen.generation == generation:
                        self._schedule(name, seen, self.backoff[1])
            finally:
                with self._cond:
                    seen.looking = False

    def _look(self, name: str, seen: Seen, generation: int) -> None:
        host = self.hosts.get(seen.host)
        if host is None or not host.up:
            return  # the resync after the host reconnects reconciles it, and outcome() follows
        info = host.hypervisor.guest.look(name)
        with self._cond:
            self.looks[name] += 1
            if self._seen.get(name) is not seen or seen.generation != generation:
                return  # forgotten or planned again meanwhile: that look decides
            verdict = judge(seen.readiness, info)
            if verdict.ready != seen.ready:
                log.info("%s: %s", name, "ready" if verdict.ready else verdict.message())
            seen.info, seen.verdict, seen.looked_at = info, verdict, time.monotonic()
            if verdict.ready or verdict.final:
                seen.delay = self.backoff[0]
                return  # the next event or reconcile looks again
            self._schedule(name, seen, seen.delay)
            seen.delay = min(seen.delay * 2, self.backoff[1])

    # --- what others read ----------------------------------------------------------------

    def snapshot(self) -> list[VMReadiness]:
        """What is known of each VM whose host is connected now (of a host that is not,
        nothing is known: its VMs leave the metrics until it is back)."""
        up = {host.name for host in self.hosts.all() if host.up}
        with self._cond:
            return [VMReadiness(name=name, host=seen.host or "default",
                                readiness=seen.readiness, ready=seen.ready, info=seen.info,
                                missing=seen.verdict.message() if seen.verdict
                                and not seen.verdict.ready else None)
                    for name, seen in sorted(self._seen.items()) if seen.host in up]

    def scheduled(self) -> list[str]:
        """The VMs with a look planned or running now (all others wait for an event or
        a reconcile)."""
        with self._cond:
            return sorted(name for name, seen in self._seen.items()
                          if seen.due is not None or seen.looking)

    def not_ready(self) -> int:
        with self._cond:
            return sum(1 for seen in self._seen.values()
                       if seen.verdict is not None and not seen.verdict.ready)


class GuestCollector:
    """The watch's snapshot as Prometheus metrics, read at each scrape (so a VM that is
    gone leaves no stale series)."""

    def __init__(self, watch: GuestWatch):
        self.watch = watch

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        ready = GaugeMetricFamily(
            "reconcile_vm_ready", "1 when the running VM is ready by its spec.readiness",
            labels=["host", "name", "readiness"])
        addresses = GaugeMetricFamily(
            "reconcile_vm_address_info", "An address of a running VM (always 1)",
            labels=["host", "name", "address", "prefix", "mac", "source"])
        agent = GaugeMetricFamily(
            "reconcile_vm_agent_up", "1 while the VM's guest agent answers guest-ping "
            "(only VMs with an agent channel)", labels=["host", "name"])
        for vm in self.watch.snapshot():
            if vm.info is None:
                continue
            ready.add_metric([vm.host, vm.name, vm.readiness.value], 1.0 if vm.ready else 0.0)
            for address in vm.info.addresses:
                addresses.add_metric([vm.host, vm.name, address.address, str(address.prefix),
                                      address.mac, address.source], 1.0)
            if vm.info.agent is not None:
                agent.add_metric([vm.host, vm.name], 1.0 if vm.info.agent else 0.0)
        yield ready
        yield addresses
        yield agent
