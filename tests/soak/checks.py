"""The soak's invariants, as pure functions over what the run recorded: the shared step
log (tests/reliability/support.Event, one per step start and done, every process), the
manifest timeline (timeline.py), the processes (which PIDs were `--once` runs, and when
each began) and what the monitor saw of libvirt. Each returns one line per violation.

Never two plans on one VM, without knowing where each plan begins and ends (a kill -9
or a failed step leaves no trace of that in the step log):
- a step that finished (start, then done, of one process) held the VM's lock all along:
  no other process's event on that VM may lie between the two;
- a `reconcile --once` run reconciles each VM under one hold of its lock: no other
  process's event on that VM may lie between its first and its last event there.

No managed domain lost, bad input loses nothing: an `undefine` (the only step that
removes a definition) needs a manifest that wanted the VM gone (state: absent, or no
file: a prune) at some moment between when the process could have read it and the
step; no step at all may run on a VM whose manifest was invalid all along in that
window; and the service prunes nothing while another manifest is invalid.
The window begins when a `--once` run began (it reads the manifests once), and
SERVICE_WINDOW seconds before the step for the service (it reloads on every change,
250 ms debounced; a plan with stopTimeout 0 lasts seconds).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tests.reliability.support import Event

from .timeline import REMOVED, Timeline, is_invalid, wants_gone

SERVICE_WINDOW = 15.0


@dataclass(frozen=True)
class TimedEvent:
    """A step-log event with its time (the step log's "time", time.time())."""

    event: Event
    time: float


def _by_vm(events: Iterable[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.vm].append(event)
    return grouped


def overlapping_steps(events: Sequence[Event]) -> list[str]:
    """Another process's event inside a finished step (see the module docstring)."""
    problems = []
    for vm, sequence in sorted(_by_vm(events).items()):
        open_at: dict[int, int] = {}  # pid → index of its start without a done yet
        for index, event in enumerate(sequence):
            if event.phase == "start":
                open_at[event.pid] = index
                continue
            begun = open_at.pop(event.pid, None)
            if begun is None:
                continue
            intruders = sorted({other.pid for other in sequence[begun + 1:index]
                                if other.pid != event.pid})
            if intruders:
                problems.append(f"{vm}: pid {event.pid}'s {event.action} (lines "
                                f"{sequence[begun].line}-{event.line}) overlaps pid "
                                f"{', '.join(map(str, intruders))}")
    return problems


def once_holds_interleaved(events: Sequence[Event], once_pids: Iterable[int]) -> list[str]:
    """Another process's event between a --once run's first and last event on a VM."""
    once = set(once_pids)
    problems = []
    for vm, sequence in sorted(_by_vm(events).items()):
        spans: dict[int, list[int]] = defaultdict(list)
        for index, event in enumerate(sequence):
            if event.pid in once:
                spans[event.pid].append(index)
        for pid, where in sorted(spans.items()):
            intruders = sorted({event.pid for event in sequence[where[0]:where[-1] + 1]
                                if event.pid != pid})
            if intruders:
                problems.append(f"{vm}: --once pid {pid}'s plan (lines "
                                f"{sequence[where[0]].line}-{sequence[where[-1]].line}) "
                                f"interleaved with pid {', '.join(map(str, intruders))}")
    return problems


def _window(event: TimedEvent, once_started: Mapping[int, float]) -> float:
    started = once_started.get(event.event.pid)
    return started if started is not None else event.time - SERVICE_WINDOW


def unjustified_steps(events: Sequence[TimedEvent], timeline: Timeline,
                      once_started: Mapping[int, float]) -> list[str]:
    """Undefines no manifest asked for, steps on VMs whose manifest was invalid all along,
    and prunes while another manifest was invalid (see the module docstring)."""
    problems = []
    for timed in events:
        event = timed.event
        if event.phase != "start":
            continue
        since = _window(timed, once_started)
        where = f"line {event.line}: pid {event.pid} {event.action} {event.vm}"
        if event.vm not in timeline.names():
            problems.append(f"{where}: a domain no manifest of the soak ever named")
            continue
        if timeline.always(event.vm, since, timed.time, is_invalid):
            problems.append(f"{where}: its manifest was invalid all along since {since:.1f}")
        if event.action != "undefine":
            continue
        if not timeline.ever(event.vm, since, timed.time, wants_gone):
            problems.append(f"{where}: no manifest wanted it gone since {since:.1f}")
        elif (event.pid not in once_started
              and timeline.always(event.vm, since, timed.time, lambda d: d == REMOVED)
              and timeline.some_invalid_throughout(since, timed.time)):
            problems.append(f"{where}: pruned while another manifest was invalid")
    return problems


def steps_on(events: Sequence[Event], names: Iterable[str]) -> list[str]:
    """Steps on domains that are not the soak's to change (foreign, unmanaged ones)."""
    untouchable = set(names)
    return [f"{event}: a step on {event.vm}, which is not managed" for event in events
            if event.vm in untouchable]


def foreign_changes(before: Mapping[str, object], now: Mapping[str, object]) -> list[str]:
    """What differs between two readings of the domains the soak must never touch."""
    problems = []
    for name, seen in sorted(before.items()):
        if name not in now:
            problems.append(f"foreign domain {name} is gone")
        elif now[name] != seen:
            problems.append(f"foreign domain {name} changed: {seen} -> {now[name]}")
    return problems


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` 0.5 = p50) of non-empty `values`."""
    ordered = sorted(values)
    rank = min(max(1, math.ceil(fraction * len(ordered))), len(ordered))
    return ordered[rank - 1]
