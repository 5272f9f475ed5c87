"""Readiness: whether a running VM is ready by its `spec.readiness`, what is missing if
not, and reading the guests of many VMs at once, with a deadline.

    judge(readiness, info)          pure: ready, or what is missing (and if waiting can help)
    look_all(targets, ...)          each target's guest read once (JSON output, status)
    wait_ready(targets, ...)        poll the VMs not ready yet, each with its own backoff,
                                    until all are ready or the deadline (--once --wait)
    to_wait_for(outcomes)           the VMs a --wait waits for: converged and running
    read_guests(outcomes, hosts)    look_all onto the outcomes (their `guest`)
    GuestReaders                    read-write connections for the guests of read-only runs
    apply_waited(outcome, waited)   a VM not ready in time becomes `failed` with what was
                                    missing ("no address after 300 s (agent not answering)")

Called by the CLI's commands and (judge) the service's guest watch. The looks run on
daemon threads of their own: one that libvirt never answers is given up at the
deadline instead of holding the caller (libvirt's calls have no timeout of their own).
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .errors import ConnectionLost
from .guest_reads import looked_at as looked_at
from .guest_reads import running_now as running_now
from .guest_reads import to_wait_for as to_wait_for
from .hosts import DEFAULT_HOST, Host, Hosts
from .model import Cause, GuestInfo, Outcome, Readiness, Result
from .virt import Hypervisor

#: The first pause before looking at a VM again, and the longest.
BACKOFF = (0.5, 5.0)
#: A single read of guests (JSON, status) gives up on a guest after this many seconds.
LOOK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Verdict:
    """Ready, or what is missing. `final`: waiting cannot help (the domain is not
    running, or readiness `agent` on a domain without an agent channel)."""

    ready: bool
    missing: str | None = None  # "no address", "agent not answering", "not running"
    detail: str | None = None  # said in parentheses: "agent not answering"
    final: bool = False

    def message(self, waited: float | None = None) -> str:
        """'no address after 300 s (agent not answering)'; without `waited`: 'not
        ready: ...' (a final verdict, said at once)."""
        detail = f" ({self.detail})" if self.detail else ""
        if waited is None or self.final:
            return f"not ready: {self.missing}{detail}"
        return f"{self.missing} after {waited:g} s{detail}"


READY = Verdict(ready=True)


def judge(readiness: Readiness, info: GuestInfo) -> Verdict:
    """Whether a VM whose guest looks like `info` is ready by `readiness`. Pure."""
    if info.error is not None:
        return Verdict(False, "guest unknown", info.error)
    if not info.running:
        return Verdict(False, "not running", final=True)
    if readiness is Readiness.RUNNING:
        return READY
    if readiness is Readiness.AGENT:
        if not info.channel:
            return Verdict(False, "no guest agent",
                           "the domain has no org.qemu.guest_agent.0 channel", final=True)
        return READY if info.agent else Verdict(False, "agent not answering")
    if info.addresses:
        return READY
    if not info.channel:
        return Verdict(False, "no address", "no DHCP lease, and no guest agent channel")
    if not info.agent:
        return Verdict(False, "no address", "agent not answering")
    return Verdict(False, "no address", "no DHCP lease; the agent reports none")


@dataclass(frozen=True)
class Target:
    """One VM to look at: its name, its readiness, and how to read its guest."""

    name: str
    readiness: Readiness
    look: Callable[[], GuestInfo]


@dataclass(frozen=True)
class Waited:
    """What became of one target: its guest as last seen, the verdict, and how long
    was waited for it."""

    target: Target
    info: GuestInfo
    verdict: Verdict
    seconds: float


class _Lookers:
    """Daemon threads that read guests; results arrive on `done` as (index, info)."""

    def __init__(self, targets: Sequence[Target], workers: int):
        self._targets = targets
        self._todo: queue.Queue[int | None] = queue.Queue()
        self.done: queue.Queue[tuple[int, GuestInfo]] = queue.Queue()
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name=f"guest-{index}")
                         for index in range(max(1, min(workers, len(targets))))]
        for thread in self._threads:
            thread.start()

    def submit(self, index: int) -> None:
        self._todo.put(index)

    def stop(self) -> None:
        """Let the idle threads end; one still waiting on libvirt ends when libvirt does."""
        for _ in self._threads:
            self._todo.put(None)

    def _work(self) -> None:
        while (index := self._todo.get()) is not None:
            try:
                info = self._targets[index].look()
            except Exception as error:  # noqa: BLE001 - a look must never lose its answer
                info = GuestInfo(error=f"cannot read the guest: {error}")
            self.done.put((index, info))


def wait_ready(targets: Sequence[Target], *, timeout: float, workers: int = 8,
               backoff: tuple[float, float] = BACKOFF,
               clock: Callable[[], float] = time.monotonic) -> list[Waited]:
    """Look at every target, then again at those not ready yet, each after its own
    backoff (doubling from backoff[0] to backoff[1]), until every one is ready or
    judged final, or `timeout` seconds have passed. One Waited per target, in order.
    With timeout 0, each target is looked at once (and waited for up to LOOK_TIMEOUT)."""
    if not targets:
        return []
    started = clock()
    once = timeout <= 0
    deadline = started + (LOOK_TIMEOUT if once else timeout)
    lookers = _Lookers(targets, workers)
    last: dict[int, GuestInfo] = {}
    settled: dict[int, Verdict] = {}
    seconds: dict[int, float] = {}
    # (when due, index) of the targets neither settled nor being looked at: a heap, so
    # that each answer costs O(log n), not a scan of every target (1,000 VMs: 10^6)
    due: list[tuple[float, int]] = [(started, index) for index in range(len(targets))]
    delay = dict.fromkeys(range(len(targets)), backoff[0])
    try:
        while len(settled) < len(targets):
            now = clock()
            if now >= deadline:
                break
            while due and due[0][0] <= now:
                lookers.submit(heapq.heappop(due)[1])
            wake = min(deadline, due[0][0]) if due else deadline
            try:
                index, info = lookers.done.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                continue
            last[index] = info
            verdict = judge(targets[index].readiness, info)
            if verdict.ready or verdict.final or once:
                settled[index] = verdict
                seconds[index] = clock() - started
                continue
            heapq.heappush(due, (clock() + delay[index], index))
            delay[index] = min(delay[index] * 2, backoff[1])
    finally:
        lookers.stop()
    waited = clock() - started
    results = []
    for index, target in enumerate(targets):
        info = last.get(index) or GuestInfo(
            error=f"no answer from libvirt within {deadline - started:g} s")
        verdict = settled.get(index) or judge(target.readiness, info)
        results.append(Waited(target, info, verdict, seconds.get(index, waited)))
    return results


def look_all(targets: Sequence[Target], *, workers: int = 8) -> list[GuestInfo]:
    """Each target's guest, read once, in parallel; a read that does not finish within
    LOOK_TIMEOUT is an `error`."""
    return [waited.info for waited in wait_ready(targets, timeout=0, workers=workers)]


# --- outcomes of a pass ----------------------------------------------------------------

class GuestReaders:
    """Which connection reads each host's guests: the host's own when it is read-write;
    for a read-only one (status, --dry-run), a read-write connection of its own, opened
    once when first needed, since libvirt refuses guest-ping and the agent's addresses
    on read-only connections. Where that cannot be opened (a user with read-only access
    only), the read-only one it is, and the agent is judged by its channel's state."""

    def __init__(self) -> None:
        self._own: dict[int, Hypervisor] = {}
        self._lock = threading.Lock()

    def guest_look(self, host: Host) -> Callable[[str], GuestInfo]:
        hypervisor = host.hypervisor
        if not hypervisor.connection.readonly or (hypervisor.uri or "").startswith("test:"):
            return hypervisor.guest.look  # (the test driver shares no state between connections)

        def look(name: str) -> GuestInfo:  # in a looker thread: under its deadline
            return self._read_write(hypervisor).guest.look(name)
        return look

    def _read_write(self, hypervisor: Hypervisor) -> Hypervisor:
        with self._lock:
            own = self._own.get(id(hypervisor))
            if own is None:
                own = Hypervisor.open(hypervisor.uri)
                try:
                    own.connection.connect()
                except ConnectionLost:
                    own = hypervisor  # read-only access only
                self._own[id(hypervisor)] = own
            return own

    def close(self) -> None:
        with self._lock:
            for own in self._own.values():
                if not own.connection.readonly:
                    own.connection.close()
            self._own.clear()


def target_of(outcome: Outcome, hosts: Hosts,
              readers: GuestReaders | None = None) -> Target | None:
    """How to read this VM's guest: on its host, if that host answered in this pass."""
    host = hosts.get(outcome.host or DEFAULT_HOST)
    if host is None or not host.usable:
        return None
    readiness = outcome.spec.readiness if outcome.spec is not None else Readiness.RUNNING
    look = readers.guest_look(host) if readers else host.hypervisor.guest.look
    return Target(outcome.name, readiness, lambda: look(outcome.name))


def read_guests(outcomes: Iterable[Outcome], hosts: Hosts, *, workers: int,
                readers: GuestReaders | None = None) -> None:
    """Read the guests of `outcomes` once (in parallel) into each one's `guest`."""
    pairs = [(outcome, target_of(outcome, hosts, readers)) for outcome in outcomes]
    chosen = [(outcome, target) for outcome, target in pairs if target is not None]
    infos = look_all([target for _, target in chosen], workers=workers)
    for (outcome, _), info in zip(chosen, infos, strict=True):
        outcome.guest = info


def wait_for(outcomes: Sequence[Outcome], hosts: Hosts, *, timeout: float,
             workers: int) -> None:
    """--wait: until each of `outcomes` is ready or `timeout`; those not ready fail
    (apply_waited). A VM whose host cannot be asked is failed at once."""
    pairs = [(outcome, target_of(outcome, hosts)) for outcome in outcomes]
    chosen = [(outcome, target) for outcome, target in pairs if target is not None]
    for outcome, target in pairs:
        if target is None:
            outcome.result, outcome.cause = Result.FAILED, Cause.HOST_UNREACHABLE
            outcome.error = "not ready: its host cannot be asked"
    waited = wait_ready([target for _, target in chosen], timeout=timeout, workers=workers)
    for (outcome, _), result in zip(chosen, waited, strict=True):
        apply_waited(outcome, result, timeout=timeout)


def apply_waited(outcome: Outcome, waited: Waited, *, timeout: float) -> None:
    """The guest as last seen onto the outcome; a VM not ready is `failed` with what was
    missing (the deadline's length when it ran out, at once for a final verdict)."""
    outcome.guest = waited.info
    if waited.verdict.ready:
        return
    outcome.result = Result.FAILED
    outcome.cause = Cause.RETRY
    outcome.error = waited.verdict.message(None if waited.verdict.final else timeout)
